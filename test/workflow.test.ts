/**
 * Multi-agent runs through real local bindings: the run object (the DAG state machine),
 * the executor's turn loop and the OpenAI-compatible server on 127.0.0.1, whose scripted
 * answers (`SCRIPT:<key>` in an agent's input) decide each agent's tool calls, so every
 * call goes through the real provider path. The run's jobs are recorded instead of queued
 * and delivered by the test ("the pump"), which can deliver them twice, late, or never.
 */
import { createExecutionContext, createMessageBatch, getQueueResult, runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { Job, RunSnapshot } from "../src/runs/types";
import worker from "../workers/index";
import { eventually, orgFetch, seedOrg, type SeedResult } from "./helpers";
import { call, complete, Pump, requestsFor, script } from "./pump";

const ORG = "workflow";
let seed: SeedResult;

const agent = (name: string, allowed: string[] = [], extra = "") =>
  `---\ndescription: ${name} agent\nmodel: gpt-4o-mini\nallowedAgents: [${allowed.join(", ")}]\n${extra}---\nYou are ${name}.\n`;

beforeAll(async () => {
  seed = await seedOrg(ORG, {
    "Root/prompt.md": agent("Root", ["Mid", "Leaf", "Asker"]),
    "Mid/prompt.md": agent("Mid", ["Leaf", "Root"]),
    "Leaf/prompt.md": agent("Leaf"),
    "Asker/prompt.md": agent("Asker"),
    "Looper/prompt.md": agent("Looper", [], "maxIterations: 3\n"),
  });
});

const byId = (snap: RunSnapshot) => Object.fromEntries(snap.steps.map((s) => [s.id, s]));

describe("a DAG of agent steps", () => {
  it("runs three levels with a fan-out of five and a join; the parent waits without holding a worker", async () => {
    await script("dag-root", [{ toolCalls: [1, 2, 3, 4, 5].map((i) => call("Mid", `SCRIPT:dag-mid part ${i}`)) }, { toolCalls: [complete("joined five")] }]);
    await script("dag-mid", [{ toolCalls: [call("Leaf", "SCRIPT:dag-leaf")] }, { text: "mid done" }]);
    await script("dag-leaf", [{ text: "leaf result" }]);
    const p = new Pump(seed, "Root", "SCRIPT:dag-root");
    await p.start();
    // turn 1 of the root: five children at once, then the root parks
    const first = await p.deliver(p.take());
    expect(first.explicitAcks).toHaveLength(1);
    expect(p.sent.map((j) => [j.stepId, j.turn])).toEqual([["s2", 1], ["s3", 1], ["s4", 1], ["s5", 1], ["s6", 1]]);
    expect((await p.snapshot()).steps[0]!.status).toBe("waiting");
    // the five mids in one batch (run concurrently), then five leaves, then mids resume, then the root
    await p.drain();
    const snap = await p.snapshot();
    expect(snap.status).toBe("completed");
    expect(snap.output).toBe("joined five");
    expect(snap.steps).toHaveLength(11);
    const steps = byId(snap);
    expect(steps.s1).toMatchObject({ agent: "Root", depth: 0, parentId: null, status: "completed", turns: 2, resultStatus: "SUCCESS" });
    for (const mid of ["s2", "s3", "s4", "s5", "s6"]) expect(steps[mid]).toMatchObject({ agent: "Mid", depth: 1, parentId: "s1", status: "completed", output: "mid done", turns: 2 });
    const leaves = snap.steps.filter((s) => s.agent === "Leaf");
    expect(leaves).toHaveLength(5);
    for (const leaf of leaves) expect(leaf).toMatchObject({ depth: 2, status: "completed", output: "leaf result" });
    expect(new Set(leaves.map((l) => l.parentId))).toEqual(new Set(["s2", "s3", "s4", "s5", "s6"]));
    // the join: the root's second model call saw the five results as tool results
    const rootCalls = await requestsFor("SCRIPT:dag-root");
    const join = rootCalls.at(-1);
    const toolMessages = join.messages.filter((m: any) => m.role === "tool");
    expect(toolMessages).toHaveLength(5);
    for (const m of toolMessages) expect(JSON.parse(m.content)).toMatchObject({ agent: "Mid", status: "SUCCESS", result: "mid done" });
    // every step's events are there, in a consistent order, each seq once
    const events = await p.events();
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.filter((e) => e.type === "step.completed")).toHaveLength(11);
    expect(events.filter((e) => e.type === "tool.called" && e.data.tool === "call_agent")).toHaveLength(10);
    expect(events.at(-1)!.type).toBe("run.completed");
  });

  it("two parallel branches wait for input at once; answers out of order disturb nothing", async () => {
    await script("in-root", [{ toolCalls: [call("Asker", "SCRIPT:in-a"), call("Asker", "SCRIPT:in-b")] }, { toolCalls: [complete("both answered")] }]);
    await script("in-a", [{ toolCalls: [{ name: "request_user_input", arguments: { prompt: "Approve A?", inputType: "approval" } }] }, { text: "A done" }]);
    await script("in-b", [{ toolCalls: [{ name: "request_user_input", arguments: { prompt: "Pick for B", inputType: "choice", choices: ["x", "y"] } }] }, { text: "B done" }]);
    const p = new Pump(seed, "Root", "SCRIPT:in-root");
    await p.start();
    await p.drain();
    let snap = await p.snapshot();
    expect(snap.status).toBe("input_required");
    expect(snap.inputs.map((i) => [i.prompt, i.inputType])).toEqual([
      ["Approve A?", "approval"],
      ["Pick for B", "choice"],
    ]);
    const [a, b] = snap.inputs;
    // through the run API: B first
    const answerB = await orgFetch(ORG, `/runs/${p.run.runId}/input/${b!.requestId}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ answer: "y" }) });
    expect(answerB.status).toBe(200);
    expect(await answerB.json()).toMatchObject({ answered: b!.requestId, status: "input_required", inputs: [{ requestId: a!.requestId }] });
    await p.drain();
    snap = await p.snapshot();
    expect(byId(snap)[b!.stepId]).toMatchObject({ status: "completed", output: "B done" });
    expect(byId(snap)[a!.stepId]!.status).toBe("input_required");
    expect(snap.status).toBe("input_required");
    // the same request twice, or one never asked: 404 like a missing run
    const again = await orgFetch(ORG, `/runs/${p.run.runId}/input/${b!.requestId}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ answer: "y" }) });
    expect(again.status).toBe(404);
    expect((await orgFetch(ORG, `/runs/${p.run.runId}/input/${a!.requestId}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ answer: "" }) })).status).toBe(400);
    const answerA = await orgFetch(ORG, `/runs/${p.run.runId}/input/${a!.requestId}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ answer: "approved", comment: "fine" }) });
    expect(answerA.status).toBe(200);
    await p.drain();
    snap = await p.snapshot();
    expect(snap).toMatchObject({ status: "completed", output: "both answered", inputs: [] });
    // each branch's model saw its own answer as the tool result
    const aSecond = (await requestsFor("SCRIPT:in-a")).at(-1);
    expect(JSON.parse(aSecond.messages.find((m: any) => m.role === "tool").content)).toEqual({ requestId: a!.requestId, answer: "approved", comment: "fine" });
    const types = (await p.events()).map((e) => e.type);
    expect(types.filter((t) => t === "input.requested")).toHaveLength(2);
    expect(types.filter((t) => t === "input.answered")).toHaveLength(2);
    expect(types).toContain("run.input_required");
    expect(types).toContain("run.working");
  });
});

