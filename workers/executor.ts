/**
 * The queue consumer: the worker role. Each message is one agent step. Messages of a
 * batch run concurrently (locally only one batch per queue is in flight, so this is
 * where parallelism comes from). A step: claim it from the run object, load the agent
 * from its snapshot (cached per isolate by commit), run the model, report the result.
 */
import { generateText, type ModelMessage } from "ai";
import { loadAgent } from "../src/agents/snapshot";
import { auditId, writeAuditMany, type AuditEntry } from "../src/audit/log";
import { writeUsageMany, type NewUsageRecord } from "../src/usage/records";
import { redact } from "../src/audit/redact";
import { db } from "../src/db/client";
import { AppError } from "../src/errors";
import { messageText } from "../src/workflow/machine";
import { runTurn } from "../src/workflow/turn";
import { runCall } from "../src/workflow/call";
import { orgModelConfig, resolveModel } from "../src/llm/registry";
import { orgById } from "../src/db/orgs";
import { syncRepository } from "../src/repos/sync";
import type { AuditJob, Job, StepContext, StepResult, SyncJob } from "../src/runs/types";

/** Must match `max_retries` + 1 in wrangler.toml. */
export const MAX_ATTEMPTS = 4;

/** An audit job stays well under the queue's 128 KB message limit. */
const AUDIT_JOB_CHARS = 96_000;

/**
 * Audit rows of one batch, written together at the end of it: one D1 batch per org
 * instead of two inserts per step. Each row gets its id when it is added, so writing it
 * again (a retried audit job) cannot duplicate it.
 */
class AuditBuffer {
  private readonly byOrg = new Map<string, AuditEntry[]>();
  /** Usage rows of the batch's model calls, written with the audit rows (off each turn's path). */
  private readonly usageByOrg = new Map<string, NewUsageRecord[]>();
  add(orgId: string, entry: AuditEntry): void {
    const at = entry.at ?? Date.now();
    const row = { ...entry, at, id: entry.id ?? auditId(at) };
    const list = this.byOrg.get(orgId);
    if (list) list.push(row);
    else this.byOrg.set(orgId, [row]);
  }

  addUsage(row: NewUsageRecord): void {
    const list = this.usageByOrg.get(row.orgId);
    if (list) list.push(row);
    else this.usageByOrg.set(row.orgId, [row]);
  }

  /**
   * Makes the buffered rows durable: in D1, or, if D1 refuses, as audit jobs on the queue
   * (written to D1 later, retried until they land). Returns the orgs whose rows are
   * neither: their messages must not be acked.
   */
  async flush(env: Env): Promise<Set<string>> {
    const d = db(env);
    const failed = new Set<string>();
    const orgIds = new Set([...this.byOrg.keys(), ...this.usageByOrg.keys()]);
    await Promise.all(
      [...orgIds].map(async (orgId) => {
        const entries = this.byOrg.get(orgId) ?? [];
        const usage = this.usageByOrg.get(orgId) ?? [];
        try {
          await Promise.all([writeAuditMany(d, orgId, entries), writeUsageMany(d, usage)]);
        } catch (err) {
          if (orgGone(err)) return; // the org was deleted meanwhile: its audit trail went with it
          console.error(`executor: audit write for ${orgId} failed, queueing the rows: ${errorText(err)}`);
          try {
            // Both writes ignore rows that exist already, so queueing all of them again is safe.
            await Promise.all(auditJobs(orgId, entries, usage).map((job) => env.JOBS.send(job)));
          } catch (queueErr) {
            console.error(`executor: could not queue the audit rows of ${orgId} either: ${errorText(queueErr)}`);
            failed.add(orgId);
          }
        }
      }),
    );
    this.byOrg.clear();
    this.usageByOrg.clear();
    return failed;
  }
}

