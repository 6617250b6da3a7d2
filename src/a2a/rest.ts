/**
 * The A2A HTTP+JSON binding (spec §11) under each agent's base URL, `{base}` being
 * `/a2a/agents/{name}` or `/a2a/agents/{repo}/{name}`:
 *   POST   {base}/message:send                              SendMessage
 *   POST   {base}/message:stream                            SendStreamingMessage (SSE)
 *   GET    {base}/tasks?contextId=&status=&pageSize=&…      ListTasks
 *   GET    {base}/tasks/{id}?historyLength=                 GetTask
 *   POST   {base}/tasks/{id}:cancel                         CancelTask
 *   POST   {base}/tasks/{id}:subscribe   (GET too)          SubscribeToTask (SSE)
 *   POST   {base}/tasks/{id}/pushNotificationConfigs        CreateTaskPushNotificationConfig (201)
 *   GET    {base}/tasks/{id}/pushNotificationConfigs        ListTaskPushNotificationConfigs
 *   GET    {base}/tasks/{id}/pushNotificationConfigs/{cid}  GetTaskPushNotificationConfig
 *   DELETE {base}/tasks/{id}/pushNotificationConfigs/{cid}  DeleteTaskPushNotificationConfig (204)
 *   GET    {base}/extendedAgentCard                         GetExtendedAgentCard
 * The same handlers as JSON-RPC (./methods.ts); errors are `google.rpc.Status` bodies with
 * the spec's HTTP status (./errors.ts). A missing, private or forbidden agent is a 404 alike.
 */
import { Hono, type Context } from "hono";
import type { AppEnv } from "../http/app-env";
import { BodyTooLargeError, describeLimit, readTextLimited } from "../http/limited-body";
import { restErrorBody, restStatusOf } from "./errors";
import { JSONRPC, JsonRpcError } from "./jsonrpc";
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
import type { Dialect } from "./wire";

const MAX_BODY_BYTES = 1024 * 1024;

export const restRoutes = new Hono<AppEnv>();

type Op = (call: A2ACall, c: Context<AppEnv>) => Promise<unknown>;

function errorResponse(c: Context<AppEnv>, err: JsonRpcError): Response {
  return c.json(restErrorBody(err), restStatusOf(err) as 400);
}

function dialectOf(c: Context<AppEnv>): Dialect | JsonRpcError {
  const v = c.req.header("a2a-version")?.trim();
  if (!v || /^1\.0(\.\d+)?$/.test(v) || v === "1") return "1.0";
  if (/^0\.3(\.\d+)?$/.test(v)) return "0.3";
  return new JsonRpcError(JSONRPC.VERSION_NOT_SUPPORTED, `A2A version '${v}' is not supported (supported: 1.0, 0.3)`);
}

/** A request's JSON body (an empty body is `{}`); parse errors and oversized bodies are A2A errors. */
async function jsonBody(c: Context<AppEnv>): Promise<Record<string, unknown>> {
  let raw: string;
  try {
    raw = await readTextLimited(c.req.raw, MAX_BODY_BYTES);
  } catch (err) {
    if (!(err instanceof BodyTooLargeError)) throw err;
    throw new JsonRpcError(JSONRPC.INVALID_REQUEST, `the body exceeds the ${describeLimit(MAX_BODY_BYTES)} limit`, { limitBytes: MAX_BODY_BYTES }, 413);
  }
  if (raw.trim() === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    throw new JsonRpcError(JSONRPC.PARSE_ERROR, "the body is not valid JSON");
  }
  if (!body || typeof body !== "object" || Array.isArray(body)) throw new JsonRpcError(JSONRPC.INVALID_PARAMS, "Invalid params: the body must be a JSON object");
  return body as Record<string, unknown>;
}

/** Query parameters as method params: numbers and booleans where the value is one, strings otherwise (the schema decides). */
function queryParams(c: Context<AppEnv>, numeric: string[], boolean: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c.req.queries())) {
    const value = v.length === 1 ? v[0]! : v;
    if (typeof value === "string" && numeric.includes(k) && /^-?\d{1,9}$/.test(value)) out[k] = Number(value);
    else if (typeof value === "string" && boolean.includes(k) && (value === "true" || value === "false")) out[k] = value === "true";
    else out[k] = value;
  }
  return out;
}

/** `{id}:action` of a task path segment. */
function taskAction(segment: string): { id: string; action: string | null } {
  const i = segment.indexOf(":");
  return i < 0 ? { id: segment, action: null } : { id: segment.slice(0, i), action: segment.slice(i + 1) };
}