describe("a conversation's earlier turns", () => {
  it("come before the message in the root's first model call (not its children's), and stay in its conversation", async () => {
    // The scripted server picks a turn by the assistant messages in the request: the history has one.
    await script("hist-root", [{ text: "not used" }, { toolCalls: [call("Leaf", "SCRIPT:hist-leaf")] }, { text: "Ada, done" }]);
    await script("hist-leaf", [{ text: "leaf" }]);
    const p = new Pump(seed, "Root", "SCRIPT:hist-root what is my name?");
    p.run.history = [
      { role: "user", text: "My name is Ada." },
      { role: "assistant", text: "Nice to meet you, Ada." },
    ];
    await p.start();
    await p.drain();
    expect((await p.snapshot()).status).toBe("completed");
    // (requestsFor picks by the first user message, which is the history's here)
    const all = (await (await fetch(`${env.TEST_OPENAI_URL.replace(/\/v1$/, "")}/__requests`)).json()) as any[];
    const [first, second] = all.filter((r) => JSON.stringify(r.messages).includes("SCRIPT:hist-root"));
    const said = (r: any) => r.messages.filter((m: any) => m.role !== "system").map((m: any) => [m.role, typeof m.content === "string" ? m.content : null]);
    expect(said(first)).toEqual([
      ["user", "My name is Ada."],
      ["assistant", "Nice to meet you, Ada."],
      ["user", "SCRIPT:hist-root what is my name?"],
    ]);
    expect(said(second).slice(0, 3)).toEqual(said(first));
    const [leaf] = await requestsFor("SCRIPT:hist-leaf");
    expect(said(leaf)).toEqual([["user", "SCRIPT:hist-leaf"]]);
  });
});

