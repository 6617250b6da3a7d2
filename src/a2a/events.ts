/**
 * Run events as A2A stream responses (what SSE subscribers and push receivers see), in
 * both dialects:
 * - v1.0: `StreamResponse` JSON (`{task}`, `{statusUpdate}`, `{artifactUpdate}`): built as
 *   `@a2a-js/sdk`'s `StreamResponse` objects and written with its `StreamResponse.toJSON`
 *   (so `append` / `lastChunk` appear only when true, as proto JSON has it);
 * - v0.3: the `kind`-tagged events (`task`, `status-update` with `final`, `artifact-update`),
 *   typed by the SDK's v0.3 types (`V03StatusUpdate`, … in ./wire). `final` is true on
 *   `input-required` too: the stream ends there.
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
import { StreamResponse } from "@a2a-js/sdk";
import type { Json, PendingInput, RunEvent, RunSnapshot, RunStatus, StoredMessage } from "../runs/types";
import { messageV03, messageV1, partV03, partV1, STATE_V03, STATE_V1, taskV03, taskV1, type Dialect, type V03ArtifactUpdate, type V03StatusUpdate, type V03Task } from "./wire";

/** States after which a SendStreamingMessage stream ends (terminal, or waiting for a person). */
export const FINAL_STATES: ReadonlySet<RunStatus> = new Set(["completed", "failed", "canceled", "input_required"]);

/** The Task, as the first response of a stream. */
export function taskResponse(snapshot: RunSnapshot, dialect: Dialect, historyLength?: number): unknown {
  return dialect === "1.0" ? StreamResponse.toJSON({ payload: { $case: "task", value: taskV1(snapshot, historyLength) } }) : (taskV03(snapshot, historyLength) satisfies V03Task);
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
  const metadata = { shaman: { seq: event.seq } };
  const status = (state: RunStatus, message?: { text: string; data?: Json }): unknown => {
    const m = message ? agentMessage(`${taskId}-${event.seq}`, message.text, message.data) : undefined;
    if (dialect === "1.0") {
      const value = { taskId, contextId, status: { state: STATE_V1[state], message: m && messageV1(m, taskId, contextId), timestamp: event.at }, metadata };
      return StreamResponse.toJSON({ payload: { $case: "statusUpdate", value } });
    }
    const s: V03StatusUpdate = {
      kind: "status-update",
      taskId,
      contextId,
      status: { state: STATE_V03[state], ...(m ? { message: messageV03(m, taskId, contextId) } : {}), timestamp: event.at },
      final: FINAL_STATES.has(state),
      metadata,
    };
    return s;
  };
  const artifact = (artifactId: string, name: string, text: string, append: boolean, lastChunk: boolean): unknown => {
    if (dialect === "1.0") {
      const a = { artifactId, name, description: "", parts: [partV1({ kind: "text", text, mediaType: "text/plain" })], metadata: undefined, extensions: [] };
      return StreamResponse.toJSON({ payload: { $case: "artifactUpdate", value: { taskId, contextId, artifact: a, append, lastChunk, metadata } } });
    }
    const u: V03ArtifactUpdate = { kind: "artifact-update", taskId, contextId, artifact: { artifactId, name, parts: [partV03({ kind: "text", text })] }, append, lastChunk, metadata };
    return u;
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

/** An agent message of a status update: the text, and the data (as JSON) when there is some. */
function agentMessage(messageId: string, text: string, data?: Json): StoredMessage {
  return { messageId, role: "agent", parts: [{ kind: "text", text }, ...(data !== undefined ? [{ kind: "data" as const, data, mediaType: "application/json" }] : [])] };
}
