/**
 * Which run events become pushes, and the `StreamResponse` each maps to, per dialect.
 *
 * H's `streamResponsesFor(event, snapshot, dialect)` (src/a2a/events.ts) is the shared
 * mapping for streams and pushes; until it lands, this minimal local one is used (same
 * signature, so switching is an import): status updates for the task's state changes
 * (submitted, working, input required, working again, terminal) and the result artifact
 * before the final status. v1.0 bodies are `StreamResponse` JSON (`{ statusUpdate }`,
 * `{ artifactUpdate }`); v0.3 bodies are the v0.3 events (`kind: "status-update"`, …).
 */
import type { RunEvent, RunSnapshot } from "../runs/types";
import type { Dialect } from "../a2a/wire";

const TERMINAL_EVENTS = new Set(["run.completed", "run.failed", "run.canceled"]);

/** Whether an event ends the task (its last push is the final update). */
export function isTerminalEvent(event: Pick<RunEvent, "type">): boolean {
  return TERMINAL_EVENTS.has(event.type);
}

/** The root step's first start: the task goes from submitted to working. */
function isFirstStart(event: RunEvent): boolean {
  return event.type === "step.started" && event.stepId === "s1" && event.data.attempt === 1 && (event.data.turn ?? 1) === 1;
}

/**
 * Whether an event may become a push: `notifyPush` wakes the task's push object only for
 * these (the object reads the whole log itself, so a missed wake only delays a push).
 */
export function mayPush(event: RunEvent): boolean {
  return (
    isTerminalEvent(event) ||
    event.type === "run.created" ||
    event.type === "run.working" ||
    event.type === "run.input_required" ||
    isFirstStart(event)
  );
}

const STATE_V1 = {
  submitted: "TASK_STATE_SUBMITTED",
  working: "TASK_STATE_WORKING",
  input_required: "TASK_STATE_INPUT_REQUIRED",
  completed: "TASK_STATE_COMPLETED",
  failed: "TASK_STATE_FAILED",
  canceled: "TASK_STATE_CANCELED",
} as const;
const STATE_V03 = {
  submitted: "submitted",
  working: "working",
  input_required: "input-required",
  completed: "completed",
  failed: "failed",
  canceled: "canceled",
} as const;
type State = keyof typeof STATE_V1;

function stateOf(event: RunEvent): State | null {
  switch (event.type) {
    case "run.created":
      return "submitted";
    case "run.working":
      return "working";
    case "run.input_required":
      return "input_required";
    case "run.completed":
      return "completed";
    case "run.failed":
      return "failed";
    case "run.canceled":
      return "canceled";
    default:
      return isFirstStart(event) ? "working" : null;
  }
}

/** The local mapping (see the file comment): the bodies pushed for one event, in order. */
export function localStreamResponsesFor(event: RunEvent, snapshot: Pick<RunSnapshot, "runId" | "contextId">, dialect: Dialect): unknown[] {
  const state = stateOf(event);
  if (state === null) return [];
  const taskId = snapshot.runId;
  const contextId = snapshot.contextId;
  const final = isTerminalEvent(event);
  const out: unknown[] = [];
  if (event.type === "run.completed" && typeof event.data.output === "string") {
    const text = event.data.output;
    const artifactId = `${taskId}-result`;
    out.push(
      dialect === "1.0"
        ? { artifactUpdate: { taskId, contextId, artifact: { artifactId, name: "result", parts: [{ text, mediaType: "text/plain" }] }, append: false, lastChunk: true } }
        : { kind: "artifact-update", taskId, contextId, artifact: { artifactId, name: "result", parts: [{ kind: "text", text }] }, append: false, lastChunk: true },
    );
  }
  const errorText = event.type === "run.failed" ? String(event.data.error ?? "the run failed") : null;
  const message =
    errorText === null
      ? undefined
      : dialect === "1.0"
        ? { messageId: `${taskId}-error`, taskId, contextId, role: "ROLE_AGENT", parts: [{ text: errorText }] }
        : { kind: "message", messageId: `${taskId}-error`, taskId, contextId, role: "agent", parts: [{ kind: "text", text: errorText }] };
  const status = { state: dialect === "1.0" ? STATE_V1[state] : STATE_V03[state], ...(message ? { message } : {}), timestamp: event.at };
  out.push(dialect === "1.0" ? { statusUpdate: { taskId, contextId, status } } : { kind: "status-update", taskId, contextId, status, final });
  return out;
}