describe("cancellation", () => {
  it("cancels every unfinished step down to grandchildren; a turn in flight is dropped and queues nothing", async () => {
    await script("cx-root", [{ toolCalls: [call("Mid", "SCRIPT:cx-mid")] }, { text: "never" }]);
    await script("cx-mid", [{ toolCalls: [call("Leaf", "SCRIPT:cx-leaf"), call("Leaf", "SCRIPT:cx-leaf two")] }, { text: "never" }]);
    await script("cx-leaf", [{ text: "leaf" }]);
    const p = new Pump(seed, "Root", "SCRIPT:cx-root");
    await p.start();
    await p.deliver(p.take()); // root → mid
    await p.deliver(p.take()); // mid → two leaves
    const leafJobs = p.take();
    expect(leafJobs).toHaveLength(2);
    // one leaf's turn is in flight (claimed) when the run is canceled
    const claimed = await p.stub.claimTurn(p.run.orgId, leafJobs[0]!.stepId, 1);
    expect(claimed).not.toBeNull();
    const res = await orgFetch(ORG, `/runs/${p.run.runId}/cancel`, { method: "POST" });
    expect(await res.json()).toEqual({ canceled: true, status: "canceled" });
    const snap = await p.snapshot();
    expect(snap.steps.map((s) => [s.agent, s.status])).toEqual([
      ["Root", "canceled"],
      ["Mid", "canceled"],
      ["Leaf", "canceled"],
      ["Leaf", "canceled"],
    ]);
    // the in-flight turn finishes but is dropped and queues nothing
    const late = await p.stub.recordTurn(p.run.orgId, leafJobs[0]!.stepId, 1, { assistant: { role: "assistant", content: "late" }, text: "late", toolCalls: [], model: "m", durationMs: 1, usage: { inputTokens: 1, outputTokens: 1 } }, 10);
    expect(late).toBe(false);
    expect(p.sent).toEqual([]);
    // the other leaf's job arrives: nothing runs
    const before = (await requestsFor("SCRIPT:cx-leaf")).length;
    const result = await p.deliver([leafJobs[1]!]);
    expect(result.explicitAcks).toHaveLength(1);
    expect((await requestsFor("SCRIPT:cx-leaf")).length).toBe(before);
    // idempotent; the run stays canceled
    expect(await (await orgFetch(ORG, `/runs/${p.run.runId}/cancel`, { method: "POST" })).json()).toEqual({ canceled: false, status: "canceled" });
    const events = await p.events();
    expect(events.filter((e) => e.type === "step.canceled")).toHaveLength(4);
    expect(events.at(-1)!.type).toBe("run.canceled");
    const row = await env.DB.prepare("SELECT status FROM runs WHERE id = ?").bind(p.run.runId).first<{ status: string }>();
    expect(row?.status).toBe("canceled");
  });
});

