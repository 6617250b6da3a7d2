/**
 * A2A endpoints of an org's exposed agents:
 *   POST /a2a/agents/{name}                                 JSON-RPC (v1.0, and v0.3 method names)
 *   (cards and the directory: src/a2a/cards.ts)
 * `{name}` is `Agent` or `repo-name/Agent`. A private or missing agent answers 404 alike.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { isAllowed } from "../auth/authorize";
import { findAgent, type AgentIndexEntry } from "../db/agents";
import { db } from "../db/client";
import { getRun } from "../db/runs";
import { config } from "../config";
import { actorOf, auditRequest } from "../audit/http";
import type { AppEnv } from "../http/app-env";
import { BodyTooLargeError, describeLimit, readTextLimited } from "../http/limited-body";
import { limitsFrom } from "../workflow/types";
import { RUN_ID, runStub } from "../runs/stub";
import { TERMINAL_RUN_STATUSES, type RunSnapshot } from "../runs/types";
import { JSONRPC, JsonRpcError, JsonRpcRequest, requestIdOf, rpcError, rpcResult, type JsonRpcId } from "./jsonrpc";
import { GetTaskParams, normaliseSend, renderTask, type Dialect } from "./wire";
import { budgetRefusal, budgetRpcError } from "../usage/budget";

const MAX_BODY_BYTES = 1024 * 1024;

const V1_METHODS = new Set([
  "SendMessage",
  "SendStreamingMessage",
  "GetTask",
  "ListTasks",
  "CancelTask",
  "SubscribeToTask",
  "CreateTaskPushNotificationConfig",
  "GetTaskPushNotificationConfig",
  "ListTaskPushNotificationConfigs",
  "DeleteTaskPushNotificationConfig",
  "GetExtendedAgentCard",
]);
const V03_METHODS = new Set([
  "message/send",
  "message/stream",
  "tasks/get",
  "tasks/list",
  "tasks/cancel",
  "tasks/resubscribe",
  "tasks/pushNotificationConfig/set",
  "tasks/pushNotificationConfig/get",
  "tasks/pushNotificationConfig/list",
  "tasks/pushNotificationConfig/delete",
  "agent/getAuthenticatedExtendedCard",
]);

export const a2aRoutes = new Hono<AppEnv>();

a2aRoutes.post("/agents/:name", (c) => jsonRpc(c, c.req.param("name")));
a2aRoutes.post("/agents/:repo/:name", (c) => jsonRpc(c, `${c.req.param("repo")}/${c.req.param("name")}`));

function qualifiedName(a: AgentIndexEntry): string {
  return a.isRoot ? a.name : `${a.repositoryName}/${a.name}`;
}

async function exposedAgent(c: Context<AppEnv>, name: string): Promise<AgentIndexEntry | null> {
  const agent = await findAgent(db(c.env), c.get("org"), name);
  return agent?.exposed ? agent : null;
}

function rpcJson(c: Context<AppEnv>, id: JsonRpcId, err: JsonRpcError) {
  return c.json(rpcError(id, err), err.httpStatus as 200);
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

  const agent = await exposedAgent(c, name);
  const noSuchAgent = () => rpcJson(c, id, new JsonRpcError(JSONRPC.METHOD_NOT_FOUND, `No agent named '${name}' is available here`, undefined, 404));
  if (!agent) return noSuchAgent();
  // An agent the caller may not execute answers exactly like a missing one (no existence oracle).
  if (!(await isAllowed(c, `/agents/${qualifiedName(agent)}`, "execute"))) {
    auditRequest(c, { action: "auth.denied", resource: `/agents/${qualifiedName(agent)}`, outcome: "denied", input: { action: "execute" } });
    return noSuchAgent();
  }

  if (Array.isArray(body)) return rpcJson(c, null, new JsonRpcError(JSONRPC.INVALID_REQUEST, "batch requests are not supported"));
  const envelope = JsonRpcRequest.safeParse(body);
  if (!envelope.success) return rpcJson(c, id, new JsonRpcError(JSONRPC.INVALID_REQUEST, "Invalid Request: expected a JSON-RPC 2.0 request object"));
  const { method, params } = envelope.data;

  const dialect = dialectOf(c.req.header("a2a-version"), method);
  if (dialect instanceof JsonRpcError) return rpcJson(c, id, dialect);

  try {
    const result = await dispatch(c, agent, dialect, method, params);
    return c.json(rpcResult(id, result));
  } catch (err) {
    if (err instanceof JsonRpcError) return rpcJson(c, id, err);
    console.error(`a2a ${method} failed (request ${c.get("requestId")}):`, err instanceof Error ? err.message : String(err));
    return rpcJson(c, id, new JsonRpcError(JSONRPC.INTERNAL_ERROR, "Internal error", { requestId: c.get("requestId") }));
  }
}

function dialectOf(header: string | undefined, method: string): Dialect | JsonRpcError {
  if (header !== undefined && header.trim() !== "") {
    const v = header.trim();
    if (/^1\.0(\.\d+)?$/.test(v) || v === "1") return "1.0";
    if (/^0\.3(\.\d+)?$/.test(v)) return "0.3";
    return new JsonRpcError(JSONRPC.VERSION_NOT_SUPPORTED, `A2A version '${v}' is not supported (supported: 1.0, 0.3)`, { supported: ["1.0", "0.3"] });
  }
  // No header: v0.3 by the spec; a v1.0 method name without the header is read as v1.0.
  return V1_METHODS.has(method) ? "1.0" : "0.3";
}

async function dispatch(c: Context<AppEnv>, agent: AgentIndexEntry, dialect: Dialect, method: string, params: unknown): Promise<unknown> {
  const m = dialect === "1.0" ? method : V03_TO_V1[method];
  if (dialect === "1.0" ? !V1_METHODS.has(method) : !m) {
    throw new JsonRpcError(JSONRPC.METHOD_NOT_FOUND, `Method not found: ${method}`);
  }
  switch (m) {
    case "SendMessage":
      return sendMessage(c, agent, dialect, params);
    case "GetTask":
      return getTask(c, agent, dialect, params);
    default:
      throw new JsonRpcError(JSONRPC.UNSUPPORTED_OPERATION, `${method} is not supported by this server yet`);
  }
}

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

function invalidParams(error: z.ZodError): JsonRpcError {
  const issues = error.issues.slice(0, 5).map((i) => ({ path: i.path.join("."), message: i.message }));
  const first = issues[0];
  return new JsonRpcError(JSONRPC.INVALID_PARAMS, `Invalid params${first ? `: ${first.path || "params"}: ${first.message}` : ""}`, { issues });
}

async function findTask(c: Context<AppEnv>, agent: AgentIndexEntry, taskId: string): Promise<RunSnapshot | null> {
  if (!RUN_ID.test(taskId)) return null;
  // The org's D1 row first: an id never issued (or another org's, or another agent's) is
  // answered from the same one query and never reaches, or creates, a run object.
  const row = await getRun(db(c.env), c.get("org"), taskId);
  if (!row || row.agentName !== agent.name || row.repositoryId !== agent.repositoryId) return null;
  const snapshot = await runStub(c.env, taskId).snapshot(c.get("org").orgId);
  // A task of another agent (or org) answers exactly like a missing one.
  return snapshot && snapshot.agent.repositoryId === agent.repositoryId && snapshot.agent.name === agent.name ? snapshot : null;
}

async function sendMessage(c: Context<AppEnv>, agent: AgentIndexEntry, dialect: Dialect, params: unknown) {
  const parsed = normaliseSend(dialect, params);
  if (!parsed.success) throw invalidParams(parsed.error);
  const req = parsed.data;
  const org = c.get("org");

  if (req.taskId) {
    const existing = await findTask(c, agent, req.taskId);
    if (!existing) throw new JsonRpcError(JSONRPC.TASK_NOT_FOUND, "Task not found");
    if (TERMINAL_RUN_STATUSES.has(existing.status)) {
      throw new JsonRpcError(JSONRPC.UNSUPPORTED_OPERATION, "The task is in a terminal state and cannot take more messages");
    }
    throw new JsonRpcError(JSONRPC.UNSUPPORTED_OPERATION, "The task is not waiting for input");
  }

  // An org whose monthly budget is used up starts no new run (src/usage/budget.ts).
  const overBudget = await budgetRefusal(c.env, org.orgId);
  if (overBudget) throw budgetRpcError(overBudget);

  const runId = crypto.randomUUID();
  const contextId = req.contextId ?? crypto.randomUUID();
  const ref = { name: agent.name, repositoryId: agent.repositoryId, commit: agent.commitSha, path: agent.path, blobSha: agent.blobSha };
  const waitMs = req.returnImmediately ? 0 : config(c.env).runWaitTimeoutMs;
  const { userId } = actorOf(c);
  // The run object writes the run's D1 row itself (and keeps retrying until it lands), so
  // a run it never recorded leaves no row behind, and one it recorded always gets one.
  let snapshot: RunSnapshot;
  try {
    snapshot = await runStub(c.env, runId).start(
      {
        runId,
        orgId: org.orgId,
        contextId,
        agent: ref,
        initiatedBy: c.get("principal"),
        userId,
        message: req.message,
        limits: limitsFrom(org.settings),
        // The message itself is added by the run object from the run's own copy.
        audit: { resource: `/agents/${qualifiedName(agent)}`, requestId: c.get("requestId"), input: { commit: agent.commitSha } },
      },
      waitMs,
    );
  } catch (err) {
    console.error(`a2a SendMessage: run ${runId} could not be started (request ${c.get("requestId")}):`, err instanceof Error ? err.message : String(err));
    throw new JsonRpcError(JSONRPC.INTERNAL_ERROR, "The task could not be started; try again", { requestId: c.get("requestId") });
  }
  const task = renderTask(dialect, snapshot, req.historyLength);
  return dialect === "1.0" ? { task } : task;
}

async function getTask(c: Context<AppEnv>, agent: AgentIndexEntry, dialect: Dialect, params: unknown) {
  const parsed = GetTaskParams.safeParse(params);
  if (!parsed.success) throw invalidParams(parsed.error);
  const snapshot = await findTask(c, agent, parsed.data.id);
  if (!snapshot) throw new JsonRpcError(JSONRPC.TASK_NOT_FOUND, "Task not found");
  return renderTask(dialect, snapshot, parsed.data.historyLength);
}