/** The rows as audit jobs (redacted before they leave, as they would be in D1). */
function auditJobs(orgId: string, entries: readonly AuditEntry[], usage: readonly NewUsageRecord[] = []): AuditJob[] {
  const jobs: AuditJob[] = [];
  let chunk: AuditEntry[] = [];
  let size = 0;
  for (const e of entries) {
    const row: AuditEntry = {
      ...e,
      ...(e.input !== undefined ? { input: redact(e.input) } : {}),
      ...(e.output !== undefined ? { output: redact(e.output) } : {}),
      ...(e.error !== undefined ? { error: redact(e.error) } : {}),
    };
    const rowSize = JSON.stringify(row).length;
    if (chunk.length > 0 && size + rowSize > AUDIT_JOB_CHARS) {
      jobs.push({ kind: "audit", orgId, entries: chunk });
      chunk = [];
      size = 0;
    }
    chunk.push(row);
    size += rowSize;
  }
  if (chunk.length > 0 || jobs.length === 0) jobs.push({ kind: "audit", orgId, entries: chunk });
  // Usage rows are small (a few hundred bytes each, one per model call): they ride with the first job.
  if (usage.length > 0) jobs[0] = { ...jobs[0]!, usage: [...usage] };
  return jobs;
}

/** What to do with a step message once the batch's audit rows are durable. */
type Decision = { orgId: string | null; retry: boolean };

/**
 * Handles a batch. A step message is acked only after the audit rows it produced are
 * durable (`flush` first): if they are not, the message is retried instead. Retrying is
 * cheap: a redelivered job for a finished step is acked at `claimStep` without calling
 * the model.
 */
export async function handleJobs(batch: MessageBatch<Job>, env: Env): Promise<void> {
  const audit = new AuditBuffer();
  const decisions = await Promise.all(batch.messages.map((message) => handleJob(message, env, audit)));
  const notDurable = await audit.flush(env);
  batch.messages.forEach((message, i) => {
    const decision = decisions[i];
    if (!decision) return; // settled by its handler (syncs, audit jobs, malformed jobs)
    if (decision.retry || (decision.orgId !== null && notDurable.has(decision.orgId))) {
      message.retry({ delaySeconds: backoffSeconds(message.attempts) });
    } else {
      message.ack();
    }
  });
}

async function handleJob(message: Message<Job>, env: Env, audit: AuditBuffer): Promise<Decision | void> {
  const job = message.body;
  if (job?.kind === "sync") return handleSync(message as Message<SyncJob>, env);
  if (job?.kind === "audit") return handleAuditJob(message as Message<AuditJob>, env);
  if (job?.kind === "call" && typeof job.runId === "string" && typeof job.stepId === "string" && typeof job.callId === "string" && typeof job.turn === "number") {
    // An MCP tool or an external agent's task: src/workflow/call.ts.
    const orgId = job.orgId;
    return runCall(job, env, (entry) => audit.add(orgId, entry));
  }
  if (!job || job.kind !== "step" || typeof job.runId !== "string" || typeof job.stepId !== "string") {
    console.error("executor: dropping malformed job");
    message.ack();
    return;
  }
  // The turn loop lives in src/workflow/turn.ts; this adapter only maps its outcome to the queue.
  const orgId = job.orgId;
  return runTurn(
    { runId: job.runId, orgId, stepId: job.stepId, turn: typeof job.turn === "number" && job.turn >= 1 ? job.turn : 1, token: job.token, agent: job.agent },
    message.attempts,
    MAX_ATTEMPTS,
    env,
    (id) => orgModelConfig(env, id),
    (entry) => audit.add(orgId, entry),
    (row) => audit.addUsage(row),
  );
}

/**
 * Audit rows that could not be written with their batch. Their ids were made when they
 * were recorded, so a redelivery after a write that landed adds nothing. A failing write
 * is retried by the queue (and kept in its dead-letter queue after the last attempt).
 */
async function handleAuditJob(message: Message<AuditJob>, env: Env): Promise<void> {
  const job = message.body;
  if (typeof job.orgId !== "string" || !Array.isArray(job.entries)) {
    console.error("executor: dropping malformed audit job");
    message.ack();
    return;
  }
  try {
    await Promise.all([writeAuditMany(db(env), job.orgId, job.entries), Array.isArray(job.usage) ? writeUsageMany(db(env), job.usage) : null]);
    message.ack();
  } catch (err) {
    if (orgGone(err)) {
      message.ack();
      return;
    }
    console.error(`executor: audit job for ${job.orgId} failed: ${errorText(err)}`);
    message.retry({ delaySeconds: backoffSeconds(message.attempts) });
  }
}

