/**
 * Run events as A2A stream responses (what SSE subscribers and push receivers see), in
 * both dialects:
 * - v1.0: `StreamResponse` JSON (`{task}`, `{statusUpdate}`, `{artifactUpdate}`), the shapes
 *   of `@a2a-js/sdk`'s `StreamResponse` (its `fromJSON` reads them);
 * - v0.3: the `kind`-tagged events (`task`, `status-update` with `final`, `artifact-update`).
 *
 * What a client sees of a run:
 * - the Task first (`taskResponse`, from the run's snapshot);
 * - `working` when the root step first starts and when the run resumes after input;
 * - `input-required` with the questions (an agent message: the prompts as text, and the
 *   pending requests as a data part, so a client can name the one it answers);
 * - the root step's model text as it is generated: a `TaskArtifactUpdateEvent` per batch
 *   (`model.delta`), one artifact per turn attempt, `append` after its first batch and
 *   `lastChunk` on its last;
 * - the result artifact when the root step completes, then `completed` / `failed` /
 *   `canceled` (`final` in v0.3).
 * Every other event (child steps, tool calls, …) is step-level detail: `[]` here, carried by
 * `GET /runs/{id}/ws`. Each event maps to at most one response, so an SSE event's id is
 * exactly its run event's seq.
 */
import type { Json, PendingInput, RunEvent, RunSnapshot, RunStatus } from "../runs/types";
import { renderTask, type Dialect } from "./wire";

const STATE_V1: Record<RunStatus, string> = {
  submitted: "TASK_STATE_SUBMITTED",
  working: "TASK_STATE_WORKING",
  input_required: "TASK_STATE_INPUT_REQUIRED",
  completed: "TASK_STATE_COMPLETED",
  failed: "TASK_STATE_FAILED",
  canceled: "TASK_STATE_CANCELED",
};

const STATE_V03: Record<RunStatus, string> = {
  submitted: "submitted",
  working: "working",
  input_required: "input-required",
  completed: "completed",
  failed: "failed",
  canceled: "canceled",
};

/** States after which a SendStreamingMessage stream ends (terminal, or waiting for a person). */
export const FINAL_STATES: ReadonlySet<RunStatus> = new Set(["completed", "failed", "canceled", "input_required"]);

/** The Task, as the first response of a stream. */
export function taskResponse(snapshot: RunSnapshot, dialect: Dialect, historyLength?: number): Record<string, unknown> {
  const task = renderTask(dialect, snapshot, historyLength);
  return dialect === "1.0" ? { task } : task;
}

/** The root step of a run (the one the task's output comes from). */
export function rootStepId(snapshot: RunSnapshot): string {
  return snapshot.steps.find((s) => s.parentId === null)?.id ?? "s1";
}

/** The run status an event brings a task to, if any (for deciding when a stream ends). */
export function statusOf(event: RunEvent, snapshot: RunSnapshot): RunStatus | null {
  switch (event.type) {
    case "run.completed":
      return "completed";
    case "run.failed":
      return "failed";
    case "run.canceled":
      return "canceled";
    case "run.input_required":
      return "input_required";
    case "run.working":
      return "working";
    case "step.started":
      return isFirstStart(event, snapshot) ? "working" : null;
    default:
      return null;
  }
}

function isFirstStart(event: RunEvent, snapshot: RunSnapshot): boolean {
  return event.stepId === rootStepId(snapshot) && event.data.turn === 1 && event.data.attempt === 1;
}

/** The stream responses one run event makes (`[]` for events a client does not see). */
export function streamResponsesFor(event: RunEvent, snapshot: RunSnapshot, dialect: Dialect): unknown[] {
  const taskId = snapshot.runId;
  const contextId = snapshot.contextId;
  const root = rootStepId(snapshot);
  const status = (state: RunStatus, message?: { text: string; data?: Json }) => {
    const s = {
      state: (dialect === "1.0" ? STATE_V1 : STATE_V03)[state],
      ...(message ? { message: agentMessage(dialect, taskId, contextId, `${taskId}-${event.seq}`, message.text, message.data) } : {}),
      timestamp: event.at,
    };
    return dialect === "1.0"
      ? { statusUpdate: { taskId, contextId, status: s, metadata: { shaman: { seq: event.seq } } } }
      : { kind: "status-update", taskId, contextId, status: s, final: FINAL_STATES.has(state), metadata: { shaman: { seq: event.seq } } };
  };
  const artifact = (artifactId: string, name: string, text: string, append: boolean, lastChunk: boolean) => {
    const a = { artifactId, name, parts: [dialect === "1.0" ? { text, mediaType: "text/plain" } : { kind: "text", text }] };
    return dialect === "1.0"
      ? { artifactUpdate: { taskId, contextId, artifact: a, append, lastChunk, metadata: { shaman: { seq: event.seq } } } }
      : { kind: "artifact-update", taskId, contextId, artifact: a, append, lastChunk, metadata: { shaman: { seq: event.seq } } };
  };

  switch (event.type) {
    case "step.started":
      return isFirstStart(event, snapshot) ? [status("working")] : [];
    case "run.working":
      return [status("working")];
    case "run.input_required": {
      const inputs = Array.isArray(event.data.inputs) ? (event.data.inputs as unknown as PendingInput[]) : [];
      const text = inputs.length ? inputs.map((i) => i.prompt).join("\n\n") : "The task is waiting for input.";
      return [status("input_required", { text, data: { inputs: inputs as unknown as Json } })];
    }
    case "model.delta": {
      if (event.stepId !== root) return [];
      const d = event.data as { turn?: number; attempt?: number; index?: number; text?: string; last?: boolean };
      return [artifact(`${taskId}-text-${d.turn ?? 1}-${d.attempt ?? 1}`, "text", d.text ?? "", (d.index ?? 0) > 0, d.last === true)];
    }
    case "step.completed":
      // The same artifact as the Task's `result` (src/a2a/wire.ts), whole, in one chunk.
      return event.stepId === root && typeof event.data.output === "string" ? [artifact(`${taskId}-result`, "result", event.data.output, false, true)] : [];
    case "run.completed":
      return [status("completed")];
    case "run.failed":
      return [status("failed", { text: typeof event.data.error === "string" ? event.data.error : "the run failed" })];
    case "run.canceled":
      return [status("canceled", typeof event.data.error === "string" ? { text: event.data.error } : undefined)];
    default:
      return [];
  }
}

function agentMessage(dialect: Dialect, taskId: string, contextId: string, messageId: string, text: string, data?: Json): Record<string, unknown> {
  const parts =
    dialect === "1.0"
      ? [{ text }, ...(data !== undefined ? [{ data, mediaType: "application/json" }] : [])]
      : [{ kind: "text", text }, ...(data !== undefined ? [{ kind: "data", data }] : [])];
  return {
    ...(dialect === "0.3" ? { kind: "message" } : {}),
    messageId,
    contextId,
    taskId,
    role: dialect === "1.0" ? "ROLE_AGENT" : "agent",
    parts,
  };
}
