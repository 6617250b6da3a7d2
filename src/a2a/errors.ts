/**
 * A2A errors in the spec's form, for both bindings, built with `@a2a-js/sdk`'s own error
 * classes and serialisers:
 * - JSON-RPC: `{ code, message, data: [ErrorInfo] }`, the A2A codes -32001…-32009 and
 *   -32602 (RequestMalformed) carrying a `google.rpc.ErrorInfo` with the spec's `reason`
 *   (e.g. `TASK_NOT_FOUND`) and domain `a2a-protocol.org`;
 * - HTTP+JSON: a `google.rpc.Status` body `{ error: { code, status, message, details } }`
 *   with the spec's HTTP status (TaskNotFound 404, the others 400, InvalidAgentResponse 500).
 * Handlers throw `JsonRpcError` (src/a2a/jsonrpc.ts) with the JSON-RPC code; this module
 * turns it into either wire form, so both bindings answer alike.
 */
import {
  A2A_ERROR_CODE,
  A2AError,
  ContentTypeNotSupportedError,
  ExtendedAgentCardNotConfiguredError,
  ExtensionSupportRequiredError,
  InvalidAgentResponseError,
  PushNotificationNotSupportedError,
  RequestMalformedError,
  restStatusFor,
  TaskNotCancelableError,
  TaskNotFoundError,
  toJsonRpcError,
  toRestErrorBody,
  UnsupportedOperationError,
  VersionNotSupportedError,
} from "@a2a-js/sdk/errors";
import { JSONRPC, JsonRpcError } from "./jsonrpc";

type SemanticClass = new (options?: { message?: string; metadata?: Record<string, string> }) => A2AError;

/** The SDK's semantic error for each A2A JSON-RPC code. */
// (the SDK's code table, not jsonrpc.ts's: that module imports this one)
const SEMANTIC: Record<number, SemanticClass> = {
  [A2A_ERROR_CODE.TASK_NOT_FOUND]: TaskNotFoundError,
  [A2A_ERROR_CODE.TASK_NOT_CANCELABLE]: TaskNotCancelableError,
  [A2A_ERROR_CODE.PUSH_NOTIFICATION_NOT_SUPPORTED]: PushNotificationNotSupportedError,
  [A2A_ERROR_CODE.UNSUPPORTED_OPERATION]: UnsupportedOperationError,
  [A2A_ERROR_CODE.CONTENT_TYPE_NOT_SUPPORTED]: ContentTypeNotSupportedError,
  [A2A_ERROR_CODE.INVALID_AGENT_RESPONSE]: InvalidAgentResponseError,
  [A2A_ERROR_CODE.EXTENDED_CARD_NOT_CONFIGURED]: ExtendedAgentCardNotConfiguredError,
  [A2A_ERROR_CODE.EXTENSION_SUPPORT_REQUIRED]: ExtensionSupportRequiredError,
  [A2A_ERROR_CODE.VERSION_NOT_SUPPORTED]: VersionNotSupportedError,
  [A2A_ERROR_CODE.INVALID_PARAMS]: RequestMalformedError,
};

/** `ErrorInfo.metadata` is a string map: structured detail is flattened into it. */
function metadataOf(data: unknown): Record<string, string> | undefined {
  if (!data || typeof data !== "object" || Array.isArray(data)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(data as Record<string, unknown>)) {
    if (v === undefined) continue;
    out[k] = typeof v === "string" ? v : JSON.stringify(v);
  }
  return Object.keys(out).length ? out : undefined;
}

function semantic(err: JsonRpcError): A2AError | null {
  const cls = SEMANTIC[err.code];
  if (!cls) return null;
  const metadata = metadataOf(err.data);
  return new cls({ message: err.message, ...(metadata ? { metadata } : {}) });
}

/** The JSON-RPC `error` member for an error. */
export function rpcErrorMember(err: JsonRpcError): { code: number; message: string; data?: unknown } {
  const s = semantic(err);
  if (s) {
    const wire = toJsonRpcError(s);
    return { code: err.code, message: wire.message, ...(wire.data ? { data: wire.data } : {}) };
  }
  return { code: err.code, message: err.message, ...(err.data !== undefined ? { data: err.data } : {}) };
}

/** HTTP status of an error on the HTTP+JSON binding (§5.4 / §11.6). */
export function restStatusOf(err: JsonRpcError): number {
  const s = semantic(err);
  if (s) return restStatusFor(s);
  switch (err.code) {
    case JSONRPC.PARSE_ERROR:
    case JSONRPC.INVALID_REQUEST:
      return err.httpStatus === 413 ? 413 : 400;
    case JSONRPC.METHOD_NOT_FOUND:
      return 404;
    case JSONRPC.SERVER_ERROR:
      return err.httpStatus >= 400 ? err.httpStatus : 403;
    case JSONRPC.INTERNAL_ERROR:
      return 500;
    case -32040: // the org's monthly budget is used up (src/usage/budget.ts)
      return 402;
    default:
      return err.httpStatus >= 400 ? err.httpStatus : 400;
  }
}

/** The `google.rpc.Status` body of an error on the HTTP+JSON binding. */
export function restErrorBody(err: JsonRpcError): { error: { code: number; status: string; message: string; details: unknown[] } } {
  const status = restStatusOf(err);
  const s = semantic(err);
  if (s) return toRestErrorBody(s, status) as ReturnType<typeof restErrorBody>;
  const body = toRestErrorBody(new Error(err.message), status) as ReturnType<typeof restErrorBody>;
  if (status === 413) body.error.status = "RESOURCE_EXHAUSTED";
  if (status === 402) body.error.status = "RESOURCE_EXHAUSTED";
  if (status === 403) body.error.status = "PERMISSION_DENIED";
  // Shaman's own reasons (e.g. BUDGET_EXCEEDED) travel as an ErrorInfo of domain "shaman".
  if (err.data && typeof err.data === "object" && "reason" in (err.data as object)) {
    body.error.details.push({ "@type": "type.googleapis.com/google.rpc.ErrorInfo", ...(err.data as object) });
  }
  return body;
}

// ---- the errors the handlers throw ----------------------------------------------------

export const taskNotFound = () => new JsonRpcError(JSONRPC.TASK_NOT_FOUND, "Task not found");
export const unsupported = (message: string) => new JsonRpcError(JSONRPC.UNSUPPORTED_OPERATION, message);
export const notCancelable = (state: string) => new JsonRpcError(JSONRPC.TASK_NOT_CANCELABLE, `The task is ${state} and cannot be canceled`, { state });
export const invalidParams = (message: string, data?: Record<string, unknown>) => new JsonRpcError(JSONRPC.INVALID_PARAMS, `Invalid params: ${message}`, data);