/** D1 refused the rows because their org no longer exists (drizzle puts D1's reason in `cause`). */
function orgGone(err: unknown): boolean {
  const cause = err instanceof Error ? err.cause : undefined;
  return /FOREIGN KEY constraint failed/i.test(`${errorText(err)} ${cause === undefined ? "" : errorText(cause)}`);
}

/** The model configuration for an org (moved to src/llm/registry.ts; re-exported for callers here). */
export { orgModelConfig };

type AuditSink = (entry: Omit<AuditEntry, "actor">) => void;

/**
 * A repository sync asked for by a webhook or the sweep. The sync records its own failures
 * on the repository (and the sweep retries them), so the message is acked either way; only
 * an error before the sync could record anything (D1 unreachable) goes back to the queue.
 */
async function handleSync(message: Message<SyncJob>, env: Env): Promise<void> {
  const job = message.body;
  try {
    const scope = typeof job.orgId === "string" ? await orgById(db(env), job.orgId) : null;
    if (!scope || typeof job.repositoryId !== "string") {
      message.ack();
      return;
    }
    const outcome = await syncRepository(env, scope, job.repositoryId, {
      trigger: job.trigger,
      actor: job.trigger === "webhook" ? "webhook" : "system",
      force: job.force === true,
    });
    if (outcome.status === "failed") console.warn(`sync ${scope.slug}/${job.repositoryId} (${job.trigger}): ${outcome.error?.message ?? "failed"}`);
    message.ack();
  } catch (err) {
    if (err instanceof AppError && err.code === "NOT_FOUND") {
      message.ack(); // the repository was removed meanwhile
      return;
    }
    console.error(`executor: sync job ${job.repositoryId} failed: ${errorText(err)}`);
    if (message.attempts < MAX_ATTEMPTS) message.retry({ delaySeconds: backoffSeconds(message.attempts) });
    else message.ack();
  }
}

/**
 * One model call for a step, without platform tools and without reporting it: the queue
 * path runs turns (`runTurn`); this stays for callers that want a bare model answer with
 * the org's model configuration (the provider-key tests use it).
 */
export async function runStep(ctx: StepContext, env: Env, audit: AuditSink = () => {}): Promise<StepResult> {
  const [agent, cfg] = await Promise.all([loadAgent(env.SNAPSHOTS, ctx.orgId, ctx.agent), orgModelConfig(env, ctx.orgId)]);
  const { model, id } = resolveModel(cfg, agent.frontmatter.model);
  const started = Date.now();
  const message: ModelMessage = { role: "user", content: messageText(ctx.input) };
  let result: Awaited<ReturnType<typeof generateText>>;
  try {
    result = await generateText({
      model,
      system: agent.systemPrompt,
      messages: [message],
      ...(agent.frontmatter.temperature !== undefined ? { temperature: agent.frontmatter.temperature } : {}),
      ...(agent.frontmatter.maxTokens !== undefined ? { maxOutputTokens: agent.frontmatter.maxTokens } : {}),
      // Retries go through the queue (with backoff), not inside one consumer invocation.
      maxRetries: 0,
    });
  } catch (err) {
    audit({ action: "model.call", resource: `/models/${id}`, outcome: "error", durationMs: Date.now() - started, input: { prompt: message.content }, error: errorText(err) });
    throw err;
  }
  audit({
    action: "model.call",
    resource: `/models/${id}`,
    outcome: "success",
    durationMs: Date.now() - started,
    input: { prompt: message.content },
    output: { text: result.text, usage: { inputTokens: result.usage.inputTokens ?? null, outputTokens: result.usage.outputTokens ?? null } },
  });
  return {
    text: result.text,
    model: id,
    durationMs: Date.now() - started,
    usage: { inputTokens: result.usage.inputTokens, outputTokens: result.usage.outputTokens },
  };
}

/** Exponential backoff with full jitter (1 s, 2 s, 4 s … at most 30 s, each drawn at random up to that), so retries of many steps spread out. */
function backoffSeconds(attempts: number): number {
  const cap = Math.min(30, 2 ** Math.max(0, attempts - 1));
  return Math.max(1, Math.ceil(Math.random() * cap));
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
