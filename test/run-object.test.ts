/** The run Durable Object: state, the append-only event log, WebSocket replay. */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RunObject } from "../durable-objects/run-object";
import { runStub } from "../src/runs/stub";
import type { RunInit } from "../src/runs/types";
import { collect } from "./helpers";

function init(orgId = "org-a"): RunInit {
  const runId = crypto.randomUUID();
  return {
    runId,
    orgId,
    contextId: "ctx-1",
    agent: { name: "Echo", repositoryId: "repo-1", commit: "c0ffee", path: "Echo/prompt.md" },
    initiatedBy: "user-1",
    message: { messageId: "m1", role: "user", parts: [{ kind: "text", text: "hello" }] },
  };
}

describe("run object state and event log", () => {
  it("records the run, its root step and numbered events", async () => {
    const run = init();
    const stub = runStub(env, run.runId);
    const snap = await stub.start(run, 0);
    expect(snap).toMatchObject({ runId: run.runId, status: "submitted", lastSeq: 2 });
    expect(snap.steps).toEqual([expect.objectContaining({ id: "s1", parentId: null, agent: "Echo", status: "queued", depth: 0 })]);
    const events = await stub.events(run.orgId, 0);
    expect(events?.map((e) => [e.seq, e.type, e.stepId])).toEqual([
      [1, "run.created", null],
      [2, "step.queued", "s1"],
    ]);
    // the log is durable: it is read back from SQLite, not memory
    const rows = await runInDurableObject(env.RUNS.get(env.RUNS.idFromName(run.runId)), (_: RunObject, state) =>
      state.storage.sql.exec<{ seq: number; type: string }>("SELECT seq, type FROM events ORDER BY seq").toArray(),
    );
    expect(rows.map((r) => r.type)).toEqual(["run.created", "step.queued"]);
  });

  it("hands a step to one executor, completes it and settles the run", async () => {
    const run = init();
    const stub = runStub(env, run.runId);
    await stub.start(run, 0);
    const ctx = await stub.claimStep(run.orgId, "s1");
    expect(ctx).toMatchObject({ runId: run.runId, stepId: "s1", attempt: 1, input: run.message, initiatedBy: "user-1" });
    expect((await stub.snapshot(run.orgId))?.status).toBe("working");
    await stub.completeStep(run.orgId, "s1", { text: "done!", model: "offline:test", durationMs: 3 });
    const snap = await stub.snapshot(run.orgId);
    expect(snap).toMatchObject({ status: "completed", output: "done!" });
    expect(snap?.steps[0]).toMatchObject({ status: "completed", output: "done!", model: "offline:test", attempts: 1 });
    const types = (await stub.events(run.orgId))?.map((e) => e.type);
    expect(types).toEqual(["run.created", "step.queued", "step.started", "model.turn", "step.completed", "run.completed"]);
    // a redelivered job finds nothing to do, and a late report changes nothing
    expect(await stub.claimStep(run.orgId, "s1")).toBeNull();
    await stub.completeStep(run.orgId, "s1", { text: "again", model: "x", durationMs: 1 });
    expect((await stub.snapshot(run.orgId))?.output).toBe("done!");
  });

  it("retries and then fails a step, failing the run", async () => {
    const run = init();
    const stub = runStub(env, run.runId);
    await stub.start(run, 0);
    await stub.claimStep(run.orgId, "s1");
    await stub.failStep(run.orgId, "s1", "boom 1", true);
    expect((await stub.snapshot(run.orgId))?.steps[0]).toMatchObject({ status: "queued", error: "boom 1" });
    const again = await stub.claimStep(run.orgId, "s1");
    expect(again?.attempt).toBe(2);
    await stub.failStep(run.orgId, "s1", "boom 2", false);
    const snap = await stub.snapshot(run.orgId);
    expect(snap).toMatchObject({ status: "failed", error: "boom 2" });
    expect((await stub.events(run.orgId))?.map((e) => e.type)).toEqual([
      "run.created",
      "step.queued",
      "step.started",
      "step.retrying",
      "step.started",
      "step.failed",
      "run.failed",
    ]);
  });

  it("answers another org like a missing run", async () => {
    const run = init("org-a");
    const stub = runStub(env, run.runId);
    await stub.start(run, 0);
    expect(await stub.snapshot("org-b")).toBeNull();
    expect(await stub.events("org-b")).toBeNull();
    expect(await stub.claimStep("org-b", "s1")).toBeNull();
    await stub.completeStep("org-b", "s1", { text: "hijack", model: "x", durationMs: 1 });
    expect((await stub.snapshot("org-a"))?.status).toBe("submitted");
    const res = await stub.fetch(new Request("http://run/ws", { headers: { upgrade: "websocket", "x-shaman-org-id": "org-b" } }));
    expect(res.status).toBe(404);
    expect(await stub.snapshot("org-a")).not.toBeNull();
  });

  it("wakes a waiting caller when the run settles", async () => {
    const run = init();
    const stub = runStub(env, run.runId);
    await stub.start(run, 0);
    const waiting = stub.wait(run.orgId, 10_000);
    await stub.claimStep(run.orgId, "s1");
    await stub.completeStep(run.orgId, "s1", { text: "ok", model: "m", durationMs: 1 });
    expect((await waiting)?.status).toBe("completed");
  });
});

