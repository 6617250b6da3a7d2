/**
 * The run's DAG as a state machine over the run object's storage. Every transition a run
 * goes through is a method here, and each runs synchronously inside one Durable Object
 * call, so it is atomic: a step created, a turn claimed, a turn recorded (with the tool
 * calls it made: children created, input requested, run data read and written), a child
 * settled, input answered, a step failed or timed out, the run canceled. Nothing here does
 * I/O: jobs to queue and the run's settlement are handed to the host (the Durable Object
 * shell), which sends them after the transition, so tests can drive the machine without a
 * queue.
 *
 * A step's life: queued (a job for turn N is on its way) → running (claimed by an executor
 * for turn N) → either finished (completed / failed) or parked: `waiting` on children it
 * called, or `input_required` on a person; when everything it waits on has settled, its
 * tool results are appended to its conversation and turn N+1 is queued. Cancellation and
 * timeouts end unfinished steps and cascade to their descendants. A step's timeout
 * (`stepTimeoutMs`) bounds each stretch it is queued or running; while parked it has none
 * (its children have theirs, and the run's deadline bounds everything).
 *
 * At-least-once: a job names (run, step, turn). A turn is claimed only while the step is
 * queued for it (or its claim's lease ran out), and recorded only once: a redelivered job
 * or a late report changes nothing, so no model call, tool or event happens twice.
 */
import type { AgentRef } from "../agents/snapshot";
import { redactText } from "../audit/redact";
import { TERMINAL_RUN_STATUSES, type HistoryTurn, type Json, type RunEventType, type RunJob, type RunStatus, type StepStatus, type StoredMessage } from "../runs/types";
import { runDataTool, RUN_DATA_TOOLS } from "../tools/run-data";
import type { CallContext, CompletionStatus, ConversationMessage, RemoteProgress, RunLimits, TurnContext, TurnOutcome, TurnToolCall, TurnUsage, WorkOutcome, WorkSpec } from "./types";

export type { StepStatus };
export const FINISHED: ReadonlySet<StepStatus> = new Set(["completed", "failed", "canceled"]);

const MAX_RESULT_CHARS = 64 * 1024;
const MAX_INPUT_CHARS = 256 * 1024;

/** One open call of a step's current turn. */
export interface OpenCall {
  id: string;
  name: string;
  status: "pending" | "done";
  result?: Json;
  error?: string;
  childId?: string;
  requestId?: string;
  prompt?: string;
  inputType?: string;
  choices?: string[];
  /** Executor-run work (an MCP tool, an external agent): its row in the `work` table. */
  work?: "mcp" | "remote";
}

export type StepRow = {
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
  turn: number;
  queued_turn: number | null;
  lease_until: number | null;
  call_id: string | null;
  input: string | null;
  messages: string | null;
  calls: string | null;
  usage: string | null;
  deadline: number | null;
  result_status: string | null;
  summary: string | null;
  started_at: number | null;
  finished_at: number | null;
  /** The id of the token of the step's current job: a job with any other token is refused. */
  job_jti: string | null;
};

/** The columns the machine adds to the original `steps` table (objects made before get them on load). */
export const STEP_COLUMNS_V2: Array<[string, string]> = [
  ["turn", "INTEGER NOT NULL DEFAULT 0"],
  ["queued_turn", "INTEGER"],
  ["lease_until", "INTEGER"],
  ["call_id", "TEXT"],
  ["input", "TEXT"],
  ["messages", "TEXT"],
  ["calls", "TEXT"],
  ["usage", "TEXT"],
  ["deadline", "INTEGER"],
  ["result_status", "TEXT"],
  ["summary", "TEXT"],
  ["started_at", "INTEGER"],
  ["finished_at", "INTEGER"],
  ["job_jti", "TEXT"],
];

/**
 * Tool calls an executor carries out after their turn is recorded (MCP tools, external
 * agents), one row per call. `status`: approval (a person must approve it first) → queued
 * (a job is on its way; `jti` names it) → running (claimed; `lease_until`) → done, or for an
 * external agent's task: running → following (waiting until `due_at` to look again) →
 * queued → … A canceled remote task goes to `cancel` (a job asks the remote to cancel).
 */
export const WORK_SCHEMA = `
CREATE TABLE IF NOT EXISTS work (
  step_id TEXT NOT NULL,
  turn INTEGER NOT NULL,
  call_id TEXT NOT NULL,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  phase TEXT NOT NULL DEFAULT 'run',
  spec TEXT NOT NULL,
  remote TEXT,
  follows INTEGER NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0,
  jti TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  queued_at INTEGER,
  lease_until INTEGER,
  due_at INTEGER,
  deadline INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (step_id, turn, call_id)
);`;

export type WorkRow = {
  step_id: string;
  turn: number;
  call_id: string;
  name: string;
  kind: "mcp" | "remote";
  status: "approval" | "queued" | "running" | "following" | "cancel" | "done";
  phase: "run" | "follow" | "cancel";
  spec: string;
  remote: string | null;
  follows: number;
  failures: number;
  jti: string | null;
  attempts: number;
  queued_at: number | null;
  lease_until: number | null;
  due_at: number | null;
  deadline: number | null;
  created_at: number;
  updated_at: number;
};

/** How long one claimed work call may take before its executor is presumed lost. */
const WORK_LEASE_MS = 120_000;
/** Transient failures of one external agent call in a row before it fails. */
const MAX_REMOTE_FAILURES = 5;

/**
 * Follows of an external agent's task that listen to its stream (where the card offers
 * streaming), for at most STREAM_WINDOW_MS each; later follows poll. A listening follow
 * holds an executor for its window, so both are small: it catches a quick task at once.
 */
export const STREAMED_FOLLOWS = 1;
export const STREAM_WINDOW_MS = 3_000;

/**
 * When to look at an external agent's task again, after `follows` looks: soon when the
 * next look listens to the stream, else polling at 1 s, 2 s, 4 s … at most 30 s.
 */
export function followDelayMs(follows: number, streaming: boolean): number {
  if (streaming && follows < STREAMED_FOLLOWS) return 250;
  return Math.min(30_000, 1_000 * 2 ** Math.min(5, follows));
}

/** What the machine reads and writes of the run record. */
export interface MachineRun {
  runId: string;
  orgId: string;
  status: RunStatus;
  agent: AgentRef;
  message: StoredMessage;
  /** Earlier turns of the conversation, for the root step (RunInit.history). */
  history?: HistoryTurn[];
  initiatedBy: string | null;
  userId?: string | null;
  nextStep: number;
  updatedAt: number;
}

