/**
 * Usage, cost and budgets, through real local bindings: D1 usage rows, the budget Durable
 * Object per org and month, the executor's turn loop fed by the queue handler (the "pump"
 * of test/workflow.test.ts) and the scripted OpenAI-compatible server, whose scripts choose
 * the usage each answer reports.
 */
import { createExecutionContext, createMessageBatch, getQueueResult, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { MockLanguageModelV4 } from "ai/test";
import { eq } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import type { BudgetObject } from "../durable-objects/budget";
import type { RunObject } from "../durable-objects/run-object";
import { db } from "../src/db/client";
import { problemBody } from "../src/errors";
import { runStub } from "../src/runs/stub";
import type { Job, RunInit, RunSnapshot, StepJob } from "../src/runs/types";
import { BUDGET_EXCEEDED_RPC_CODE, BudgetExceededError, budgetRoundTrips, monthOf, refusalOf } from "../src/usage/budget";
import { costOf, DEFAULT_PRICES, priceFor } from "../src/usage/prices";
import { usageRecords, writeUsage, writeUsageMany, type NewUsageRecord } from "../src/usage/records";
import { callModel } from "../src/workflow/model-call";
import type { TurnContext } from "../src/workflow/types";
import worker from "../workers/index";
import { eventually, orgFetch, rpc, seedOrg, sendMessage, type SeedResult } from "./helpers";

const compat = () => env.TEST_OPENAI_URL.replace(/\/v1$/, "");
const modelEnv = () => ({ ...env, OPENAI_BASE_URL: env.TEST_OPENAI_URL, OPENAI_API_KEY: undefined }) as Env;

const LEAF_MAX = 2000;
const ROOT_MAX = 50;
const agents = {
  "Root/prompt.md": `---\ndescription: Root agent\nmodel: gpt-4o-mini\nexposed: true\nmaxTokens: ${ROOT_MAX}\nallowedAgents: [Leaf]\n---\nYou are Root.\n`,
  "Leaf/prompt.md": `---\ndescription: Leaf agent\nmodel: gpt-4o-mini\nmaxTokens: ${LEAF_MAX}\nallowedAgents: []\n---\nYou are Leaf.\n`,
};

type Usage = { prompt_tokens: number; completion_tokens: number; cached_tokens?: number; reasoning_tokens?: number };
type Turn = { toolCalls?: Array<{ name: string; arguments: unknown }>; text?: string; status?: number; usage?: Usage };

async function script(key: string, turns: Turn[]): Promise<void> {
  const res = await fetch(`${compat()}/__scripts`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key, turns }) });
  if (!res.ok) throw new Error(`script ${key}: ${res.status} ${await res.text()}`);
}
const call = (agentName: string, input: string) => ({ name: "call_agent", arguments: { agent: agentName, input } });
const complete = (result: string) => ({ name: "complete_agent_execution", arguments: { result, status: "SUCCESS" } });

const json = (v: unknown): RequestInit => ({ method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(v) });

/** A run whose jobs the test delivers to the real queue handler (as in test/workflow.test.ts). */
class Pump {
  readonly sent: StepJob[] = [];
  readonly run: RunInit;
  constructor(seed: SeedResult, agentName: string, text: string) {
    this.run = {
      runId: crypto.randomUUID(),
      orgId: seed.org.id,
      contextId: "ctx",
      agent: { name: agentName, repositoryId: seed.repository.id, commit: seed.commit, path: `${agentName}/prompt.md` },
      initiatedBy: null,
      message: { messageId: crypto.randomUUID(), role: "user", parts: [{ kind: "text", text }] },
      limits: { maxCallsPerTurn: 16 },
    };
  }
  async start(): Promise<void> {
    const sent = this.sent;
    await runInDurableObject(env.RUNS.get(env.RUNS.idFromName(this.run.runId)), async (obj: RunObject) => {
      const JOBS = {
        send: async (job: StepJob) => void sent.push(job),
        sendBatch: async (msgs: Array<{ body: StepJob }>) => void sent.push(...msgs.map((m) => m.body)),
      };
      Object.defineProperty(obj, "env", { value: { ...env, JOBS }, configurable: true });
      await obj.start(this.run, 0);
    });
  }
  async deliver(jobs: StepJob[]) {
    const batch = createMessageBatch<Job>("shaman-jobs", jobs.map((body) => ({ id: crypto.randomUUID(), attempts: 1, timestamp: new Date(), body })));
    const ctx = createExecutionContext();
    await worker.queue(batch, modelEnv(), ctx);
    return getQueueResult(batch, ctx);
  }
  /** Delivers every job until none is left (each round one batch, its jobs run concurrently). */
  async drain(rounds = 20): Promise<void> {
    for (let i = 0; i < rounds && this.sent.length > 0; i++) await this.deliver(this.sent.splice(0));
  }
  async snapshot(): Promise<RunSnapshot> {
    return (await runStub(env, this.run.runId).snapshot(this.run.orgId))!;
  }
}