describe("WebSocket replay", () => {
  async function connect(runId: string, orgId: string, after?: number) {
    const res = await runStub(env, runId).fetch(
      new Request(`http://run/ws${after === undefined ? "" : `?after=${after}`}`, { headers: { upgrade: "websocket", "x-shaman-org-id": orgId } }),
    );
    expect(res.status).toBe(101);
    const ws = res.webSocket;
    if (!ws) throw new Error("no websocket");
    ws.accept();
    return ws;
  }

  it("replays events after a sequence number, then streams live ones until the run ends", async () => {
    const run = init();
    const stub = runStub(env, run.runId);
    await stub.start(run, 0);
    await stub.claimStep(run.orgId, "s1"); // seq 3

    const ws = await connect(run.runId, run.orgId, 1);
    const done = collect(ws);
    await stub.completeStep(run.orgId, "s1", { text: "live!", model: "m", durationMs: 1 });
    const { messages, closeCode } = await done;
    expect(messages.map((m) => m.seq)).toEqual([2, 3, 4, 5, 6]);
    expect(messages.map((m) => m.type)).toEqual(["step.queued", "step.started", "model.turn", "step.completed", "run.completed"]);
    expect(messages[3].data).toMatchObject({ output: "live!", status: "SUCCESS" });
    expect(messages[4].data).toEqual({ output: "live!" });
    expect(closeCode).toBe(1000);
  });

  it("replays everything to a late subscriber and closes; nothing after the last seen", async () => {
    const run = init();
    const stub = runStub(env, run.runId);
    await stub.start(run, 0);
    await stub.claimStep(run.orgId, "s1");
    await stub.completeStep(run.orgId, "s1", { text: "x", model: "m", durationMs: 1 });

    const all = await collect(await connect(run.runId, run.orgId));
    expect(all.messages.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    const rest = await collect(await connect(run.runId, run.orgId, 6));
    expect(rest.messages).toEqual([]);
    expect(rest.closeCode).toBe(1000);
  });

  it("fans one event out to many subscribers", async () => {
    const run = init();
    const stub = runStub(env, run.runId);
    await stub.start(run, 0);
    const sockets = await Promise.all(Array.from({ length: 20 }, () => connect(run.runId, run.orgId, 2)));
    const results = sockets.map((ws) => collect(ws));
    await stub.claimStep(run.orgId, "s1");
    await stub.completeStep(run.orgId, "s1", { text: "fan", model: "m", durationMs: 1 });
    for (const r of await Promise.all(results)) expect(r.messages.map((m) => m.seq)).toEqual([3, 4, 5, 6]);
  });

  it("rejects a bad sequence number and a non-upgrade request", async () => {
    const run = init();
    const stub = runStub(env, run.runId);
    await stub.start(run, 0);
    const bad = await stub.fetch(new Request("http://run/ws?after=-1", { headers: { upgrade: "websocket", "x-shaman-org-id": run.orgId } }));
    expect(bad.status).toBe(400);
    const plain = await stub.fetch(new Request("http://run/ws", { headers: { "x-shaman-org-id": run.orgId } }));
    expect(plain.status).toBe(400);
  });
});

describe("run timeout", () => {
  async function startQuiet(run: RunInit) {
    const stub = env.RUNS.get(env.RUNS.idFromName(run.runId));
    await runInDurableObject(stub, async (obj: RunObject) => {
      Object.defineProperty(obj, "env", { value: { ...env, JOBS: { send: async () => {} } }, configurable: true });
      await obj.start(run, 0);
    });
    return stub;
  }

  it("sets an alarm at the timeout; when it fires, unfinished steps and the run fail", async () => {
    const run = init();
    const before = Date.now();
    const stub = await startQuiet(run);
    const alarm = await runInDurableObject(stub, (_: RunObject, state) => state.storage.getAlarm());
    expect(alarm).toBeGreaterThanOrEqual(before + 30 * 60_000 - 1_000);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const snap = await runStub(env, run.runId).snapshot(run.orgId);
    expect(snap).toMatchObject({ status: "failed", error: expect.stringContaining("timed out") });
    expect(snap?.steps[0]).toMatchObject({ status: "failed", error: expect.stringContaining("timed out") });
    const types = (await runStub(env, run.runId).events(run.orgId))?.map((e) => e.type);
    expect(types?.slice(-2)).toEqual(["step.failed", "run.failed"]);
  });

  it("a run that finishes clears its alarm, and a late alarm changes nothing", async () => {
    const run = init();
    const stub = await startQuiet(run);
    await runInDurableObject(stub, async (obj: RunObject) => {
      await obj.claimStep(run.orgId, "s1");
      await obj.completeStep(run.orgId, "s1", { text: "done", model: "offline:x", durationMs: 1 });
    });
    expect(await runInDurableObject(stub, (_: RunObject, state) => state.storage.getAlarm())).toBeNull();
    await runInDurableObject(stub, (obj: RunObject) => obj.alarm());
    expect((await runStub(env, run.runId).snapshot(run.orgId))?.status).toBe("completed");
  });
});