export interface MachineHost {
  readonly sql: SqlStorage;
  readonly kv: SyncKvStorage;
  readonly run: MachineRun;
  readonly limits: RunLimits;
  /** How long a turn's claim holds, and how long a queued step may go unclaimed before its job is sent again. */
  readonly turnLeaseMs: number;
  readonly resendAfterMs: number;
  saveRun(): void;
  emit(type: RunEventType, stepId: string | null, data: Record<string, Json>): void;
  /** Queue a job once the transition is over. */
  enqueue(job: RunJob): void;
  /** The root finished: the run settles (the host writes D1, wakes waiters). */
  settle(status: "completed" | "failed" | "canceled", output: string | null, error: string | null): void;
  now(): number;
}

export class RunMachine {
  constructor(private readonly h: MachineHost) {}

  // ---- reading ----------------------------------------------------------------------

  step(id: string): StepRow | null {
    return this.h.sql.exec<StepRow>("SELECT * FROM steps WHERE id = ?", id).toArray()[0] ?? null;
  }

  steps(): StepRow[] {
    return this.h.sql.exec<StepRow>("SELECT * FROM steps ORDER BY created_at, id").toArray();
  }

  /**
   * A step's conversation so far; before its first turn, what it starts from: for the root,
   * the context's earlier turns (RunInit.history), then the step's input.
   */
  private conversation(step: StepRow): ConversationMessage[] {
    const stored = JSON.parse(step.messages ?? "[]") as ConversationMessage[];
    if (stored.length > 0) return stored;
    const history = step.parent_id === null ? (this.h.run.history ?? []) : [];
    return [...history.map((t): ConversationMessage => ({ role: t.role, content: t.text })), firstMessage(step, this.h.run.message)];
  }

  private count(): number {
    return this.h.sql.exec<{ n: number }>("SELECT count(*) AS n FROM steps").one().n;
  }

  // ---- creating steps -----------------------------------------------------------------

  /** The root step, made when the run starts. */
  createRoot(): string {
    const run = this.h.run;
    return this.createStep({ parentId: null, callId: null, agent: run.agent, depth: 0, input: run.message });
  }

  private createStep(s: { parentId: string | null; callId: string | null; agent: AgentRef; depth: number; input: StoredMessage }): string {
    const now = this.h.now();
    const run = this.h.run;
    const id = `s${run.nextStep++}`;
    const jti = crypto.randomUUID();
    run.updatedAt = now;
    this.h.saveRun();
    this.h.sql.exec(
      `INSERT INTO steps (id, parent_id, agent, status, depth, attempts, created_at, updated_at, turn, queued_turn, call_id, input, messages, calls, deadline, job_jti)
       VALUES (?, ?, ?, 'queued', ?, 0, ?, ?, 0, 1, ?, ?, '[]', '[]', ?, ?)`,
      id,
      s.parentId,
      JSON.stringify(s.agent),
      s.depth,
      now,
      now,
      s.callId,
      JSON.stringify(s.input),
      now + this.h.limits.stepTimeoutMs,
      jti,
    );
    this.h.emit("step.queued", id, { agent: s.agent.name, depth: s.depth, parentId: s.parentId, ...(s.callId ? { callId: s.callId } : {}) });
    this.h.enqueue({ kind: "step", runId: run.runId, orgId: run.orgId, stepId: id, turn: 1, agent: s.agent.name, depth: s.depth, jti });
    return id;
  }

  // ---- the executor's side ------------------------------------------------------------

  /**
   * Claims turn `turn` of a step for an executor: null when there is nothing to run (the
   * turn was recorded already, the step finished or the run is over, or another executor
   * holds a live claim), so a redelivered job is acked without calling the model.
   */
  claimTurn(stepId: string, turn: number, token?: { jti: string; agent: string }): TurnContext | null | { refused: "replayed" | "audience" } {
    const run = this.h.run;
    if (TERMINAL_RUN_STATUSES.has(run.status)) return null;
    const step = this.step(stepId);
    if (!step || FINISHED.has(step.status) || step.queued_turn !== turn) return null;
    if (token) {
      // The token must be the one issued for this step's current job, for this step's agent.
      if ((JSON.parse(step.agent) as AgentRef).name !== token.agent) return { refused: "audience" };
      if (step.job_jti !== null && step.job_jti !== token.jti) return { refused: "replayed" };
    }
    const now = this.h.now();
    if (step.status === "running" && (step.lease_until ?? 0) > now) return null; // another executor holds it
    if (step.status !== "queued" && step.status !== "running") return null;
    const attempt = step.attempts + 1;
    this.h.sql.exec(
      "UPDATE steps SET status = 'running', attempts = ?, lease_until = ?, started_at = coalesce(started_at, ?), updated_at = ? WHERE id = ?",
      attempt,
      now + this.h.turnLeaseMs,
      now,
      now,
      stepId,
    );
    if (run.status === "submitted") this.setRunStatus("working");
    const agent = JSON.parse(step.agent) as AgentRef;
    this.h.emit("step.started", stepId, { agent: agent.name, attempt, turn });
    return {
      runId: run.runId,
      orgId: run.orgId,
      stepId,
      turn,
      attempt,
      agent,
      depth: step.depth,
      messages: this.conversation(step),
      input: step.input ? (JSON.parse(step.input) as StoredMessage) : run.message,
      initiatedBy: run.initiatedBy,
      userId: run.userId ?? null,
      maxCallsPerTurn: this.h.limits.maxCallsPerTurn,
    };
  }

