/**
 * SendMessage end to end through real local bindings: gateway → D1 → run object → real
 * queue → executor → run object → A2A Task; the example flow with an MCP server
 * (server-everything) and an external A2A agent registered; and the run's WebSocket
 * through the gateway.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { collect, eventually, orgFetch, rpc, seedOrg, sendMessage, type SeedResult } from "./helpers";

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
    expect(answer).toContain("- ValidateData (SUCCESS)");
    expect(answer).toContain("- VendorCheck (SUCCESS)");
    expect(answer).not.toContain("Approval:");
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
    const { events: all } = (await (await orgFetch("e2e", `/runs/${task.id}/events?after=0`)).json()) as any;
    expect(all.map((e: any) => e.seq)).toEqual(all.map((_: unknown, i: number) => i + 1));
    // nobody watched this blocking call: no model text was streamed (each turn holds its text)
    expect(all.filter((e: any) => e.type === "model.delta")).toEqual([]);
    const events = all.filter((e: any) => e.type !== "model.delta");
    const pair = (e: any) => [e.type, e.stepId];
    // ProcessInvoice calls ValidateData and VendorCheck (its allowedAgents) in one turn: both
    // children are queued in the same transition, and the parent waits without holding a worker
    expect(events.slice(0, 9).map(pair)).toEqual([
      ["run.created", null],
      ["step.queued", "s1"],
      ["step.started", "s1"],
      ["model.turn", "s1"],
      ["tool.called", "s1"],
      ["step.queued", "s2"],
      ["tool.called", "s1"],
      ["step.queued", "s3"],
      ["step.waiting", "s1"],
    ]);
    expect(events[3].data).toMatchObject({ agent: "ProcessInvoice", turn: 1, toolCalls: ["call_agent", "call_agent"] });
    const calls = [events[4].data, events[6].data];
    expect(calls.map((c: any) => [c.tool, c.args.agent])).toEqual([
      ["call_agent", "ValidateData"],
      ["call_agent", "VendorCheck"],
    ]);
    expect(events[5].data).toEqual({ agent: "ValidateData", depth: 1, parentId: "s1", callId: calls[0].callId });
    expect(events[7].data).toEqual({ agent: "VendorCheck", depth: 1, parentId: "s1", callId: calls[1].callId });
    expect(events[8].data).toEqual({ on: [{ step: "s2" }, { step: "s3" }] });
    // the children run side by side (their events interleave in any order); each one's
    // completion is its parent's tool result in the same transition, and the parent resumes
    // after the second
    const parallel = events.slice(9, 18);
    for (const [child, agent, callId] of [["s2", "ValidateData", calls[0].callId], ["s3", "VendorCheck", calls[1].callId]]) {
      expect(parallel.filter((e: any) => e.stepId === child).map((e: any) => e.type), child).toEqual(["step.started", "model.turn", "step.completed"]);
      const done = parallel.findIndex((e: any) => e.stepId === child && e.type === "step.completed");
      expect(parallel[done + 1]).toMatchObject({ type: "tool.result", stepId: "s1", data: { tool: "call_agent", callId, result: { agent, status: "SUCCESS" } } });
    }
    expect(parallel.filter((e: any) => e.stepId === "s1").map((e: any) => e.type)).toEqual(["tool.result", "tool.result", "step.resumed"]);
    expect(parallel.at(-1)).toMatchObject({ type: "step.resumed", stepId: "s1", data: { turn: 2 } });
    // 20 EUR is below the approval threshold: the second turn completes
    expect(events.slice(18).map(pair)).toEqual([
      ["step.started", "s1"],
      ["model.turn", "s1"],
      ["tool.called", "s1"],
      ["tool.result", "s1"],
      ["step.completed", "s1"],
      ["run.completed", null],
    ]);
    expect(events[20].data).toMatchObject({ tool: "complete_agent_execution", args: { status: "SUCCESS" } });
    expect(run.steps.map((s: any) => [s.id, s.parentId, s.agent, s.status, s.turns])).toEqual([
      ["s1", null, "ProcessInvoice", "completed", 2],
      ["s2", "s1", "ValidateData", "completed", 1],
      ["s3", "s1", "VendorCheck", "completed", 1],
    ]);
    expect(run.inputs).toEqual([]);
  });

  it("asks a person to approve an invoice above the threshold: SendMessage returns at input_required, the run API's answer completes it", async () => {
    const invoice = "Invoice INV-9 from Globex: 10 x servers at 125 EUR, Total: EUR 1,250.00";
    const r = await rpc("e2e", "ProcessInvoice", sendMessage(invoice));
    const task = r.body.result.task;
    // the blocking call returns when the run needs a person, not only when it ends
    expect(task.status.state).toBe("TASK_STATE_INPUT_REQUIRED");
    const waiting = (await (await orgFetch("e2e", `/runs/${task.id}`)).json()) as any;
    expect(waiting.status).toBe("input_required");
    expect(waiting.steps.map((s: any) => [s.id, s.agent, s.status])).toEqual([
      ["s1", "ProcessInvoice", "input_required"],
      ["s2", "ValidateData", "completed"],
      ["s3", "VendorCheck", "completed"],
    ]);
    expect(waiting.inputs).toHaveLength(1);
    const request = waiting.inputs[0];
    expect(request).toMatchObject({ stepId: "s1", agent: "ProcessInvoice", inputType: "approval" });
    // the approval line of the example's prompt, read by the offline model's rule
    expect(request.prompt).toContain("Its total 1250 EUR is above the approval threshold of 1000 EUR");
    expect(request.prompt).toContain("Ask a person to approve any invoice above 1,000 EUR before completing");

    const answered = await orgFetch("e2e", `/runs/${task.id}/input/${request.requestId}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ answer: "approved", comment: "matches PO-77" }),
    });
    expect(answered.status).toBe(200);
    expect(await answered.json()).toEqual({ answered: request.requestId, status: "working", inputs: [] });
    const get = () => rpc("e2e", "ProcessInvoice", { jsonrpc: "2.0", id: 2, method: "GetTask", params: { id: task.id } });
    const done = (await eventually(get, (g) => g.body.result?.status?.state === "TASK_STATE_COMPLETED")).body.result;
    expect(done.status.state).toBe("TASK_STATE_COMPLETED");
    const answer = done.artifacts[0].parts[0].text as string;
    expect(answer).toContain("- ValidateData (SUCCESS)");
    expect(answer).toContain("- VendorCheck (SUCCESS)");
    expect(answer).toContain("Approval: approved (comment: matches PO-77)");

    // after the join: ask, park, answer, resume, complete, in this order
    const { events } = (await (await orgFetch("e2e", `/runs/${task.id}/events?after=0`)).json()) as any;
    const resumed = events.findIndex((e: any) => e.type === "step.resumed");
    expect(events.slice(resumed).map((e: any) => [e.type, e.stepId])).toEqual([
      ["step.resumed", "s1"],
      ["step.started", "s1"],
      ["model.turn", "s1"],
      ["tool.called", "s1"],
      ["input.requested", "s1"],
      ["step.waiting", "s1"],
      ["run.input_required", null],
      ["input.answered", "s1"],
      ["tool.result", "s1"],
      ["step.resumed", "s1"],
      ["run.working", null],
      ["step.started", "s1"],
      ["model.turn", "s1"],
      ["tool.called", "s1"],
      ["tool.result", "s1"],
      ["step.completed", "s1"],
      ["run.completed", null],
    ]);
    const asked = events.find((e: any) => e.type === "input.requested");
    expect(asked.data).toMatchObject({ requestId: request.requestId, agent: "ProcessInvoice", inputType: "approval" });
    expect(events.find((e: any) => e.type === "input.answered").data).toEqual({ requestId: request.requestId, callId: asked.data.callId, answer: { answer: "approved", comment: "matches PO-77" } });
  });

  it("fails the run when the person rejects the invoice", async () => {
    const r = await rpc("e2e", "ProcessInvoice", sendMessage("Invoice INV-10 from Initech, total 4,000 EUR"));
    const task = r.body.result.task;
    expect(task.status.state).toBe("TASK_STATE_INPUT_REQUIRED");
    const [request] = ((await (await orgFetch("e2e", `/runs/${task.id}`)).json()) as any).inputs;
    const rejected = await orgFetch("e2e", `/runs/${task.id}/input/${request.requestId}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ answer: "rejected", comment: "no purchase order" }),
    });
    expect(rejected.status).toBe(200);
    const run = await eventually(
      async () => (await (await orgFetch("e2e", `/runs/${task.id}`)).json()) as any,
      (x) => x.status === "failed",
    );
    expect(run.status).toBe("failed");
    expect(run.steps.map((s: any) => [s.agent, s.status, s.resultStatus])).toEqual([
      ["ProcessInvoice", "failed", "FAILED"],
      ["ValidateData", "completed", "SUCCESS"],
      ["VendorCheck", "completed", "SUCCESS"],
    ]);
    expect(run.error).toContain("not approved: rejected (no purchase order)");
    const got = (await rpc("e2e", "ProcessInvoice", { jsonrpc: "2.0", id: 2, method: "GetTask", params: { id: task.id } })).body.result;
    expect(got.status.state).toBe("TASK_STATE_FAILED");
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

describe("the example flow with the org's MCP server and external agent registered", () => {
  // As `npm run demo` sets it up: the examples' ValidateData names the registered MCP server
  // `everything` and its `get-sum` tool, VendorCheck allows the external agent
  // `SanctionsScreen` (here the test platform's echo agent). The other tests' orgs register
  // neither: there the tool and the agent are simply not offered.
  const ORG = "e2e-partners";
  const mcpName = `e2e-partners-${crypto.randomUUID().slice(0, 8)}`;
  const a2aPrefix = `/e2e-partners-${crypto.randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    await seedOrg(ORG);
    const put = async (path: string, body: unknown) => {
      const res = await orgFetch(ORG, path, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      expect(res.status, await res.clone().text()).toBe(200);
    };
    await put("/mcp-servers/everything", { url: `${env.TEST_MCP_EVERYTHING_URL}/p/${mcpName}`, tools: ["get-sum"] });
    await put("/external-agents/SanctionsScreen", { url: `${env.TEST_A2A_AGENT_URL}${a2aPrefix}/echo`, description: "Screens a vendor against a sanctions list (external)" });
  });

  it("runs the MCP tool once and calls the external agent through the real queue; both results reach the report", async () => {
    const invoice = "Invoice INV-7 from Globex Corporation, IBAN DE89 3704 0044 0532 0130 00: 2 x widgets at 10 EUR, total 20 EUR";
    const sent = await rpc(ORG, "ProcessInvoice", sendMessage(invoice, { returnImmediately: true }));
    const id = sent.body.result.task.id as string;
    const get = () => rpc(ORG, "ProcessInvoice", { jsonrpc: "2.0", id: 2, method: "GetTask", params: { id } });
    const task = (await eventually(get, (g) => ["TASK_STATE_COMPLETED", "TASK_STATE_FAILED"].includes(g.body.result?.status?.state), 30_000)).body.result;
    expect(task.status.state).toBe("TASK_STATE_COMPLETED");
    const report = task.artifacts[0].parts[0].text as string;
    // ValidateData's tool result (server-everything's get-sum, arguments from its schema) and
    // the external agent's answer (the echo of what VendorCheck sent it), quoted in the report
    expect(report).toContain("- ValidateData (SUCCESS)");
    expect(report).toContain('- everything__get-sum: {"content":["The sum of 1 and 1 is 2."]}');
    expect(report).toContain("- VendorCheck (SUCCESS)");
    expect(report).toContain(`- SanctionsScreen (SUCCESS): ${invoice}`);

    const run = (await (await orgFetch(ORG, `/runs/${id}`)).json()) as any;
    // the external agent is no step of this run: its work happened on the other platform
    expect(run.steps.map((s: any) => [s.id, s.parentId, s.agent, s.status, s.turns])).toEqual([
      ["s1", null, "ProcessInvoice", "completed", 2],
      ["s2", "s1", "ValidateData", "completed", 2],
      ["s3", "s1", "VendorCheck", "completed", 2],
    ]);
    const { events } = (await (await orgFetch(ORG, `/runs/${id}/events?after=0`)).json()) as any;
    const tools = (stepId: string) => events.filter((e: any) => e.stepId === stepId && e.type.startsWith("tool.")).map((e: any) => ({ type: e.type, ...e.data }));
    const [sumCalled, sumStarted, sumResult] = tools("s2").filter((e: any) => e.tool === "everything__get-sum");
    expect(sumCalled).toMatchObject({ type: "tool.called", args: { a: 1, b: 1 } });
    expect(sumStarted).toMatchObject({ type: "tool.started", kind: "mcp", server: "everything", callId: sumCalled.callId, attempt: 1 });
    expect(sumResult).toMatchObject({ type: "tool.result", callId: sumCalled.callId, result: { content: ["The sum of 1 and 1 is 2."] } });
    const remote = tools("s3").filter((e: any) => e.tool === "call_agent");
    expect(remote[0]).toMatchObject({ type: "tool.called", args: { agent: "SanctionsScreen", input: invoice } });
    expect(remote[1]).toMatchObject({ type: "tool.started", kind: "remote", agent: "SanctionsScreen", callId: remote[0].callId });
    expect(remote.at(-1)).toMatchObject({ type: "tool.result", callId: remote[0].callId, result: { agent: "SanctionsScreen", status: "SUCCESS", result: invoice, data: { echo: invoice } } });

    // the MCP server ran the tool once; the external agent got one SendMessage, from this run
    const stats = (await (await fetch(`${env.TEST_MCP_EVERYTHING_URL}/__stats?name=${mcpName}`)).json()) as any;
    expect(stats.methods["tools/call"]).toBe(1);
    const log = (await (await fetch(`${env.TEST_A2A_AGENT_URL}/__log`)).json()) as any[];
    expect(log.filter((l) => l.path === `${a2aPrefix}/echo` && l.rpc === "SendMessage")).toHaveLength(1);
  });
});

describe("run WebSocket through the gateway", () => {
  it("replays after a sequence number and streams to the end of the run", async () => {
    // Started by SendStreamingMessage (its root's text streams from the first turn); the SSE
    // connection is dropped after the Task, and the run watched over the WebSocket instead.
    const sse = await orgFetch("e2e", "/a2a/agents/Summarize", {
      method: "POST",
      headers: { "content-type": "application/json", "a2a-version": "1.0" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "SendStreamingMessage", params: { message: { messageId: crypto.randomUUID(), role: "ROLE_USER", parts: [{ text: "stream me" }] } } }),
    });
    const reader = sse.body!.pipeThrough(new TextDecoderStream()).getReader();
    let head = "";
    while (!head.includes("\n\n")) head += (await reader.read()).value ?? "";
    await reader.cancel();
    const task = JSON.parse(/^data: (.*)$/m.exec(head)![1]!).result.task;
    const res = await orgFetch("e2e", `/runs/${task.id}/ws?after=1`, { headers: { upgrade: "websocket" } });
    expect(res.status).toBe(101);
    const ws = res.webSocket;
    if (!ws) throw new Error("no websocket");
    ws.accept();
    const { messages, closeCode } = await collect(ws);
    expect(messages.map((m) => m.seq)).toEqual([2, 3, 4, 5, 6, 7]);
    // the model's text as it streamed, then its turn
    expect(messages.map((m) => m.type)).toEqual(["step.queued", "step.started", "model.delta", "model.turn", "step.completed", "run.completed"]);
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
