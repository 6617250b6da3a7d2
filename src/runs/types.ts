/** Shapes shared by the gateway, the run Durable Object and the executor. */
import type { AgentRef } from "../agents/snapshot";
import type { NewUsageRecord } from "../usage/records";
import type { AuditEntry } from "../audit/log";

/** Any JSON value. Used instead of `unknown` so values can cross Durable Object RPC. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** A message part as Shaman stores it, independent of the A2A protocol version. */
export type StoredPart =
  | { kind: "text"; text: string; mediaType?: string }
  | { kind: "data"; data: Json; mediaType?: string }
  | { kind: "file"; url?: string; raw?: string; mediaType?: string; filename?: string };

export interface StoredMessage {
  messageId: string;
  role: "user" | "agent";
  parts: StoredPart[];
  metadata?: Record<string, Json>;
}

export type RunStatus = "submitted" | "working" | "input_required" | "completed" | "failed" | "canceled";
export type StepStatus = "queued" | "running" | "waiting" | "input_required" | "completed" | "failed" | "canceled";

export const TERMINAL_RUN_STATUSES: ReadonlySet<RunStatus> = new Set(["completed", "failed", "canceled"]);

export interface RunInit {
  runId: string;
  orgId: string;
  contextId: string;
  agent: AgentRef;
  /** The principal that started the run: kept for the audit of every internal step. */
  initiatedBy: string | null;
  /** The person behind the run (the user, or the creator of the API key), for audit rows. */
  userId?: string | null;
  message: StoredMessage;
  /**
   * What the `agent.call` audit row, written when the run settles, records. Its input is
   * the run's message (added by the run object, so the message is stored once) and `input`.
   */
  audit?: { resource: string; requestId: string | null; input?: { [key: string]: Json } };
  /** The org's run limits (src/workflow/types.ts); defaults when absent. */
  limits?: Partial<import("../workflow/types").RunLimits>;
  /**
   * Earlier turns of the conversation (the task's context), oldest first: the root step's
   * model reads them before the message. Bounded by whoever starts the run.
   */
  history?: HistoryTurn[];
  /**
   * Queued behind a running task of its context (frontmatter `concurrency: enqueue`): the
   * run is recorded but its root step waits until `release` (called by the task before it
   * when that one settles, or by whoever started it when nothing runs before it any more).
   */
  deferred?: boolean;
  /**
   * Push notifications: true when the task has (or is about to have) a push config, so
   * its events wake its push object; false when it has none (no lookup per event; a config
   * created later sets it through `enablePush`). Absent on runs recorded before the flag
   * existed: their events look configs up in D1.
   */
  push?: boolean;
  /**
   * The root step's model text streams as it is generated even when nobody is watching
   * yet: the caller did not wait for the end (SendStreamingMessage, returnImmediately), so
   * a stream or subscriber may come at any moment. Otherwise a turn streams its text only
   * when a WebSocket or a stream watches the run at its start.
   */
  liveText?: boolean;
}

/** One earlier turn of a conversation: what was asked, or what was answered. */
export interface HistoryTurn {
  role: "user" | "assistant";
  text: string;
}

export interface RunEvent {
  seq: number;
  type: RunEventType;
  runId: string;
  stepId: string | null;
  /** ISO 8601 time the event was recorded. */
  at: string;
  data: Record<string, Json>;
}

export type RunEventType =
  | "run.created"
  | "step.queued"
  | "step.started"
  | "step.retrying"
  | "step.completed"
  | "step.failed"
  | "step.waiting"
  | "step.resumed"
  | "step.canceled"
  | "model.turn"
  /** Model text as it is generated, batched (data: turn, attempt, index, text, last?). */
  | "model.delta"
  | "tool.called"
  | "tool.result"
  | "tool.started"
  | "tool.progress"
  | "input.requested"
  | "input.answered"
  | "run.input_required"
  | "run.working"
  | "run.completed"
  | "run.failed"
  | "run.canceled";

export interface StepView {
  id: string;
  parentId: string | null;
  agent: string;
  status: StepStatus;
  depth: number;
  /** Attempts at the current (or last) turn. */
  attempts: number;
  /** Model turns recorded. */
  turns: number;
  output: string | null;
  error: string | null;
  model: string | null;
  /** How the agent ended it: SUCCESS, PARTIAL or FAILED (complete_agent_execution). */
  resultStatus: string | null;
  usage: { inputTokens?: number; outputTokens?: number; cachedInputTokens?: number; reasoningTokens?: number; costUsd?: number; turns?: number } | null;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
}

/** A question a step of the run is waiting on, answered with POST /runs/{id}/input/{requestId}. */
export interface PendingInput {
  requestId: string;
  stepId: string;
  agent: string;
  prompt: string;
  inputType: string;
  choices?: string[];
}

export interface RunSnapshot {
  runId: string;
  orgId: string;
  contextId: string;
  agent: AgentRef;
  status: RunStatus;
  message: StoredMessage;
  output: string | null;
  error: string | null;
  createdAt: number;
  updatedAt: number;
  lastSeq: number;
  steps: StepView[];
  /** Tokens and cost of every model call of the run so far. */
  usage?: RunUsage;
  /** Questions waiting for a person. */
  inputs: PendingInput[];
}

export interface RunUsage {
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  reasoningTokens: number;
  costUsd: number;
  turns: number;
}

/** What the executor needs to run one step, handed out by the run object on claim. */
export interface StepContext {
  runId: string;
  orgId: string;
  stepId: string;
  agent: AgentRef;
  depth: number;
  attempt: number;
  input: StoredMessage;
  initiatedBy: string | null;
  userId: string | null;
}

export interface StepResult {
  text: string;
  model: string;
  durationMs: number;
  usage?: { inputTokens?: number | undefined; outputTokens?: number | undefined };
}

/** A queue message for a run: a pointer to a step; the run object holds everything else. */
export interface StepJob {
  kind: "step";
  runId: string;
  orgId: string;
  stepId: string;
  /** The turn this job runs (1 when absent: jobs made before turns existed). */
  turn?: number;
  /** The internal token the executor verifies before running anything (src/auth/internal-jwt.ts). */
  token?: string;
  /** The step's agent (the token's audience) and depth, as the run object issued them. */
  agent?: string;
  depth?: number;
  /** The token's id, set by the machine and signed by the run object before sending (never sent as such). */
  jti?: string;
}

/** A queue message asking for a repository sync (webhook deliveries, the cron sweep). */
export interface SyncJob {
  kind: "sync";
  orgId: string;
  repositoryId: string;
  trigger: "webhook" | "schedule" | "api";
  /** Fetch and import even if the head is unchanged (e.g. the repository became root). */
  force?: boolean;
}

/** Audit rows the executor could not write with their batch (D1 refused): written later. */
export interface AuditJob {
  kind: "audit";
  orgId: string;
  /** Each with its `id` and `at` already fixed, and redacted. */
  entries: AuditEntry[];
  /** Usage rows of model calls (src/usage/records.ts), when their batch could not write them. */
  usage?: NewUsageRecord[];
}

/**
 * A queue message for one executor-run tool call of a step's turn (an MCP tool, a call to
 * an external agent: send, poll, cancel). Like a step job it carries an internal token
 * whose jti the run object checks when the call is claimed.
 */
export interface CallJob {
  kind: "call";
  runId: string;
  orgId: string;
  stepId: string;
  turn: number;
  callId: string;
  token?: string;
  agent?: string;
  depth?: number;
  jti?: string;
}

/** What a run object queues. */
export type RunJob = StepJob | CallJob;

export type Job = StepJob | CallJob | SyncJob | AuditJob;