  /**
   * Records a model turn and carries out its tool calls. Recorded once: a report for a turn
   * the step is not running (a redelivery, a canceled step) changes nothing.
   */
  recordTurn(stepId: string, turn: number, outcome: TurnOutcome, maxIterations: number): boolean {
    const step = this.step(stepId);
    if (!step || step.status !== "running" || step.queued_turn !== turn || TERMINAL_RUN_STATUSES.has(this.h.run.status)) return false;
    const now = this.h.now();
    const agent = (JSON.parse(step.agent) as AgentRef).name;
    const messages = this.conversation(step);
    messages.push(outcome.assistant);
    const usage = { ...addUsage(step.usage, outcome.usage), maxIterations };
    this.h.emit("model.turn", stepId, {
      agent,
      turn,
      model: outcome.model,
      durationMs: outcome.durationMs,
      usage: usageJson(outcome.usage),
      toolCalls: outcome.toolCalls.map((c) => c.name),
      ...(outcome.text ? { text: clip(outcome.text, 2_000) } : {}),
    });

    const calls: OpenCall[] = [];
    let completion: { status: CompletionStatus; result: string; summary?: string } | null = null;
    let agentCalls = 0;
    for (const call of outcome.toolCalls) {
      this.h.emit("tool.called", stepId, { tool: call.name, callId: call.id, args: clipJson(call.args) });
      const open: OpenCall = { id: call.id, name: call.name, status: "done" };
      calls.push(open);
      if (call.error !== undefined) {
        open.error = call.error;
      } else if (completion) {
        open.error = "ignored: complete_agent_execution ended the step in this turn";
      } else if (call.name === "complete_agent_execution") {
        const a = call.args as { result?: unknown; status?: unknown; summary?: unknown };
        completion = {
          status: a.status === "PARTIAL" || a.status === "FAILED" ? a.status : "SUCCESS",
          result: typeof a.result === "string" ? a.result : JSON.stringify(a.result ?? ""),
          ...(typeof a.summary === "string" ? { summary: a.summary } : {}),
        };
        open.result = { ok: true };
      } else if (call.work) {
        if (call.work.kind === "remote") {
          agentCalls++;
          const refusal = nthCallRefusal(agentCalls, this.h.limits.maxCallsPerTurn) ?? (this.count() >= this.h.limits.maxStepsPerRun ? `step limit of the run reached (at most ${this.h.limits.maxStepsPerRun} steps)` : null);
          if (refusal) open.error = refusal;
        }
        if (open.error === undefined) {
          open.status = "pending";
          open.work = call.work.kind;
          this.addWork(stepId, turn, call.id, call.name, call.work, now);
          if (call.approval !== undefined) {
            open.requestId = crypto.randomUUID();
            open.prompt = call.approval;
            open.inputType = "approval";
            open.choices = ["approved", "rejected"];
            this.h.sql.exec("UPDATE work SET status = 'approval' WHERE step_id = ? AND turn = ? AND call_id = ?", stepId, turn, call.id);
            this.h.emit("input.requested", stepId, { requestId: open.requestId, callId: call.id, agent, prompt: open.prompt, inputType: "approval", choices: open.choices, tool: call.name });
          } else {
            this.queueWork(stepId, turn, call.id, "run");
          }
        }
      } else if (call.name === "call_agent") {
        agentCalls++;
        const refusal = this.refuseCall(step, call, agentCalls);
        if (refusal) {
          open.error = refusal;
        } else {
          const a = call.args as { input?: unknown; context?: unknown };
          const text = [typeof a.input === "string" ? a.input : JSON.stringify(a.input ?? ""), typeof a.context === "string" && a.context ? `Context:\n${a.context}` : ""]
            .filter(Boolean)
            .join("\n\n");
          const input: StoredMessage = { messageId: `${stepId}:${call.id}`, role: "user", parts: [{ kind: "text", text: clip(text, MAX_INPUT_CHARS) }] };
          open.status = "pending";
          open.childId = this.createStep({ parentId: stepId, callId: call.id, agent: call.resolved!.agent, depth: step.depth + 1, input });
        }
      } else if (call.name === "request_user_input") {
        const a = call.args as { prompt?: unknown; inputType?: unknown; choices?: unknown };
        open.status = "pending";
        open.requestId = crypto.randomUUID();
        open.prompt = typeof a.prompt === "string" ? a.prompt : "";
        open.inputType = a.inputType === "choice" || a.inputType === "approval" ? a.inputType : "text";
        if (Array.isArray(a.choices)) open.choices = a.choices.filter((c): c is string => typeof c === "string");
        this.h.emit("input.requested", stepId, {
          requestId: open.requestId,
          callId: call.id,
          agent,
          prompt: open.prompt,
          inputType: open.inputType,
          ...(open.choices ? { choices: open.choices } : {}),
        });
      } else if (RUN_DATA_TOOLS.has(call.name)) {
        const r = runDataTool(this.h.kv, call.name, call.args);
        if ("error" in r) open.error = r.error;
        else open.result = r.result;
      } else if (call.result !== undefined) {
        open.result = call.result;
      } else {
        open.error = `unknown tool '${call.name}'`;
      }
      if (open.status === "done") this.emitResult(stepId, open);
    }

    const pending = calls.filter((c) => c.status === "pending").length;
    this.h.sql.exec(
      "UPDATE steps SET turn = ?, messages = ?, calls = ?, usage = ?, model = ?, lease_until = NULL, queued_turn = NULL, updated_at = ? WHERE id = ?",
      turn,
      JSON.stringify(messages),
      JSON.stringify(calls),
      JSON.stringify(usage),
      outcome.model,
      now,
      stepId,
    );

    if (completion) {
      this.cancelOpenCalls(stepId, calls, "the step completed");
      this.finish(stepId, completion.status === "FAILED" ? "failed" : "completed", completion.result, completion.status === "FAILED" ? completion.summary ?? completion.result : null, completion.status, completion.summary ?? null);
    } else if (outcome.toolCalls.length === 0) {
      this.finish(stepId, "completed", outcome.text, null, "SUCCESS", null);
    } else if (pending > 0) {
      this.park(stepId, calls);
    } else {
      this.nextTurn(stepId, turn, maxIterations);
    }
    return true;
  }

  /** Why `call` may not create a child, or null. */
  private refuseCall(step: StepRow, call: TurnToolCall, nth: number): string | null {
    if (!call.resolved) return "the agent could not be resolved";
    const tooMany = nthCallRefusal(nth, this.h.limits.maxCallsPerTurn);
    if (tooMany) return tooMany;
    if (!this.h.limits.allowCycles) {
      const target = call.resolved.agent;
      for (let s: StepRow | null = step; s; s = s.parent_id ? this.step(s.parent_id) : null) {
        const a = JSON.parse(s.agent) as AgentRef;
        if (a.repositoryId === target.repositoryId && a.name === target.name) {
          return `cycle refused: ${call.resolved.qualifiedName} is already running in this call chain (${this.chain(step)})`;
        }
      }
    }
    if (step.depth + 1 > this.h.limits.maxDepth) return `call depth limit reached (at most ${this.h.limits.maxDepth} levels)`;
    if (this.count() >= this.h.limits.maxStepsPerRun) return `step limit of the run reached (at most ${this.h.limits.maxStepsPerRun} steps)`;
    return null;
  }

  private chain(step: StepRow): string {
    const names: string[] = [];
    for (let s: StepRow | null = step; s; s = s.parent_id ? this.step(s.parent_id) : null) names.unshift((JSON.parse(s.agent) as AgentRef).name);
    return names.join(" → ");
  }

  /** A failed attempt at a turn. `retrying`: the queue delivers it again (the step waits, queued). */
  failTurn(stepId: string, turn: number, rawError: string, retrying: boolean): boolean {
    const step = this.step(stepId);
    if (!step || step.status !== "running" || step.queued_turn !== turn) return false;
    const error = redactText(rawError, 2_000);
    if (retrying) {
      this.h.sql.exec("UPDATE steps SET status = 'queued', lease_until = NULL, error = ?, updated_at = ? WHERE id = ?", error, this.h.now(), stepId);
      this.h.emit("step.retrying", stepId, { attempt: step.attempts, turn, error });
      return true;
    }
    this.finish(stepId, "failed", null, error, null, null);
    return true;
  }

  // ---- waiting ------------------------------------------------------------------------