const rowsOfRun = (runId: string) => db(env).select().from(usageRecords).where(eq(usageRecords.runId, runId));

function ctxFor(seed: SeedResult, over: Partial<TurnContext> = {}): TurnContext {
  return {
    runId: crypto.randomUUID(),
    orgId: seed.org.id,
    stepId: "s1",
    turn: 1,
    attempt: 1,
    agent: { name: "Leaf", repositoryId: seed.repository.id, commit: seed.commit, path: "Leaf/prompt.md" },
    depth: 0,
    messages: [],
    input: { messageId: "m", role: "user", parts: [{ kind: "text", text: "hi" }] },
    initiatedBy: null,
    userId: null,
    maxCallsPerTurn: 16,
    ...over,
  };
}

/** A model that reports the usage given (the AI SDK v4 model shape). */
function mockModel(u: { input: number; cached?: number; output: number; reasoning?: number }, fail?: Error) {
  return new MockLanguageModelV4({
    doGenerate: async () => {
      if (fail) throw fail;
      return {
        content: [{ type: "text", text: "ok" }],
        finishReason: { unified: "stop", raw: "stop" },
        usage: {
          inputTokens: { total: u.input, noCache: u.input - (u.cached ?? 0), cacheRead: u.cached ?? 0, cacheWrite: 0 },
          outputTokens: { total: u.output, text: u.output - (u.reasoning ?? 0), reasoning: u.reasoning ?? 0 },
        },
        warnings: [],
      };
    },
  });
}

const budgetObject = (name: string) => env.BUDGETS.get(env.BUDGETS.idFromName(name));

describe("prices", () => {
  it("prices a model by the longest matching prefix, org prices first; unknown models cost 0 and are flagged", () => {
    expect(priceFor("openai:gpt-4o-mini-2024-07-18")).toMatchObject({ pattern: "openai:gpt-4o-mini", source: "default", priced: true, price: { input: 0.15, output: 0.6 } });
    expect(priceFor("openai:gpt-4o-2024-08-06")).toMatchObject({ pattern: "openai:gpt-4o", price: { input: 2.5 } });
    expect(priceFor("anthropic:claude-sonnet-4-5-20250929")).toMatchObject({ pattern: "anthropic:claude-sonnet-4", price: { input: 3, cachedInput: 0.3, output: 15 } });
    expect(priceFor("google:gemini-2.5-flash-lite")).toMatchObject({ pattern: "google:gemini-2.5-flash-lite" });
    expect(priceFor("workers-ai:@cf/meta/llama-3.1-8b-instruct-fp8-fast")).toMatchObject({ pattern: "workers-ai:@cf/meta/llama-3.1-8b-instruct-fp8-fast" });
    expect(priceFor("offline:echo")).toMatchObject({ priced: true, price: { input: 0, output: 0 } });
    expect(priceFor("my-vllm:qwen3")).toMatchObject({ source: "unknown", priced: false, pattern: null, price: { input: 0, output: 0 } });
    // an org's key wins even when a longer default key matches; the model's ceiling still comes from the defaults
    const org = { "openai:": { input: 1, output: 2 }, "my-vllm:": { input: 0.01, output: 0.02 } };
    expect(priceFor("openai:gpt-4o-mini", org)).toMatchObject({ source: "org", pattern: "openai:", price: { input: 1, output: 2 }, maxOutputTokens: 16_384 });
    expect(priceFor("my-vllm:qwen3", org)).toMatchObject({ source: "org", priced: true });
    // every family the brief names has defaults
    for (const provider of ["openai:", "anthropic:", "google:", "workers-ai:", "offline:"]) expect(Object.keys(DEFAULT_PRICES).some((k) => k.startsWith(provider))).toBe(true);
  });

  it("costs cached input at the cached price and reasoning as output", () => {
    const price = { input: 2, cachedInput: 0.5, output: 8 };
    // 1000 input of which 400 cached, 300 output (of which reasoning is a part: not added again)
    expect(costOf({ inputTokens: 1000, cachedInputTokens: 400, outputTokens: 300 }, price)).toBeCloseTo((600 * 2 + 400 * 0.5 + 300 * 8) / 1e6, 12);
    // no cached price: cached input at the input price
    expect(costOf({ inputTokens: 1000, cachedInputTokens: 400, outputTokens: 0 }, { input: 2, output: 8 })).toBeCloseTo(0.002, 12);
  });
});