describe("timeouts", () => {
  it("a step that is not run in time fails; its parent's model gets the error and goes on", async () => {
    await script("to-root", [{ toolCalls: [call("Leaf", "SCRIPT:to-leaf")] }, { text: "went on without the leaf" }]);
    const p = new Pump(seed, "Root", "SCRIPT:to-root", { stepTimeoutMs: 60_000 });
    await p.start();
    await p.deliver(p.take());
    const leafJob = p.take();
    expect(leafJob).toHaveLength(1);
    // the leaf's job is lost; the alarm (the earliest deadline is the leaf's) fails it
    expect(await runDurableObjectAlarm(env.RUNS.get(env.RUNS.idFromName(p.run.runId)))).toBe(true);
    const snap = await p.snapshot();
    expect(byId(snap).s2).toMatchObject({ agent: "Leaf", status: "failed", error: expect.stringMatching(/^the step timed out/) });
    expect(byId(snap).s1!.status).toBe("queued");
    await p.drain();
    expect(await p.snapshot()).toMatchObject({ status: "completed", output: "went on without the leaf" });
    const second = (await requestsFor("SCRIPT:to-root")).at(-1);
    expect(second.messages.find((m: any) => m.role === "tool").content).toMatch(/agent Leaf failed: the step timed out/);
  });

  it("a run past its deadline fails with every unfinished step", async () => {
    await script("rto-root", [{ toolCalls: [call("Leaf", "SCRIPT:rto-leaf")] }]);
    const p = new Pump(seed, "Root", "SCRIPT:rto-root", { stepTimeoutMs: 24 * 3_600_000 });
    await p.start();
    await p.deliver(p.take());
    expect(await runDurableObjectAlarm(env.RUNS.get(env.RUNS.idFromName(p.run.runId)))).toBe(true);
    const snap = await p.snapshot();
    expect(snap.status).toBe("failed");
    expect(snap.error).toMatch(/^the run timed out/);
    expect(snap.steps.map((s) => s.status)).toEqual(["failed", "failed"]);
  });
});

describe("at-least-once delivery", () => {
  it("a job delivered twice (same batch, or later) never calls the model twice nor duplicates an event", async () => {
    await script("dup-root", [{ toolCalls: [call("Leaf", "SCRIPT:dup-leaf")] }, { toolCalls: [complete("once")] }]);
    await script("dup-leaf", [{ text: "leaf once" }]);
    const p = new Pump(seed, "Root", "SCRIPT:dup-root");
    await p.start();
    const [rootJob] = p.take();
    await p.deliver([rootJob!, rootJob!]); // twice in one batch
    await p.deliver([rootJob!]); // and again later
    const [leafJob] = p.take();
    expect(p.sent).toEqual([]);
    await p.deliver([leafJob!, leafJob!]);
    await p.deliver([leafJob!]);
    const [resumed] = p.take();
    expect(resumed).toMatchObject({ stepId: "s1", turn: 2 });
    await p.deliver([resumed!]);
    await p.deliver([resumed!, resumed!]);
    await p.deliver([rootJob!]); // the first turn's job, long after
    expect(p.sent).toEqual([]);
    expect(await p.snapshot()).toMatchObject({ status: "completed", output: "once" });
    expect(await requestsFor("SCRIPT:dup-root")).toHaveLength(2);
    expect(await requestsFor("SCRIPT:dup-leaf")).toHaveLength(1);
    const types = (await p.events()).map((e) => e.type);
    expect(types.filter((t) => t === "model.turn")).toHaveLength(3);
    expect(types.filter((t) => t === "step.queued")).toHaveLength(2);
    expect(types.filter((t) => t === "step.completed")).toHaveLength(2);
    expect(types.filter((t) => t === "run.completed")).toHaveLength(1);
  });
});