  private park(stepId: string, calls: OpenCall[]): void {
    const waitsForPerson = calls.some((c) => c.status === "pending" && c.requestId);
    const status: StepStatus = waitsForPerson ? "input_required" : "waiting";
    // A parked step has no deadline of its own: what it waits on has (children) or the run's does (people).
    this.h.sql.exec("UPDATE steps SET status = ?, deadline = NULL, updated_at = ? WHERE id = ?", status, this.h.now(), stepId);
    this.h.emit("step.waiting", stepId, {
      on: calls.filter((c) => c.status === "pending").map((c): Json => (c.childId ? { step: c.childId } : c.requestId ? { requestId: c.requestId } : { call: c.id })),
    });
    this.refreshRunStatus();
  }

  /** A child finished: its result is its parent's tool result; the parent resumes when nothing else is pending. */
  private childSettled(child: StepRow, status: StepStatus, output: string | null, error: string | null, resultStatus: string | null, summary: string | null): void {
    if (!child.parent_id || !child.call_id) return;
    const parent = this.step(child.parent_id);
    if (!parent || FINISHED.has(parent.status)) return;
    const calls = JSON.parse(parent.calls ?? "[]") as OpenCall[];
    const call = calls.find((c) => c.id === child.call_id && c.childId === child.id);
    if (!call || call.status !== "pending") return;
    const agent = (JSON.parse(child.agent) as AgentRef).name;
    call.status = "done";
    if (status === "completed") {
      call.result = { agent, status: (resultStatus ?? "SUCCESS") as Json, result: output ?? "", ...(summary ? { summary } : {}) };
    } else {
      call.error = `agent ${agent} ${status === "canceled" ? "was canceled" : "failed"}: ${error ?? status}`;
    }
    this.h.sql.exec("UPDATE steps SET calls = ?, updated_at = ? WHERE id = ?", JSON.stringify(calls), this.h.now(), parent.id);
    this.emitResult(parent.id, call);
    this.resumeIfReady(parent.id);
  }

  /**
   * Answers a pending `request_user_input` by its id. False when no unfinished step of
   * this run waits on that id (answered already, canceled, or never asked).
   */
  answerInput(requestId: string, answer: Json): boolean {
    for (const step of this.h.sql.exec<StepRow>("SELECT * FROM steps WHERE status = 'input_required'").toArray()) {
      const calls = JSON.parse(step.calls ?? "[]") as OpenCall[];
      const call = calls.find((c) => c.requestId === requestId && c.status === "pending");
      if (!call) continue;
      if (call.work) {
        this.answerApproval(step, calls, call, answer);
      } else {
        call.status = "done";
        call.result = { requestId, ...(answer !== null && typeof answer === "object" && !Array.isArray(answer) ? answer : { answer }) };
      }
      const stillAsking = calls.some((c) => c.status === "pending" && c.requestId);
      const status: StepStatus = stillAsking ? "input_required" : "waiting";
      this.h.sql.exec("UPDATE steps SET calls = ?, status = ?, updated_at = ? WHERE id = ?", JSON.stringify(calls), status, this.h.now(), step.id);
      this.h.emit("input.answered", step.id, { requestId, callId: call.id, answer: clipJson(answer) });
      if (!call.work) this.emitResult(step.id, call);
      this.resumeIfReady(step.id);
      this.refreshRunStatus();
      return true;
    }
    return false;
  }

  /** Pending input requests of the run, oldest first. */
  pendingInputs(): Array<{ requestId: string; stepId: string; agent: string; prompt: string; inputType: string; choices?: string[] }> {
    const out: Array<{ requestId: string; stepId: string; agent: string; prompt: string; inputType: string; choices?: string[] }> = [];
    for (const step of this.h.sql.exec<StepRow>("SELECT * FROM steps WHERE status = 'input_required' ORDER BY created_at, id").toArray()) {
      for (const c of JSON.parse(step.calls ?? "[]") as OpenCall[]) {
        if (c.status === "pending" && c.requestId) {
          out.push({ requestId: c.requestId, stepId: step.id, agent: (JSON.parse(step.agent) as AgentRef).name, prompt: c.prompt ?? "", inputType: c.inputType ?? "text", ...(c.choices ? { choices: c.choices } : {}) });
        }
      }
    }
    return out;
  }

  private resumeIfReady(stepId: string): void {
    const step = this.step(stepId);
    if (!step || (step.status !== "waiting" && step.status !== "input_required")) return;
    const calls = JSON.parse(step.calls ?? "[]") as OpenCall[];
    if (calls.some((c) => c.status === "pending")) return;
    this.nextTurn(stepId, step.turn, Number.POSITIVE_INFINITY);
  }

  /** Appends the turn's tool results to the conversation and queues the next turn (or fails at the limit). */
  private nextTurn(stepId: string, turn: number, maxIterations: number): void {
    const step = this.step(stepId);
    if (!step) return;
    const calls = JSON.parse(step.calls ?? "[]") as OpenCall[];
    const messages = JSON.parse(step.messages ?? "[]") as ConversationMessage[];
    messages.push({
      role: "tool",
      content: calls.map((c) => ({
        type: "tool-result",
        toolCallId: c.id,
        toolName: c.name,
        output: c.error !== undefined ? { type: "error-text", value: c.error } : { type: "json", value: c.result ?? null },
      })),
    });
    const limit = Number.isFinite(maxIterations) ? maxIterations : this.maxIterationsOf(step);
    const jti = crypto.randomUUID();
    if (turn >= limit) {
      this.h.sql.exec("UPDATE steps SET messages = ?, calls = '[]' WHERE id = ?", JSON.stringify(messages), stepId);
      this.finish(stepId, "failed", null, `the agent did not complete within maxIterations (${limit} turns)`, null, null);
      return;
    }
    this.h.sql.exec(
      "UPDATE steps SET status = 'queued', messages = ?, calls = '[]', queued_turn = ?, attempts = 0, deadline = ?, job_jti = ?, updated_at = ? WHERE id = ?",
      JSON.stringify(messages),
      turn + 1,
      this.h.now() + this.h.limits.stepTimeoutMs,
      jti,
      this.h.now(),
      stepId,
    );
    this.h.emit("step.resumed", stepId, { turn: turn + 1 });
    const run = this.h.run;
    this.h.enqueue({ kind: "step", runId: run.runId, orgId: run.orgId, stepId, turn: turn + 1, agent: (JSON.parse(step.agent) as AgentRef).name, depth: step.depth, jti });
    this.refreshRunStatus();
  }

  /** The step's maxIterations, remembered with its usage by `recordTurn`. */
  private maxIterationsOf(step: StepRow): number {
    const usage = step.usage ? (JSON.parse(step.usage) as { maxIterations?: number }) : {};
    return usage.maxIterations ?? 10;
  }


  // ---- work calls (MCP tools, external agents) ----------------------------------------

  private work(stepId: string, turn: number, callId: string): WorkRow | null {
    return this.h.sql.exec<WorkRow>("SELECT * FROM work WHERE step_id = ? AND turn = ? AND call_id = ?", stepId, turn, callId).toArray()[0] ?? null;
  }

