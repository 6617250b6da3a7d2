/**
 * A run whose jobs the test delivers ("the pump"), and the scripted model server's helpers:
 * shared by the run-level tests (test/workflow.test.ts, test/tools.test.ts).
 */
import { createExecutionContext, createMessageBatch, getQueueResult, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { RunObject } from "../durable-objects/run-object";
import { runStub } from "../src/runs/stub";
import type { Job, RunEvent, RunInit, RunJob, RunSnapshot } from "../src/runs/types";
import type { RunLimits } from "../src/workflow/types";
import worker from "../workers/index";
import type { SeedResult } from "./helpers";

export const compat = () => env.TEST_OPENAI_URL.replace(/\/v1$/, "");
export const modelEnv = () => ({ ...env, OPENAI_BASE_URL: env.TEST_OPENAI_URL, OPENAI_API_KEY: undefined }) as Env;

export type Turn = { toolCalls?: Array<{ name: string; arguments: unknown }>; text?: string; status?: number; times?: number; repeat?: boolean };

export async function script(key: string, turns: Turn[]): Promise<void> {
  const res = await fetch(`${compat()}/__scripts`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key, turns }) });
  if (!res.ok) throw new Error(`script ${key}: ${res.status} ${await res.text()}`);
}

export const call = (agentName: string, input: string) => ({ name: "call_agent", arguments: { agent: agentName, input } });
export const complete = (result: string, status = "SUCCESS") => ({ name: "complete_agent_execution", arguments: { result, status } });

/** Model requests of the steps whose input (their first user message) mentions `marker` (a script key). */
export async function requestsFor(marker: string): Promise<any[]> {
  const all = (await (await fetch(`${compat()}/__requests`)).json()) as any[];
  const input = (r: any) => {
    const first = r.messages.find((m: any) => m.role === "user");
    return typeof first?.content === "string" ? first.content : JSON.stringify(first?.content ?? "");
  };
  return all.filter((r) => input(r).includes(marker));
}

/** A run whose jobs the test delivers. */
export class Pump {
  readonly sent: RunJob[] = [];
  readonly run: RunInit;
  constructor(
    private readonly seed: SeedResult,
    agentName: string, text: string, limits?: Partial<RunLimits>, private readonly extraEnv: Record<string, string> = {}) {
    this.run = {
      runId: crypto.randomUUID(),
      orgId: this.seed.org.id,
      contextId: "ctx",
      agent: { name: agentName, repositoryId: this.seed.repository.id, commit: this.seed.commit, path: `${agentName}/prompt.md` },
      initiatedBy: null,
      message: { messageId: crypto.randomUUID(), role: "user", parts: [{ kind: "text", text }] },
      ...(limits ? { limits } : {}),
    };
  }
  get stub() {
    return runStub(env, this.run.runId);
  }
  async start(): Promise<void> {
    const sent = this.sent;
    await runInDurableObject(env.RUNS.get(env.RUNS.idFromName(this.run.runId)), async (obj: RunObject) => {
      const JOBS = {
        send: async (job: RunJob) => void sent.push(job),
        sendBatch: async (msgs: Array<{ body: RunJob }>) => void sent.push(...msgs.map((m) => m.body)),
      };
      Object.defineProperty(obj, "env", { value: { ...env, ...this.extraEnv, JOBS }, configurable: true });
      await obj.start(this.run, 0);
    });
  }
  /** Takes the recorded jobs (all, or those matching `pick`). */
  take(pick: (j: RunJob) => boolean = () => true): RunJob[] {
    const taken = this.sent.filter(pick);
    for (const j of taken) this.sent.splice(this.sent.indexOf(j), 1);
    return taken;
  }
  /** The env the executor runs with (the scripted model server unless told otherwise). */
  executorEnv: Env = modelEnv();
  async deliver(jobs: RunJob[], attempts = 1) {
    const batch = createMessageBatch<Job>("shaman-jobs", jobs.map((body) => ({ id: crypto.randomUUID(), attempts, timestamp: new Date(), body })));
    const ctx = createExecutionContext();
    await worker.queue(batch, this.executorEnv, ctx);
    return getQueueResult(batch, ctx);
  }
  /** Delivers every job until none is left (each round one batch, concurrently). */
  async drain(rounds = 20): Promise<void> {
    for (let i = 0; i < rounds && this.sent.length > 0; i++) await this.deliver(this.take());
  }
  async snapshot(): Promise<RunSnapshot> {
    return (await this.stub.snapshot(this.run.orgId))!;
  }
  async events(): Promise<RunEvent[]> {
    return (await this.stub.events(this.run.orgId, 0, 500))!;
  }
}

