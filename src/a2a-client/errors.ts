/**
 * What went wrong calling an external agent, and whether trying again later may help.
 * Messages are written here (never the SDK's or the remote's text verbatim: a remote body
 * is quoted only after the credential and the caller token are cut out of it, and short).
 */
import { OutboundError } from "../net/outbound";

/** A remote agent call that did not give an answer. `transient`: retrying later may work. */
export class RemoteCallError extends Error {
  readonly transient: boolean;
  /** HTTP status of the last response, when there was one. */
  readonly status: number | undefined;
  /** The A2A error's JSON-RPC code, when the agent answered with one. */
  readonly rpcCode: number | undefined;
  constructor(message: string, transient: boolean, extra: { status?: number; rpcCode?: number } = {}) {
    super(message);
    this.name = "RemoteCallError";
    this.transient = transient;
    this.status = extra.status;
    this.rpcCode = extra.rpcCode;
  }
}

/** What the bounded fetch saw during one call, to tell a network failure from an answer. */
export interface CallLog {
  /** Status of the last HTTP response received. */
  lastStatus?: number;
  /** A request took longer than the timeout. */
  timedOut?: boolean;
  /** A request failed before any response (connection refused, reset, DNS). */
  networkError?: boolean;
  /** A response body was larger than allowed. */
  tooLarge?: boolean;
}

const MAX_QUOTED = 300;

/** Cuts every occurrence of the given secrets out of a text, then shortens it. */
export function redact(text: string, secrets: readonly (string | null | undefined)[]): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join("[redacted]");
  // Anything that looks like a bearer token or a JWT, even one we did not send.
  out = out.replace(/Bearer\s+\S+/gi, "Bearer [redacted]").replace(/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g, "[redacted]");
  return out.length > MAX_QUOTED ? `${out.slice(0, MAX_QUOTED)}…` : out;
}

const A2A_REASON_TEXT: Record<string, string> = {
  TASK_NOT_FOUND: "task not found",
  TASK_NOT_CANCELABLE: "task cannot be canceled",
  UNSUPPORTED_OPERATION: "operation not supported",
  CONTENT_TYPE_NOT_SUPPORTED: "content type not supported",
  INVALID_AGENT_RESPONSE: "invalid agent response",
  VERSION_NOT_SUPPORTED: "protocol version not supported",
  INVALID_PARAMS: "request refused as malformed",
  EXTENSION_SUPPORT_REQUIRED: "extension support required",
  PUSH_NOTIFICATION_NOT_SUPPORTED: "push notifications not supported",
  EXTENDED_AGENT_CARD_NOT_CONFIGURED: "extended agent card not configured",
};

interface A2AErrorLike {
  reason?: unknown;
  envelopeCode?: unknown;
  message?: unknown;
}

/** The A2A (JSON-RPC) error inside `err`, if any (the SDK wraps stream errors in `cause`). */
function a2aErrorOf(err: unknown): A2AErrorLike | null {
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (Symbol.for("@a2a-js/sdk.A2AError") in e) return e as A2AErrorLike;
  }
  return null;
}

/** The JSON-RPC code of an A2A error inside `err`, if any. */
export function rpcCodeOf(err: unknown): number | undefined {
  const a2a = a2aErrorOf(err);
  return typeof a2a?.envelopeCode === "number" ? a2a.envelopeCode : undefined;
}

/**
 * Turns whatever a call threw into a RemoteCallError: a timeout, a network failure, 5xx,
 * 429 and 408 are transient; 4xx, an A2A/JSON-RPC error, a refused credential and an
 * answer that is not A2A are not.
 */
export function classify(err: unknown, log: CallLog, who: string, secrets: readonly (string | null | undefined)[]): RemoteCallError {
  if (err instanceof RemoteCallError) return err;
  if (err instanceof OutboundError) return new RemoteCallError(`${who}: ${err.message}`, false);
  const status = log.lastStatus;
  if (log.timedOut) return new RemoteCallError(`${who} did not answer in time`, true);
  if (log.tooLarge) return new RemoteCallError(`${who} answered with a response that is too large`, false, { status });
  if (log.networkError) return new RemoteCallError(`${who} could not be reached`, true);
  const a2a = a2aErrorOf(err);
  if (a2a) {
    const code = typeof a2a.envelopeCode === "number" ? a2a.envelopeCode : undefined;
    const reason = typeof a2a.reason === "string" ? (A2A_REASON_TEXT[a2a.reason] ?? a2a.reason.toLowerCase().replace(/_/g, " ")) : "error";
    const detail = typeof a2a.message === "string" && a2a.message ? `: ${redact(a2a.message, secrets)}` : "";
    const transient = status !== undefined && (status >= 500 || status === 429 || status === 408);
    return new RemoteCallError(`${who} answered with an A2A error (${reason}${code !== undefined ? `, ${code}` : ""})${detail}`, transient, {
      ...(status !== undefined ? { status } : {}),
      ...(code !== undefined ? { rpcCode: code } : {}),
    });
  }
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) {
    return new RemoteCallError(`${who} answered HTTP ${status}`, true, { status });
  }
  if (status !== undefined && status >= 300 && status < 400) {
    return new RemoteCallError(`${who} answered with a redirect (HTTP ${status}); register the agent's final URL`, false, { status });
  }
  if (status !== undefined && status >= 400) {
    return new RemoteCallError(`${who} answered HTTP ${status}`, false, { status });
  }
  return new RemoteCallError(`${who} answered with something that is not an A2A response`, false, { ...(status !== undefined ? { status } : {}) });
}