describe("the budget object", () => {
  it("admits concurrent reservations atomically: never more than the budget", async () => {
    const obj = budgetObject(`atomic-${crypto.randomUUID()}`);
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => obj.reserve(`c${i}`, { tokens: 100, usd: 0.07 }, { maxTokens: 1_000, maxUsd: 1 })));
    // tokens bind first: 10 × 100 = 1,000 (money would have admitted 14)
    expect(answers.filter((a) => a.ok)).toHaveLength(10);
    expect(answers.filter((a) => !a.ok && a.limit === "tokens")).toHaveLength(30);
    const state = await obj.state();
    expect(state).toMatchObject({ reservedTokens: 1_000, reservations: 10, usedTokens: 0 });
    expect(state.reservedUsd).toBeCloseTo(0.7, 9);

    const money = budgetObject(`atomic-usd-${crypto.randomUUID()}`);
    const paid = await Promise.all(Array.from({ length: 40 }, (_, i) => money.reserve(`c${i}`, { tokens: 100, usd: 0.07 }, { maxUsd: 1 })));
    expect(paid.filter((a) => a.ok)).toHaveLength(14);
    expect(paid.filter((a) => !a.ok && a.limit === "usd")).toHaveLength(26);
    expect((await money.state()).reservedUsd).toBeLessThanOrEqual(1);
  });

  it("is idempotent by call id, settles the actual amount, and releases a dead executor's reservation after its lease", async () => {
    const name = `lease-${crypto.randomUUID()}`;
    const obj = budgetObject(name);
    const limits = { maxTokens: 1_000 };
    expect(await obj.reserve("a", { tokens: 600, usd: 0 }, limits)).toMatchObject({ ok: true });
    // the same call again: no second reservation
    expect(await obj.reserve("a", { tokens: 600, usd: 0 }, limits)).toMatchObject({ ok: true, repeated: "reserved" });
    expect((await obj.state()).reservedTokens).toBe(600);
    expect(await obj.reserve("b", { tokens: 600, usd: 0 }, limits)).toMatchObject({ ok: false, limit: "tokens" });
    // settled twice: counted once
    await obj.settle("a", { tokens: 250, usd: 0 });
    await obj.settle("a", { tokens: 250, usd: 0 });
    expect(await obj.state()).toMatchObject({ usedTokens: 250, reservedTokens: 0 });
    expect(await obj.reserve("a", { tokens: 600, usd: 0 }, limits)).toMatchObject({ ok: true, repeated: "settled" });
    // a reservation whose executor died: held until its lease passes, then released
    expect(await obj.reserve("c", { tokens: 700, usd: 0 }, limits)).toMatchObject({ ok: true });
    expect(await obj.reserve("d", { tokens: 100, usd: 0 }, limits)).toMatchObject({ ok: false });
    await runInDurableObject(obj, async (_o: BudgetObject, state) => {
      state.storage.sql.exec("UPDATE reservations SET expires_at = ? WHERE call_id = 'c'", Date.now() - 1);
    });
    expect(await obj.reserve("d", { tokens: 100, usd: 0 }, limits)).toMatchObject({ ok: true });
    expect(await obj.state()).toMatchObject({ usedTokens: 250, reservedTokens: 100 });
    // the late settle of the expired call still counts what it used
    await obj.settle("c", { tokens: 300, usd: 0 });
    expect((await obj.state()).usedTokens).toBe(550);
  });

  it("refuses new runs while a call like the smallest refused one could not run", () => {
    const limits = { maxTokens: 1_000 };
    const base = { usedTokens: 500, usedUsd: 0, reservedTokens: 0, reservedUsd: 0, reservations: 0, smallestRefused: null };
    expect(refusalOf(limits, "2026-12", base)).toBeNull();
    expect(refusalOf(limits, "2026-12", { ...base, usedTokens: 1_000 })).toMatch(/monthly budget of 1,000 tokens for 2026-12 is used up \(1,000 tokens used\)/);
    expect(refusalOf(limits, "2026-12", { ...base, smallestRefused: { tokens: 400, usd: 0 } })).toBeNull();
    expect(refusalOf(limits, "2026-12", { ...base, smallestRefused: { tokens: 600, usd: 0 } })).toMatch(/500 tokens used; a model call needing up to 600 tokens was refused/);
  });
});

