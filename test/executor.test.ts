/** The queue consumer: one agent step, offline and against a real OpenAI-compatible server. */
import { createExecutionContext, createMessageBatch, getQueueResult, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { agentCacheSize, clearAgentCache } from "../src/agents/snapshot";
import { runStub } from "../src/runs/stub";
import type { Job, RunInit } from "../src/runs/types";
import type { RunObject } from "../durable-objects/run-object";
import worker from "../workers/index";
import { exampleAgents, seedOrg, type SeedResult } from "./helpers";

let seed: SeedResult;
beforeAll(async () => {
  // ProcessInvoice without its agent calls: these tests are about one model call per step
  // (multi-turn runs are in test/workflow.test.ts).
  const files = exampleAgents();
  seed = await seedOrg("executor", { ...files, "ProcessInvoice/prompt.md": files["ProcessInvoice/prompt.md"]!.replace(/^allowedAgents:.*\n/m, "") });
});

async function newRun(text: string, agent = "ProcessInvoice"): Promise<RunInit> {
  const run: RunInit = {
    runId: crypto.randomUUID(),
    orgId: seed.org.id,
    contextId: "ctx",
    agent: { name: agent, repositoryId: seed.repository.id, commit: seed.commit, path: `${agent}/prompt.md` },
    initiatedBy: null,
    message: { messageId: crypto.randomUUID(), role: "user", parts: [{ kind: "text", text }] },
  };
  return run;
}

/**
 * Creates the run with its queue producer swapped for a recorder, so that only the test
 * delivers the step (the real consumer would race it with the default model).
 */
async function startUnqueued(run: RunInit): Promise<Job[]> {
  const sent: Job[] = [];
  await runInDurableObject(env.RUNS.get(env.RUNS.idFromName(run.runId)), async (obj: RunObject) => {
    Object.defineProperty(obj, "env", { value: { ...env, JOBS: { send: async (job: Job) => void sent.push(job) } }, configurable: true });
    await obj.start(run, 0);
  });
  return sent;
}

async function queue(jobs: { id: string; attempts: number; body: Job }[], testEnv: Env) {
  const batch = createMessageBatch<Job>("shaman-jobs", jobs.map((j) => ({ ...j, timestamp: new Date() })));
  const ctx = createExecutionContext();
  await worker.queue(batch, testEnv, ctx);
  return getQueueResult(batch, ctx);
}

/** Starts the run and delivers its job in a batch the test controls. */
async function deliver(run: RunInit, testEnv: Env, attempts = 1) {
  const sent = await startUnqueued(run);
  expect(sent).toEqual([{ kind: "step", runId: run.runId, orgId: run.orgId, stepId: "s1", turn: 1, agent: run.agent.name, depth: 0, token: expect.any(String) }]);
  return queue([{ id: crypto.randomUUID(), attempts, body: sent[0] as Job }], testEnv);
}

describe("executor with the offline model", () => {
  it("loads the agent's prompt from the R2 snapshot, runs the model, reports and acks", async () => {
    const run = await newRun("Invoice 42 from Initech, total 99 USD");
    const result = await deliver(run, { ...env, OPENAI_BASE_URL: undefined, OPENAI_API_KEY: undefined } as Env);
    expect(result.explicitAcks).toHaveLength(1);
    expect(result.retryMessages).toHaveLength(0);
    const snap = await runStub(env, run.runId).wait(run.orgId, 5_000);
    expect(snap?.status).toBe("completed");
    // deterministic, says what it is, and carries the agent's prompt and the request
    expect(snap?.output).toBe(
      [
        "[shaman-offline/gpt-4o-mini] Deterministic offline answer: no language model was called.",
        "Instructions: You are ProcessInvoice, an accounts-payable assistant for the organisation.",
        "Request (7 words): Invoice 42 from Initech, total 99 USD",
      ].join("\n"),
    );
    expect(snap?.steps[0]?.model).toBe("offline:gpt-4o-mini");
  });

  it("acks a job whose step is already done without running it again", async () => {
    const run = await newRun("once");
    const offline = { ...env } as Env;
    await deliver(run, offline);
    await runStub(env, run.runId).wait(run.orgId, 5_000);
    const job: Job = { kind: "step", runId: run.runId, orgId: run.orgId, stepId: "s1" };
    const result = await queue([{ id: "dup", attempts: 2, body: job }], offline);
    expect(result.explicitAcks).toEqual(["dup"]);
    const events = await runStub(env, run.runId).events(run.orgId);
    expect(events?.filter((e) => e.type === "step.started")).toHaveLength(1);
  });

  it("serves a warm agent from the isolate cache keyed by commit (no R2 read)", async () => {
    clearAgentCache();
    const first = await newRun("a");
    await deliver(first, env as Env);
    expect(agentCacheSize()).toBe(1);
    let gets = 0;
    const counting = new Proxy(env.SNAPSHOTS, {
      get(target, prop, receiver) {
        if (prop === "get") return (...args: Parameters<R2Bucket["get"]>) => (gets++, target.get(...args));
        return Reflect.get(target, prop, receiver);
      },
    });
    const second = await newRun("b");
    await deliver(second, { ...env, SNAPSHOTS: counting } as Env);
    expect((await runStub(env, second.runId).wait(second.orgId, 5_000))?.status).toBe("completed");
    expect(gets).toBe(0);
  });

  it("fails the step permanently when the agent file is missing from the snapshot", async () => {
    const run = await newRun("x");
    run.agent = { ...run.agent, name: "Ghost", path: "Ghost/prompt.md" };
    const result = await deliver(run, env as Env);
    expect(result.explicitAcks).toHaveLength(1);
    const snap = await runStub(env, run.runId).snapshot(run.orgId);
    expect(snap).toMatchObject({ status: "failed" });
    expect(snap?.error).toContain("missing from snapshot");
  });
});

describe("executor with the OpenAI provider", () => {
  const compatEnv = () => ({ ...env, OPENAI_BASE_URL: env.TEST_OPENAI_URL, OPENAI_API_KEY: "sk-test-key" }) as Env;
  const serverRequests = async () => (await (await fetch(`${env.TEST_OPENAI_URL.replace(/\/v1$/, "")}/__requests`)).json()) as any[];

  it("calls an OpenAI-compatible server with the agent's prompt, settings and model", async () => {
    const run = await newRun("summarise this invoice");
    const result = await deliver(run, compatEnv());
    expect(result.explicitAcks).toHaveLength(1);
    const snap = await runStub(env, run.runId).wait(run.orgId, 5_000);
    expect(snap?.status).toBe("completed");
    expect(snap?.output).toMatch(/^compat-model gpt-4o-mini answers: SUMMARISE THIS INVOICE \(system prompt: \d+ chars\)$/);
    expect(snap?.steps[0]?.model).toBe("openai:gpt-4o-mini");
    const sent = (await serverRequests()).find((r) => JSON.stringify(r.messages).includes("summarise this invoice"));
    expect(sent.authorization).toBe("Bearer sk-test-key");
    expect(sent.model).toBe("gpt-4o-mini");
    expect(sent.temperature).toBe(0);
    expect(sent.max_tokens).toBe(800);
    expect(sent.messages[0]).toMatchObject({ role: "system" });
    expect(sent.messages[0].content).toContain("You are ProcessInvoice");
  });

  it("retries through the queue when the model server fails, recording the attempt", async () => {
    const run = await newRun("please FAIL_ONCE:exec-retry");
    const [job] = await startUnqueued(run);
    const first = await queue([{ id: "first", attempts: 1, body: job as Job }], compatEnv());
    expect(first.retryMessages).toHaveLength(1);
    expect(first.explicitAcks).toHaveLength(0);
    let snap = await runStub(env, run.runId).snapshot(run.orgId);
    expect(snap?.steps[0]).toMatchObject({ status: "queued", attempts: 1 });
    // the queue redelivers the same message (attempt 2): this time the server answers
    expect((await queue([{ id: "again", attempts: 2, body: job as Job }], compatEnv())).explicitAcks).toEqual(["again"]);
    snap = await runStub(env, run.runId).wait(run.orgId, 5_000);
    expect(snap?.status).toBe("completed");
    const types = (await runStub(env, run.runId).events(run.orgId))?.map((e) => e.type);
    expect(types).toContain("step.retrying");
  });

  it("gives up after the last attempt and fails the run", async () => {
    const run = await newRun("x");
    const dead = { ...env, OPENAI_BASE_URL: "http://127.0.0.1:9/v1", OPENAI_API_KEY: "k" } as Env;
    const result = await deliver(run, dead, 4);
    expect(result.explicitAcks).toHaveLength(1);
    const snap = await runStub(env, run.runId).snapshot(run.orgId);
    expect(snap?.status).toBe("failed");
  });
});
