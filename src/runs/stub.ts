import type { CallContext, TurnContext, TurnOutcome, WorkOutcome } from "../workflow/types";
import type { Json, RunEvent, RunInit, RunSnapshot, StepContext, StepResult } from "./types";

/**
 * The run object's RPC contract. `RunObject` implements it; callers get a stub typed by it
 * (the generated stub type of a class whose values hold JSON recurses too deeply for tsc).
 */
export interface RunRpc {
  start(init: RunInit, waitMs?: number): Promise<RunSnapshot>;
  wait(orgId: string, waitMs: number): Promise<RunSnapshot | null>;
  snapshot(orgId: string): Promise<RunSnapshot | null>;
  events(orgId: string, after?: number, limit?: number): Promise<RunEvent[] | null>;
  claimStep(orgId: string, stepId: string): Promise<StepContext | null>;
  completeStep(orgId: string, stepId: string, result: StepResult): Promise<void>;
  failStep(orgId: string, stepId: string, error: string, retrying: boolean): Promise<void>;
  claimTurn(orgId: string, stepId: string, turn: number, token?: { jti: string; agent: string }): Promise<TurnContext | null | { refused: "replayed" | "audience" }>;
  reissueTurn(orgId: string, stepId: string, turn: number): Promise<boolean>;
  recordTurn(orgId: string, stepId: string, turn: number, outcome: TurnOutcome, maxIterations: number): Promise<boolean>;
  failTurn(orgId: string, stepId: string, turn: number, error: string, retrying: boolean): Promise<void>;
  claimCall(orgId: string, stepId: string, turn: number, callId: string, token?: { jti: string; agent: string }): Promise<CallContext | null | { refused: "replayed" | "audience" }>;
  recordCall(orgId: string, stepId: string, turn: number, callId: string, outcome: WorkOutcome): Promise<boolean>;
  cancel(orgId: string, reason?: string): Promise<boolean | null>;
  /** Starts a deferred run's root step; false when it was not deferred or started already. */
  release(orgId: string): Promise<boolean>;
  /** The task has a push config from now on: its events wake its push object (null: not this org's run). */
  enablePush(orgId: string): Promise<boolean | null>;
  answerInput(orgId: string, requestId: string, answer: Json): Promise<boolean | null>;
  /** Streams model text of a running turn to subscribers (a `model.delta` event); false when the turn is no longer running. */
  appendDelta(orgId: string, stepId: string, delta: ModelDelta): Promise<boolean>;
  /** A single-use WebSocket ticket for this run (null: not this org's run). */
  issueWsTicket(orgId: string, ttlMs: number): Promise<{ ticket: string; expiresAt: number } | null>;
  fetch(request: Request): Promise<Response>;
}

/** A batch of model text of one turn attempt; `index` counts the attempt's batches from 0, `last` marks the final one. */
export interface ModelDelta {
  turn: number;
  attempt: number;
  index: number;
  text: string;
  last?: boolean;
}

/** Run ids are UUIDs; anything else is not a run (and is answered like a missing one). */
export const RUN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function runStub(env: Env, runId: string): RunRpc {
  return env.RUNS.get(env.RUNS.idFromName(runId)) as unknown as RunRpc;
}
