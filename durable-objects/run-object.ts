/**
 * One Durable Object per run. It owns the run's state (its steps) and an append-only
 * event log with sequence numbers, and fans events out to WebSocket subscribers through
 * the hibernation API. Model calls never happen here: an object may be evicted while it
 * awaits an outbound fetch, so the work is done by the queue consumer, which reports back.
 *
 * Creating a SQLite-backed object costs a few milliseconds per table, and a run creates
 * one object, so the schema is two small tables plus the run record in the sync KV.
 */
import { DurableObject } from "cloudflare:workers";
import { auditId, type AuditEntry } from "../src/audit/log";
import { redactText } from "../src/audit/redact";
import { config } from "../src/config";
import { db } from "../src/db/client";
import { writeRunSummary, type RunSummary } from "../src/db/runs";
import { AppError, problemResponse } from "../src/errors";
import type { RunRpc } from "../src/runs/stub";
import {
  TERMINAL_RUN_STATUSES,
  type StepJob,
  type Json,
  type RunEvent,
  type RunEventType,
  type RunInit,
  type RunSnapshot,
  type RunStatus,
  type StepContext,
  type StepResult,
  type StepStatus,
  type StepView,
} from "../src/runs/types";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS steps (
  id TEXT PRIMARY KEY,
  parent_id TEXT,
  agent TEXT NOT NULL,
  status TEXT NOT NULL,
  depth INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  output TEXT,
  error TEXT,
  model TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY,
  type TEXT NOT NULL,
  step_id TEXT,
  at INTEGER NOT NULL,
  data TEXT NOT NULL
);`;

/** The run record, kept in the object's synchronous KV. */
interface RunRecord extends RunInit {
  status: RunStatus;
  output: string | null;
  error: string | null;
  createdAt: number;
  updatedAt: number;
  nextStep: number;
  /** When the run times out (the alarm fails it then). */
  deadline: number;
  /**
   * What D1 is known to hold of this run: nothing yet, its summary row, or its final
   * status with the `agent.call` audit row; "abandoned" after a permanent failure.
   */
  d1: "none" | "row" | "final" | "abandoned";
  /** Failed D1 writes in a row, and when the alarm tries again (null: nothing pending). */
  d1Failures: number;
  d1RetryAt: number | null;
  /** Set when the run settles: the time and the id of its `agent.call` audit row, made
   * once so that every retry of the settle writes the same row. */
  settledAt: number | null;
  auditId: string | null;
}

/** Header the gateway sets with the caller's org; the object answers 404 to any other org. */
export const ORG_HEADER = "x-shaman-org-id";

const FINISHED_STEP: ReadonlySet<string> = new Set<StepStatus>(["completed", "failed", "canceled"]);
const REPLAY_PAGE = 500;
/** A failed D1 write is tried again after 1 s, 2 s, 4 s, … at most 10 min apart, ~1 week in all. */
const D1_RETRY_MAX_DELAY_MS = 10 * 60_000;
const D1_MAX_FAILURES = 1_000;

type StepRow = {
  id: string;
  parent_id: string | null;
  agent: string;
  status: StepStatus;
  depth: number;
  attempts: number;
  output: string | null;
  error: string | null;
  model: string | null;
  created_at: number;
  updated_at: number;
};

type EventRow = { seq: number; type: RunEventType; step_id: string | null; at: number; data: string };

export class RunObject extends DurableObject<Env> implements RunRpc {
  private readonly sql: SqlStorage;
  private run: RunRecord | null;
  private lastSeq: number;
  /** Callers of `start`/`wait` blocked until the run settles. In memory only: a waiting
   * RPC keeps the object alive, so they cannot outlive an eviction. */
  private readonly waiters = new Set<() => void>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
    this.run = upgradeRecord(ctx.storage.kv.get<RunRecord>("run") ?? null, () => config(env).runTimeoutMs);
    this.lastSeq = this.run ? (this.sql.exec<{ s: number | null }>("SELECT max(seq) AS s FROM events").one().s ?? 0) : 0;
    // Keep-alive pings are answered without waking the object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair("ping", "pong"));
  }

  // ---- RPC: lifecycle -------------------------------------------------------------

  /**
   * Creates the run, writes its D1 summary row, queues its root step, and (if `waitMs` > 0)
   * waits for it to settle. The object owns the D1 row: a run the object never recorded
   * has none, and one it recorded gets it (the alarm retries a failed write).
   */
  async start(init: RunInit, waitMs = 0): Promise<RunSnapshot> {
    if (this.run) {
      if (this.run.runId !== init.runId || this.run.orgId !== init.orgId) throw new AppError("CONFLICT", "run id in use");
    } else {
      const now = Date.now();
      this.run = {
        ...init,
        status: "submitted",
        output: null,
        error: null,
        createdAt: now,
        updatedAt: now,
        nextStep: 1,
        deadline: now + config(this.env).runTimeoutMs,
        d1: "none",
        d1Failures: 0,
        d1RetryAt: null,
        settledAt: null,
        auditId: null,
      };
      const stepId = this.newStepId();
      this.save();
      this.sql.exec(
        "INSERT INTO steps (id, parent_id, agent, status, depth, created_at, updated_at) VALUES (?, NULL, ?, 'queued', 0, ?, ?)",
        stepId,
        JSON.stringify(init.agent),
        now,
        now,
      );
      this.append("run.created", null, { agent: init.agent.name, contextId: init.contextId, initiatedBy: init.initiatedBy });
      this.append("step.queued", stepId, { agent: init.agent.name, depth: 0, parentId: null });
      // A run whose work is lost (a job in the dead-letter queue, a crashed consumer) must
      // still end: the alarm fails it if it has not finished by then. It is committed with
      // the record, so a run this object knows always reaches D1, at the latest then.
      void this.ctx.storage.setAlarm(this.run.deadline);
      // The D1 row and the job go out together (one round trip, not two): a step may even
      // finish before the row lands, which is fine, as the settle writes the whole row.
      const job: StepJob = { kind: "step", runId: init.runId, orgId: init.orgId, stepId };
      const [, queueError] = await Promise.all([this.syncD1(), this.env.JOBS.send(job).then(() => null, (err: unknown) => err ?? "error")]);
      if (queueError !== null) {
        console.error(`run ${init.runId}: could not queue the run: ${errorText(queueError)}`);
        await this.settleRunDurably("failed", null, "the run could not be queued; try again");
      }
    }
    if (waitMs > 0) await this.waitForSettled(waitMs);
    return this.snapshotOf(this.run);
  }

  /** Waits up to `waitMs` for the run to settle and returns its snapshot (null: not this org's). */
  async wait(orgId: string, waitMs: number): Promise<RunSnapshot | null> {
    if (!this.run || this.run.orgId !== orgId) return null;
    await this.waitForSettled(waitMs);
    return this.snapshotOf(this.run);
  }

  async snapshot(orgId: string): Promise<RunSnapshot | null> {
    if (!this.run || this.run.orgId !== orgId) return null;
    return this.snapshotOf(this.run);
  }

  async events(orgId: string, after = 0, limit = REPLAY_PAGE): Promise<RunEvent[] | null> {
    if (!this.run || this.run.orgId !== orgId) return null;
    return this.eventsAfter(after, Math.min(Math.max(1, limit), REPLAY_PAGE));
  }

  // ---- RPC: executor --------------------------------------------------------------

  /** Marks a step running and hands out what the executor needs; null if it is already done. */
  async claimStep(orgId: string, stepId: string): Promise<StepContext | null> {
    const run = this.run;
    if (!run || run.orgId !== orgId || TERMINAL_RUN_STATUSES.has(run.status)) return null;
    const step = this.step(stepId);
    if (!step || FINISHED_STEP.has(step.status)) return null;
    const now = Date.now();
    const attempt = step.attempts + 1;
    this.sql.exec("UPDATE steps SET status = 'running', attempts = ?, updated_at = ? WHERE id = ?", attempt, now, stepId);
    if (run.status === "submitted") {
      run.status = "working";
      run.updatedAt = now;
      this.save();
    }
    this.append("step.started", stepId, { agent: JSON.parse(step.agent).name, attempt });
    return {
      runId: run.runId,
      orgId: run.orgId,
      stepId,
      agent: JSON.parse(step.agent),
      depth: step.depth,
      attempt,
      input: run.message,
      initiatedBy: run.initiatedBy,
      userId: run.userId ?? null,
    };
  }

  async completeStep(orgId: string, stepId: string, result: StepResult): Promise<void> {
    const step = this.liveStep(orgId, stepId);
    if (!step) return;
    this.sql.exec(
      "UPDATE steps SET status = 'completed', output = ?, model = ?, error = NULL, updated_at = ? WHERE id = ?",
      result.text,
      result.model,
      Date.now(),
      stepId,
    );
    this.append("step.completed", stepId, {
      agent: JSON.parse(step.agent).name,
      output: result.text,
      model: result.model,
      durationMs: result.durationMs,
      ...(result.usage ? { usage: result.usage } : {}),
    });
    if (step.parent_id === null) await this.settleRunDurably("completed", result.text, null);
  }

  /** Records a failed attempt. With `retrying` the step goes back to the queue's care. */
  async failStep(orgId: string, stepId: string, rawError: string, retrying: boolean): Promise<void> {
    const step = this.liveStep(orgId, stepId);
    if (!step) return;
    // Error texts reach events, subscribers and the A2A task: mask anything credential-like.
    const error = redactText(rawError, 2_000);
    const now = Date.now();
    if (retrying) {
      this.sql.exec("UPDATE steps SET status = 'queued', error = ?, updated_at = ? WHERE id = ?", error, now, stepId);
      this.append("step.retrying", stepId, { attempt: step.attempts, error });
      return;
    }
    this.sql.exec("UPDATE steps SET status = 'failed', error = ?, updated_at = ? WHERE id = ?", error, now, stepId);
    this.append("step.failed", stepId, { agent: JSON.parse(step.agent).name, attempt: step.attempts, error });
    if (step.parent_id === null) await this.settleRunDurably("failed", null, error);
  }

  /**
   * The alarm is two things: the run timeout (fail every unfinished step and the run) and
   * the retry of a D1 write that failed. It stays armed until both are done.
   */
  override async alarm(): Promise<void> {
    const run = this.run;
    if (!run) return;
    // The alarm that fired is the earlier of the two; a retry due before the deadline is
    // not a timeout (the clock is not compared, so a forced alarm behaves like a due one).
    const retryFirst = run.d1RetryAt !== null && run.d1RetryAt < run.deadline && Date.now() < run.deadline;
    if (!TERMINAL_RUN_STATUSES.has(run.status) && !retryFirst) {
      const seconds = Math.round((Date.now() - run.createdAt) / 1000);
      const error = `the run timed out: not finished after ${seconds} s`;
      const now = Date.now();
      const open = this.sql.exec<StepRow>("SELECT * FROM steps WHERE status NOT IN ('completed', 'failed', 'canceled') ORDER BY created_at, id").toArray();
      for (const step of open) {
        this.sql.exec("UPDATE steps SET status = 'failed', error = ?, updated_at = ? WHERE id = ?", error, now, step.id);
        this.append("step.failed", step.id, { agent: JSON.parse(step.agent).name, attempt: step.attempts, error });
      }
      this.settleRun("failed", null, error);
    }
    run.d1RetryAt = null;
    this.save();
    await this.syncD1();
  }

  // ---- WebSockets -----------------------------------------------------------------

  /** `GET /runs/{id}/ws?after=<seq>`: replays the log after `seq`, then streams live. */
  override async fetch(request: Request): Promise<Response> {
    const requestId = request.headers.get("x-request-id") ?? "";
    const run = this.run;
    if (!run || run.orgId !== request.headers.get(ORG_HEADER)) {
      return problemResponse(new AppError("NOT_FOUND", "Run not found"), requestId);
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return problemResponse(new AppError("BAD_REQUEST", "expected a WebSocket upgrade"), requestId, { upgrade: "websocket" });
    }
    const afterParam = new URL(request.url).searchParams.get("after") ?? "0";
    if (!/^\d{1,15}$/.test(afterParam)) {
      return problemResponse(new AppError("BAD_REQUEST", "'after' must be a non-negative integer sequence number"), requestId);
    }
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server);
    // Synchronous from here to the end of the replay: no event can slip in between the
    // replay and the live stream, so nothing is lost or sent twice.
    let after = Number(afterParam);
    for (;;) {
      const page = this.eventsAfter(after, REPLAY_PAGE);
      for (const ev of page) server.send(JSON.stringify(ev));
      if (page.length < REPLAY_PAGE) break;
      after = page[page.length - 1]?.seq ?? after;
    }
    if (TERMINAL_RUN_STATUSES.has(run.status)) server.close(1000, "run finished");
    return new Response(null, { status: 101, webSocket: client });
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    // The stream is one-way; anything but the auto-answered "ping" gets a short notice.
    if (typeof message === "string" && message.length <= 64) ws.send(JSON.stringify({ type: "notice", message: "this stream is read-only" }));
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    // 1005/1006 are reserved and cannot be sent back; answer with a normal closure.
    try {
      ws.close(code >= 3000 && code <= 4999 ? code : 1000, "bye");
    } catch {
      // already closed
    }
  }

  // ---- internals ------------------------------------------------------------------

  private newStepId(): string {
    if (!this.run) throw new Error("run not initialised");
    const id = `s${this.run.nextStep}`;
    this.run.nextStep += 1;
    return id;
  }

  private save(): void {
    if (this.run) this.ctx.storage.kv.put("run", this.run);
  }

  private step(id: string): StepRow | null {
    return this.sql.exec<StepRow>("SELECT * FROM steps WHERE id = ?", id).toArray()[0] ?? null;
  }

  private liveStep(orgId: string, stepId: string): StepRow | null {
    if (!this.run || this.run.orgId !== orgId) return null;
    const step = this.step(stepId);
    return step && !FINISHED_STEP.has(step.status) ? step : null;
  }

  private append(type: RunEventType, stepId: string | null, data: Record<string, unknown>): RunEvent {
    if (!this.run) throw new Error("run not initialised");
    const seq = ++this.lastSeq;
    const at = Date.now();
    this.sql.exec("INSERT INTO events (seq, type, step_id, at, data) VALUES (?, ?, ?, ?, ?)", seq, type, stepId, at, JSON.stringify(data));
    const event: RunEvent = { seq, type, runId: this.run.runId, stepId, at: new Date(at).toISOString(), data: data as Record<string, Json> };
    const sockets = this.ctx.getWebSockets();
    if (sockets.length) {
      const frame = JSON.stringify(event);
      for (const ws of sockets) {
        try {
          ws.send(frame);
        } catch {
          // a socket that is closing; its close handler cleans up
        }
      }
    }
    return event;
  }

  private eventsAfter(after: number, limit: number): RunEvent[] {
    const runId = this.run?.runId ?? "";
    return this.sql
      .exec<EventRow>("SELECT seq, type, step_id, at, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?", after, limit)
      .toArray()
      .map((r) => ({ seq: r.seq, type: r.type, runId, stepId: r.step_id, at: new Date(r.at).toISOString(), data: JSON.parse(r.data) }));
  }

  private settleRun(status: "completed" | "failed" | "canceled", output: string | null, error: string | null): void {
    const run = this.run;
    if (!run || TERMINAL_RUN_STATUSES.has(run.status)) return;
    const now = Date.now();
    run.status = status;
    run.output = output;
    run.error = error;
    run.updatedAt = now;
    run.settledAt = now;
    run.auditId = run.audit ? auditId(now) : null;
    this.save();
    this.append(status === "completed" ? "run.completed" : "run.failed", null, status === "completed" ? { output } : { error, status });
    for (const ws of this.ctx.getWebSockets()) {
      try {
        ws.close(1000, "run finished");
      } catch {
        // already closed
      }
    }
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }

  /** Settles the run and brings D1 up to date (or leaves the alarm armed to retry). */
  private async settleRunDurably(status: "completed" | "failed", output: string | null, error: string | null): Promise<void> {
    this.settleRun(status, output, error);
    await this.syncD1();
  }

  /**
   * Writes what D1 is missing of this run: its summary row while it runs; once settled,
   * its final status with its `agent.call` audit row (one batch). The write is idempotent
   * (`writeRunSummary`), so a retry after a write that landed but seemed to fail changes
   * nothing. On failure the alarm is re-armed to try again; it is left armed until D1
   * has the final state. Returns whether D1 is up to date.
   */
  private async syncD1(): Promise<boolean> {
    const run = this.run;
    if (!run) return true;
    const final = TERMINAL_RUN_STATUSES.has(run.status);
    if (run.d1 === "final" || run.d1 === "abandoned" || (!final && run.d1 === "row")) {
      this.armAlarm();
      return true;
    }
    try {
      await writeRunSummary(db(this.env), this.summaryOf(run), final ? this.callAudit(run) : undefined);
    } catch (err) {
      // drizzle wraps D1's error ("Failed query: …"); the reason is in its cause.
      const text = err instanceof Error && err.cause !== undefined ? `${errorText(err.cause)} (${errorText(err).slice(0, 60)}…)` : errorText(err);
      run.d1Failures += 1;
      if (/FOREIGN KEY constraint failed/i.test(text) || run.d1Failures >= D1_MAX_FAILURES) {
        // The org is gone (its runs and audit rows went with it), or D1 refused for a week.
        console.error(`run ${run.runId}: giving up on the D1 summary after ${run.d1Failures} attempt(s): ${text}`);
        run.d1 = "abandoned";
        run.d1RetryAt = null;
      } else {
        console.error(`run ${run.runId}: D1 write failed (attempt ${run.d1Failures}), retrying: ${text}`);
        run.d1RetryAt = Date.now() + Math.min(D1_RETRY_MAX_DELAY_MS, 1000 * 2 ** Math.min(20, run.d1Failures - 1));
      }
      this.save();
      this.armAlarm();
      return false;
    }
    // Record only what was written: the run may have settled while the write was out.
    // On the common path (first attempt) this stays in memory: a storage write after the
    // D1 round trip is a commit of its own, which measurably slowed every run; a record
    // that still says "none"/"row" after a restart only means an idempotent rewrite.
    const recovered = run.d1Failures > 0 || run.d1RetryAt !== null;
    if (final) run.d1 = "final";
    else if (run.d1 === "none") run.d1 = "row";
    run.d1Failures = 0;
    run.d1RetryAt = null;
    if (recovered) this.save();
    if (final || recovered) this.armAlarm();
    return true;
  }

  /** One alarm for the timeout of an unfinished run and the retry of a pending D1 write. */
  private armAlarm(): void {
    const run = this.run;
    if (!run) return;
    const due: number[] = [];
    if (!TERMINAL_RUN_STATUSES.has(run.status)) due.push(run.deadline);
    if (run.d1RetryAt !== null) due.push(run.d1RetryAt);
    if (due.length > 0) void this.ctx.storage.setAlarm(Math.min(...due));
    else void this.ctx.storage.deleteAlarm();
  }

  private summaryOf(run: RunRecord): RunSummary {
    const final = TERMINAL_RUN_STATUSES.has(run.status);
    const settledAt = run.settledAt ?? run.updatedAt;
    return {
      id: run.runId,
      orgId: run.orgId,
      contextId: run.contextId,
      agentName: run.agent.name,
      repositoryId: run.agent.repositoryId,
      commitSha: run.agent.commit,
      initiatedBy: run.initiatedBy,
      // D1 keeps the coarse states only: submitted until the run settles.
      status: final ? run.status : "submitted",
      error: final ? run.error : null,
      createdAt: run.createdAt,
      updatedAt: final ? settledAt : run.createdAt,
      completedAt: final ? settledAt : null,
    };
  }

  /**
   * The call's `agent.call` audit row, the same on every retry (its id and time were fixed
   * when the run settled). The message is not stored twice: the audit input is derived
   * from the run's message here.
   */
  private callAudit(run: RunRecord): (AuditEntry & { id: string }) | undefined {
    if (!run.audit || run.settledAt === null || run.auditId === null) return undefined;
    const status = run.status;
    return {
      id: run.auditId,
      at: run.settledAt,
      actor: run.initiatedBy ?? "system",
      userId: run.userId ?? null,
      runId: run.runId,
      action: "agent.call",
      resource: run.audit.resource,
      outcome: status === "completed" ? "success" : "error",
      durationMs: run.settledAt - run.createdAt,
      requestId: run.audit.requestId,
      input: { message: run.message.parts, ...(run.audit.input ?? {}) },
      output: { status, ...(run.output !== null ? { text: run.output } : {}) },
      ...(run.error !== null ? { error: run.error } : {}),
    };
  }

  private waitForSettled(waitMs: number): Promise<void> {
    if (!this.run || TERMINAL_RUN_STATUSES.has(this.run.status)) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, waitMs);
      const waiters = this.waiters;
      function done() {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      }
      waiters.add(done);
    });
  }

  private snapshotOf(run: RunRecord): RunSnapshot {
    const steps = this.sql
      .exec<StepRow>("SELECT * FROM steps ORDER BY created_at, id")
      .toArray()
      .map(
        (s): StepView => ({
          id: s.id,
          parentId: s.parent_id,
          agent: JSON.parse(s.agent).name,
          status: s.status,
          depth: s.depth,
          attempts: s.attempts,
          output: s.output,
          error: s.error,
          model: s.model,
          createdAt: s.created_at,
          updatedAt: s.updated_at,
        }),
      );
    return {
      runId: run.runId,
      orgId: run.orgId,
      contextId: run.contextId,
      agent: run.agent,
      status: run.status,
      message: run.message,
      output: run.output,
      error: run.error,
      createdAt: run.createdAt,
      updatedAt: run.updatedAt,
      lastSeq: this.lastSeq,
      steps,
    };
  }
}

/** Records written before the D1 fields existed: their row was written by the gateway. */
function upgradeRecord(run: RunRecord | null, timeoutMs: () => number): RunRecord | null {
  if (!run || run.d1 !== undefined) return run;
  const final = TERMINAL_RUN_STATUSES.has(run.status);
  return {
    ...run,
    deadline: run.createdAt + timeoutMs(),
    d1: final ? "final" : "row",
    d1Failures: 0,
    d1RetryAt: null,
    settledAt: final ? run.updatedAt : null,
    auditId: null,
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