describe("wide fan-out", () => {
  it("offers and runs as many agent calls in one turn as the org allows (60 > the 50 listed before)", async () => {
    const leaves = Array.from({ length: 60 }, (_, i) => `Wide${String(i + 1).padStart(2, "0")}`);
    const files: Record<string, string> = {
      "WideRoot/prompt.md": `---\ndescription: fans out\nmodel: offline:default\nallowedAgents: [${leaves.join(", ")}]\n---\nYou are WideRoot.\n`,
    };
    for (const leaf of leaves) files[`${leaf}/prompt.md`] = `---\ndescription: ${leaf}\nmodel: offline:default\n---\nYou are ${leaf}.\n`;
    const wide = await seedOrg("workflow-wide", files);
    const p = new Pump(seed, "WideRoot", "fan out", { maxCallsPerTurn: 60, maxStepsPerRun: 100 });
    (p.run as { orgId: string }).orgId = wide.org.id;
    p.run.agent = { name: "WideRoot", repositoryId: wide.repository.id, commit: wide.commit, path: "WideRoot/prompt.md" };
    p.executorEnv = { ...env, OPENAI_BASE_URL: undefined, OPENAI_API_KEY: undefined } as Env;
    await p.start();
    await p.drain();
    const snap = await p.snapshot();
    expect(snap.status).toBe("completed");
    expect(snap.steps).toHaveLength(61);
    expect(snap.steps.filter((s) => s.parentId === "s1").map((s) => s.agent).sort()).toEqual(leaves);
    expect(snap.output).toContain("Agents called: 60");
  });
});

describe("lost jobs", () => {
  it("sends a job again when it was lost, and runs a turn again when its executor died mid-turn", async () => {
    await script("lost-root", [{ toolCalls: [call("Leaf", "SCRIPT:lost-leaf")] }, { text: "recovered" }]);
    await script("lost-leaf", [{ text: "leaf ran" }]);
    // short watchdog intervals; the run object's own alarm does the rest (no forced alarm:
    // the watchdog goes by the real clock, so a live claim is never taken over)
    const p = new Pump(seed, "Root", "SCRIPT:lost-root", undefined, { JOB_RESEND_AFTER_MS: "300", TURN_LEASE_MS: "300" });
    await p.start();
    // the root's job is lost: the watchdog sends a new one
    const [lost] = p.take();
    const resent = await eventually(async () => p.sent.find((j) => j.stepId === "s1"), (j) => j !== undefined, 5_000);
    expect(resent).toMatchObject({ stepId: "s1", turn: 1 });
    expect(resent!.token).not.toBe(lost!.token);
    await p.deliver(p.take());
    // the leaf's executor claims its turn and dies before reporting
    const [leafJob] = p.take((j) => j.stepId === "s2");
    expect(await p.stub.claimTurn(p.run.orgId, "s2", 1)).not.toBeNull();
    const again = await eventually(async () => p.sent.find((j) => j.stepId === "s2"), (j) => j !== undefined, 5_000);
    expect(again).toMatchObject({ stepId: "s2", turn: 1 });
    // the dead executor's job, redelivered, runs nothing; the new one runs the turn
    await p.deliver([leafJob!]);
    expect(await requestsFor("SCRIPT:lost-leaf")).toHaveLength(0);
    await p.drain();
    expect(await p.snapshot()).toMatchObject({ status: "completed", output: "recovered" });
    expect(await requestsFor("SCRIPT:lost-leaf")).toHaveLength(1);
    expect(await requestsFor("SCRIPT:lost-root")).toHaveLength(2);
    const retried = (await p.events()).filter((e) => e.type === "step.retrying").map((e) => [e.stepId, e.data.error]);
    expect(retried.slice(0, 2)).toEqual([
      ["s1", "the step's job was lost (it is sent again)"],
      ["s2", "the executor's claim ran out (the turn is run again)"],
    ]);
  });
});

