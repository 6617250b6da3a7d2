/**
 * SendMessage end to end through real local bindings: gateway → D1 → run object → real
 * queue → executor → run object → A2A Task; and the run's WebSocket through the gateway.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { collect, orgFetch, rpc, seedOrg, sendMessage, type SeedResult } from "./helpers";

let seed: SeedResult;
beforeAll(async () => {
  seed = await seedOrg("e2e");
});

describe("SendMessage end to end", () => {
  it("creates a run, waits for it and returns the Task with the answer as an artifact", async () => {
    const r = await rpc("e2e", "ProcessInvoice", sendMessage("Invoice INV-1 from Globex: 2 x widgets at 10 EUR, total 20 EUR", {}, "req-1"));
    expect(r.status).toBe(200);
    expect(r.body.id).toBe("req-1");
    const task = r.body.result.task;
    expect(task.status.state).toBe("TASK_STATE_COMPLETED");
    expect(task.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(task.contextId).toMatch(/^[0-9a-f-]{36}$/);
    const answer = task.artifacts[0].parts[0].text as string;
    expect(task.artifacts[0]).toMatchObject({ name: "result", parts: [{ mediaType: "text/plain" }] });
    expect(answer).toContain("[shaman-offline/gpt-4o-mini]");
    expect(answer).toContain("Invoice INV-1 from Globex");
    expect(answer).toContain("ValidateData (SUCCESS)");
    expect(task.history.map((m: any) => m.role)).toEqual(["ROLE_USER", "ROLE_AGENT"]);
    expect(task.metadata.shaman).toMatchObject({ agent: "ProcessInvoice", runId: task.id, commit: seed.commit });

    // the run summary row in D1 was written and settled
    const row = await env.DB.prepare("SELECT org_id, status, agent_name, completed_at FROM runs WHERE id = ?").bind(task.id).first<any>();
    expect(row).toMatchObject({ org_id: seed.org.id, status: "completed", agent_name: "ProcessInvoice" });
    expect(row.completed_at).toBeGreaterThan(0);

    // the run and its event log are readable through the gateway
    const run = (await (await orgFetch("e2e", `/runs/${task.id}`)).json()) as any;
    expect(run).toMatchObject({ runId: task.id, status: "completed", output: answer });
    expect(run).not.toHaveProperty("orgId");
    const { events } = (await (await orgFetch("e2e", `/runs/${task.id}/events?after=0`)).json()) as any;
    // ProcessInvoice calls ValidateData (its allowedAgents), waits without holding a worker,
    // resumes with the result and completes: the whole DAG is in the log, in order
    expect(events.map((e: any) => [e.type, e.stepId])).toEqual([
      ["run.created", null],
      ["step.queued", "s1"],
      ["step.started", "s1"],
      ["model.turn", "s1"],
      ["tool.called", "s1"],
      ["step.queued", "s2"],
      ["step.waiting", "s1"],
      ["step.started", "s2"],
      ["model.turn", "s2"],
      ["step.completed", "s2"],
      ["tool.result", "s1"],
      ["step.resumed", "s1"],
      ["step.started", "s1"],
      ["model.turn", "s1"],
      ["tool.called", "s1"],
      ["tool.result", "s1"],
      ["step.completed", "s1"],
      ["run.completed", null],
    ]);
    expect(events.map((e: any) => e.seq)).toEqual(events.map((_: unknown, i: number) => i + 1));
    expect(run.steps.map((s: any) => [s.id, s.parentId, s.agent, s.status, s.turns])).toEqual([
      ["s1", null, "ProcessInvoice", "completed", 2],
      ["s2", "s1", "ValidateData", "completed", 1],
    ]);
  });

  it("keeps the caller's contextId and honours historyLength", async () => {
    const contextId = crypto.randomUUID();
    const body = sendMessage("hello", { historyLength: 1 });
    (body.params.message as any).contextId = contextId;
    const task = (await rpc("e2e", "Summarize", body)).body.result.task;
    expect(task.contextId).toBe(contextId);
    expect(task.history).toHaveLength(1);
    expect(task.history[0].role).toBe("ROLE_AGENT");
  });

  it("returns immediately when asked, and GetTask then reports the finished task", async () => {
    const r = await rpc("e2e", "Summarize", sendMessage("Quarterly numbers are up 4%.", { returnImmediately: true }));
    const task = r.body.result.task;
    expect(["TASK_STATE_SUBMITTED", "TASK_STATE_WORKING", "TASK_STATE_COMPLETED"]).toContain(task.status.state);
    let state = task.status.state;
    let got: any;
    for (let i = 0; i < 100 && state !== "TASK_STATE_COMPLETED"; i++) {
      await new Promise((res) => setTimeout(res, 50));
      got = (await rpc("e2e", "Summarize", { jsonrpc: "2.0", id: 2, method: "GetTask", params: { id: task.id } })).body.result;
      state = got.status.state;
    }
    expect(state).toBe("TASK_STATE_COMPLETED");
    got ??= (await rpc("e2e", "Summarize", { jsonrpc: "2.0", id: 2, method: "GetTask", params: { id: task.id } })).body.result;
    expect(got.artifacts[0].parts[0].text).toContain("Quarterly numbers are up 4%.");
    // the task belongs to Summarize: another agent's endpoint does not know it
    const other = await rpc("e2e", "ProcessInvoice", { jsonrpc: "2.0", id: 3, method: "GetTask", params: { id: task.id } });
    expect(other.body.error.code).toBe(-32001);
    // a finished task takes no more messages
    const more = sendMessage("more");
    (more.params.message as any).taskId = task.id;
    expect((await rpc("e2e", "Summarize", more)).body.error.code).toBe(-32004);
  });

  it("speaks A2A v0.3 (message/send) to clients without the A2A-Version header", async () => {
    const r = await rpc(
      "e2e",
      "Summarize",
      {
        jsonrpc: "2.0",
        id: 9,
        method: "message/send",
        params: { message: { kind: "message", messageId: "m-03", role: "user", parts: [{ kind: "text", text: "old client" }] } },
      },
      {},
    );
    expect(r.body.result).toMatchObject({ kind: "task", status: { state: "completed" } });
    expect(r.body.result.artifacts[0].parts[0]).toMatchObject({ kind: "text" });
    expect(r.body.result.artifacts[0].parts[0].text).toContain("old client");
  });

  it("keeps tasks of another org out of reach", async () => {
    await seedOrg("e2e-other");
    const task = (await rpc("e2e", "Summarize", sendMessage("secret"))).body.result.task;
    const viaOther = await rpc("e2e-other", "Summarize", { jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: task.id } });
    expect(viaOther.body.error.code).toBe(-32001);
    const runOther = await orgFetch("e2e-other", `/runs/${task.id}`);
    const runMissing = await orgFetch("e2e-other", `/runs/${crypto.randomUUID()}`);
    expect(runOther.status).toBe(404);
    const strip = (b: any) => ({ ...b, requestId: undefined });
    expect(strip(await runOther.json())).toEqual(strip(await runMissing.json()));
    const ws = await orgFetch("e2e-other", `/runs/${task.id}/ws`, { headers: { upgrade: "websocket" } });
    expect(ws.status).toBe(404);
  });
});

describe("run WebSocket through the gateway", () => {
  it("replays after a sequence number and streams to the end of the run", async () => {
    const task = (await rpc("e2e", "Summarize", sendMessage("stream me", { returnImmediately: true }))).body.result.task;
    const res = await orgFetch("e2e", `/runs/${task.id}/ws?after=1`, { headers: { upgrade: "websocket" } });
    expect(res.status).toBe(101);
    const ws = res.webSocket;
    if (!ws) throw new Error("no websocket");
    ws.accept();
    const { messages, closeCode } = await collect(ws);
    expect(messages.map((m) => m.seq)).toEqual([2, 3, 4, 5, 6]);
    expect(messages.at(-1)).toMatchObject({ type: "run.completed", runId: task.id });
    expect(messages.at(-1).data.output).toContain("stream me");
    expect(closeCode).toBe(1000);
  });

  it("refuses a plain GET and a bad sequence number", async () => {
    const task = (await rpc("e2e", "Summarize", sendMessage("x"))).body.result.task;
    expect((await orgFetch("e2e", `/runs/${task.id}/ws`)).status).toBe(400);
    expect((await orgFetch("e2e", `/runs/${task.id}/ws?after=abc`, { headers: { upgrade: "websocket" } })).status).toBe(400);
  });
});
