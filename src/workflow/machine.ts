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
import { TERMINAL_RUN_STATUSES, type Json, type RunEventType, type RunStatus, type StepJob, type StepStatus, type StoredMessage } from "../runs/types";
import { runDataTool, RUN_DATA_TOOLS } from "../tools/run-data";
import type { CompletionStatus, ConversationMessage, RunLimits, TurnContext, TurnOutcome, TurnToolCall, TurnUsage } from "./types";

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

/** What the machine reads and writes of the run record. */
export interface MachineRun {
  runId: string;
  orgId: string;
  status: RunStatus;
  agent: AgentRef;
  message: StoredMessage;
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
  enqueue(job: StepJob): void;
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
      messages: JSON.parse(step.messages ?? "[]") as ConversationMessage[],
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
    const messages = JSON.parse(step.messages ?? "[]") as ConversationMessage[];
    if (messages.length === 0) messages.push(firstMessage(step, this.h.run.message));
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
    if (nth > this.h.limits.maxCallsPerTurn) return `too many agent calls in one turn (at most ${this.h.limits.maxCallsPerTurn})`;
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
      on: calls.filter((c) => c.status === "pending").map((c): Json => (c.childId ? { step: c.childId } : { requestId: c.requestId ?? "" })),
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
      call.status = "done";
      call.result = { requestId, ...(answer !== null && typeof answer === "object" && !Array.isArray(answer) ? answer : { answer }) };
      const stillAsking = calls.some((c) => c.status === "pending" && c.requestId);
      const status: StepStatus = stillAsking ? "input_required" : "waiting";
      this.h.sql.exec("UPDATE steps SET calls = ?, status = ?, updated_at = ? WHERE id = ?", JSON.stringify(calls), status, this.h.now(), step.id);
      this.h.emit("input.answered", step.id, { requestId, callId: call.id, answer: clipJson(answer) });
      this.emitResult(step.id, call);
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
    return lost.length;
  }

  /** When the watchdog next has something to look at (null: nothing queued or running). */
  nextResendAt(): number | null {
    const q = this.h.sql.exec<{ t: number | null }>("SELECT min(updated_at) AS t FROM steps WHERE status = 'queued' AND queued_turn IS NOT NULL").one().t;
    const r = this.h.sql.exec<{ t: number | null }>("SELECT min(lease_until) AS t FROM steps WHERE status = 'running' AND lease_until IS NOT NULL").one().t;
    const due = [q === null ? null : q + this.h.resendAfterMs, r].filter((t): t is number => t !== null);
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
    return n;
  }

  /** Fails every unfinished step (the run timed out). */
  failAll(error: string): void {
    for (const s of this.h.sql.exec<StepRow>("SELECT * FROM steps WHERE status NOT IN ('completed','failed','canceled') ORDER BY depth DESC").toArray()) {
      const now = this.h.now();
      this.h.sql.exec("UPDATE steps SET status = 'failed', error = ?, queued_turn = NULL, finished_at = ?, updated_at = ? WHERE id = ?", error, now, now, s.id);
      this.h.emit("step.failed", s.id, { agent: (JSON.parse(s.agent) as AgentRef).name, attempt: s.attempts, error });
    }
  }

  /** The earliest deadline of an unfinished step, if any. */
  nextStepDeadline(): number | null {
    return this.h.sql.exec<{ d: number | null }>("SELECT min(deadline) AS d FROM steps WHERE status NOT IN ('completed','failed','canceled')").one().d;
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
