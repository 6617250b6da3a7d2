/**
 * Shapes of the run's DAG: what the executor hands the run object after a model turn, what
 * the run object hands the executor to run one, and the limits that bound a run.
 */
import type { AgentRef } from "../agents/snapshot";
import type { Json, StoredMessage } from "../runs/types";

/** A conversation message as the AI SDK takes it (`ModelMessage`), kept as JSON. */
export type ConversationMessage = { role: "system" | "user" | "assistant" | "tool"; content: Json };

export interface RunLimits {
  /** Deepest call chain (the root is depth 0). */
  maxDepth: number;
  /** Steps one run may create in all. */
  maxStepsPerRun: number;
  /** Agent calls one model turn may make. */
  maxCallsPerTurn: number;
  /** A step not finished this long after it was created fails as timed out. */
  stepTimeoutMs: number;
  /** An agent may call one of its ancestors (off by default: a cycle is refused). */
  allowCycles: boolean;
}

export const DEFAULT_LIMITS: Readonly<RunLimits> = Object.freeze({
  maxDepth: 8,
  maxStepsPerRun: 200,
  maxCallsPerTurn: 16,
  stepTimeoutMs: 30 * 60_000,
  allowCycles: false,
});

/** Limits from an org's settings (`settings.runLimits`), each field falling back to the default. */
export function limitsFrom(settings: { runLimits?: Partial<Record<keyof RunLimits, unknown>> } | undefined): RunLimits {
  const s = settings?.runLimits ?? {};
  const int = (v: unknown, d: number, max: number) => (typeof v === "number" && Number.isInteger(v) && v >= 1 ? Math.min(v, max) : d);
  return {
    maxDepth: int(s.maxDepth, DEFAULT_LIMITS.maxDepth, 64),
    maxStepsPerRun: int(s.maxStepsPerRun, DEFAULT_LIMITS.maxStepsPerRun, 10_000),
    maxCallsPerTurn: int(s.maxCallsPerTurn, DEFAULT_LIMITS.maxCallsPerTurn, 500),
    stepTimeoutMs: int(s.stepTimeoutMs, DEFAULT_LIMITS.stepTimeoutMs, 24 * 3_600_000),
    allowCycles: s.allowCycles === true,
  };
}

/** What the run object hands the executor for one turn of one step. */
export interface TurnContext {
  runId: string;
  orgId: string;
  stepId: string;
  /** 1 for the step's first model call. */
  turn: number;
  /** Attempts at this turn, this one included. */
  attempt: number;
  agent: AgentRef;
  depth: number;
  /** The conversation so far (without the system prompt, which comes from the agent). */
  messages: ConversationMessage[];
  /** The step's input (for the root: the caller's message). */
  input: StoredMessage;
  initiatedBy: string | null;
  userId: string | null;
  /** Calls this turn may still make, and whether the step may still create children. */
  maxCallsPerTurn: number;
  /** Someone watches the run live: stream the model's text (`model.delta` events) as it comes. */
  liveText?: boolean;
}

/** A tool call the model made, as the executor reports it (arguments as the model gave them). */
export interface TurnToolCall {
  id: string;
  name: string;
  args: Json;
  /**
   * What the executor found out before reporting (it holds D1, the run object does not):
   * for `call_agent`, the resolved agent or why it cannot be called; for a tool whose
   * arguments fail their schema, the error; for a tool the executor ran itself, its result.
   */
  resolved?: { agent: AgentRef; qualifiedName: string } | undefined;
  error?: string | undefined;
  result?: Json | undefined;
  /** Work an executor carries out after the turn is recorded (an MCP tool, an external agent), once per call id. */
  work?: WorkSpec | undefined;
  /** Set when a person must approve the call before it runs: what they are asked. */
  approval?: string | undefined;
}

/** The server of an MCP tool call, as the run stores it (src/mcp's McpServerSpec). */
export type StoredMcpServer = { name: string; url: string } & Record<string, Json>;

/** An external A2A agent as the run stores it (src/a2a-client's RemoteAgentTarget). */
export interface StoredRemoteTarget {
  name: string;
  url: string;
  credentialSecret: string | null;
}

/** Executor-run work of a tool call. */
export type WorkSpec =
  | {
      kind: "mcp";
      server: StoredMcpServer;
      /** The tool's name on its server (the model sees it namespaced). */
      tool: string;
      args: Json;
      /** Annotated read-only or idempotent: safe to run again when its executor was lost mid-call. */
      rerunnable: boolean;
      timeoutMs?: number | undefined;
    }
  | {
      kind: "remote";
      target: StoredRemoteTarget;
      text: string;
      /** The message id sent (fixed per call, so a resend is recognisable). */
      messageId: string;
      /** Continues a remote task (one that asked for input) and its context. */
      taskId?: string | undefined;
      contextId?: string | undefined;
    };

/** Progress of an external agent's task, as the executor reports it. */
export interface RemoteProgress {
  taskId: string;
  contextId?: string | undefined;
  state: string;
  text: string;
  data?: Json | undefined;
  error?: string | undefined;
  /** The agent's card offers streaming (the next follow may stream). */
  streaming: boolean;
}

/** What an executor reports for one work call. */
export type WorkOutcome = { result: Json } | { error: string; retrying?: boolean } | { remote: RemoteProgress };

/** What the run object hands the executor to carry out one work call. */
export interface CallContext {
  runId: string;
  orgId: string;
  stepId: string;
  turn: number;
  callId: string;
  /** The tool's name as the model called it. */
  name: string;
  agent: AgentRef;
  depth: number;
  work: WorkSpec;
  /** What to do: run the tool or send the message; follow a remote task; cancel it. */
  phase: "run" | "follow" | "cancel";
  remote?: RemoteProgress | undefined;
  /** Follows of the remote task so far. */
  follows: number;
  attempt: number;
  initiatedBy: string | null;
  userId: string | null;
}

export interface TurnUsage {
  inputTokens: number;
  outputTokens: number;
  /** Input tokens served from the provider's prompt cache (part of inputTokens), where reported. */
  cachedInputTokens?: number | undefined;
  /** Reasoning tokens (part of outputTokens), where reported. */
  reasoningTokens?: number | undefined;
  /** What the call cost in US dollars, at the org's prices (src/usage). */
  costUsd?: number | undefined;
}

/** One model turn of a step, reported by the executor to the run object. */
export interface TurnOutcome {
  /** The assistant message as the model gave it (text and tool-call parts). */
  assistant: ConversationMessage;
  text: string;
  toolCalls: TurnToolCall[];
  model: string;
  durationMs: number;
  usage: TurnUsage;
}

/** Statuses `complete_agent_execution` takes. */
export type CompletionStatus = "SUCCESS" | "PARTIAL" | "FAILED";