function handle(op: Op, status = 200) {
  return async (c: Context<AppEnv>): Promise<Response> => {
    const name = c.req.param("repo") ? `${c.req.param("repo")}/${c.req.param("name")}` : c.req.param("name")!;
    try {
      const dialect = dialectOf(c);
      if (dialect instanceof JsonRpcError) throw dialect;
      const agent = await callableAgent(c, name);
      if (!agent) throw new JsonRpcError(JSONRPC.METHOD_NOT_FOUND, `No agent named '${name}' is available here`, undefined, 404);
      const last = c.req.header("last-event-id")?.trim();
      const call: A2ACall = { c, agent, dialect, binding: "rest", ...(last && /^\d{1,15}$/.test(last) ? { lastEventId: Number(last) } : {}) };
      const result = await op(call, c);
      if (result instanceof Response) return result;
      if (status === 204) return c.body(null, 204);
      return c.json((result ?? {}) as Record<string, unknown>, status as 200);
    } catch (err) {
      if (err instanceof JsonRpcError) return errorResponse(c, err);
      console.error(`a2a REST ${c.req.method} ${new URL(c.req.url).pathname} failed (request ${c.get("requestId")}):`, err instanceof Error ? err.message : String(err));
      return errorResponse(c, new JsonRpcError(JSONRPC.INTERNAL_ERROR, "Internal error", { requestId: c.get("requestId") }));
    }
  };
}

const notFound = () => new JsonRpcError(JSONRPC.METHOD_NOT_FOUND, "Not found", undefined, 404);

const message: Op = async (call, c) => {
  const body = await jsonBody(c);
  return c.req.param("action") === "message:stream" ? sendStreamingMessage(call, body) : sendMessage(call, body);
};

const tasksList: Op = (call, c) => listTasks(call, queryParams(c, ["pageSize", "historyLength"], ["includeArtifacts"]));

const taskGet: Op = (call, c) => {
  const { id, action } = taskAction(c.req.param("task")!);
  if (action === "subscribe") return subscribeToTask(call, { id });
  if (action !== null) throw notFound();
  return getTask(call, { ...queryParams(c, ["historyLength"], []), id });
};

const taskPost: Op = async (call, c) => {
  const { id, action } = taskAction(c.req.param("task")!);
  const body = await jsonBody(c);
  if (action === "cancel") return cancelTask(call, { ...body, id });
  if (action === "subscribe") return subscribeToTask(call, { ...body, id });
  throw notFound();
};

const pushCreate: Op = async (call, c) => {
  const body = await jsonBody(c);
  const taskId = c.req.param("task")!;
  return createPushConfig(call, call.dialect === "0.3" ? { taskId, pushNotificationConfig: body.pushNotificationConfig ?? body } : { ...body, taskId });
};
const pushList: Op = (call, c) => listPushConfigs(call, call.dialect === "0.3" ? { id: c.req.param("task") } : { taskId: c.req.param("task") });
const pushGet: Op = (call, c) =>
  getPushConfig(call, call.dialect === "0.3" ? { id: c.req.param("task"), pushNotificationConfigId: c.req.param("config") } : { taskId: c.req.param("task"), id: c.req.param("config") });
const pushDelete: Op = (call, c) =>
  deletePushConfig(call, call.dialect === "0.3" ? { id: c.req.param("task"), pushNotificationConfigId: c.req.param("config") } : { taskId: c.req.param("task"), id: c.req.param("config") });
const extendedCard: Op = (call) => getExtendedAgentCard(call);

// Each route for `{name}` and for `{repo}/{name}`.
for (const base of ["/agents/:name", "/agents/:repo/:name"]) {
  restRoutes.post(`${base}/:action{message:(?:send|stream)}`, handle(message));
  restRoutes.get(`${base}/tasks`, handle(tasksList));
  restRoutes.get(`${base}/tasks/:task`, handle(taskGet));
  restRoutes.post(`${base}/tasks/:task`, handle(taskPost));
  restRoutes.post(`${base}/tasks/:task/pushNotificationConfigs`, handle(pushCreate, 201));
  restRoutes.get(`${base}/tasks/:task/pushNotificationConfigs`, handle(pushList));
  restRoutes.get(`${base}/tasks/:task/pushNotificationConfigs/:config`, handle(pushGet));
  restRoutes.delete(`${base}/tasks/:task/pushNotificationConfigs/:config`, handle(pushDelete, 204));
  restRoutes.get(`${base}/extendedAgentCard`, handle(extendedCard));
}