  private addWork(stepId: string, turn: number, callId: string, name: string, spec: WorkSpec, now: number): void {
    // An external agent's task may run long: it is bounded like a step (and by the run's deadline).
    const deadline = spec.kind === "remote" ? now + this.h.limits.stepTimeoutMs : null;
    this.h.sql.exec(
      "INSERT OR IGNORE INTO work (step_id, turn, call_id, name, kind, status, spec, deadline, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
      stepId,
      turn,
      callId,
      name,
      spec.kind,
      JSON.stringify(spec),
      deadline,
      now,
      now,
    );
  }

  /** Sends a job (with a fresh token id) for a work call. */
  private queueWork(stepId: string, turn: number, callId: string, phase: WorkRow["phase"]): void {
    const now = this.h.now();
    const jti = crypto.randomUUID();
    this.h.sql.exec(
      "UPDATE work SET status = ?, phase = ?, jti = ?, queued_at = ?, lease_until = NULL, due_at = NULL, updated_at = ? WHERE step_id = ? AND turn = ? AND call_id = ?",
      phase === "cancel" ? "cancel" : "queued",
      phase,
      jti,
      now,
      now,
      stepId,
      turn,
      callId,
    );
    const step = this.step(stepId);
    if (!step) return;
    const run = this.h.run;
    this.h.enqueue({ kind: "call", runId: run.runId, orgId: run.orgId, stepId, turn, callId, agent: (JSON.parse(step.agent) as AgentRef).name, depth: step.depth, jti });
  }

  /**
   * Claims a work call for an executor: null when there is nothing to do (done already, the
   * step or run ended, or another executor holds it), so a redelivered job runs nothing.
   */
  claimCall(stepId: string, turn: number, callId: string, token?: { jti: string; agent: string }): CallContext | null | { refused: "replayed" | "audience" } {
    const w = this.work(stepId, turn, callId);
    const step = this.step(stepId);
    if (!w || !step) return null;
    const canceling = w.status === "cancel";
    if (!canceling && (TERMINAL_RUN_STATUSES.has(this.h.run.status) || FINISHED.has(step.status))) return null;
    if (w.status !== "queued" && !canceling) return null;
    if (token) {
      if ((JSON.parse(step.agent) as AgentRef).name !== token.agent) return { refused: "audience" };
      if (w.jti !== token.jti) return { refused: "replayed" };
    }
    const now = this.h.now();
    const attempts = w.attempts + 1;
    this.h.sql.exec(
      "UPDATE work SET status = ?, attempts = ?, lease_until = ?, updated_at = ? WHERE step_id = ? AND turn = ? AND call_id = ?",
      canceling ? "done" : "running",
      attempts,
      now + WORK_LEASE_MS,
      now,
      stepId,
      turn,
      callId,
    );
    const work = JSON.parse(w.spec) as WorkSpec;
    if (!canceling && w.phase === "run") {
      this.h.emit("tool.started", stepId, { tool: w.name, callId, kind: w.kind, attempt: attempts, ...(work.kind === "mcp" ? { server: work.server.name } : { agent: work.target.name }) });
    }
    const run = this.h.run;
    return {
      runId: run.runId,
      orgId: run.orgId,
      stepId,
      turn,
      callId,
      name: w.name,
      agent: JSON.parse(step.agent) as AgentRef,
      depth: step.depth,
      work,
      phase: w.phase,
      ...(w.remote ? { remote: JSON.parse(w.remote) as RemoteProgress } : {}),
      follows: w.follows,
      attempt: attempts,
      initiatedBy: run.initiatedBy,
      userId: run.userId ?? null,
    };
  }

  /**
   * Records what an executor found for a work call. Recorded once: a report for a call
   * that is not running under that claim changes nothing. A result or an error is the
   * call's tool result; an external agent's task that is still going is followed again
   * later (the alarm queues the next look), one that asks for input is answered to the
   * caller as a result it can reply to.
   */
  recordCall(stepId: string, turn: number, callId: string, outcome: WorkOutcome): boolean {
    const w = this.work(stepId, turn, callId);
    if (!w || w.status !== "running") return false;
    const now = this.h.now();
    const spec = JSON.parse(w.spec) as WorkSpec;
    if ("remote" in outcome) {
      const r = outcome.remote;
      const before = w.remote ? (JSON.parse(w.remote) as RemoteProgress) : null;
      this.h.sql.exec("UPDATE work SET remote = ?, failures = 0, follows = follows + ?, updated_at = ? WHERE step_id = ? AND turn = ? AND call_id = ?", JSON.stringify(r), w.phase === "follow" ? 1 : 0, now, stepId, turn, callId);
      if (!before || before.state !== r.state || before.taskId !== r.taskId) {
        this.h.emit("tool.progress", stepId, { tool: w.name, callId, taskId: r.taskId, state: r.state, ...(r.text ? { text: clip(r.text, 2_000) } : {}) });
      }
      const name = spec.kind === "remote" ? spec.target.name : w.name;
      // An answer sent to a task that asked for input comes back before the agent read it,
      // still asking: that is not a new question until a follow says so.
      const state = r.state === "input-required" && w.phase === "run" && spec.kind === "remote" && spec.taskId === r.taskId ? "working" : r.state;
      switch (state) {
        case "completed":
          return this.settleWork(w, { result: { agent: name, status: "SUCCESS", result: r.text, ...(r.data !== undefined ? { data: r.data } : {}), taskId: r.taskId, ...(r.contextId ? { contextId: r.contextId } : {}) } });
        case "input-required":
          return this.settleWork(w, {
            result: {
              agent: name,
              status: "INPUT_REQUIRED",
              question: r.text,
              taskId: r.taskId,
              ...(r.contextId ? { contextId: r.contextId } : {}),
              howToAnswer: `call call_agent again with agent '${name}', your answer as input and taskId '${r.taskId}'`,
            },
          });
        case "failed":
        case "rejected":
        case "canceled":
        case "auth-required":
          return this.settleWork(w, { error: `external agent ${name} ${r.state === "auth-required" ? "needs authentication it was not given" : r.state}${r.error || r.text ? `: ${r.error || r.text}` : ""}` });
        default: {
          const follows = w.phase === "follow" ? w.follows + 1 : w.follows;
          this.h.sql.exec(
            "UPDATE work SET status = 'following', phase = 'follow', lease_until = NULL, due_at = ?, updated_at = ? WHERE step_id = ? AND turn = ? AND call_id = ?",
            now + followDelayMs(follows, r.streaming),
            now,
            stepId,
            turn,
            callId,
          );
          return true;
        }
      }
    }
    if ("error" in outcome && outcome.retrying && w.kind === "remote" && w.failures + 1 < MAX_REMOTE_FAILURES) {
      // A remote that is down for a moment: look again later (a send is resent with its message id).
      this.h.sql.exec(
        "UPDATE work SET status = 'following', failures = failures + 1, lease_until = NULL, due_at = ?, updated_at = ? WHERE step_id = ? AND turn = ? AND call_id = ?",
        now + followDelayMs(w.failures + 1, false),
        now,
        stepId,
        turn,
        callId,
      );
      this.h.emit("tool.progress", stepId, { tool: w.name, callId, state: "retrying", error: clip(outcome.error, 500) });
      return true;
    }
    return this.settleWork(w, "error" in outcome ? { error: outcome.error } : { result: outcome.result });
  }