describe("model calls", () => {
  let seed: SeedResult;
  beforeAll(async () => {
    seed = await seedOrg("usage-calls", agents);
  });

  it("reports cached and reasoning tokens and the cost at the org's prices, writes one row per call (idempotent), and makes no budget round trip without a budget", async () => {
    const prices = await orgFetch("usage-calls", "/settings/prices", json({ prices: { "openai:gpt-4o-mini": { input: 1, cachedInput: 0.25, output: 4 } } }));
    expect(prices.status).toBe(200);
    const ctx = ctxFor(seed);
    const before = budgetRoundTrips.count;
    const params = { model: mockModel({ input: 1_000, cached: 400, output: 200, reasoning: 50 }), prompt: "hi", maxRetries: 0 };
    const first = await callModel({ env, ctx, modelId: "openai:gpt-4o-mini", params });
    const cost = (600 * 1 + 400 * 0.25 + 200 * 4) / 1e6;
    expect(first.usage).toEqual({ inputTokens: 1_000, outputTokens: 200, cachedInputTokens: 400, reasoningTokens: 50, costUsd: cost });
    // the same call again (same run, step, turn, attempt): still one row
    await callModel({ env, ctx, modelId: "openai:gpt-4o-mini", params });
    await writeUsage(db(env), (await rowsOfRun(ctx.runId))[0] as NewUsageRecord);
    const rows = await rowsOfRun(ctx.runId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: `${ctx.runId}:s1:1:1`, orgId: seed.org.id, agent: "Leaf", model: "openai:gpt-4o-mini", inputTokens: 1_000, cachedInputTokens: 400, outputTokens: 200, reasoningTokens: 50, priced: true });
    expect(rows[0]!.costUsd).toBeCloseTo(cost, 12);
    expect(budgetRoundTrips.count).toBe(before);
    // an unknown model costs 0 and its row says it is not priced
    const unknown = await callModel({ env, ctx: { ...ctx, attempt: 2 }, modelId: "my-vllm:qwen3", params });
    expect(unknown.usage.costUsd).toBe(0);
    expect((await rowsOfRun(ctx.runId)).find((r) => r.attempt === 2)).toMatchObject({ priced: false, costUsd: 0 });
    expect((await orgFetch("usage-calls", "/settings/prices", json({ prices: {} }))).status).toBe(200);
  });

  it("hands the usage row to a batching caller instead of writing it; batches of rows are idempotent too", async () => {
    const ctx = ctxFor(seed);
    const taken: NewUsageRecord[] = [];
    const params = { model: mockModel({ input: 10, output: 5 }), prompt: "hi", maxRetries: 0 };
    await callModel({ env, ctx, modelId: "offline:default", params, recordUsage: (row) => taken.push(row) });
    expect(taken).toHaveLength(1);
    expect(taken[0]).toMatchObject({ id: `${ctx.runId}:s1:1:1`, inputTokens: 10, outputTokens: 5, costUsd: 0, priced: true });
    expect(await rowsOfRun(ctx.runId)).toHaveLength(0);
    const rows = Array.from({ length: 12 }, (_, i) => ({ ...taken[0]!, id: `${ctx.runId}:s${i}:1:1`, stepId: `s${i}` }));
    await writeUsageMany(db(env), rows);
    await writeUsageMany(db(env), rows);
    expect(await rowsOfRun(ctx.runId)).toHaveLength(12);
  });

  it("a call that fails releases its reservation; a call that does not fit fails with the budget's message", async () => {
    expect((await orgFetch("usage-calls", "/settings/budget", json({ period: "month", maxTokens: 5_000 }))).status).toBe(200);
    try {
      const ctx = ctxFor(seed);
      const before = budgetRoundTrips.count;
      const failing = { model: mockModel({ input: 0, output: 0 }, new Error("provider down")), prompt: "hi", maxOutputTokens: 1_000, maxRetries: 0 };
      await expect(callModel({ env, ctx, modelId: "openai:gpt-4o-mini", params: failing })).rejects.toThrow("provider down");
      expect(budgetRoundTrips.count).toBeGreaterThan(before); // it did reserve
      const view = (await (await orgFetch("usage-calls", "/settings/budget")).json()) as any;
      expect(view.reserved).toEqual({ tokens: 0, usd: 0, calls: 0 });
      const usedBefore = view.used.tokens as number;
      expect(await rowsOfRun(ctx.runId)).toHaveLength(0);

      // a call whose maximum does not fit what is left
      const big = { model: mockModel({ input: 1, output: 1 }), prompt: "hi", maxOutputTokens: 5_000 - usedBefore + 1, maxRetries: 0 };
      const err = await callModel({ env, ctx: ctxFor(seed), modelId: "openai:gpt-4o-mini", params: big }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BudgetExceededError);
      expect((err as BudgetExceededError).status).toBe(402);
      expect((err as Error).message).toMatch(new RegExp(`^the org's monthly budget of 5,000 tokens for ${monthOf()} is used up \\(.* tokens used, 0 tokens reserved\\); the call needs up to .* tokens$`));
      expect(problemBody(err as BudgetExceededError, "r")).toMatchObject({ status: 402, code: "PAYMENT_REQUIRED", reason: "BUDGET_EXCEEDED" });
    } finally {
      expect((await orgFetch("usage-calls", "/settings/budget", { method: "DELETE" })).status).toBe(204);
    }
  });

  it("validates prices and budgets", async () => {
    const bad = async (path: string, body: unknown) => {
      const res = await orgFetch("usage-calls", path, json(body));
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
    };
    await bad("/settings/budget", { period: "month" });
    await bad("/settings/budget", { period: "week", maxTokens: 10 });
    await bad("/settings/budget", { period: "month", maxTokens: -1 });
    await bad("/settings/prices", { prices: { "openai:gpt-4o": { input: -1, output: 1 } } });
    await bad("/settings/prices", { prices: { "openai:gpt-4o": { input: 1 } } });
    const get = (await (await orgFetch("usage-calls", "/settings/prices")).json()) as any;
    expect(get.defaults["openai:gpt-4o-mini"]).toMatchObject({ input: 0.15, output: 0.6 });
  });
});

