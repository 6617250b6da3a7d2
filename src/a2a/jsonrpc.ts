/** JSON-RPC 2.0 envelopes and the A2A v1.0 error codes. */
import { z } from "zod";
import { rpcErrorMember } from "./errors";

export const JSONRPC = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** Implementation-defined server error: Shaman uses it, with HTTP 403, for "not allowed". */
  SERVER_ERROR: -32000,
  // A2A v1.0 (spec §5.4 / JSON-RPC binding)
  TASK_NOT_FOUND: -32001,
  TASK_NOT_CANCELABLE: -32002,
  PUSH_NOTIFICATION_NOT_SUPPORTED: -32003,
  UNSUPPORTED_OPERATION: -32004,
  CONTENT_TYPE_NOT_SUPPORTED: -32005,
  INVALID_AGENT_RESPONSE: -32006,
  EXTENDED_CARD_NOT_CONFIGURED: -32007,
  EXTENSION_SUPPORT_REQUIRED: -32008,
  VERSION_NOT_SUPPORTED: -32009,
} as const;

export type JsonRpcId = string | number | null;

export const JsonRpcRequest = z.object({
  jsonrpc: z.literal("2.0"),
  method: z.string().min(1),
  params: z.unknown().optional(),
  id: z.union([z.string(), z.number(), z.null()]).optional(),
});

export class JsonRpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
    /** HTTP status to answer with; JSON-RPC errors travel on 200 unless the target is missing. */
    readonly httpStatus = 200,
  ) {
    super(message);
    this.name = "JsonRpcError";
  }
}

export function rpcResult(id: JsonRpcId, result: unknown) {
  return { jsonrpc: "2.0" as const, id, result };
}

/**
 * A JSON-RPC error response. A2A errors (-32001…-32009, -32602) carry the spec's
 * `ErrorInfo` in `error.data` (src/a2a/errors.ts); the plain JSON-RPC codes carry their data as is.
 */
export function rpcError(id: JsonRpcId, err: JsonRpcError) {
  return { jsonrpc: "2.0" as const, id, error: rpcErrorMember(err) };
}

/** The id of a request body, as far as it can be read (null otherwise, per JSON-RPC). */
export function requestIdOf(body: unknown): JsonRpcId {
  if (body && typeof body === "object" && "id" in body) {
    const id = (body as { id: unknown }).id;
    if (typeof id === "string" || typeof id === "number") return id;
  }
  return null;
}