  /** A work call's final result or error becomes its tool result; the step resumes when nothing else is pending. */
  private settleWork(w: WorkRow, outcome: { result: Json } | { error: string }): boolean {
    const now = this.h.now();
    this.h.sql.exec("UPDATE work SET status = 'done', lease_until = NULL, due_at = NULL, updated_at = ? WHERE step_id = ? AND turn = ? AND call_id = ?", now, w.step_id, w.turn, w.call_id);
    const step = this.step(w.step_id);
    if (!step || FINISHED.has(step.status) || step.turn !== w.turn) return true;
    const calls = JSON.parse(step.calls ?? "[]") as OpenCall[];
    const call = calls.find((c) => c.id === w.call_id && c.status === "pending");
    if (!call) return true;
    call.status = "done";
    delete call.requestId;
    if ("error" in outcome) call.error = redactText(outcome.error, 4_000);
    else call.result = clipJson(outcome.result);
    this.h.sql.exec("UPDATE steps SET calls = ?, updated_at = ? WHERE id = ?", JSON.stringify(calls), now, step.id);
    this.emitResult(step.id, call);
    this.resumeIfReady(step.id);
    this.refreshRunStatus();
    return true;
  }

  /**
   * A person's answer to a call waiting for approval: approved, the call's job is queued;
   * anything else, the call's result is the refusal (the model reads it).
   */
  private answerApproval(step: StepRow, calls: OpenCall[], call: OpenCall, answer: Json): void {
    const w = this.work(step.id, step.turn, call.id);
    const approved = isApproval(answer);
    delete call.requestId;
    if (approved && w && w.status === "approval") {
      this.h.sql.exec("UPDATE steps SET calls = ?, updated_at = ? WHERE id = ?", JSON.stringify(calls), this.h.now(), step.id);
      this.queueWork(step.id, step.turn, call.id, "run");
      return;
    }
    if (w) this.h.sql.exec("UPDATE work SET status = 'done', updated_at = ? WHERE step_id = ? AND turn = ? AND call_id = ?", this.h.now(), step.id, step.turn, call.id);
    call.status = "done";
    const reason = reasonOf(answer);
    call.error = `a person did not approve this call to ${call.name}${reason ? `: ${reason}` : ""}`;
    this.h.sql.exec("UPDATE steps SET calls = ?, updated_at = ? WHERE id = ?", JSON.stringify(calls), this.h.now(), step.id);
    this.emitResult(step.id, call);
  }

  /** A step ended (finished, canceled, timed out): its open work ends with it; a remote task is asked to cancel. */
  private endWork(stepId: string, reason: string): void {
    for (const w of this.h.sql.exec<WorkRow>("SELECT * FROM work WHERE step_id = ? AND status NOT IN ('done', 'cancel')", stepId).toArray()) {
      const remote = w.remote ? (JSON.parse(w.remote) as RemoteProgress) : null;
      if (w.kind === "remote" && remote?.taskId && !REMOTE_FINAL.has(remote.state)) {
        this.queueWork(w.step_id, w.turn, w.call_id, "cancel");
      } else {
        this.h.sql.exec("UPDATE work SET status = 'done', lease_until = NULL, due_at = NULL, updated_at = ? WHERE step_id = ? AND turn = ? AND call_id = ?", this.h.now(), w.step_id, w.turn, w.call_id);
      }
      this.h.emit("tool.result", stepId, { tool: w.name, callId: w.call_id, error: `canceled: ${reason}` });
    }
  }

  /**
   * The work part of the watchdog: follows that are due are queued; jobs lost in the queue
   * are sent again; a claim that ran out is run again when that is safe (an external
   * agent's follow, a tool annotated read-only or idempotent) and otherwise fails with an
   * unknown outcome, so nothing with side effects runs twice.
   */
  private resendWork(now: number): number {
    let n = 0;
    const rows = this.h.sql
      .exec<WorkRow>(
        "SELECT * FROM work WHERE (status = 'following' AND due_at <= ?) OR (status IN ('queued', 'cancel') AND queued_at + ? <= ?) OR (status = 'running' AND lease_until <= ?)",
        now,
        this.h.resendAfterMs,
        now,
        now,
      )
      .toArray();
    for (const w of rows) {
      n++;
      if (w.status === "following") {
        this.queueWork(w.step_id, w.turn, w.call_id, "follow");
        continue;
      }
      if (w.status === "queued" || w.status === "cancel") {
        this.queueWork(w.step_id, w.turn, w.call_id, w.phase);
        continue;
      }
      const spec = JSON.parse(w.spec) as WorkSpec;
      const safe = spec.kind === "remote" ? w.phase === "follow" || w.remote !== null : spec.rerunnable;
      if (safe) {
        this.h.emit("tool.progress", w.step_id, { tool: w.name, callId: w.call_id, state: "retrying", error: "the executor's claim ran out (the call is made again)" });
        this.queueWork(w.step_id, w.turn, w.call_id, w.phase);
      } else {
        this.settleWork(w, { error: `the executor running this call to ${w.name} was lost; whether it took effect is unknown, and it is not run again` });
      }
    }
    return n;
  }

  /** Fails work calls past their deadline (an external agent's task that does not finish). */
  private timeOutWork(now: number): number {
    let n = 0;
    for (const w of this.h.sql.exec<WorkRow>("SELECT * FROM work WHERE status NOT IN ('done', 'cancel') AND deadline IS NOT NULL AND deadline <= ?", now).toArray()) {
      const remote = w.remote ? (JSON.parse(w.remote) as RemoteProgress) : null;
      const seconds = Math.round((now - w.created_at) / 1000);
      this.settleWork(w, { error: `the call to ${w.name} timed out: not finished after ${seconds} s` });
      if (remote?.taskId && !REMOTE_FINAL.has(remote.state)) this.queueWork(w.step_id, w.turn, w.call_id, "cancel");
      n++;
    }
    return n;
  }

  /** Open work calls of the run (for snapshots and tests). */
  workCalls(): WorkRow[] {
    return this.h.sql.exec<WorkRow>("SELECT * FROM work ORDER BY created_at, step_id, call_id").toArray();
  }

  // ---- finishing ----------------------------------------------------------------------