describe("at-least-once delivery of the other jobs", () => {
  it("a sync job delivered twice at once and again later imports the commit once", async () => {
    const git = env.TEST_GIT_URL;
    const admin = async (path: string, body?: unknown) =>
      (await fetch(`${git}/__admin/${path}`, body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).json() as Promise<any>;
    const created = await admin("repos", { name: "workflow/twice", files: { "Twice/prompt.md": "---\ndescription: twice\n---\nYou help.\n" } });
    const reg = await orgFetch(ORG, "/repositories", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "twice", gitUrl: created.url, sync: false }) });
    const repoId = ((await reg.json()) as any).repository.id;
    const job: Job = { kind: "sync", orgId: seed.org.id, repositoryId: repoId, trigger: "webhook" };
    const deliver = async (jobs: Job[]) => {
      const batch = createMessageBatch<Job>("shaman-jobs", jobs.map((body) => ({ id: crypto.randomUUID(), attempts: 1, timestamp: new Date(), body })));
      const ctx = createExecutionContext();
      await worker.queue(batch, env, ctx);
      return getQueueResult(batch, ctx);
    };
    expect((await deliver([job, job])).explicitAcks).toHaveLength(2);
    expect((await deliver([job])).explicitAcks).toHaveLength(1);
    expect((await admin("stats?repo=workflow/twice"))["upload-pack"]).toBe(1);
    const rows = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE action = 'repository.sync' AND resource = ?").bind(`/repositories/${repoId}`).first<{ n: number }>();
    expect(rows?.n).toBe(1);
    const agents = ((await (await orgFetch(ORG, `/repositories/${repoId}/agents`)).json()) as any).agents;
    expect(agents.map((a: any) => a.name)).toEqual(["Twice"]);
  });
});

describe("model failures", () => {
  it("retries a model that fails twice, then succeeds", async () => {
    await script("flaky", [{ status: 503, times: 2, text: "third time lucky" }]);
    const p = new Pump(seed, "Leaf", "SCRIPT:flaky");
    await p.start();
    const [job] = p.take();
    const r1 = await p.deliver([job!], 1);
    expect(r1.retryMessages).toHaveLength(1);
    const r2 = await p.deliver([job!], 2);
    expect(r2.retryMessages).toHaveLength(1);
    const r3 = await p.deliver([job!], 3);
    expect(r3.explicitAcks).toHaveLength(1);
    expect(await p.snapshot()).toMatchObject({ status: "completed", output: "third time lucky" });
    const types = (await p.events()).map((e) => e.type);
    expect(types.filter((t) => t === "step.retrying")).toHaveLength(2);
  });

  it("fails the step at once on a permanent error, with the provider's reason", async () => {
    await script("refused", [{ status: 400, repeat: true }]);
    const p = new Pump(seed, "Leaf", "SCRIPT:refused");
    await p.start();
    const r = await p.deliver(p.take());
    expect(r.retryMessages).toHaveLength(0);
    const snap = await p.snapshot();
    expect(snap.status).toBe("failed");
    expect(snap.error).toMatch(/^the model provider refused the call \(HTTP 400\)/);
  });

  it("fails an agent that never completes at maxIterations", async () => {
    await script("loop", [{ toolCalls: [{ name: "run_data_list", arguments: {} }], repeat: true }]);
    const p = new Pump(seed, "Looper", "SCRIPT:loop");
    await p.start();
    await p.drain();
    const snap = await p.snapshot();
    expect(snap.status).toBe("failed");
    expect(snap.error).toBe("the agent did not complete within maxIterations (3 turns)");
    expect(snap.steps[0]!.turns).toBe(3);
    expect(await requestsFor("SCRIPT:loop")).toHaveLength(3);
  });
});

