/**
 * Tools inside runs, through real local bindings: MCP tools on the stateless 2026-07-28
 * test server and external A2A agents on a real `@a2a-js/sdk` server, both on 127.0.0.1,
 * driven by scripted model answers (test/pump.ts). Each work call is a queue job the test
 * delivers, so it can deliver one twice and see the tool run once.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { CallJob, RunJob, RunSnapshot, StepJob } from "../src/runs/types";
import { orgFetch, seedOrg, type SeedResult } from "./helpers";
import { call, complete, Pump, requestsFor, script } from "./pump";

const ORG = "tools";
let seed: SeedResult;
let mcpBase: string;
const mcpPath = `/mcp/run-${crypto.randomUUID().slice(0, 8)}`;
const a2aPrefix = () => `${env.TEST_A2A_AGENT_URL}/run-${ORG}`;

const isCall = (j: RunJob): j is CallJob => j.kind === "call";
const isStep = (j: RunJob): j is StepJob => j.kind === "step";

const agent = (name: string, extra: string) => `---\ndescription: ${name} agent\nmodel: gpt-4o-mini\n${extra}---\nYou are ${name}.\n`;

beforeAll(async () => {
  mcpBase = env.TEST_MCP_STATELESS_URL.replace(/\/mcp.*$/, "");
  const lab = `mcpServers:\n  lab:\n    url: ${mcpBase}${mcpPath}\n`;
  seed = await seedOrg(ORG, {
    "Tooler/prompt.md": agent("Tooler", lab),
    "Picky/prompt.md": agent("Picky", `${lab}requireApproval: [echo]\n`),
    "Timed/prompt.md": agent("Timed", `mcpServers:\n  lab:\n    url: ${mcpBase}${mcpPath}\n    timeoutMs: 300\n  junk:\n    url: ${mcpBase}/garbage-calls/run\n`),
    "Boss/prompt.md": agent("Boss", "allowedAgents: [Tooler]\n"),
    "Caller/prompt.md": agent("Caller", "allowedAgents: [Echoer, Failer, AskBot, Slowpoke]\n"),
  });
  for (const [name, path] of [
    ["Echoer", "echo"],
    ["Failer", "fail"],
    ["AskBot", "ask"],
    ["Slowpoke", "nostream"],
  ]) {
    const res = await orgFetch(ORG, `/external-agents/${name}`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ url: `${a2aPrefix()}/${path}`, description: `${name} (external)` }) });
    expect(res.status, await res.clone().text()).toBeLessThan(300);
  }
});

const mcpStats = async (): Promise<{ methods: Record<string, number>; calls: Array<{ tool: string; args: any; traceparent: string | null }> }> =>
  (await fetch(`${mcpBase}/__stats?path=${encodeURIComponent(mcpPath)}`)).json() as any;
const counter = async (key: string): Promise<number> => ((await (await fetch(`${mcpBase}/__counter?key=${encodeURIComponent(key)}`)).json()) as { count: number }).count;
const tool = (name: string, args: Record<string, unknown>) => ({ name, arguments: args });

/** Delivers jobs until `done` holds (follows of external tasks are queued by the run object's own alarm, in real time). */
async function runUntil(p: Pump, done: (s: RunSnapshot) => boolean, ms = 15_000): Promise<RunSnapshot> {
  const until = Date.now() + ms;
  for (;;) {
    if (p.sent.length > 0) await p.deliver(p.take());
    const snap = await p.snapshot();
    if (done(snap)) return snap;
    if (Date.now() > until) throw new Error(`run did not get there: ${JSON.stringify(snap.steps.map((s) => [s.id, s.status, s.error]))}`);
    if (p.sent.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
}

const finished = (s: RunSnapshot) => ["completed", "failed", "canceled"].includes(s.status);

/** The tool results the step's model saw in its last call (OpenAI chat `tool` messages). */
async function toolMessages(marker: string): Promise<Array<{ tool_call_id: string; content: string }>> {
  const reqs = await requestsFor(marker);
  return (reqs.at(-1)?.messages ?? []).filter((m: any) => m.role === "tool");
}

describe("MCP tools in a run", () => {
  it("offers the server's tools namespaced, runs each call once through a job, and the model reads text and structured results", async () => {
    await script("mcp-basic", [{ toolCalls: [tool("lab__echo", { message: "hi there" }), tool("lab__weather", { city: "Paris" })] }, { toolCalls: [complete("used two tools")] }]);
    const p = new Pump(seed, "Tooler", "SCRIPT:mcp-basic");
    await p.start();
    await p.deliver(p.take());
    // the turn is recorded; its two tool calls are two jobs, and the step waits on them
    const calls = p.sent.filter(isCall);
    expect(calls.map((j) => j.callId)).toEqual(["call_mcp-basic_0_0", "call_mcp-basic_0_1"]);
    expect((await p.snapshot()).steps[0]!.status).toBe("waiting");
    // the model was offered the server's tools under the server's name
    const first = (await requestsFor("SCRIPT:mcp-basic"))[0];
    const offered = first.tools.map((t: any) => t.function.name);
    expect(offered).toEqual(expect.arrayContaining(["lab__echo", "lab__weather", "lab__counter", "lab__delete_everything", "complete_agent_execution"]));
    const snap = await runUntil(p, finished);
    expect(snap.status).toBe("completed");
    expect(snap.output).toBe("used two tools");
    const results = await toolMessages("SCRIPT:mcp-basic");
    expect(results).toHaveLength(2);
    expect(results[0]!.content).toContain("stateless echo: hi there");
    // structuredContent reaches the model as data
    expect(JSON.parse(results[1]!.content)).toMatchObject({ structuredContent: { city: "Paris", temperature: 21.5, conditions: "Sunny" } });
    // every call: events, the server saw the run's trace, and an audit row
    const events = (await p.events()).filter((e) => e.type.startsWith("tool."));
    expect(events.filter((e) => e.type === "tool.started").map((e) => e.data.tool)).toEqual(["lab__echo", "lab__weather"]);
    expect(events.filter((e) => e.type === "tool.result" && (e.data.tool === "lab__echo" || e.data.tool === "lab__weather"))).toHaveLength(2);
    const seen = (await mcpStats()).calls.filter((c) => c.tool === "echo" && c.args.message === "hi there");
    expect(seen).toHaveLength(1);
    expect(seen[0]!.traceparent).toMatch(new RegExp(`^00-${p.run.runId.replace(/-/g, "")}-[0-9a-f]{16}-01$`));
    const rows = await env.DB.prepare("SELECT resource, outcome, summary FROM audit_log WHERE run_id = ? AND action = 'tool.execute' ORDER BY id").bind(p.run.runId).all<{ resource: string; outcome: string }>();
    expect(rows.results.map((r) => [r.resource, r.outcome]).filter(([r]) => r !== "/tools/complete_agent_execution")).toEqual([
      ["/tools/lab__echo", "success"],
      ["/tools/lab__weather", "success"],
    ]);
  });

  it("runs a tool once when its job is delivered twice, in one batch and again later", async () => {
    const key = `twice-${crypto.randomUUID()}`;
    await script("mcp-twice", [{ toolCalls: [tool("lab__counter", { key })] }, { text: "counted" }]);
    const p = new Pump(seed, "Tooler", "SCRIPT:mcp-twice");
    await p.start();
    await p.deliver(p.take());
    const [job] = p.take(isCall);
    expect(job).toBeDefined();
    await p.deliver([job!, job!]);
    await p.deliver([job!]);
    const snap = await runUntil(p, finished);
    expect(snap.status).toBe("completed");
    expect(await counter(key)).toBe(1);
    expect((await p.events()).filter((e) => e.type === "tool.result" && e.data.tool === "lab__counter")).toHaveLength(1);
    expect(JSON.parse((await toolMessages("SCRIPT:mcp-twice"))[0]!.content)).toMatchObject({ structuredContent: { key, count: 1 } });
  });

  it("holds a destructive tool until a person approves it; rejected, it never runs and the model reads why", async () => {
    await script("mcp-approve", [{ toolCalls: [tool("lab__delete_everything", { confirm: true })] }, { text: "after the decision" }]);
    const before = (await mcpStats()).calls.filter((c) => c.tool === "delete_everything").length;

    const yes = new Pump(seed, "Tooler", "SCRIPT:mcp-approve yes");
    await yes.start();
    await yes.deliver(yes.take());
    let snap = await yes.snapshot();
    expect(snap.status).toBe("input_required");
    expect(yes.sent.filter(isCall)).toHaveLength(0); // nothing runs before the answer
    expect(snap.inputs).toHaveLength(1);
    expect(snap.inputs[0]).toMatchObject({ inputType: "approval", stepId: "s1" });
    expect(snap.inputs[0]!.prompt).toContain("delete_everything");
    expect(await yes.stub.answerInput(seed.org.id, snap.inputs[0]!.requestId, "approved")).toBe(true);
    expect(yes.sent.filter(isCall)).toHaveLength(1);
    snap = await runUntil(yes, finished);
    expect(snap.status).toBe("completed");
    expect((await mcpStats()).calls.filter((c) => c.tool === "delete_everything").length).toBe(before + 1);

    const no = new Pump(seed, "Tooler", "SCRIPT:mcp-approve no");
    await no.start();
    await no.deliver(no.take());
    const asked = (await no.snapshot()).inputs[0]!;
    expect(await no.stub.answerInput(seed.org.id, asked.requestId, { answer: "rejected", reason: "not today" })).toBe(true);
    expect(no.sent.filter(isCall)).toHaveLength(0);
    snap = await runUntil(no, finished);
    expect(snap.status).toBe("completed");
    expect((await mcpStats()).calls.filter((c) => c.tool === "delete_everything").length).toBe(before + 1);
    const [result] = await toolMessages("SCRIPT:mcp-approve no");
    expect(result!.content).toContain("a person did not approve this call to lab__delete_everything: not today");
  });

  it("asks for approval of tools the agent lists in requireApproval, and in parallel branches each asks on its own", async () => {
    await script("mcp-branches", [{ toolCalls: [call("Tooler", "SCRIPT:mcp-branch one"), call("Tooler", "SCRIPT:mcp-branch two")] }, { text: "both branches done" }]);
    await script("mcp-branch", [{ toolCalls: [tool("lab__delete_everything", {})] }, { text: "branch done" }]);
    const p = new Pump(seed, "Boss", "SCRIPT:mcp-branches");
    await p.start();
    let snap = await runUntil(p, (s) => s.inputs.length === 2);
    expect(snap.status).toBe("input_required");
    expect(new Set(snap.inputs.map((i) => i.stepId))).toEqual(new Set(["s2", "s3"]));
    // answered out of order
    expect(await p.stub.answerInput(seed.org.id, snap.inputs[1]!.requestId, "approved")).toBe(true);
    expect(await p.stub.answerInput(seed.org.id, snap.inputs[0]!.requestId, "yes")).toBe(true);
    snap = await runUntil(p, finished);
    expect(snap.status).toBe("completed");
    expect(snap.output).toBe("both branches done");

    await script("mcp-picky", [{ toolCalls: [tool("lab__echo", { message: "picky" })] }, { text: "picky done" }]);
    const q = new Pump(seed, "Picky", "SCRIPT:mcp-picky");
    await q.start();
    await q.deliver(q.take());
    expect((await q.snapshot()).inputs.map((i) => i.inputType)).toEqual(["approval"]);
  });

  it("gives the model a tool error for a slow tool (timeout), a broken one and a server answering garbage; the step goes on", async () => {
    await script("mcp-errors", [{ toolCalls: [tool("lab__slow", { ms: 3_000 }), tool("lab__broken", {}), tool("junk__echo", { message: "x" })] }, { text: "coped" }]);
    const p = new Pump(seed, "Timed", "SCRIPT:mcp-errors");
    await p.start();
    const snap = await runUntil(p, finished);
    expect(snap.status).toBe("completed");
    expect(snap.output).toBe("coped");
    const results = await toolMessages("SCRIPT:mcp-errors");
    expect(results).toHaveLength(3);
    expect(results[0]!.content).toMatch(/time|300 ms/i);
    expect(results[1]!.content).toContain("the broken tool failed on purpose");
    expect(results[2]!.content.length).toBeGreaterThan(0);
    const ev = (await p.events()).filter((e) => e.type === "tool.result" && typeof e.data.tool === "string" && /slow|broken|junk/.test(e.data.tool as string));
    expect(ev).toHaveLength(3);
    for (const e of ev) expect(e.data.error).toBeTruthy();
  });
});

describe("an MCP server that stops mid-run", () => {
  it("answers the call with a tool error the model reads, and the step goes on", async () => {
    const path = `/mcp/stops-${crypto.randomUUID().slice(0, 8)}`;
    const stopSeed = await seedOrg("tools-stop", { "Stopper/prompt.md": agent("Stopper", `mcpServers:\n  lab:\n    url: ${mcpBase}${path}\n`) });
    await script("mcp-stop", [{ toolCalls: [tool("lab__echo", { message: "anyone there?" })] }, { text: "went on without it" }]);
    const p = new Pump(stopSeed, "Stopper", "SCRIPT:mcp-stop");
    await p.start();
    await p.deliver(p.take()); // the server is up: its tools were listed and offered
    expect((await requestsFor("SCRIPT:mcp-stop"))[0].tools.map((t: any) => t.function.name)).toContain("lab__echo");
    await fetch(`${mcpBase}/__down?path=${encodeURIComponent(path)}&down=1`);
    try {
      const snap = await runUntil(p, finished);
      expect(snap.status).toBe("completed");
      expect(snap.output).toBe("went on without it");
      const [result] = await toolMessages("SCRIPT:mcp-stop");
      expect(result!.content).toMatch(/could not be reached|connection|unavailable/i);
      expect((await p.events()).find((e) => e.type === "tool.result" && e.data.tool === "lab__echo")?.data.error).toBeTruthy();
    } finally {
      await fetch(`${mcpBase}/__down?path=${encodeURIComponent(path)}&down=0`);
    }
  });
});

describe("external A2A agents in a run", () => {
  it("calls a registered external agent: completed and failed tasks become the caller's tool results", async () => {
    await script("ext-basic", [{ toolCalls: [call("Echoer", "hello remote"), call("Failer", "the impossible")] }, { text: "remote done" }]);
    const p = new Pump(seed, "Caller", "SCRIPT:ext-basic");
    await p.start();
    const snap = await runUntil(p, finished);
    expect(snap.status).toBe("completed");
    expect(snap.steps).toHaveLength(1); // no step of ours: the work happened on the other platform
    const [echo, fail] = await toolMessages("SCRIPT:ext-basic");
    expect(JSON.parse(echo!.content)).toMatchObject({ agent: "Echoer", status: "SUCCESS" });
    expect(echo!.content).toContain("hello remote");
    expect(fail!.content).toContain("cannot do that: the impossible");
    const rows = await env.DB.prepare("SELECT resource, outcome FROM audit_log WHERE run_id = ? AND action = 'agent.call' ORDER BY id").bind(p.run.runId).all<{ resource: string; outcome: string }>();
    expect(rows.results.map((r) => r.resource)).toEqual(expect.arrayContaining(["/agents/Echoer", "/agents/Failer"]));
  });

  it("follows a remote task that takes time with jobs the run object's alarm queues, never a waiting worker", async () => {
    await script("ext-slow", [{ toolCalls: [call("Slowpoke", "take your time")] }, { text: "slow done" }]);
    const p = new Pump(seed, "Caller", "SCRIPT:ext-slow");
    await p.start();
    await p.deliver(p.take()); // the turn
    await p.deliver(p.take()); // the send: the remote task is working
    expect(p.sent).toHaveLength(0); // nothing queued while the task runs: the alarm follows it
    const progress = (await p.events()).filter((e) => e.type === "tool.progress");
    expect(progress.at(-1)?.data.state).toMatch(/^(submitted|working)$/);
    const snap = await runUntil(p, finished);
    expect(snap.status).toBe("completed");
    expect((await toolMessages("SCRIPT:ext-slow"))[0]!.content).toContain("nostream: take your time");
  });

  it("asks the remote agent to cancel its task when the run is canceled", async () => {
    await script("ext-cancel", [{ toolCalls: [call("Slowpoke", "never mind")] }, { text: "unreachable" }]);
    const p = new Pump(seed, "Caller", "SCRIPT:ext-cancel");
    await p.start();
    await p.deliver(p.take()); // the turn
    await p.deliver(p.take()); // the send: the remote task is working
    const taskId = (await p.events()).filter((e) => e.type === "tool.progress").at(-1)?.data.taskId;
    expect(typeof taskId).toBe("string");
    expect(await p.stub.cancel(seed.org.id, "changed my mind")).toBe(true);
    const cancelJobs = p.take(isCall);
    expect(cancelJobs).toHaveLength(1);
    await p.deliver(cancelJobs);
    const log = (await (await fetch(`${env.TEST_A2A_AGENT_URL}/__log`)).json()) as Array<{ path: string; rpc?: string }>;
    expect(log.filter((e) => e.path === `/run-${ORG}/nostream` && /cancel/i.test(e.rpc ?? "")).length).toBeGreaterThanOrEqual(1);
    const snap = await p.snapshot();
    expect(snap.status).toBe("canceled");
    // delivered again, the cancel job does nothing more
    await p.deliver(cancelJobs);
    const again = (await (await fetch(`${env.TEST_A2A_AGENT_URL}/__log`)).json()) as Array<{ path: string; rpc?: string }>;
    expect(again.filter((e) => e.path === `/run-${ORG}/nostream` && /cancel/i.test(e.rpc ?? "")).length).toBe(log.filter((e) => e.path === `/run-${ORG}/nostream` && /cancel/i.test(e.rpc ?? "")).length);
  });

  it("hands a remote INPUT_REQUIRED to the caller, whose answer (call_agent with the taskId) completes the remote task", async () => {
    await script("ext-ask", [
      { toolCalls: [call("AskBot", "hi")] },
      { toolCalls: [{ name: "call_agent", arguments: { agent: "AskBot", input: "Ada", taskId: "{{tool.taskId}}" } }] },
      { text: "conversation done" },
    ]);
    const p = new Pump(seed, "Caller", "SCRIPT:ext-ask");
    await p.start();
    const snap = await runUntil(p, finished);
    expect(snap.status).toBe("completed");
    const reqs = await requestsFor("SCRIPT:ext-ask");
    const firstResult = JSON.parse(reqs[1].messages.filter((m: any) => m.role === "tool").at(-1).content);
    expect(firstResult).toMatchObject({ agent: "AskBot", status: "INPUT_REQUIRED", question: "What is your name?" });
    expect(typeof firstResult.taskId).toBe("string");
    const secondResult = JSON.parse(reqs[2].messages.filter((m: any) => m.role === "tool").at(-1).content);
    expect(secondResult).toMatchObject({ agent: "AskBot", status: "SUCCESS", taskId: firstResult.taskId });
    expect(secondResult.result).toContain("Hello, Ada!");
  });
});