  private finish(stepId: string, status: "completed" | "failed" | "canceled", output: string | null, error: string | null, resultStatus: string | null, summary: string | null): void {
    const step = this.step(stepId);
    if (!step || FINISHED.has(step.status)) return;
    const now = this.h.now();
    this.h.sql.exec(
      "UPDATE steps SET status = ?, output = ?, error = ?, result_status = ?, summary = ?, queued_turn = NULL, lease_until = NULL, finished_at = ?, updated_at = ? WHERE id = ?",
      status,
      output,
      error,
      resultStatus,
      summary,
      now,
      now,
      stepId,
    );
    const agent = (JSON.parse(step.agent) as AgentRef).name;
    const usage = step.usage ? (JSON.parse(step.usage) as Json) : null;
    if (status === "completed") {
      this.h.emit("step.completed", stepId, { agent, output: output ?? "", model: step.model, status: resultStatus ?? "SUCCESS", durationMs: now - step.created_at, ...(usage ? { usage } : {}) });
    } else if (status === "failed") {
      this.h.emit("step.failed", stepId, { agent, attempt: step.attempts, error: error ?? "failed" });
    } else {
      this.h.emit("step.canceled", stepId, { agent, reason: error ?? "canceled" });
    }
    this.endWork(stepId, status === "canceled" ? (error ?? "canceled") : `the step ${status}`);
    // Children still running end with it.
    this.cancelDescendants(stepId, status === "canceled" ? (error ?? "canceled") : `its caller ${agent} ${status === "completed" ? "completed" : "failed"}`);
    if (step.parent_id === null) {
      if (status === "canceled") return; // the run's cancel settles it
      this.h.settle(status === "completed" ? "completed" : "failed", output, status === "failed" ? error : null);
    } else {
      this.childSettled(step, status, output, error, resultStatus, summary);
    }
    this.refreshRunStatus();
  }

  private cancelOpenCalls(stepId: string, calls: OpenCall[], reason: string): void {
    for (const c of calls) {
      if (c.status !== "pending") continue;
      c.status = "done";
      c.error = `canceled: ${reason}`;
      if (c.childId) this.cancelStep(c.childId, reason);
    }
    this.h.sql.exec("UPDATE steps SET calls = ? WHERE id = ?", JSON.stringify(calls), stepId);
  }

  private cancelDescendants(stepId: string, reason: string): void {
    for (const child of this.h.sql.exec<StepRow>("SELECT * FROM steps WHERE parent_id = ?", stepId).toArray()) {
      if (!FINISHED.has(child.status)) this.cancelStep(child.id, reason);
    }
  }

  private cancelStep(stepId: string, reason: string): void {
    const step = this.step(stepId);
    if (!step || FINISHED.has(step.status)) return;
    const now = this.h.now();
    this.h.sql.exec(
      "UPDATE steps SET status = 'canceled', error = ?, queued_turn = NULL, lease_until = NULL, finished_at = ?, updated_at = ? WHERE id = ?",
      reason,
      now,
      now,
      stepId,
    );
    this.h.emit("step.canceled", stepId, { agent: (JSON.parse(step.agent) as AgentRef).name, reason });
    this.endWork(stepId, reason);
    this.cancelDescendants(stepId, reason);
  }

  /** Cancels every unfinished step and the run. False when the run had finished already. */
  cancelRun(reason: string): boolean {
    const run = this.h.run;
    if (TERMINAL_RUN_STATUSES.has(run.status)) return false;
    const root = this.h.sql.exec<StepRow>("SELECT * FROM steps WHERE parent_id IS NULL ORDER BY created_at LIMIT 1").toArray()[0];
    if (root) this.cancelStep(root.id, reason);
    for (const s of this.h.sql.exec<StepRow>("SELECT * FROM steps WHERE status NOT IN ('completed','failed','canceled')").toArray()) this.cancelStep(s.id, reason);
    this.h.settle("canceled", null, reason);
    return true;
  }

  /**
   * A new job (and token) for a step still queued for `turn`, when its job's token expired
   * before it was run (a long queue backlog). False when the step is not waiting for that turn.
   */
  reissueTurn(stepId: string, turn: number): boolean {
    const step = this.step(stepId);
    if (!step || step.status !== "queued" || step.queued_turn !== turn) return false;
    const jti = crypto.randomUUID();
    this.h.sql.exec("UPDATE steps SET job_jti = ?, updated_at = ? WHERE id = ?", jti, this.h.now(), stepId);
    const run = this.h.run;
    this.h.enqueue({ kind: "step", runId: run.runId, orgId: run.orgId, stepId, turn, agent: (JSON.parse(step.agent) as AgentRef).name, depth: step.depth, jti });
    return true;
  }

  /**
   * The watchdog for lost jobs (a consumer that died mid-turn, a queue that lost a message,
   * a restart of the local runtime): a step queued longer than `resendAfterMs` without being
   * claimed, or running past its claim's lease, is queued again with a fresh job and token.
   * Harmless when the old job was merely slow: a turn is claimed and recorded once, and the
   * old job's token is no longer the step's. Returns how many were sent again.
   */
  resendLostJobs(now: number): number {
    const lost = this.h.sql
      .exec<StepRow>(
        "SELECT * FROM steps WHERE queued_turn IS NOT NULL AND ((status = 'queued' AND updated_at + ? <= ?) OR (status = 'running' AND lease_until <= ?))",
        this.h.resendAfterMs,
        now,
        now,
      )
      .toArray();
    const run = this.h.run;
    for (const step of lost) {
      const jti = crypto.randomUUID();
      this.h.sql.exec("UPDATE steps SET status = 'queued', lease_until = NULL, job_jti = ?, updated_at = ? WHERE id = ?", jti, now, step.id);
      this.h.emit("step.retrying", step.id, {
        attempt: step.attempts,
        turn: step.queued_turn,
        error: step.status === "running" ? "the executor's claim ran out (the turn is run again)" : "the step's job was lost (it is sent again)",
      });
      this.h.enqueue({ kind: "step", runId: run.runId, orgId: run.orgId, stepId: step.id, turn: step.queued_turn!, agent: (JSON.parse(step.agent) as AgentRef).name, depth: step.depth, jti });
    }
    return lost.length + this.resendWork(now);
  }

  /** When the watchdog next has something to look at (null: nothing queued or running). */
  nextResendAt(): number | null {
    const q = this.h.sql.exec<{ t: number | null }>("SELECT min(updated_at) AS t FROM steps WHERE status = 'queued' AND queued_turn IS NOT NULL").one().t;
    const r = this.h.sql.exec<{ t: number | null }>("SELECT min(lease_until) AS t FROM steps WHERE status = 'running' AND lease_until IS NOT NULL").one().t;
    const w = this.h.sql
      .exec<{ f: number | null; q: number | null; r: number | null }>(
        "SELECT min(CASE WHEN status = 'following' THEN due_at END) AS f, min(CASE WHEN status IN ('queued', 'cancel') THEN queued_at END) AS q, min(CASE WHEN status = 'running' THEN lease_until END) AS r FROM work",
      )
      .one();
    const due = [q === null ? null : q + this.h.resendAfterMs, r, w.f, w.q === null ? null : w.q + this.h.resendAfterMs, w.r].filter((t): t is number => t !== null);
    return due.length ? Math.min(...due) : null;
  }

