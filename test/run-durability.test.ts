/**
 * Runs reach D1 durably (the run object retries through its alarm, idempotently), the
 * executor acks a message only after its audit rows are durable, and run ids are checked
 * against the org's D1 rows before any run object is addressed.
 */
import { createExecutionContext, createMessageBatch, getQueueResult, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { RunObject } from "../durable-objects/run-object";
import { runStub } from "../src/runs/stub";
import type { AuditJob, Job, RunInit } from "../src/runs/types";
import worker from "../workers/index";
import { keyOf, orgFetch, rpc, seedOrg, sendMessage, type SeedResult } from "./helpers";

const ORG = "durable";
const OTHER = "durable-other";
let seed: SeedResult;
beforeAll(async () => {
  seed = await seedOrg(ORG);
  await seedOrg(OTHER);
});

/** A D1 binding whose batches fail on demand: before they run, or after they committed. */
function flakyD1() {
  const ctl = { failBefore: false, failAfterCommit: false };
  const real = env.DB;
  const DB = new Proxy(real, {
    get(target, prop) {
      if (prop === "batch") {
        return async (statements: D1PreparedStatement[]) => {
          if (ctl.failBefore) throw new Error("D1 is unavailable (injected)");
          const result = await target.batch(statements);
          if (ctl.failAfterCommit) throw new Error("connection lost after the commit (injected)");
          return result;
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { DB, ctl };
}

function newRun(text = "hello"): RunInit {
  return {
    runId: crypto.randomUUID(),
    orgId: seed.org.id,
    contextId: crypto.randomUUID(),
    agent: { name: "ProcessInvoice", repositoryId: seed.repository.id, commit: seed.commit, path: "ProcessInvoice/prompt.md" },
    initiatedBy: "key:test",
    message: { messageId: crypto.randomUUID(), role: "user", parts: [{ kind: "text", text }] },
    audit: { resource: "/agents/ProcessInvoice", requestId: "req-durable", input: { commit: seed.commit } },
  };
}

const objectOf = (runId: string) => env.RUNS.get(env.RUNS.idFromName(runId));

/** Starts a run in its object with `overrides` (bindings) in place of the real ones for the object's life. */
async function startWith(run: RunInit, overrides: Partial<Env>) {
  const stub = objectOf(run.runId);
  const snapshot = await runInDurableObject(stub, async (obj: RunObject) => {
    Object.defineProperty(obj, "env", { value: { ...env, ...overrides }, configurable: true });
    return obj.start(run, 0);
  });
  return { stub, snapshot };
}

const runRow = (runId: string) => env.DB.prepare("SELECT status, error, completed_at FROM runs WHERE id = ?").bind(runId).first<{ status: string; error: string | null; completed_at: number | null }>();
const auditRows = async (runId: string, action: string) =>
  (await env.DB.prepare("SELECT id, outcome, summary FROM audit_log WHERE run_id = ? AND action = ?").bind(runId, action).all<{ id: string; outcome: string; summary: string }>()).results;
const alarmOf = (stub: DurableObjectStub) => runInDurableObject(stub, (_: RunObject, state) => state.storage.getAlarm());

describe("a finished run always reaches D1", () => {
  it("keeps the alarm armed until the status and exactly one agent.call row land", async () => {
    const run = newRun("durable settle");
    const { DB, ctl } = flakyD1();
    const { stub } = await startWith(run, { DB, JOBS: { send: async () => {} } as unknown as Queue });
    expect(await runRow(run.runId)).toMatchObject({ status: "submitted" });

    // The settle's D1 batch fails: the run is settled in the object, D1 does not have it yet.
    ctl.failBefore = true;
    const before = Date.now();
    await runInDurableObject(stub, async (obj: RunObject) => {
      await obj.claimStep(run.orgId, "s1");
      await obj.completeStep(run.orgId, "s1", { text: "settled answer", model: "offline:x", durationMs: 1 });
    });
    expect((await runStub(env, run.runId).snapshot(run.orgId))?.status).toBe("completed");
    // (D1 may have the run's working status, written while it ran; not the settle)
    expect(["submitted", "working"]).toContain((await runRow(run.runId))?.status);
    expect(await auditRows(run.runId, "agent.call")).toHaveLength(0);
    // A retry is armed well before the 30 min timeout.
    const retryAt = await alarmOf(stub);
    expect(retryAt).not.toBeNull();
    expect(retryAt!).toBeLessThan(before + 15 * 60_000);

    // The retry's write lands, but its answer is lost: the object must try again, and the
    // second write must not add a second audit row.
    ctl.failBefore = false;
    ctl.failAfterCommit = true;
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await runRow(run.runId)).toMatchObject({ status: "completed" });
    expect(await auditRows(run.runId, "agent.call")).toHaveLength(1);
    expect(await alarmOf(stub)).not.toBeNull();

    ctl.failAfterCommit = false;
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const row = await runRow(run.runId);
    expect(row).toMatchObject({ status: "completed", error: null });
    expect(row?.completed_at).toBeGreaterThan(0);
    const calls = await auditRows(run.runId, "agent.call");
    expect(calls).toHaveLength(1);
    expect(calls[0]?.outcome).toBe("success");
    const summary = JSON.parse(calls[0]!.summary);
    expect(summary.input).toEqual({ message: run.message.parts, commit: seed.commit });
    expect(summary.output).toEqual({ status: "completed", text: "settled answer" });
    // Done: nothing left for the alarm (the run has ended, D1 is up to date).
    expect(await alarmOf(stub)).toBeNull();
  });

  it("a retry due before the deadline is not a timeout; the timeout still fires after it", async () => {
    const run = newRun("row retry");
    const { DB } = flakyD1();
    // The summary row's insert (a single statement, not a batch) fails once at start.
    let failRow = true;
    const rowFailing = new Proxy(DB, {
      get(target, prop) {
        if (prop === "prepare") {
          return (query: string) => {
            if (failRow && query.startsWith('insert into "runs"')) throw new Error("D1 is unavailable (injected)");
            return target.prepare(query);
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const { stub } = await startWith(run, { DB: rowFailing, JOBS: { send: async () => {} } as unknown as Queue });
    expect(await runRow(run.runId)).toBeNull();
    failRow = false;
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    // The retry wrote the row and did not time the run out; the alarm is back at the deadline.
    expect(await runRow(run.runId)).toMatchObject({ status: "submitted" });
    expect((await runStub(env, run.runId).snapshot(run.orgId))?.status).toBe("submitted");
    expect(await alarmOf(stub)).toBeGreaterThan(Date.now() + 25 * 60_000);
    // The deadline alarm fails the run, in the object and in D1, with its audit row.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await runRow(run.runId)).toMatchObject({ status: "failed", error: expect.stringContaining("timed out") });
    expect((await auditRows(run.runId, "agent.call")).map((r) => r.outcome)).toEqual(["error"]);
  });

  it("a queue send failure settles the run as failed in D1, with its audit row", async () => {
    const run = newRun("never queued");
    const { stub, snapshot } = await startWith(run, {
      JOBS: {
        send: async () => {
          throw new Error("queue unavailable (injected)");
        },
      } as unknown as Queue,
    });
    expect(snapshot).toMatchObject({ status: "failed", error: "the run could not be queued; try again" });
    expect(await runRow(run.runId)).toMatchObject({ status: "failed", error: "the run could not be queued; try again" });
    const calls = await auditRows(run.runId, "agent.call");
    expect(calls.map((r) => r.outcome)).toEqual(["error"]);
    expect(await alarmOf(stub)).toBeNull();
  });

  it("a start that fails leaves no run row behind", async () => {
    const count = async () => (await env.DB.prepare("SELECT count(*) AS n FROM runs WHERE org_id = ?").bind(seed.org.id).first<{ n: number }>())?.n;
    const before = await count();
    // The run object cannot be reached: every start throws.
    const RUNS = new Proxy(env.RUNS, {
      get(target, prop) {
        if (prop === "get") {
          return () => ({
            start: async () => {
              throw new Error("Durable Object reset (injected)");
            },
          });
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const res = await gatewayFetch(`/a2a/agents/ProcessInvoice`, { ...env, RUNS } as Env, {
      method: "POST",
      headers: { "content-type": "application/json", "a2a-version": "1.0" },
      body: JSON.stringify(sendMessage("will not start")),
    });
    const body = (await res.json()) as any;
    expect(body.error).toMatchObject({ code: -32603, message: "The task could not be started; try again" });
    expect(await count()).toBe(before);
  });

  it("stores a large message once in the run record, and the audit row still shows it", async () => {
    const marker = `MARKER-${crypto.randomUUID()}`;
    const text = `${marker} ${"lorem ipsum ".repeat(20_000)}`;
    const r = await rpc(ORG, "Summarize", sendMessage(text, { returnImmediately: true }));
    const taskId = r.body.result.task.id as string;
    const record = await runInDurableObject(objectOf(taskId), (_: RunObject, state) => state.storage.kv.get<Record<string, unknown>>("run"));
    // (the offline model echoes the request into the output: leave that out)
    const stored = JSON.stringify({ ...record, output: null });
    expect(stored.split(marker).length - 1).toBe(1);
    await runStub(env, taskId).wait(seed.org.id, 10_000);
    const calls = await eventuallyRows(taskId, "agent.call");
    expect(calls).toHaveLength(1);
    expect(JSON.parse(calls[0]!.summary).input.message[0].text).toContain(marker);
  });
});

async function eventuallyRows(runId: string, action: string) {
  for (let i = 0; i < 200; i++) {
    const rows = await auditRows(runId, action);
    if (rows.length > 0) return rows;
    await new Promise((r) => setTimeout(r, 50));
  }
  return auditRows(runId, action);
}

function gatewayFetch(path: string, testEnv: Env, init: RequestInit = {}, slug = ORG) {
  const headers = new Headers(init.headers);
  if (!headers.has("authorization")) headers.set("authorization", `Bearer ${keyOf(slug)}`);
  return worker.fetch(new Request(`http://${slug}.localhost${path}`, { ...init, headers }), testEnv, createExecutionContext());
}

// ---- executor: audit rows durable before the ack -------------------------------------

async function startUnqueued(run: RunInit): Promise<Job> {
  const sent: Job[] = [];
  await startWith(run, { JOBS: { send: async (job: Job) => void sent.push(job) } as unknown as Queue });
  expect(sent).toHaveLength(1);
  return sent[0]!;
}

async function deliver(jobs: Job[], testEnv: Env, attempts = 1) {
  const batch = createMessageBatch<Job>(
    "shaman-jobs",
    jobs.map((body) => ({ id: crypto.randomUUID(), attempts, timestamp: new Date(), body })),
  );
  const ctx = createExecutionContext();
  await worker.queue(batch, testEnv, ctx);
  return getQueueResult(batch, ctx);
}

const stepStarts = async (run: RunInit) => (await runStub(env, run.runId).events(run.orgId))?.filter((e) => e.type === "step.started").length;

describe("the executor acks a step only once its audit rows are durable", () => {
  it("retries the message when neither D1 nor the queue takes the rows; the redelivery does not run the model", async () => {
    const run = newRun("audit must land");
    const job = await startUnqueued(run);
    const { DB, ctl } = flakyD1();
    ctl.failBefore = true;
    const refusing = {
      ...env,
      DB,
      JOBS: {
        send: async () => {
          throw new Error("queue unavailable (injected)");
        },
      },
    } as unknown as Env;
    const first = await deliver([job], refusing);
    expect(first.explicitAcks).toEqual([]);
    expect(first.retryMessages).toHaveLength(1);
    // The step itself finished (its result is in the run object).
    expect((await runStub(env, run.runId).snapshot(run.orgId))?.status).toBe("completed");
    expect(await stepStarts(run)).toBe(1);

    const again = await deliver([job], env as Env, 2);
    expect(again.explicitAcks).toHaveLength(1);
    expect(await stepStarts(run)).toBe(1); // claimStep refused it: no second model call
  });

  it("queues the rows as an audit job when D1 refuses them, acks, and the job writes each row once", async () => {
    const run = newRun("audit via the queue");
    const job = await startUnqueued(run);
    const { DB, ctl } = flakyD1();
    ctl.failBefore = true;
    const queued: Job[] = [];
    const d1Down = { ...env, DB, JOBS: { send: async (j: Job) => void queued.push(j) } } as unknown as Env;
    const result = await deliver([job], d1Down);
    expect(result.explicitAcks).toHaveLength(1);
    expect(await auditRows(run.runId, "step.run")).toHaveLength(0);
    expect(queued.map((j) => j.kind)).toEqual(["audit"]);
    const auditJob = queued[0] as AuditJob;
    expect(auditJob.entries.map((e) => e.action).sort()).toEqual(["model.call", "step.run"]);
    // The model call's usage row was written with the batch's audit rows, so it rides along too.
    expect(auditJob.usage?.map((u) => [u.runId, u.turn])).toEqual([[run.runId, 1]]);
    const usageRows = () => env.DB.prepare("SELECT count(*) AS n FROM usage_records WHERE run_id = ?").bind(run.runId).first<{ n: number }>();
    expect((await usageRows())?.n).toBe(0);

    // Delivered twice (a redelivery after a write that landed): still one row each.
    expect((await deliver([auditJob], env as Env)).explicitAcks).toHaveLength(1);
    expect((await deliver([auditJob], env as Env, 2)).explicitAcks).toHaveLength(1);
    expect(await auditRows(run.runId, "step.run")).toHaveLength(1);
    expect(await auditRows(run.runId, "model.call")).toHaveLength(1);
    expect((await usageRows())?.n).toBe(1);
  });

  it("retries an audit job while D1 refuses it", async () => {
    const run = newRun("audit job retry");
    const entry = { id: `${Date.now().toString(36).padStart(12, "0")}zzzzzzzzzz`, at: Date.now(), actor: "system", runId: run.runId, action: "step.run", resource: "/agents/x", outcome: "success" as const };
    const auditJob: AuditJob = { kind: "audit", orgId: seed.org.id, entries: [entry] };
    const { DB, ctl } = flakyD1();
    ctl.failBefore = true;
    const result = await deliver([auditJob], { ...env, DB } as Env);
    expect(result.retryMessages).toHaveLength(1);
    expect(result.explicitAcks).toHaveLength(0);
    expect(await auditRows(run.runId, "step.run")).toHaveLength(0);
  });
});

// ---- no run oracle --------------------------------------------------------------------

describe("run ids are checked against the org's D1 rows first", () => {
  let ownRun: string;
  beforeAll(async () => {
    ownRun = (await rpc(ORG, "Summarize", sendMessage("mine"))).body.result.task.id;
  });

  /** The RUNS namespace, recording every use. */
  function watchedRuns() {
    const uses: string[] = [];
    const RUNS = new Proxy(env.RUNS, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          uses.push(String(prop));
          return value.apply(target, args);
        };
      },
    });
    return { RUNS, uses };
  }

  const strip = (body: any) => JSON.stringify({ ...body, requestId: undefined, error: body.error && { ...body.error, data: undefined } });

  async function answers(runId: string, testEnv: Env) {
    const out: { status: number; body: string }[] = [];
    for (const [path, init] of [
      [`/runs/${runId}`, {}],
      [`/runs/${runId}/events?after=0`, {}],
      [`/runs/${runId}/ws`, { headers: { upgrade: "websocket" } }],
    ] as const) {
      const res = await gatewayFetch(path, testEnv, init, OTHER);
      out.push({ status: res.status, body: strip(await res.json()) });
    }
    const getTask = { jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: runId } };
    const more = sendMessage("more");
    (more.params.message as any).taskId = runId;
    for (const body of [getTask, more]) {
      const res = await gatewayFetch(`/a2a/agents/Summarize`, testEnv, { method: "POST", headers: { "content-type": "application/json", "a2a-version": "1.0" }, body: JSON.stringify(body) }, OTHER);
      out.push({ status: res.status, body: strip(await res.json()) });
    }
    return out;
  }

  it("answers a never-issued id exactly like another org's run, without addressing a run object", async () => {
    const never = crypto.randomUUID();
    const watched = watchedRuns();
    const neverAnswers = await answers(never, { ...env, RUNS: watched.RUNS } as Env);
    const otherAnswers = await answers(ownRun, { ...env, RUNS: watched.RUNS } as Env);
    expect(neverAnswers).toEqual(otherAnswers);
    expect(neverAnswers.map((a) => a.status)).toEqual([404, 404, 404, 200, 200]);
    expect(JSON.parse(neverAnswers[3]!.body).error.code).toBe(-32001);
    expect(watched.uses).toEqual([]);

    // The watch sees real uses: the owner's own read goes to the run object.
    const mine = await gatewayFetch(`/runs/${ownRun}`, { ...env, RUNS: watched.RUNS } as Env);
    expect(mine.status).toBe(200);
    expect(watched.uses.length).toBeGreaterThan(0);
  });

  it("the owner still reads its run, its events and its task", async () => {
    expect((await orgFetch(ORG, `/runs/${ownRun}`)).status).toBe(200);
    expect((await orgFetch(ORG, `/runs/${ownRun}/events`)).status).toBe(200);
    const got = await rpc(ORG, "Summarize", { jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: ownRun } });
    expect(got.body.result.id).toBe(ownRun);
  });
});
