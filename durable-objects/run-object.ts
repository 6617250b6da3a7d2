/**
 * One Durable Object per run: a thin shell around the run's DAG state machine
 * (src/workflow/machine.ts). It holds the run record, the steps and an append-only event
 * log with sequence numbers, fans events out to WebSocket subscribers through the
 * hibernation API, sends the jobs a transition made (an outbox retried by the alarm when
 * the queue refuses), keeps D1 up to date, and arms one alarm for the earliest of: the run
 * deadline, a step deadline, a D1 retry, an outbox retry. Model calls and tools never run
 * here: the queue consumer runs a turn and reports it back.
 *
 * Creating a SQLite-backed object costs a few milliseconds per table, and a run creates
 * one object, so the schema is two tables (steps, events) plus the sync KV (run record,
 * run data, outbox).
 */
import { DurableObject } from "cloudflare:workers";
import { auditId, type AuditEntry } from "../src/audit/log";
import { redactText } from "../src/audit/redact";
import { config } from "../src/config";
import { db } from "../src/db/client";
import { waitingContextRuns, writeRunSummary, type RunSummary } from "../src/db/runs";
import { notifyPush } from "../src/push";
import { AppError, problemResponse } from "../src/errors";
import { runStub, type ModelDelta, type RunRpc } from "../src/runs/stub";
import { agentAudience, signInternalToken } from "../src/auth/internal-jwt";
import { messageText, roundCost, RunMachine, STEP_COLUMNS_V2, WORK_SCHEMA, type MachineHost, type StepRow } from "../src/workflow/machine";
import { DEFAULT_LIMITS, type CallContext, type RunLimits, type TurnContext, type TurnOutcome, type WorkOutcome } from "../src/workflow/types";
import type { Json as JsonValue } from "../src/runs/types";
import {
  TERMINAL_RUN_STATUSES,
  type RunJob,
  type RunUsage,
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
  updated_at INTEGER NOT NULL,
  ${STEP_COLUMNS_V2.map(([name, type]) => `${name} ${type}`).join(",\n  ")}
);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY,
  type TEXT NOT NULL,
  step_id TEXT,
  at INTEGER NOT NULL,
  data TEXT NOT NULL
);
${WORK_SCHEMA}`;

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
  /** The run's limits (the org's, when the run started). */
  limits?: RunLimits;
  /** Jobs the queue refused, sent again by the alarm. */
  outbox?: RunJob[];
  outboxRetryAt?: number | null;
}

/** Header the gateway sets with the caller's org; the object answers 404 to any other org. */
export const ORG_HEADER = "x-shaman-org-id";

const REPLAY_PAGE = 500;
/** A live event stream more than this many events behind is cut (its reader resumes from its last seq). */
const STREAM_MAX_BACKLOG = 10_000;
/** Sockets from which a run's events are sent every COALESCE_MS rather than per transition. */
const COALESCE_SOCKETS = 100;
const COALESCE_MS = 25;
/** What a socket asked for when it connected (kept through hibernation). */
interface SocketAttachment {
  batch: boolean;
}
/** An accepted socket and how it takes events. */
interface Watcher {
  ws: WebSocket;
  batch: boolean;
}
/** WebSocket tickets kept per run (the oldest go first). */
const MAX_WS_TICKETS = 100;
const TICKET_PREFIX = "wst:";

/** A live `/stream` reader: NDJSON lines, one event each. */
interface LiveStream {
  controller: ReadableStreamDefaultController<Uint8Array>;
}
const encoder = new TextEncoder();
/** A failed D1 write is tried again after 1 s, 2 s, 4 s, … at most 10 min apart, ~1 week in all. */
const D1_RETRY_MAX_DELAY_MS = 10 * 60_000;
const D1_MAX_FAILURES = 1_000;


type EventRow = { seq: number; type: RunEventType; step_id: string | null; at: number; data: string };

export class RunObject extends DurableObject<Env> implements RunRpc {
  private readonly sql: SqlStorage;
  private run: RunRecord | null;
  private lastSeq: number;
  /** Callers of `start`/`wait` blocked until the run settles. In memory only: a waiting
   * RPC keeps the object alive, so they cannot outlive an eviction. */
  private readonly waiters = new Set<() => void>();
  /** The alarm this instance last set (undefined: not known, e.g. after a restart or once it fired). */
  private alarmAt: number | null | undefined = undefined;
  /** The non-terminal status last written to D1 by `syncStatus` (in memory: after a restart, one more write). */
  private d1Status: RunStatus | null = null;
  /** Readers of `/stream` (the gateway's SSE subscribers): in memory, as an open fetch keeps the object alive. */
  private readonly streams = new Set<LiveStream>();
  /**
   * The accepted WebSockets, as `ctx.getWebSockets()` lists them, kept between events (a
   * run appends hundreds of events a second while watched): dropped when a socket is
   * accepted or closes, and after hibernation (a new instance starts without it).
   */
  private socketList: Watcher[] | null = null;
  /** Frames of events appended in the current synchronous stretch, not yet sent (see `flush`). */
  private pending: string[] = [];
  /**
   * From this many sockets on, events are sent every COALESCE_MS instead of after each
   * transition: a `batch=1` socket then gets the events of several transitions in one
   * message. (A field so a test can exercise it with a few sockets.)
   */
  private coalesceFrom = COALESCE_SOCKETS;
  /** STREAM_MAX_BACKLOG; a field so a test can make a reader fall behind with a few events. */
  private streamMaxBacklog = STREAM_MAX_BACKLOG;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
    const existing = ctx.storage.kv.get<RunRecord>("run");
    if (existing && !ctx.storage.kv.get("schema:v2")) {
      // An object made before the DAG: its steps table lacks the new columns.
      const have = new Set(this.sql.exec<{ name: string }>("PRAGMA table_info(steps)").toArray().map((c) => c.name));
      for (const [name, type] of STEP_COLUMNS_V2) if (!have.has(name)) this.sql.exec(`ALTER TABLE steps ADD COLUMN ${name} ${type}`);
      this.sql.exec("UPDATE steps SET queued_turn = 1 WHERE status IN ('queued', 'running') AND queued_turn IS NULL");
      ctx.storage.kv.put("schema:v2", true);
    }
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
      const { limits, ...rest } = init;
      this.run = {
        ...rest,
        push: init.push ?? false,
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
        limits: { ...DEFAULT_LIMITS, ...(limits ?? {}) },
        outbox: [],
        outboxRetryAt: null,
      };
      this.ctx.storage.kv.put("schema:v2", true);
      this.save();
      this.append("run.created", null, { agent: init.agent.name, contextId: init.contextId, initiatedBy: init.initiatedBy, ...(init.deferred ? { queued: true } : {}) });
      // Queued behind a running task of its context: recorded (D1 row, alarm for its deadline), root step later (`release`).
      const effects = init.deferred ? { jobs: [] } : this.transition((m) => m.createRoot());
      // A run whose work is lost (a job in the dead-letter queue, a crashed consumer) must
      // still end: the alarm fails it if it has not finished by then. It is committed with
      // the record, so a run this object knows always reaches D1, at the latest then.
      this.armAlarm();
      // The D1 row and the job go out together (one round trip, not two): a step may even
      // finish before the row lands, which is fine, as the settle writes the whole row.
      const [, queued] = await Promise.all([this.syncD1(), this.sendJobs(effects.jobs, false)]);
      if (!queued) {
        console.error(`run ${init.runId}: could not queue the run`);
        this.settleRun("failed", null, "the run could not be queued; try again");
        await this.syncD1();
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

  // ---- RPC: people ----------------------------------------------------------------

  /** Cancels every unfinished step and the run; false if the run had finished (or is not this org's). */
  async cancel(orgId: string, reason = "canceled by request"): Promise<boolean | null> {
    if (!this.run || this.run.orgId !== orgId) return null;
    let canceled = false;
    const effects = this.transition((m) => (canceled = m.cancelRun(reason)));
    await this.afterTransition(effects);
    return canceled;
  }

  /** The task got a push config: from now on its events wake its push object. */
  async enablePush(orgId: string): Promise<boolean | null> {
    const run = this.run;
    if (!run || run.orgId !== orgId) return null;
    if (run.push !== true) {
      run.push = true;
      this.save();
    }
    return true;
  }

  /** Starts a deferred run's root step (its turn came); false when it is not waiting for that. */
  async release(orgId: string): Promise<boolean> {
    const run = this.run;
    if (!run || run.orgId !== orgId || !run.deferred || run.status !== "submitted") return false;
    run.deferred = false;
    // Its time starts now: the wait behind the task before it (bounded by that task's own
    // deadline) does not count against its run timeout.
    run.deadline = Date.now() + config(this.env).runTimeoutMs;
    this.save();
    const effects = this.transition((m) => m.createRoot());
    await this.afterTransition(effects);
    return true;
  }

  /**
   * A settled run's D1 row is final: the next task of its context that waits for it
   * (`concurrency: enqueue`) may go. Looked up after the final write, so a run that queued
   * itself meanwhile either is found here or sees this one settled and goes by itself.
   */
  private async releaseNext(): Promise<void> {
    const run = this.run;
    if (!run) return;
    try {
      const waiting = await waitingContextRuns(db(this.env), run.orgId, { contextId: run.contextId, repositoryId: run.agent.repositoryId, agentName: run.agent.name, id: run.runId }, run.createdAt);
      for (const id of waiting) if (await runStub(this.env, id).release(run.orgId)) return;
    } catch (err) {
      console.error(`run ${run.runId}: could not release the next task of its context: ${errorText(err)}`);
    }
  }

  /** Answers a pending input request; false when nothing waits on that id (null: not this org's run). */
  async answerInput(orgId: string, requestId: string, answer: JsonValue): Promise<boolean | null> {
    if (!this.run || this.run.orgId !== orgId) return null;
    let answered = false;
    const effects = this.transition((m) => (answered = m.answerInput(requestId, answer)));
    await this.afterTransition(effects);
    return answered;
  }

  // ---- RPC: live streams ------------------------------------------------------------

  /**
   * Model text of a running turn, batched by the executor: one `model.delta` event. Refused
   * (false) once the step is not running that turn any more (a late batch of a lost claim).
   */
  async appendDelta(orgId: string, stepId: string, delta: ModelDelta): Promise<boolean> {
    if (!this.run || this.run.orgId !== orgId || TERMINAL_RUN_STATUSES.has(this.run.status)) return false;
    const step = this.machine().step(stepId);
    if (!step || step.status !== "running" || step.queued_turn !== delta.turn || step.attempts !== delta.attempt) return false;
    const text = typeof delta.text === "string" ? delta.text.slice(0, 64 * 1024) : "";
    this.append("model.delta", stepId, {
      turn: delta.turn,
      attempt: delta.attempt,
      index: delta.index,
      text,
      ...(delta.last ? { last: true } : {}),
    });
    return true;
  }

  /**
   * A WebSocket ticket for this run: random, single use, valid `ttlMs`. Only its SHA-256 is
   * kept (in the object's storage, so a ticket is used once whichever gateway isolate sees it).
   */
  async issueWsTicket(orgId: string, ttlMs: number): Promise<{ ticket: string; expiresAt: number } | null> {
    if (!this.run || this.run.orgId !== orgId) return null;
    const kv = this.ctx.storage.kv;
    const now = Date.now();
    const held = [...kv.list<number>({ prefix: TICKET_PREFIX })];
    let left = held.length;
    for (const [key, expiresAt] of held) {
      if (expiresAt <= now || left >= MAX_WS_TICKETS) {
        kv.delete(key);
        left--;
      }
    }
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    const ticket = base64url(bytes);
    const expiresAt = now + ttlMs;
    kv.put(TICKET_PREFIX + (await sha256(ticket)), expiresAt);
    return { ticket, expiresAt };
  }

  // ---- RPC: executor --------------------------------------------------------------

  /** Claims turn `turn` of a step for an executor; null when there is nothing to run. */
  async claimTurn(orgId: string, stepId: string, turn: number, token?: { jti: string; agent: string }): Promise<TurnContext | null | { refused: "replayed" | "audience" }> {
    if (!this.run || this.run.orgId !== orgId) return null;
    let ctx: TurnContext | null | { refused: "replayed" | "audience" } = null;
    this.transition((m) => (ctx = m.claimTurn(stepId, turn, token)));
    // Stream the turn's text only when someone can see it: a WebSocket watches (every step),
    // or an A2A stream does (the root's text only; a caller that did not wait for the end,
    // SendStreamingMessage or returnImmediately, asks for it up front: `RunInit.liveText`).
    const claimed = ctx as TurnContext | null | { refused: string };
    if (claimed && "stepId" in claimed) {
      const root = claimed.depth === 0;
      claimed.liveText = this.sockets().length > 0 || (root && (this.run.liveText === true || this.streams.size > 0));
    }
    return ctx;
  }

  /** Claims a work call (an MCP tool, an external agent's send, follow or cancel); null when there is nothing to do. */
  async claimCall(orgId: string, stepId: string, turn: number, callId: string, token?: { jti: string; agent: string }): Promise<CallContext | null | { refused: "replayed" | "audience" }> {
    if (!this.run || this.run.orgId !== orgId) return null;
    let ctx: CallContext | null | { refused: "replayed" | "audience" } = null;
    const effects = this.transition((m) => (ctx = m.claimCall(stepId, turn, callId, token)));
    await this.afterTransition(effects);
    return ctx;
  }

  /** Records what an executor found for a work call (once). */
  async recordCall(orgId: string, stepId: string, turn: number, callId: string, outcome: WorkOutcome): Promise<boolean> {
    if (!this.run || this.run.orgId !== orgId) return false;
    let recorded = false;
    const effects = this.transition((m) => (recorded = m.recordCall(stepId, turn, callId, outcome)));
    // A follow that is due later needs the alarm (no job was queued to arm it).
    this.armAlarm();
    await this.afterTransition(effects);
    return recorded;
  }

  /** A fresh job (and token) for a step still queued for `turn` whose job's token expired unrun. */
  async reissueTurn(orgId: string, stepId: string, turn: number): Promise<boolean> {
    if (!this.run || this.run.orgId !== orgId) return false;
    let reissued = false;
    const effects = this.transition((m) => (reissued = m.reissueTurn(stepId, turn)));
    await this.afterTransition(effects);
    return reissued;
  }

  /** Records a model turn and carries out its tool calls (children, input requests, run data). */
  async recordTurn(orgId: string, stepId: string, turn: number, outcome: TurnOutcome, maxIterations: number): Promise<boolean> {
    if (!this.run || this.run.orgId !== orgId) return false;
    let recorded = false;
    const effects = this.transition((m) => (recorded = m.recordTurn(stepId, turn, outcome, maxIterations)));
    await this.afterTransition(effects);
    return recorded;
  }

  /** A failed attempt at a turn; with `retrying` the queue delivers the job again. */
  async failTurn(orgId: string, stepId: string, turn: number, error: string, retrying: boolean): Promise<void> {
    if (!this.run || this.run.orgId !== orgId) return;
    const effects = this.transition((m) => m.failTurn(stepId, turn, error, retrying));
    await this.afterTransition(effects);
  }

  /** The single-turn form (a step answered in one model call); kept for callers that do not run tools. */
  async claimStep(orgId: string, stepId: string): Promise<StepContext | null> {
    const step = this.run?.orgId === orgId ? this.machine().step(stepId) : null;
    if (!step || step.queued_turn === null) return null;
    // No token: never refused.
    return (await this.claimTurn(orgId, stepId, step.queued_turn)) as TurnContext | null;
  }

  async completeStep(orgId: string, stepId: string, result: StepResult): Promise<void> {
    const step = this.run?.orgId === orgId ? this.machine().step(stepId) : null;
    if (!step || step.queued_turn === null) return;
    const usage = { inputTokens: result.usage?.inputTokens ?? 0, outputTokens: result.usage?.outputTokens ?? 0 };
    const outcome: TurnOutcome = { assistant: { role: "assistant", content: result.text }, text: result.text, toolCalls: [], model: result.model, durationMs: result.durationMs, usage };
    await this.recordTurn(orgId, stepId, step.queued_turn, outcome, 10);
  }

  async failStep(orgId: string, stepId: string, rawError: string, retrying: boolean): Promise<void> {
    const step = this.run?.orgId === orgId ? this.machine().step(stepId) : null;
    if (!step || step.queued_turn === null) return;
    await this.failTurn(orgId, stepId, step.queued_turn, rawError, retrying);
  }

  /**
   * The alarm: the run timeout (fail every unfinished step and the run), step timeouts,
   * the retry of a D1 write and the resend of jobs the queue refused. It stays armed until
   * all of them are done.
   */
  override async alarm(): Promise<void> {
    this.alarmAt = undefined; // a fired alarm is no longer set
    const run = this.run;
    if (!run) return;
    const now = Date.now();
    // The alarm that fired is for the earliest thing due: the run's deadline, a step's, or a
    // retry (D1, outbox). The clock is not compared for that choice, so a forced alarm
    // behaves like a due one; a run past its deadline times out whatever the alarm was for.
    let effects: Effects = { jobs: [] };
    if (!TERMINAL_RUN_STATUSES.has(run.status)) {
      const stepDue = this.machine().nextStepDeadline();
      const resendDue = this.machine().nextResendAt();
      const retryDue = Math.min(run.d1RetryAt ?? Infinity, run.outboxRetryAt ?? Infinity);
      const first = Math.min(run.deadline, stepDue ?? Infinity, resendDue ?? Infinity, retryDue);
      if (now >= run.deadline || first === run.deadline) {
        const seconds = Math.round((now - run.createdAt) / 1000);
        const error = `the run timed out: not finished after ${seconds} s`;
        effects = this.transition((m) => m.failAll(error));
        this.settleRun("failed", null, error);
      } else if (stepDue !== null && first === stepDue) {
        effects = this.transition((m) => m.timeOutSteps(Math.max(now, stepDue)));
      } else if (resendDue !== null && first === resendDue) {
        // The real clock here, never "as if due": a claim that has not run out belongs to a
        // live executor, and running its turn again would call the model twice.
        effects = this.transition((m) => m.resendLostJobs(now));
      }
    }
    run.d1RetryAt = null;
    const outbox = run.outbox ?? [];
    run.outbox = [];
    run.outboxRetryAt = null;
    this.save();
    await this.sendJobs([...outbox, ...effects.jobs], true);
    await this.syncD1();
    // Whatever this alarm was for, the next thing due gets the next one.
    this.armAlarm();
  }


  // ---- WebSockets and streams --------------------------------------------------------

  /**
   * `GET …/stream?after=<seq>&snapshot=1`: the gateway's live feed for SSE (NDJSON).
   * `GET …/ws?after=<seq>` (any other path): a WebSocket. Both replay the log after `seq`,
   * then stream live events, with nothing lost or sent twice between the two.
   */
  override async fetch(request: Request): Promise<Response> {
    const requestId = request.headers.get("x-request-id") ?? "";
    const run = this.run;
    if (!run || run.orgId !== request.headers.get(ORG_HEADER)) {
      return problemResponse(new AppError("NOT_FOUND", "Run not found"), requestId);
    }
    if (new URL(request.url).pathname.endsWith("/stream")) return this.streamResponse(request, requestId);
    // A browser's ticket (POST /runs/{id}/ws-ticket): used once, for this run only; a
    // missing, expired or used one answers like a missing run.
    const ticket = request.headers.get(TICKET_HEADER);
    if (ticket !== null) {
      const key = TICKET_PREFIX + (await sha256(ticket));
      const expiresAt = this.ctx.storage.kv.get<number>(key);
      if (expiresAt !== undefined) this.ctx.storage.kv.delete(key);
      if (expiresAt === undefined || expiresAt <= Date.now()) return problemResponse(new AppError("NOT_FOUND", "Run not found"), requestId);
    }
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return problemResponse(new AppError("BAD_REQUEST", "expected a WebSocket upgrade"), requestId, { upgrade: "websocket" });
    }
    const params = new URL(request.url).searchParams;
    const afterParam = params.get("after") ?? "0";
    if (!/^\d{1,15}$/.test(afterParam)) {
      return problemResponse(new AppError("BAD_REQUEST", "'after' must be a non-negative integer sequence number"), requestId);
    }
    const batchParam = params.get("batch") ?? "0";
    if (!/^(?:0|1|true|false)$/.test(batchParam)) {
      return problemResponse(new AppError("BAD_REQUEST", "'batch' must be 1 (every message an array of events) or 0"), requestId);
    }
    const batch = batchParam === "1" || batchParam === "true";
    // Events already appended go to the sockets that were there first.
    this.flush();
    const pair = new WebSocketPair();
    const [client, server] = [pair[0], pair[1]];
    this.ctx.acceptWebSocket(server);
    server.serializeAttachment({ batch } satisfies SocketAttachment);
    this.socketList = null;
    // Synchronous from here to the end of the replay: no event can slip in between the
    // replay and the live stream, so nothing is lost or sent twice.
    let after = Number(afterParam);
    for (;;) {
      const page = this.eventsAfter(after, REPLAY_PAGE);
      if (batch) {
        if (page.length) server.send(JSON.stringify(page));
      } else for (const ev of page) server.send(JSON.stringify(ev));
      if (page.length < REPLAY_PAGE) break;
      after = page[page.length - 1]?.seq ?? after;
    }
    if (TERMINAL_RUN_STATUSES.has(run.status)) server.close(1000, "run finished");
    // A ticket sent as a subprotocol (`shaman.ticket.<ticket>`) is the protocol chosen.
    const protocol = request.headers.get(TICKET_PROTOCOL_HEADER);
    return new Response(null, { status: 101, webSocket: client, ...(protocol ? { headers: { "sec-websocket-protocol": protocol } } : {}) });
  }

  /**
   * The NDJSON feed behind SSE: optionally the snapshot first (`{"type":"snapshot",…}`),
   * the events after `after` (default: the snapshot's last seq), a `{"type":"live"}` line,
   * then each new event as it is appended. Replay and registration happen in one
   * synchronous stretch, so the join is exact. Ends when the run finishes (or the reader
   * falls too far behind: it resumes from its last seq).
   */
  private streamResponse(request: Request, requestId: string): Response {
    const run = this.run!;
    const params = new URL(request.url).searchParams;
    const afterParam = params.get("after");
    if (afterParam !== null && !/^\d{1,15}$/.test(afterParam)) {
      return problemResponse(new AppError("BAD_REQUEST", "'after' must be a non-negative integer sequence number"), requestId);
    }
    const streams = this.streams;
    let live: LiveStream | null = null;
    // Events already appended go to the streams that were there first.
    this.flush();
    const body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          const line = (v: unknown) => controller.enqueue(encoder.encode(`${JSON.stringify(v)}\n`));
          if (params.get("snapshot") === "1") line({ type: "snapshot", snapshot: this.snapshotOf(run) });
          let after = afterParam === null ? this.lastSeq : Number(afterParam);
          for (;;) {
            const page = this.eventsAfter(after, REPLAY_PAGE);
            for (const ev of page) line(ev);
            if (page.length < REPLAY_PAGE) break;
            after = page[page.length - 1]?.seq ?? after;
          }
          line({ type: "live" });
          if (TERMINAL_RUN_STATUSES.has(run.status)) controller.close();
          else streams.add((live = { controller }));
        },
        cancel: () => {
          if (live) streams.delete(live);
        },
      },
      { highWaterMark: 0 },
    );
    return new Response(body, { headers: { "content-type": "application/x-ndjson", "cache-control": "no-store" } });
  }

  /** Hands an event to every live stream; a reader too far behind is cut (it resumes from its last seq). */
  private feedStreams(frame: Uint8Array): void {
    for (const s of this.streams) {
      try {
        if ((s.controller.desiredSize ?? 0) < -this.streamMaxBacklog) {
          this.streams.delete(s);
          s.controller.close();
          continue;
        }
        s.controller.enqueue(frame);
      } catch {
        this.streams.delete(s); // closed or errored by its reader
      }
    }
  }

  private closeStreams(): void {
    for (const s of this.streams) {
      try {
        s.controller.close();
      } catch {
        // already closed
      }
    }
    this.streams.clear();
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    // The stream is one-way; anything but the auto-answered "ping" gets a short notice.
    if (typeof message === "string" && message.length <= 64) ws.send(JSON.stringify({ type: "notice", message: "this stream is read-only" }));
  }

  private sockets(): Watcher[] {
    return (this.socketList ??= this.ctx.getWebSockets().map((ws) => ({ ws, batch: (ws.deserializeAttachment() as SocketAttachment | null)?.batch === true })));
  }

  /**
   * Sends the events appended since the last flush to every socket and stream: one message
   * per event, or one array of them to a `batch=1` socket (a transition that appends a hundred
   * events costs such a socket one message). Runs as a microtask after the synchronous stretch
   * that appended them, and before anything that adds a watcher or ends the run.
   */
  private flush(): void {
    if (this.pending.length === 0) return;
    const frames = this.pending;
    this.pending = [];
    let array: string | null = null;
    for (const { ws, batch } of this.sockets()) {
      try {
        if (batch) ws.send((array ??= `[${frames.join(",")}]`));
        else for (const frame of frames) ws.send(frame);
      } catch {
        // a socket that is closing; its close handler cleans up
      }
    }
    if (this.streams.size) this.feedStreams(encoder.encode(`${frames.join("\n")}\n`));
  }

  override async webSocketError(): Promise<void> {
    this.socketList = null;
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    this.socketList = null;
    // 1005/1006 are reserved and cannot be sent back; answer with a normal closure.
    try {
      ws.close(code >= 3000 && code <= 4999 ? code : 1000, "bye");
    } catch {
      // already closed
    }
  }

  // ---- internals ------------------------------------------------------------------

  /** The state machine over this object's storage; its effects are collected for `afterTransition`. */
  private machine(effects: Effects = { jobs: [] }): RunMachine {
    const run = this.run;
    if (!run) throw new Error("run not initialised");
    const host: MachineHost = {
      sql: this.sql,
      kv: this.ctx.storage.kv,
      run,
      limits: run.limits ?? DEFAULT_LIMITS,
      turnLeaseMs: config(this.env).turnLeaseMs,
      resendAfterMs: config(this.env).jobResendAfterMs,
      saveRun: () => {
        this.save();
        // A blocked SendMessage returns at an interruption too: the caller must answer.
        if (run.status === "input_required") this.wakeWaiters();
        // ListTasks reads statuses from D1: a running run's changes go there too (not awaited).
        if (run.status !== this.d1Status && (run.status === "working" || run.status === "input_required")) {
          this.d1Status = run.status;
          this.ctx.waitUntil(this.syncStatus());
        }
      },
      // A run waiting for a person says for what (the questions), so streams can show them.
      emit: (type, stepId, data) => void this.append(type, stepId, type === "run.input_required" ? { ...data, inputs: this.machine().pendingInputs() as unknown as Json } : data),
      enqueue: (job) => void effects.jobs.push(job),
      settle: (status, output, error) => {
        this.settleRun(status, output, error);
        effects.settled = true;
      },
      now: () => Date.now(),
    };
    return new RunMachine(host);
  }

  /**
   * The job as sent: with its internal token (EdDSA/ES256, 5 minutes, audience the step's
   * agent, the jti the machine recorded for the step's current job), without the bare jti.
   */
  private async signed(job: RunJob): Promise<RunJob> {
    const { jti, ...body } = job;
    if (!jti || !this.run) return body;
    const token = await signInternalToken(this.env, {
      aud: agentAudience(job.orgId, job.agent ?? ""),
      orgId: job.orgId,
      runId: job.runId,
      stepId: job.stepId,
      depth: job.depth ?? 0,
      jti,
      ...(this.run.initiatedBy ? { sub: this.run.initiatedBy } : {}),
    });
    return { ...body, token };
  }

  /** Runs one transition synchronously (atomic in this object) and returns what it asks for. */
  private transition(fn: (m: RunMachine) => unknown): Effects {
    const effects: Effects = { jobs: [] };
    fn(this.machine(effects));
    // New queued steps may be due before the current alarm (watchdog, step deadlines): arm
    // it here, inside the transition's own storage commit, not after a later await.
    if (effects.jobs.length > 0) this.armAlarm();
    return effects;
  }

  /** Sends the jobs a transition made and brings D1 up to date if the run settled. */
  private async afterTransition(effects: Effects): Promise<void> {
    await this.sendJobs(effects.jobs, true);
    if (effects.settled) await this.syncD1();
  }

  /**
   * Queues jobs. With `keep`, jobs the queue refuses go to the outbox, which the alarm
   * sends again; without it the caller decides. Returns whether all were queued.
   */
  private async sendJobs(jobs: RunJob[], keep: boolean): Promise<boolean> {
    if (jobs.length === 0) return true;
    let messages: RunJob[];
    try {
      messages = await Promise.all(jobs.map((job) => this.signed(job)));
    } catch (err) {
      console.error(`run ${this.run?.runId}: could not sign jobs: ${errorText(err)}`);
      messages = [];
    }
    const results =
      messages.length === 0
        ? [{ status: "rejected" as const }]
        : await Promise.allSettled(messages.length === 1 ? [this.env.JOBS.send(messages[0]!)] : [this.env.JOBS.sendBatch(messages.map((body) => ({ body })))]);
    const failed = results.some((r) => r.status === "rejected");
    if (!failed) return true;
    if (keep && this.run) {
      console.error(`run ${this.run.runId}: the queue refused ${jobs.length} job(s); the alarm sends them again`);
      this.run.outbox = [...(this.run.outbox ?? []), ...jobs];
      this.run.outboxRetryAt = Date.now() + 1_000;
      this.save();
      this.armAlarm();
    }
    return false;
  }

  private save(): void {
    if (this.run) this.ctx.storage.kv.put("run", this.run);
  }

  private append(type: RunEventType, stepId: string | null, data: Record<string, unknown>): RunEvent {
    if (!this.run) throw new Error("run not initialised");
    const seq = ++this.lastSeq;
    const at = Date.now();
    this.sql.exec("INSERT INTO events (seq, type, step_id, at, data) VALUES (?, ?, ?, ?, ?)", seq, type, stepId, at, JSON.stringify(data));
    const event: RunEvent = { seq, type, runId: this.run.runId, stepId, at: new Date(at).toISOString(), data: data as Record<string, Json> };
    const watchers = this.sockets().length;
    if (watchers || this.streams.size) {
      if (this.pending.length === 0) {
        if (watchers >= this.coalesceFrom) setTimeout(() => this.flush(), COALESCE_MS);
        else queueMicrotask(() => this.flush());
      }
      this.pending.push(JSON.stringify(event));
    }
    // Push notifications: the task's push object (if it has configs) turns it into pushes.
    // (Only tasks with a push config; a run recorded before the flag existed looks it up.)
    if (this.run.push !== false) this.ctx.waitUntil(notifyPush(this.env, this.run.orgId, this.run.runId, event, this.run.push === true));
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
    this.append(
      status === "completed" ? "run.completed" : status === "canceled" ? "run.canceled" : "run.failed",
      null,
      status === "completed" ? { output } : { error, status },
    );
    this.flush();
    for (const ws of this.ctx.getWebSockets()) {
      try {
        ws.close(1000, "run finished");
      } catch {
        // already closed
      }
    }
    this.closeStreams();
    this.wakeWaiters();
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
    // (reached once per run with `final`: a final row makes later calls return early above)
    if (final) this.ctx.waitUntil(this.releaseNext());
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
    if (!TERMINAL_RUN_STATUSES.has(run.status)) {
      due.push(run.deadline);
      const m = this.machine();
      const step = m.nextStepDeadline();
      if (step !== null) due.push(step);
      const resend = m.nextResendAt();
      if (resend !== null) due.push(resend);
    }
    if (run.d1RetryAt !== null) due.push(run.d1RetryAt);
    if (run.outboxRetryAt !== null && run.outboxRetryAt !== undefined) due.push(run.outboxRetryAt);
    const at = due.length > 0 ? Math.min(...due) : null;
    if (at === this.alarmAt) return; // a storage write (a commit) saved when nothing changed
    this.alarmAt = at;
    if (at !== null) void this.ctx.storage.setAlarm(at);
    else void this.ctx.storage.deleteAlarm();
  }

  /**
   * Writes a running run's status (working, input required) to its D1 row, best effort: a
   * failure is only logged (the settle writes the final row, with retries), and D1 keeps a
   * late write from undoing a settle or a newer change (src/db/runs.ts).
   */
  private async syncStatus(): Promise<void> {
    const run = this.run;
    if (!run || TERMINAL_RUN_STATUSES.has(run.status) || run.d1 === "abandoned") return;
    try {
      const summary = this.summaryOf(run);
      await writeRunSummary(db(this.env), { ...summary, status: run.status, updatedAt: run.updatedAt });
    } catch (err) {
      console.error(`run ${run.runId}: the D1 status '${run.status}' was not written: ${errorText(err)}`);
    }
  }

  private summaryOf(run: RunRecord): RunSummary {
    const final = TERMINAL_RUN_STATUSES.has(run.status);
    const settledAt = run.settledAt ?? run.updatedAt;
    return {
      // A conversation's later tasks read these (src/a2a/conversation.ts).
      inputText: clipText(messageText(run.message), 8_192),
      ...(final ? { outputText: run.output === null ? null : clipText(run.output, 32_768) } : {}),
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

  private wakeWaiters(): void {
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }

  /** Waits until the run is finished or interrupted (waiting for a person), at most `waitMs`. */
  private waitForSettled(waitMs: number): Promise<void> {
    if (!this.run || TERMINAL_RUN_STATUSES.has(this.run.status) || this.run.status === "input_required") return Promise.resolve();
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
          turns: s.turn ?? 0,
          output: s.output,
          error: s.error,
          model: s.model,
          resultStatus: s.result_status ?? null,
          usage: s.usage ? (JSON.parse(s.usage) as StepView["usage"]) : null,
          createdAt: s.created_at,
          updatedAt: s.updated_at,
          startedAt: s.started_at ?? null,
          finishedAt: s.finished_at ?? null,
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
      usage: totalUsage(steps),
      inputs: TERMINAL_RUN_STATUSES.has(run.status) ? [] : this.machine().pendingInputs(),
    };
  }
}

/** Headers the gateway sets on a WebSocket request that came with a ticket (query or subprotocol). */
export const TICKET_HEADER = "x-shaman-ws-ticket";
export const TICKET_PROTOCOL_HEADER = "x-shaman-ws-protocol";

async function sha256(text: string): Promise<string> {
  return base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text))));
}

function base64url(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
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

/** What a transition asks the shell to do once it is over. */
interface Effects {
  jobs: RunJob[];
  settled?: boolean;
}

/** The run's usage: its steps' summed (tokens, model turns, cost). */
function totalUsage(steps: StepView[]): RunUsage {
  const total: RunUsage = { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0, reasoningTokens: 0, costUsd: 0, turns: 0 };
  for (const s of steps) {
    const u = s.usage;
    if (!u) continue;
    total.inputTokens += u.inputTokens ?? 0;
    total.outputTokens += u.outputTokens ?? 0;
    total.cachedInputTokens += u.cachedInputTokens ?? 0;
    total.reasoningTokens += u.reasoningTokens ?? 0;
    total.costUsd += u.costUsd ?? 0;
    total.turns += u.turns ?? 0;
  }
  total.costUsd = roundCost(total.costUsd);
  return total;
}

function clipText(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
