/**
 * What is pushed for a task event: exactly the `StreamResponse`s an SSE subscriber of the
 * task gets for that event, from the one shared mapping (`streamResponsesFor`,
 * src/a2a/events.ts), in the config's dialect: `working`, `input-required`, the result
 * artifact, `completed` / `failed` / `canceled` (v0.3: the `kind`-tagged events, `final` as
 * SSE has it), each with `metadata.shaman.seq` naming the run event, as the SSE event's `id`
 * does. A push body and the SSE `data` (the JSON-RPC `result`) for the same seq are equal.
 *
 * Two things of a stream are not pushed:
 * - the Task a stream opens with (it is not an update of the task; the client that made the
 *   config got the Task from SendMessage or GetTask);
 * - the model's text as it is generated (`model.delta`, SSE artifact updates named `text`):
 *   one webhook per ~150 ms batch would be a storm of POSTs for one answer, and the whole
 *   text arrives anyway as the `result` artifact before the final status. Streams and
 *   `GET /runs/{id}/ws` carry it live.
 */
import { streamResponsesFor } from "../a2a/events";
import type { Dialect } from "../a2a/wire";
import type { RunEvent, RunSnapshot } from "../runs/types";

const TERMINAL_EVENTS = new Set<RunEvent["type"]>(["run.completed", "run.failed", "run.canceled"]);

/** Whether an event ends the task (its last push is the config's final update). */
export function isTerminalEvent(event: Pick<RunEvent, "type">): boolean {
  return TERMINAL_EVENTS.has(event.type);
}

/** The root step's id as the run names it (its first step); `streamResponsesFor` reads it from the snapshot. */
const ROOT_STEP = "s1";

/**
 * Whether an event may become a push: `notifyPush` wakes the task's push object only for
 * these (a superset of what `pushBodiesFor` answers for; the object reads the whole log
 * itself and every task ends with a terminal event, so a missed wake only delays a push).
 */
export function mayPush(event: RunEvent): boolean {
  switch (event.type) {
    case "run.working":
    case "run.input_required":
    case "run.completed":
    case "run.failed":
    case "run.canceled":
      return true;
    case "step.started":
      return event.stepId === ROOT_STEP && event.data.attempt === 1 && (event.data.turn ?? 1) === 1;
    case "step.completed":
      return event.stepId === ROOT_STEP;
    default:
      return false;
  }
}

/** The bodies pushed for one event, in order: the SSE responses of the event, without model text. */
export function pushBodiesFor(event: RunEvent, snapshot: RunSnapshot, dialect: Dialect): unknown[] {
  if (event.type === "model.delta") return [];
  return streamResponsesFor(event, snapshot, dialect);
}
