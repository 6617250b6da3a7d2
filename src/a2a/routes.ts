/**
 * A2A endpoints of an org's exposed agents, `{name}` being `Agent` or `repo-name/Agent`:
 *   POST /a2a/agents/{name}          JSON-RPC (v1.0, and v0.3 method names)
 *   /a2a/agents/{name}/...           the HTTP+JSON binding (./rest.ts)
 *   (cards and the directory: ./cards.ts)
 * Both bindings call the same handlers (./methods.ts). A private or missing agent, or one
 * the caller may not execute, answers alike.
 */
import { Hono, type Context } from "hono";
import type { AppEnv } from "../http/app-env";
import { BodyTooLargeError, describeLimit, readTextLimited } from "../http/limited-body";
import { JSONRPC, JsonRpcError, JsonRpcRequest, requestIdOf, rpcError, rpcResult, type JsonRpcId } from "./jsonrpc";
import {
  callableAgent,
  cancelTask,
  createPushConfig,
  deletePushConfig,
  getExtendedAgentCard,
  getPushConfig,
  getTask,
  listPushConfigs,
  listTasks,
  sendMessage,
  sendStreamingMessage,
  subscribeToTask,
  type A2ACall,
} from "./methods";
import { restRoutes } from "./rest";
import type { Dialect } from "./wire";

export const MAX_BODY_BYTES = 1024 * 1024;

type Handler = (call: A2ACall, params: unknown) => Promise<unknown>;

/** The v1.0 methods, and their v0.3 names. */
const METHODS: Record<string, Handler> = {
  SendMessage: sendMessage,
  SendStreamingMessage: sendStreamingMessage,
  GetTask: getTask,
  ListTasks: listTasks,
  CancelTask: cancelTask,
  SubscribeToTask: subscribeToTask,
  CreateTaskPushNotificationConfig: createPushConfig,
  GetTaskPushNotificationConfig: getPushConfig,
  ListTaskPushNotificationConfigs: listPushConfigs,
  DeleteTaskPushNotificationConfig: deletePushConfig,
  GetExtendedAgentCard: (call) => getExtendedAgentCard(call),
};

const V03_TO_V1: Record<string, string> = {
  "message/send": "SendMessage",
  "message/stream": "SendStreamingMessage",
  "tasks/get": "GetTask",
  "tasks/list": "ListTasks",
  "tasks/cancel": "CancelTask",
  "tasks/resubscribe": "SubscribeToTask",
  "tasks/pushNotificationConfig/set": "CreateTaskPushNotificationConfig",
  "tasks/pushNotificationConfig/get": "GetTaskPushNotificationConfig",
  "tasks/pushNotificationConfig/list": "ListTaskPushNotificationConfigs",
  "tasks/pushNotificationConfig/delete": "DeleteTaskPushNotificationConfig",
  "agent/getAuthenticatedExtendedCard": "GetExtendedAgentCard",
};

export const a2aRoutes = new Hono<AppEnv>();

// The HTTP+JSON binding first: its paths (`…/message:send`) would otherwise match `:repo/:name`.
a2aRoutes.route("/", restRoutes);
a2aRoutes.post("/agents/:name", (c) => jsonRpc(c, c.req.param("name")));
a2aRoutes.post("/agents/:repo/:name", (c) => jsonRpc(c, `${c.req.param("repo")}/${c.req.param("name")}`));

function rpcJson(c: Context<AppEnv>, id: JsonRpcId, err: JsonRpcError) {
  return c.json(rpcError(id, err), err.httpStatus as 200);
}

/**
 * The dialect of a request: the `A2A-Version` header when given (1.0 or 0.3); without it
 * v0.3 by the spec, except that a v1.0 method name is read as v1.0.
 */
export function dialectOf(header: string | undefined, method: string | null): Dialect | JsonRpcError {
  if (header !== undefined && header.trim() !== "") {
    const v = header.trim();
    if (/^1\.0(\.\d+)?$/.test(v) || v === "1") return "1.0";
    if (/^0\.3(\.\d+)?$/.test(v)) return "0.3";
    return new JsonRpcError(JSONRPC.VERSION_NOT_SUPPORTED, `A2A version '${v}' is not supported (supported: 1.0, 0.3)`, { supported: "1.0, 0.3" });
  }
  return method === null || method in METHODS ? "1.0" : "0.3";
}

async function jsonRpc(c: Context<AppEnv>, name: string): Promise<Response> {
  // Counted as it is read: a chunked body without Content-Length stops at the limit too.
  let raw: string;
  try {
    raw = await readTextLimited(c.req.raw, MAX_BODY_BYTES);
  } catch (err) {
    if (!(err instanceof BodyTooLargeError)) throw err;
    return rpcJson(c, null, new JsonRpcError(JSONRPC.INVALID_REQUEST, `Invalid Request: the body exceeds the ${describeLimit(MAX_BODY_BYTES)} limit`, { limitBytes: MAX_BODY_BYTES }, 413));
  }

  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    return rpcJson(c, null, new JsonRpcError(JSONRPC.PARSE_ERROR, "Parse error: the body is not valid JSON"));
  }
  const id = requestIdOf(body);

  const agent = await callableAgent(c, name);
  if (!agent) return rpcJson(c, id, new JsonRpcError(JSONRPC.METHOD_NOT_FOUND, `No agent named '${name}' is available here`, undefined, 404));

  if (Array.isArray(body)) return rpcJson(c, null, new JsonRpcError(JSONRPC.INVALID_REQUEST, "batch requests are not supported"));
  const envelope = JsonRpcRequest.safeParse(body);
  if (!envelope.success) return rpcJson(c, id, new JsonRpcError(JSONRPC.INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0 request object"));
  const { method, params } = envelope.data;

  const dialect = dialectOf(c.req.header("a2a-version"), method);
  if (dialect instanceof JsonRpcError) return rpcJson(c, id, dialect);
  const name1 = dialect === "1.0" ? method : V03_TO_V1[method];
  const handler = name1 !== undefined && Object.hasOwn(METHODS, name1) ? METHODS[name1] : undefined;
  if (!handler) return rpcJson(c, id, new JsonRpcError(JSONRPC.METHOD_NOT_FOUND, `Method not found: ${method}`));

  const lastEventId = lastEventIdOf(c.req.header("last-event-id"));
  try {
    const result = await handler({ c, agent, dialect, binding: "jsonrpc", rpcId: id, ...(lastEventId !== undefined ? { lastEventId } : {}) }, params);
    if (result instanceof Response) return result;
    return c.json(rpcResult(id, result ?? null));
  } catch (err) {
    if (err instanceof JsonRpcError) return rpcJson(c, id, err);
    console.error(`a2a ${method} failed (request ${c.get("requestId")}):`, err instanceof Error ? err.message : String(err));
    return rpcJson(c, id, new JsonRpcError(JSONRPC.INTERNAL_ERROR, "Internal error", { requestId: c.get("requestId") }));
  }
}

/** `Last-Event-ID` of an SSE reconnect: the sequence to replay after (ignored when not a number). */
export function lastEventIdOf(header: string | undefined): number | undefined {
  if (header === undefined || !/^\d{1,15}$/.test(header.trim())) return undefined;
  return Number(header.trim());
}