describe("a budget exhausted mid-run by parallel branches", () => {
  const N = 6;
  let cal: SeedResult;
  let bud: SeedResult;
  beforeAll(async () => {
    [cal, bud] = await Promise.all([seedOrg("usage-cal", agents), seedOrg("usage-bud", agents)]);
  });

  /** Root fans out to N leaves in one turn, then completes. */
  async function fanOut(seed: SeedResult, key: string, leafUsage: Usage): Promise<Pump> {
    await script(`${key}-root`, [
      { toolCalls: Array.from({ length: N }, (_, i) => call("Leaf", `SCRIPT:${key}-leaf part ${i + 1}`)), usage: { prompt_tokens: 1, completion_tokens: 1 } },
      { toolCalls: [complete("joined")], usage: { prompt_tokens: 1, completion_tokens: 1 } },
    ]);
    await script(`${key}-leaf`, [{ text: "leaf ok", usage: leafUsage }]);
    const p = new Pump(seed, "Root", `SCRIPT:${key}-root`);
    await p.start();
    await p.drain();
    return p;
  }

  it("no overshoot beyond one call's reservation; refused steps fail with the budget's message; new runs are refused", async () => {
    // Calibration (another org, no budget): what one leaf call reserves. The leaves' calls are
    // the same in both runs (same agent, same-length input), so they reserve the same.
    const calRun = await fanOut(cal, "cal", { prompt_tokens: 10, completion_tokens: 10 });
    const calSnap = await calRun.snapshot();
    expect(calSnap.status, JSON.stringify(calSnap.steps.map((s) => [s.id, s.status, s.error]))).toBe("completed");
    const calRows = await rowsOfRun(calRun.run.runId);
    const leafReservations = new Set(calRows.filter((r) => r.agent === "Leaf").map((r) => r.reservedTokens));
    expect(leafReservations.size).toBe(1);
    const R = [...leafReservations][0]!;
    const rootFirst = calRows.find((r) => r.agent === "Root" && r.turn === 1)!.reservedTokens;
    expect(R).toBeGreaterThan(LEAF_MAX);

    // The budget: the root's first turn (2 tokens used) and room for two and a half leaves.
    // Each leaf uses exactly what it reserved, so however the batch interleaves, two fit and the third cannot.
    const budget = 2 + 2 * R + Math.floor(R / 2);
    expect(rootFirst).toBeLessThan(budget);
    const set = await orgFetch("usage-bud", "/settings/budget", json({ period: "month", maxTokens: budget }));
    expect(set.status).toBe(200);
    expect(await set.json()).toMatchObject({ used: { tokens: 0 }, newRunsRefused: null });

    const p = await fanOut(bud, "bud", { prompt_tokens: R - LEAF_MAX, completion_tokens: LEAF_MAX });
    const snap = await p.snapshot();
    const leaves = snap.steps.filter((s) => s.agent === "Leaf");
    expect(leaves).toHaveLength(N);
    const done = leaves.filter((s) => s.status === "completed");
    const refused = leaves.filter((s) => s.status === "failed");
    expect(done).toHaveLength(2);
    expect(refused).toHaveLength(N - 2);
    for (const s of refused) {
      expect(s.error).toMatch(new RegExp(`^the org's monthly budget of ${budget.toLocaleString("en-US")} tokens for ${monthOf()} is used up \\(.+ used, .+ reserved\\); the call needs up to ${R.toLocaleString("en-US")} tokens$`));
    }
    // what was used never passed the budget by more than one call's reservation (here: not at all)
    const view = (await (await orgFetch("usage-bud", "/settings/budget")).json()) as any;
    expect(view.reserved.tokens).toBe(0);
    expect(view.used.tokens).toBeLessThanOrEqual(budget + R);
    expect(view.used.tokens).toBeLessThanOrEqual(budget);
    const rows = await rowsOfRun(p.run.runId);
    expect(view.used.tokens).toBe(rows.reduce((n, r) => n + r.inputTokens + r.outputTokens, 0));
    expect(rows.filter((r) => r.agent === "Leaf")).toHaveLength(2);

    // a new run is refused, in the A2A form, saying why
    const refusedRun = await rpc("usage-bud", "Root", sendMessage("one more"));
    expect(refusedRun.status).toBe(200);
    expect(refusedRun.body.result).toBeUndefined();
    expect(refusedRun.body.error).toMatchObject({
      code: BUDGET_EXCEEDED_RPC_CODE,
      data: { reason: "BUDGET_EXCEEDED", domain: "shaman", metadata: { period: "month", month: monthOf() } },
    });
    expect(refusedRun.body.error.message).toMatch(new RegExp(`^the org's monthly budget of ${budget.toLocaleString("en-US")} tokens for ${monthOf()} is used up`));
    expect(view.newRunsRefused).toBe(refusedRun.body.error.message);

    // raising the budget lets runs start again
    expect((await orgFetch("usage-bud", "/settings/budget", json({ period: "month", maxTokens: budget * 10 }))).status).toBe(200);
    const again = await rpc("usage-bud", "Root", sendMessage("after raising", { returnImmediately: true }));
    expect(again.body.result?.task?.id).toBeTruthy();
    await runStub(env, again.body.result.task.id).cancel(bud.org.id, "not needed");

    // the cost reaches the audit trail with each model call
    const audit = await eventually(
      async () => ((await (await orgFetch("usage-bud", `/audit?action=model.call&runId=${p.run.runId}&limit=50`)).json()) as any).entries ?? [],
      (items: any[]) => items.filter((i: any) => i.outcome === "success").length >= 3,
    );
    const ok = audit.filter((i: any) => i.outcome === "success");
    expect(ok.length).toBeGreaterThanOrEqual(3);
    for (const a of ok) expect(a.summary.output.usage).toMatchObject({ costUsd: expect.any(Number), cachedInputTokens: 0, reasoningTokens: 0 });
    expect(ok.some((a: any) => a.summary.output.usage.costUsd > 0)).toBe(true);
  });

  it("a budget set mid-month starts from the month's usage so far", async () => {
    // the calibration org used tokens with no budget; setting one takes them in
    const month = (await (await orgFetch("usage-cal", "/usage")).json()) as any;
    expect(month.totals.totalTokens).toBeGreaterThan(0);
    const set = (await (await orgFetch("usage-cal", "/settings/budget", json({ period: "month", maxTokens: month.totals.totalTokens }))).json()) as any;
    expect(set.used.tokens).toBe(month.totals.totalTokens);
    expect(set.newRunsRefused).toMatch(/is used up/);
    expect((await orgFetch("usage-cal", "/settings/budget", { method: "DELETE" })).status).toBe(204);
    expect(((await (await orgFetch("usage-cal", "/settings/budget")).json()) as any).budget).toBeNull();
  });
});

