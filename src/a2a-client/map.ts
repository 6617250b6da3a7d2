/**
 * A remote A2A task (or direct message) as the run sees it: `RemoteTask`.
 *
 *   state      the task's state, lower case as in the v0.3 spelling ("input-required")
 *   text       completed: the artifacts' text parts (parts joined with "\n", artifacts
 *              with "\n\n"), else the status message's text, else the last agent message
 *              in the history; input-required / auth-required: the status message's text
 *              (the question), else the last agent message; failed / rejected / canceled:
 *              the reason (status message text) or a sentence naming the state;
 *              submitted / working: the status message's text (progress), often "".
 *   data       the data parts of the artifacts (completed) or of the status message
 *              (otherwise): one part → its value, several → an array of values; absent when none
 *   error      failed / rejected / canceled only: the reason
 *   taskId     the remote task's id ("" when the agent answered with a message and made no task)
 */
import { TaskState, type Message, type Part, type Task } from "@a2a-js/sdk";
import type { Json } from "../runs/types";

export type RemoteState = "submitted" | "working" | "input-required" | "auth-required" | "completed" | "failed" | "canceled" | "rejected" | "unknown";

export interface RemoteTask {
  taskId: string;
  contextId?: string;
  state: RemoteState;
  text: string;
  data?: Json;
  error?: string;
  /** The agent's card offers streaming (followRemote subscribes instead of polling). */
  streaming: boolean;
}

/** Bound on the text kept from a remote answer. */
export const MAX_REMOTE_TEXT = 200_000;

const STATES: Partial<Record<TaskState, RemoteState>> = {
  [TaskState.TASK_STATE_SUBMITTED]: "submitted",
  [TaskState.TASK_STATE_WORKING]: "working",
  [TaskState.TASK_STATE_INPUT_REQUIRED]: "input-required",
  [TaskState.TASK_STATE_AUTH_REQUIRED]: "auth-required",
  [TaskState.TASK_STATE_COMPLETED]: "completed",
  [TaskState.TASK_STATE_FAILED]: "failed",
  [TaskState.TASK_STATE_CANCELED]: "canceled",
  [TaskState.TASK_STATE_REJECTED]: "rejected",
};

export const TERMINAL_REMOTE_STATES: ReadonlySet<RemoteState> = new Set(["completed", "failed", "canceled", "rejected"]);
/** States in which the remote waits for someone: following it further gives nothing new. */
export const SETTLED_REMOTE_STATES: ReadonlySet<RemoteState> = new Set([...TERMINAL_REMOTE_STATES, "input-required", "auth-required"]);

export function remoteState(state: TaskState | undefined): RemoteState {
  return (state !== undefined && STATES[state]) || "unknown";
}

function partsText(parts: readonly Part[] | undefined): string {
  return (parts ?? [])
    .map((p) => (p?.content?.$case === "text" && typeof p.content.value === "string" ? p.content.value : null))
    .filter((t): t is string => t !== null && t !== "")
    .join("\n");
}

function partsData(parts: readonly Part[] | undefined): Json[] {
  return (parts ?? []).filter((p) => p?.content?.$case === "data").map((p) => toJson((p.content as { value: unknown }).value));
}

function toJson(value: unknown): Json {
  if (value === undefined) return null;
  try {
    return JSON.parse(JSON.stringify(value)) as Json;
  } catch {
    return null;
  }
}

function bounded(text: string): string {
  return text.length > MAX_REMOTE_TEXT ? `${text.slice(0, MAX_REMOTE_TEXT)}\n[truncated: the remote answer was ${text.length} characters]` : text;
}

function lastAgentText(history: readonly Message[] | undefined): string {
  for (let i = (history?.length ?? 0) - 1; i >= 0; i--) {
    const m = history![i]!;
    if (m.role === 2 /* ROLE_AGENT */) return partsText(m.parts);
  }
  return "";
}

function dataField(values: Json[]): { data?: Json } {
  if (values.length === 0) return {};
  return { data: values.length === 1 ? values[0]! : values };
}

/** The run's view of a remote Task. */
export function fromTask(task: Task, streaming: boolean): RemoteTask {
  const state = remoteState(task.status?.state);
  const statusText = partsText(task.status?.message?.parts);
  const base = { taskId: task.id ?? "", ...(task.contextId ? { contextId: task.contextId } : {}), state, streaming };
  switch (state) {
    case "completed": {
      const artifactText = (task.artifacts ?? []).map((a) => partsText(a?.parts)).filter((t) => t !== "").join("\n\n");
      const text = artifactText || statusText || lastAgentText(task.history);
      const data = [...(task.artifacts ?? []).flatMap((a) => partsData(a?.parts)), ...partsData(task.status?.message?.parts)];
      return { ...base, text: bounded(text), ...dataField(data) };
    }
    case "input-required":
    case "auth-required":
      return { ...base, text: bounded(statusText || lastAgentText(task.history)), ...dataField(partsData(task.status?.message?.parts)) };
    case "failed":
    case "rejected":
    case "canceled": {
      const reason = bounded(statusText || `the remote agent reports the task ${state}`);
      return { ...base, text: reason, error: reason, ...dataField(partsData(task.status?.message?.parts)) };
    }
    default:
      return { ...base, text: bounded(statusText), ...dataField(partsData(task.status?.message?.parts)) };
  }
}

/** The run's view of a direct message answer (no task): a completed exchange. */
export function fromMessage(message: Message, streaming: boolean): RemoteTask {
  return {
    taskId: message.taskId ?? "",
    ...(message.contextId ? { contextId: message.contextId } : {}),
    state: "completed",
    text: bounded(partsText(message.parts)),
    ...dataField(partsData(message.parts)),
    streaming,
  };
}

export function isTask(result: Task | Message): result is Task {
  return typeof (result as Task).id === "string" && "status" in result;
}