  /** Fails every step whose deadline passed (with its descendants); returns how many. */
  timeOutSteps(now: number): number {
    let n = 0;
    for (const s of this.h.sql.exec<StepRow>("SELECT * FROM steps WHERE status NOT IN ('completed','failed','canceled') AND deadline IS NOT NULL AND deadline <= ? ORDER BY depth", now).toArray()) {
      const fresh = this.step(s.id);
      if (!fresh || FINISHED.has(fresh.status)) continue;
      const seconds = Math.round((now - s.created_at) / 1000);
      this.finish(s.id, "failed", null, `the step timed out: not finished after ${seconds} s`, null, null);
      n++;
    }
    return n + this.timeOutWork(now);
  }

  /** Fails every unfinished step (the run timed out). */
  failAll(error: string): void {
    for (const s of this.h.sql.exec<StepRow>("SELECT * FROM steps WHERE status NOT IN ('completed','failed','canceled') ORDER BY depth DESC").toArray()) {
      const now = this.h.now();
      this.h.sql.exec("UPDATE steps SET status = 'failed', error = ?, queued_turn = NULL, finished_at = ?, updated_at = ? WHERE id = ?", error, now, now, s.id);
      this.h.emit("step.failed", s.id, { agent: (JSON.parse(s.agent) as AgentRef).name, attempt: s.attempts, error });
      this.endWork(s.id, error);
    }
  }

  /** The earliest deadline of an unfinished step, if any. */
  nextStepDeadline(): number | null {
    const step = this.h.sql.exec<{ d: number | null }>("SELECT min(deadline) AS d FROM steps WHERE status NOT IN ('completed','failed','canceled')").one().d;
    const work = this.h.sql.exec<{ d: number | null }>("SELECT min(deadline) AS d FROM work WHERE status NOT IN ('done', 'cancel')").one().d;
    return step === null ? work : work === null ? step : Math.min(step, work);
  }

  // ---- run status -----------------------------------------------------------------------

  private refreshRunStatus(): void {
    const run = this.h.run;
    if (TERMINAL_RUN_STATUSES.has(run.status)) return;
    const asking = this.h.sql.exec<{ n: number }>("SELECT count(*) AS n FROM steps WHERE status = 'input_required'").one().n > 0;
    const next: RunStatus = asking ? "input_required" : run.status === "submitted" ? "submitted" : "working";
    if (next !== run.status) this.setRunStatus(next);
  }

  private setRunStatus(status: RunStatus): void {
    const run = this.h.run;
    const before = run.status;
    run.status = status;
    run.updatedAt = this.h.now();
    this.h.saveRun();
    if (status === "input_required") this.h.emit("run.input_required", null, { requests: this.pendingInputs().map((r) => r.requestId) });
    else if (before === "input_required" && status === "working") this.h.emit("run.working", null, {});
  }

  private emitResult(stepId: string, call: OpenCall): void {
    this.h.emit("tool.result", stepId, {
      tool: call.name,
      callId: call.id,
      ...(call.error !== undefined ? { error: clip(call.error, 2_000) } : { result: clipJson(call.result ?? null) }),
    });
  }
}


const REMOTE_FINAL = new Set(["completed", "failed", "canceled", "rejected", "input-required", "auth-required"]);

const APPROVING = new Set(["approved", "approve", "yes", "y", "ok", "true", "allow", "allowed", "accept", "accepted"]);

/** Whether a person's answer approves: "approved" (or yes/ok/…), true, or an object saying so. */
export function isApproval(answer: Json): boolean {
  if (answer === true) return true;
  if (typeof answer === "string") return APPROVING.has(answer.trim().toLowerCase());
  if (answer && typeof answer === "object" && !Array.isArray(answer)) {
    const a = answer as Record<string, Json>;
    if (a.approved === true) return true;
    for (const k of ["answer", "decision", "choice", "text"]) if (typeof a[k] === "string" && APPROVING.has((a[k] as string).trim().toLowerCase())) return true;
  }
  return false;
}

function reasonOf(answer: Json): string {
  if (typeof answer === "string") return answer.trim().toLowerCase() === "rejected" ? "" : clip(answer, 500);
  if (answer && typeof answer === "object" && !Array.isArray(answer)) {
    const r = (answer as Record<string, Json>).reason ?? (answer as Record<string, Json>).comment;
    if (typeof r === "string") return clip(r, 500);
  }
  return "";
}

function nthCallRefusal(nth: number, max: number): string | null {
  return nth > max ? `too many agent calls in one turn (at most ${max})` : null;
}

function firstMessage(step: StepRow, runMessage: StoredMessage): ConversationMessage {
  const input = step.input ? (JSON.parse(step.input) as StoredMessage) : runMessage;
  return { role: "user", content: messageText(input) };
}

/** A stored message as the text a model reads (data parts as JSON blocks, files named). */
export function messageText(message: StoredMessage): string {
  return message.parts
    .map((p) => {
      if (p.kind === "text") return p.text;
      if (p.kind === "data") return "```json\n" + JSON.stringify(p.data, null, 2) + "\n```";
      return `[file ${p.filename ?? p.url ?? "attachment"}${p.mediaType ? ` (${p.mediaType})` : ""}]`;
    })
    .join("\n\n");
}

function addUsage(previous: string | null, turn: TurnUsage): Record<string, Json> {
  const u = previous ? (JSON.parse(previous) as Record<string, Json>) : {};
  const sum = (k: keyof TurnUsage) => (typeof u[k] === "number" ? (u[k] as number) : 0) + (turn[k] || 0);
  return {
    ...u,
    inputTokens: sum("inputTokens"),
    outputTokens: sum("outputTokens"),
    cachedInputTokens: sum("cachedInputTokens"),
    reasoningTokens: sum("reasoningTokens"),
    costUsd: roundCost(sum("costUsd")),
    turns: (typeof u.turns === "number" ? u.turns : 0) + 1,
  };
}

/** Dollars to a millionth of a cent, so sums of many small costs stay exact enough. */
export function roundCost(usd: number): number {
  return Math.round(usd * 1e8) / 1e8;
}

function usageJson(u: TurnUsage): Record<string, Json> {
  const out: Record<string, Json> = { inputTokens: u.inputTokens, outputTokens: u.outputTokens };
  if (u.cachedInputTokens) out.cachedInputTokens = u.cachedInputTokens;
  if (u.reasoningTokens) out.reasoningTokens = u.reasoningTokens;
  if (u.costUsd !== undefined) out.costUsd = roundCost(u.costUsd);
  return out;
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function clipJson(value: Json | undefined): Json {
  if (value === undefined) return null;
  const text = JSON.stringify(value);
  return text.length > MAX_RESULT_CHARS ? { truncated: true, preview: text.slice(0, 2_000) } : value;
}