describe("GET /usage", () => {
  let a: SeedResult;
  beforeAll(async () => {
    a = await seedOrg("usage-route", agents);
    await seedOrg("usage-other", agents);
  });

  const row = (over: Partial<NewUsageRecord>): NewUsageRecord => ({
    id: crypto.randomUUID(),
    orgId: a.org.id,
    runId: "r1",
    stepId: "s1",
    turn: 1,
    attempt: 1,
    agent: "Leaf",
    repositoryId: a.repository.id,
    model: "openai:gpt-4o-mini",
    inputTokens: 100,
    cachedInputTokens: 0,
    outputTokens: 10,
    reasoningTokens: 0,
    costUsd: 0.001,
    priced: true,
    reservedTokens: 0,
    reservedUsd: 0,
    at: Date.now(),
    ...over,
  });

  it("totals and groups by agent, model and day over a period; another org sees nothing", async () => {
    const d = (iso: string) => Date.parse(iso);
    await Promise.all(
      [
        row({ at: d("2026-03-01T00:00:00Z"), agent: "Root", model: "anthropic:claude-sonnet-4-5", inputTokens: 1_000, outputTokens: 100, costUsd: 0.0045 }),
        row({ at: d("2026-03-01T12:00:00Z"), costUsd: 0.002, cachedInputTokens: 40, reasoningTokens: 5 }),
        row({ at: d("2026-03-02T23:59:59Z"), model: "my-vllm:qwen3", costUsd: 0, priced: false }),
        row({ at: d("2026-04-01T00:00:00Z"), costUsd: 9 }), // the next month
        row({ at: d("2026-02-28T23:59:59Z"), costUsd: 9 }), // the month before
      ].map((r) => writeUsage(db(env), r)),
    );
    const get = async (q: string) => {
      const res = await orgFetch("usage-route", `/usage${q}`);
      expect(res.status, q).toBe(200);
      return (await res.json()) as any;
    };
    const march = await get("?from=2026-03-01&to=2026-04-01");
    expect(march.totals).toEqual({ calls: 3, inputTokens: 1_200, cachedInputTokens: 40, outputTokens: 120, reasoningTokens: 5, totalTokens: 1_320, costUsd: 0.0065, unpricedCalls: 1 });
    expect(march.from).toBe("2026-03-01T00:00:00.000Z");

    const byAgent = await get("?from=2026-03-01&to=2026-04-01&groupBy=agent");
    expect(byAgent.groups).toEqual([
      expect.objectContaining({ key: { agent: "Root", repositoryId: a.repository.id }, calls: 1, costUsd: 0.0045 }),
      expect.objectContaining({ key: { agent: "Leaf", repositoryId: a.repository.id }, calls: 2, costUsd: 0.002, unpricedCalls: 1 }),
    ]);
    const byModel = await get("?from=2026-03-01&to=2026-04-01&groupBy=model");
    expect(byModel.groups.map((g: any) => [g.key.model, g.calls])).toEqual([
      ["anthropic:claude-sonnet-4-5", 1],
      ["openai:gpt-4o-mini", 1],
      ["my-vllm:qwen3", 1],
    ]);
    const byDay = await get(`?from=${d("2026-03-01T00:00:00Z")}&to=${d("2026-04-01T00:00:00Z")}&groupBy=day`);
    expect(byDay.groups.map((g: any) => [g.key.day, g.calls])).toEqual([
      ["2026-03-01", 2],
      ["2026-03-02", 1],
    ]);

    // default period: this calendar month (the rows above are all in the past)
    await writeUsage(db(env), row({ costUsd: 0.5 }));
    const now = await get("");
    expect(now.totals).toMatchObject({ calls: 1, costUsd: 0.5 });
    expect(new Date(now.from).getUTCDate()).toBe(1);

    // another org sees none of it
    const other = (await (await orgFetch("usage-other", "/usage?from=2026-01-01&to=2027-01-01&groupBy=agent")).json()) as any;
    expect(other.totals.calls).toBe(0);
    expect(other.groups).toEqual([]);

    // a bad request is a problem, not a 500
    for (const q of ["?groupBy=user", "?from=yesterday", "?from=2026-04-01&to=2026-03-01"]) {
      const res = await orgFetch("usage-route", `/usage${q}`);
      expect(res.status, q).toBe(400);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
    }
  });

  it("is readable by the roles that read the audit trail, and not by a key without them", async () => {
    const key = async (permissions: unknown[]) => {
      const res = await orgFetch("usage-route", "/api-keys", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: `k-${crypto.randomUUID()}`, permissions }) });
      return ((await res.json()) as any).apiKey.key as string;
    };
    const withKey = async (k: string) => (await orgFetch("usage-route", "/usage", { headers: { authorization: `Bearer ${k}` } })).status;
    expect(await withKey(await key([{ resource: "/audit", action: "read" }]))).toBe(200);
    expect(await withKey(await key([{ resource: "/usage", action: "read" }]))).toBe(200);
    expect(await withKey(await key([{ resource: "/runs/*", action: "read" }]))).toBe(403);
    const budgetWrite = await orgFetch("usage-route", "/settings/budget", { ...json({ period: "month", maxTokens: 1 }), headers: { "content-type": "application/json", authorization: `Bearer ${await key([{ resource: "/audit", action: "read" }])}` } });
    expect(budgetWrite.status).toBe(403);
  });
});