describe("limits and bad tool calls", () => {
  it("refuses a cycle and the depth limit as tool errors the model sees", async () => {
    await script("cyc-root", [{ toolCalls: [call("Mid", "SCRIPT:cyc-mid")] }, { text: "root done" }]);
    await script("cyc-mid", [{ toolCalls: [call("Root", "back to root"), call("Leaf", "SCRIPT:cyc-leaf")] }, { text: "mid saw refusals" }]);
    const p = new Pump(seed, "Root", "SCRIPT:cyc-root", { maxDepth: 1 });
    await p.start();
    await p.drain();
    const snap = await p.snapshot();
    expect(snap).toMatchObject({ status: "completed", output: "root done" });
    expect(snap.steps.map((s) => s.agent)).toEqual(["Root", "Mid"]);
    const midSecond = (await requestsFor("SCRIPT:cyc-mid")).at(-1);
    const results = midSecond.messages.filter((m: any) => m.role === "tool").map((m: any) => m.content);
    expect(results[0]).toMatch(/cycle refused: Root is already running in this call chain \(Root → Mid\)/);
    expect(results[1]).toMatch(/call depth limit reached \(at most 1 levels\)/);
  });

  it("answers a tool call whose arguments fail their schema with an error, and an agent not allowed", async () => {
    await script("bad-args", [
      { toolCalls: [{ name: "call_agent", arguments: { agent: 5 } }, { name: "request_user_input", arguments: { prompt: "p", inputType: "choice" } }, call("Asker", "not allowed for Leaf")] },
      { text: "recovered" },
    ]);
    const p = new Pump(seed, "Leaf", "SCRIPT:bad-args");
    await p.start();
    await p.drain();
    expect(await p.snapshot()).toMatchObject({ status: "completed", output: "recovered" });
    const second = (await requestsFor("SCRIPT:bad-args")).at(-1);
    const results = second.messages.filter((m: any) => m.role === "tool").map((m: any) => m.content);
    expect(results[0]).toMatch(/invalid arguments for call_agent: agent: /);
    expect(results[1]).toMatch(/invalid arguments for request_user_input: .*choices/);
    expect(results[2]).toMatch(/may not call 'Asker': not in its allowedAgents/);
  });

  it("shares run data between the steps of a run", async () => {
    await script("rd-root", [
      { toolCalls: [{ name: "run_data_write", arguments: { key: "invoice/total", value: { amount: 120, currency: "EUR" }, tags: ["invoice"] } }] },
      { toolCalls: [call("Mid", "SCRIPT:rd-mid")] },
      { toolCalls: [{ name: "run_data_read", arguments: { key: "verdict" } }] },
      { text: "done" },
    ]);
    await script("rd-mid", [
      { toolCalls: [{ name: "run_data_query", arguments: { tag: "invoice" } }, { name: "run_data_write", arguments: { key: "verdict", value: "ok" } }] },
      { text: "mid read it" },
    ]);
    const p = new Pump(seed, "Root", "SCRIPT:rd-root");
    await p.start();
    await p.drain();
    expect(await p.snapshot()).toMatchObject({ status: "completed", output: "done" });
    const midSecond = (await requestsFor("SCRIPT:rd-mid")).at(-1);
    expect(JSON.parse(midSecond.messages.find((m: any) => m.role === "tool").content)).toEqual({
      matches: [{ key: "invoice/total", value: { amount: 120, currency: "EUR" }, tags: ["invoice"] }],
    });
    const rootLast = (await requestsFor("SCRIPT:rd-root")).at(-1);
    expect(JSON.parse(rootLast.messages.filter((m: any) => m.role === "tool").at(-1).content)).toEqual({ key: "verdict", found: true, value: "ok", tags: [] });
  });
});

describe("internal tokens on jobs", () => {
  it("runs a job only with the token the run object issued for it: forged, expired, mis-addressed and replayed tokens are refused and audited", async () => {
    const { agentAudience, publicJwks, signInternalToken } = await import("../src/auth/internal-jwt");
    const { generateKeyPair, SignJWT } = await import("jose");
    await script("jwt-root", [{ toolCalls: [{ name: "run_data_list", arguments: {} }] }, { text: "ran once" }]);
    const p = new Pump(seed, "Root", "SCRIPT:jwt-root");
    await p.start();
    const [job] = p.take();
    expect(job).toMatchObject({ stepId: "s1", turn: 1, agent: "Root", depth: 0, token: expect.stringMatching(/^ey/) });
    expect(job).not.toHaveProperty("jti");
    const claims = { orgId: p.run.orgId, runId: p.run.runId, stepId: "s1", depth: 0 };
    const aud = agentAudience(p.run.orgId, "Root");
    const b64 = (o: unknown) => btoa(JSON.stringify(o)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
    const now = Math.floor(Date.now() / 1000);
    const payload = { iss: "localhost", aud, org_id: claims.orgId, run_id: claims.runId, step_id: "s1", depth: 0, jti: crypto.randomUUID(), iat: now, exp: now + 300 };
    const kid = (await publicJwks(env)).keys[0]!.kid!;
    const other = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const forged: Record<string, string> = {
      none: `${b64({ alg: "none", typ: "JWT" })}.${b64(payload)}.`,
      otherKey: await new SignJWT(payload).setProtectedHeader({ alg: "EdDSA", kid, typ: "JWT" }).sign(other.privateKey),
      expired: await signInternalToken(env, { ...claims, aud }, { now: new Date(Date.now() - 10 * 60_000) }),
      otherAudience: await signInternalToken(env, { ...claims, aud: agentAudience(p.run.orgId, "Leaf") }),
      otherStep: await signInternalToken(env, { ...claims, stepId: "s9", aud }),
      notThisJob: await signInternalToken(env, { ...claims, aud }),
    };
    for (const [name, token] of Object.entries(forged)) {
      const r = await p.deliver([{ ...job!, token }]);
      expect(r.explicitAcks, name).toHaveLength(1);
    }
    // a job naming another agent with a token for it
    await p.deliver([{ ...job!, agent: "Leaf", token: await signInternalToken(env, { ...claims, aud: agentAudience(p.run.orgId, "Leaf") }) }]);
    // nothing ran
    expect(await requestsFor("SCRIPT:jwt-root")).toHaveLength(0);
    expect((await p.snapshot()).steps[0]).toMatchObject({ status: "queued", attempts: 0 });
    // the expired one made the run object issue a fresh job for the step
    const fresh = p.take();
    expect(fresh).toHaveLength(1);
    expect(fresh[0]!.token).not.toBe(job!.token);
    // the original job was superseded by the fresh one: its token is no longer the step's
    await p.deliver([job!]);
    expect(await requestsFor("SCRIPT:jwt-root")).toHaveLength(0);
    // the fresh job runs; its token replayed on the next turn's job is refused
    await p.deliver([fresh[0]!]);
    const [turn2] = p.take();
    expect(turn2).toMatchObject({ stepId: "s1", turn: 2 });
    await p.deliver([{ ...turn2!, token: fresh[0]!.token }]);
    expect(await requestsFor("SCRIPT:jwt-root")).toHaveLength(1);
    await p.deliver([turn2!]);
    expect(await p.snapshot()).toMatchObject({ status: "completed", output: "ran once" });
    expect(await requestsFor("SCRIPT:jwt-root")).toHaveLength(2);
    const rows = await env.DB.prepare("SELECT summary FROM audit_log WHERE run_id = ? AND action = 'job.refused' ORDER BY id").bind(p.run.runId).all<{ summary: string }>();
    const reasons = rows.results.map((r) => JSON.parse(r.summary).input.reason).sort();
    expect(reasons).toEqual(["alg", "audience", "audience", "claims", "expired", "replayed", "replayed", "replayed", "signature"].sort());
  });
});
