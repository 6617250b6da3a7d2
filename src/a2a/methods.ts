/**
 * The A2A methods, shared by both bindings (JSON-RPC in ./routes.ts, HTTP+JSON in
 * ./rest.ts) and both dialects (v1.0 and v0.3). Each handler takes the method's params in
 * the JSON-RPC shape (the REST binding builds them from its path, query and body), and
 * returns the result object or throws a `JsonRpcError` (./errors.ts renders it for either
 * binding). Streaming methods return the SSE `Response` itself.
 *
 * Tasks are runs: the task id is the run id, the context is the run's context. A task of
 * another org, of another agent (also of the same org), or one the caller may not read
 * answers exactly like a missing one (TaskNotFound).
 */
import type { Context } from "hono";
import { z } from "zod";
import { loadAgent } from "../agents/snapshot";
import { actorOf, auditRequest } from "../audit/http";
import { isAllowed } from "../auth/authorize";
import { config } from "../config";
import { findAgent, type AgentIndexEntry } from "../db/agents";
import { db } from "../db/client";
import { getRun, listRuns, unsettledContextRuns } from "../db/runs";
import type { RunRow } from "../db/schema";
import type { AppEnv } from "../http/app-env";
import { RUN_ID, runStub } from "../runs/stub";
import { TERMINAL_RUN_STATUSES, type HistoryTurn, type Json, type RunInit, type RunSnapshot } from "../runs/types";
import { budgetRefusal, budgetRpcError } from "../usage/budget";
import { limitsFrom } from "../workflow/types";
import { contextHistory } from "./conversation";
import { invalidParams, notCancelable, taskNotFound, unsupported } from "./errors";
import { JSONRPC, JsonRpcError, type JsonRpcId } from "./jsonrpc";
import { ListTasksParams, messageText, normaliseSend, renderTask, runStatusOf, TaskIdParams, GetTaskParams, type Dialect } from "./wire";
import { extendedCardFor, pushMethods, taskStream } from "./providers";
import { v1JsonToV03 } from "./cards";

/** One A2A request: who, to which agent, in which dialect and binding. */
export interface A2ACall {
  c: Context<AppEnv>;
  agent: AgentIndexEntry;
  dialect: Dialect;
  binding: "jsonrpc" | "rest";
  /** JSON-RPC: the request's id (each SSE event is a JSON-RPC response with it). */
  rpcId?: JsonRpcId;
  /** SSE resume: replay after this event sequence (Last-Event-ID). */
  lastEventId?: number;
}

export function qualifiedName(a: AgentIndexEntry): string {
  return a.isRoot ? a.name : `${a.repositoryName}/${a.name}`;
}

/** An exposed agent the caller may execute; null answers like a missing agent (no existence oracle). */
export async function callableAgent(c: Context<AppEnv>, name: string): Promise<AgentIndexEntry | null> {
  const agent = await findAgent(db(c.env), c.get("org"), name);
  if (!agent?.exposed) return null;
  if (!(await isAllowed(c, `/agents/${qualifiedName(agent)}`, "execute"))) {
    auditRequest(c, { action: "auth.denied", resource: `/agents/${qualifiedName(agent)}`, outcome: "denied", input: { action: "execute" } });
    return null;
  }
  return agent;
}

function paramsError(error: z.ZodError): JsonRpcError {
  const issues = error.issues.slice(0, 5).map((i) => ({ path: i.path.join("."), message: i.message }));
  const first = issues[0];
  return invalidParams(first ? `${first.path || "params"}: ${first.message}` : "invalid", { issues });
}

function parse<T extends z.ZodType>(schema: T, params: unknown): z.infer<T> {
  const r = schema.safeParse(params ?? {});
  if (!r.success) throw paramsError(r.error);
  return r.data;
}

// ---- tasks the caller may see ---------------------------------------------------------

/** The caller may read a task they started, or any task when they may read `/runs/{id}`. */
async function mayRead(c: Context<AppEnv>, row: RunRow): Promise<boolean> {
  const principal = c.get("principal");
  if (principal && row.initiatedBy === principal) return true;
  return isAllowed(c, `/runs/${row.id}`, "read");
}

/**
 * The D1 row of a task of this agent the caller may read, or null. The org's row first:
 * an id never issued (or another org's, or another agent's) is answered from one query and
 * never reaches, or creates, a run object.
 */
async function taskRow(call: A2ACall, taskId: string): Promise<RunRow | null> {
  if (typeof taskId !== "string" || !RUN_ID.test(taskId)) return null;
  const row = await getRun(db(call.c.env), call.c.get("org"), taskId);
  if (!row || row.agentName !== call.agent.name || row.repositoryId !== call.agent.repositoryId) return null;
  return (await mayRead(call.c, row)) ? row : null;
}

async function taskSnapshot(call: A2ACall, taskId: string): Promise<RunSnapshot> {
  const row = await taskRow(call, taskId);
  if (!row) throw taskNotFound();
  const snapshot = await runStub(call.c.env, taskId).snapshot(call.c.get("org").orgId);
  if (!snapshot || snapshot.agent.repositoryId !== call.agent.repositoryId || snapshot.agent.name !== call.agent.name) throw taskNotFound();
  return snapshot;
}

const settled = (s: RunSnapshot) => TERMINAL_RUN_STATUSES.has(s.status);
/** Where a blocking SendMessage returns: a terminal state, or one that needs the client (input). */
const interrupted = (s: RunSnapshot) => settled(s) || s.status === "input_required";

// ---- SendMessage / SendStreamingMessage -------------------------------------------------

/**
 * A retried message (same `messageId`, same org and agent) must not start a second run: the
 * run id is derived from them, so the retry addresses the same run object, whose `start`
 * returns the run it has (and the D1 row answers the retry before any object is touched).
 */
export async function runIdFor(orgId: string, agent: { repositoryId: string; name: string }, messageId: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`a2a-task\n${orgId}\n${agent.repositoryId}\n${agent.name}\n${messageId}`)));
  const b = digest.slice(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80; // version 8 (name-based, custom hash)
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The answer a message gives to a pending `request_user_input`: `{ answer, comment? }`. */
function answerOf(message: { parts: RunSnapshot["message"]["parts"] }): { answer: string; comment?: string } {
  const data = message.parts.find((p) => p.kind === "data");
  if (data && data.kind === "data" && data.data && typeof data.data === "object" && !Array.isArray(data.data)) {
    const d = data.data as Record<string, Json>;
    if (typeof d.answer === "string" && d.answer.length > 0) return { answer: d.answer, ...(typeof d.comment === "string" ? { comment: d.comment } : {}) };
  }
  const text = messageText({ messageId: "", role: "user", parts: message.parts }).trim();
  if (!text) throw invalidParams("message: an answer needs a text part (or a data part { answer, comment? })");
  return { answer: text.slice(0, 64 * 1024) };
}

/**
 * Starts a task, answers the pending input of one, or finds the task a retried message
 * started. With `wait`, waits until the task ends or needs the client.
 */
async function send(call: A2ACall, params: unknown, wait: boolean): Promise<{ snapshot: RunSnapshot; historyLength: number | undefined }> {
  const { c, agent, dialect } = call;
  const parsed = normaliseSend(dialect, params);
  if (!parsed.success) throw paramsError(parsed.error);
  const req = parsed.data;
  const org = c.get("org");
  const stub = (id: string) => runStub(c.env, id);
  const waitMs = wait && !req.returnImmediately ? config(c.env).runWaitTimeoutMs : 0;
  const waited = async (id: string, s: RunSnapshot) => (waitMs > 0 && !interrupted(s) ? ((await stub(id).wait(org.orgId, waitMs)) ?? s) : s);

  // ---- a message to an existing task: the answer to its pending input ----
  if (req.taskId) {
    const current = await taskSnapshot(call, req.taskId);
    if (settled(current)) throw unsupported(`The task is ${current.status}: a task in a terminal state takes no more messages`);
    if (req.contextId && req.contextId !== current.contextId) throw invalidParams("message.contextId: it is not the task's context");
    if (current.status !== "input_required" || current.inputs.length === 0) throw unsupported("The task is not waiting for input");
    const named = req.message.metadata?.requestId;
    if (named !== undefined && typeof named !== "string") throw invalidParams("message.metadata.requestId: expected a string");
    // Several pending requests: the message's metadata names which; else the oldest.
    const pending = named ? current.inputs.find((i) => i.requestId === named) : current.inputs[0];
    if (!pending) throw invalidParams(`message.metadata.requestId: the task is not waiting on '${named}'`, { pending: current.inputs.map((i) => i.requestId) });
    const answer = answerOf(req.message);
    const answered = await stub(current.runId).answerInput(org.orgId, pending.requestId, answer);
    if (answered === null) throw taskNotFound();
    if (!answered) throw unsupported("The task is no longer waiting on that request");
    auditRequest(c, { action: "run.input", resource: `/runs/${current.runId}`, outcome: "success", input: { requestId: pending.requestId, answer: answer.answer } });
    const after = (await stub(current.runId).snapshot(org.orgId)) ?? current;
    return { snapshot: await waited(current.runId, after), historyLength: req.historyLength };
  }

  // ---- a new task (or the one a retried message started) ----
  const runId = await runIdFor(org.orgId, agent, req.message.messageId);
  const existing = await getRun(db(c.env), org, runId);
  if (existing) {
    if (existing.agentName !== agent.name || existing.repositoryId !== agent.repositoryId || !(await mayRead(c, existing))) throw taskNotFound();
    const snapshot = await stub(runId).snapshot(org.orgId);
    if (!snapshot) throw taskNotFound();
    return { snapshot: await waited(runId, snapshot), historyLength: req.historyLength };
  }

  // An org whose monthly budget is used up starts no new run (src/usage/budget.ts).
  const overBudget = await budgetRefusal(c.env, org.orgId);
  if (overBudget) throw budgetRpcError(overBudget);

  const contextId = req.contextId ?? crypto.randomUUID();
  let history: HistoryTurn[] = [];
  let deferred = false;
  if (req.contextId) {
    deferred = await applyConcurrency(call, req.contextId, runId);
    history = await contextHistory(c.env, org, agent, req.contextId, runId);
  }

  if (req.pushConfig !== undefined) await pushMethods.attach(call, runId, req.pushConfig);

  const ref = { name: agent.name, repositoryId: agent.repositoryId, commit: agent.commitSha, path: agent.path, blobSha: agent.blobSha };
  const { userId } = actorOf(c);
  const init: RunInit = {
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
    ...(history.length ? { history } : {}),
    ...(deferred ? { deferred: true } : {}),
    // Its events wake the push object only when it has a config (attached above).
    push: req.pushConfig !== undefined,
    // A caller that does not wait for the end (SendStreamingMessage, returnImmediately) will
    // watch or subscribe: the root's text streams from the first turn on. A blocking caller
    // gets the whole answer at once; its turns stream only when someone watches.
    ...(waitMs === 0 ? { liveText: true } : {}),
  };
  if (deferred) {
    // Queued behind the context's running task: recorded now, run when that one settles.
    try {
      const queued = await stub(runId).start(init, 0);
      // The task before may have settled between the check and this start: then nothing
      // would release this one, so it goes by itself (a release is idempotent).
      const before = (await unsettledContextRuns(db(c.env), org, agent, contextId, runId)).filter((r) => r.createdAt < queued.createdAt || (r.createdAt === queued.createdAt && r.id < runId));
      if (before.length === 0) await stub(runId).release(org.orgId);
      const now = (await stub(runId).snapshot(org.orgId)) ?? queued;
      return { snapshot: await waited(runId, now), historyLength: req.historyLength };
    } catch (err) {
      console.error(`a2a SendMessage: run ${runId} could not be queued (request ${c.get("requestId")}):`, err instanceof Error ? err.message : String(err));
      throw new JsonRpcError(JSONRPC.INTERNAL_ERROR, "The task could not be started; try again", { requestId: c.get("requestId") });
    }
  }
  // The run object writes the run's D1 row itself (and keeps retrying until it lands), so
  // a run it never recorded leaves no row behind, and one it recorded always gets one.
  try {
    return { snapshot: await stub(runId).start(init, waitMs), historyLength: req.historyLength };
  } catch (err) {
    console.error(`a2a SendMessage: run ${runId} could not be started (request ${c.get("requestId")}):`, err instanceof Error ? err.message : String(err));
    throw new JsonRpcError(JSONRPC.INTERNAL_ERROR, "The task could not be started; try again", { requestId: c.get("requestId") });
  }
}

/**
 * The agent's frontmatter `concurrency` for a message to a context with a running task of
 * the agent: `parallel` (default) starts beside it, `reject` refuses, `interrupt` cancels
 * the running task(s) first, `enqueue` queues the new task (true: start it deferred; the
 * task before releases it when it settles). The definition is read only when such a task exists.
 */
async function applyConcurrency(call: A2ACall, contextId: string, runId: string): Promise<boolean> {
  const { c, agent } = call;
  const org = c.get("org");
  const running = await unsettledContextRuns(db(c.env), org, agent, contextId, runId);
  if (running.length === 0) return false;
  const def = await loadAgent(c.env.SNAPSHOTS, org.orgId, { name: agent.name, repositoryId: agent.repositoryId, commit: agent.commitSha, path: agent.path, blobSha: agent.blobSha });
  const policy = def.frontmatter.concurrency;
  if (policy === "parallel") return false;
  if (policy === "enqueue") return true;
  if (policy === "reject") {
    throw unsupported(`A task of this context is still running (${running[0]!.id}); this agent takes one task per context at a time`);
  }
  await Promise.all(
    running.map(async (r) => {
      const done = await runStub(c.env, r.id).cancel(org.orgId, "interrupted by a new message in its context");
      if (done) auditRequest(c, { action: "run.cancel", resource: `/runs/${r.id}`, outcome: "success", input: { reason: "interrupt" } });
    }),
  );
  return false;
}

export async function sendMessage(call: A2ACall, params: unknown): Promise<unknown> {
  const { snapshot, historyLength } = await send(call, params, true);
  const task = renderTask(call.dialect, snapshot, historyLength);
  return call.dialect === "1.0" ? { task } : task;
}

export async function sendStreamingMessage(call: A2ACall, params: unknown): Promise<Response> {
  const { snapshot, historyLength } = await send(call, params, false);
  return taskStream(call, snapshot.runId, snapshot, historyLength);
}

// ---- GetTask / ListTasks / CancelTask / SubscribeToTask ----------------------------------

export async function getTask(call: A2ACall, params: unknown): Promise<unknown> {
  const p = parse(GetTaskParams, params);
  return renderTask(call.dialect, await taskSnapshot(call, p.id), p.historyLength);
}

const DEFAULT_PAGE_SIZE = 50;

/** Opaque page tokens: the last row's (updatedAt, id), and the filters they belong to. */
function encodeToken(row: { updatedAt: number; id: string }, filters: string): string {
  return btoa(JSON.stringify({ u: row.updatedAt, i: row.id, f: filters })).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function decodeToken(token: string, filters: string): { updatedAt: number; id: string } {
  const bad = () => invalidParams("pageToken: not a page token of this list (take it from nextPageToken, with the same filters)");
  if (!/^[A-Za-z0-9_-]{1,500}$/.test(token)) throw bad();
  let v: unknown;
  try {
    v = JSON.parse(atob(token.replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    throw bad();
  }
  const t = v as { u?: unknown; i?: unknown; f?: unknown };
  if (!t || typeof t.u !== "number" || !Number.isSafeInteger(t.u) || typeof t.i !== "string" || !RUN_ID.test(t.i) || t.f !== filters) throw bad();
  return { updatedAt: t.u, id: t.i };
}

export async function listTasks(call: A2ACall, params: unknown): Promise<unknown> {
  const { c, agent, dialect } = call;
  const p = parse(ListTasksParams, params);
  const pageSize = p.pageSize ?? DEFAULT_PAGE_SIZE;
  const status = p.status !== undefined ? runStatusOf(p.status) : undefined;
  const updatedAfter = p.statusTimestampAfter !== undefined ? Date.parse(p.statusTimestampAfter) : undefined;
  if (updatedAfter !== undefined && Number.isNaN(updatedAfter)) throw invalidParams("statusTimestampAfter: not a valid time");
  // A caller who may not read every run of the org sees the tasks they started.
  const principal = c.get("principal");
  const readsAll = await isAllowed(c, "/runs/*", "read");
  const filters = JSON.stringify([p.contextId ?? null, status ?? null, updatedAfter ?? null]);
  const after = p.pageToken ? decodeToken(p.pageToken, filters) : undefined;
  const empty = { tasks: [], nextPageToken: "", pageSize, totalSize: 0 };
  // A state no task of Shaman is ever in (rejected, auth-required), or a caller with no principal.
  if (status === null || (!readsAll && !principal)) return empty;
  const { rows, total } = await listRuns(db(c.env), c.get("org"), {
    repositoryId: agent.repositoryId,
    agentName: agent.name,
    ...(p.contextId !== undefined ? { contextId: p.contextId } : {}),
    ...(status !== undefined ? { status } : {}),
    ...(updatedAfter !== undefined ? { updatedAfter } : {}),
    ...(!readsAll && principal ? { initiatedBy: principal } : {}),
    ...(after ? { after } : {}),
    limit: pageSize + 1,
  });
  const page = rows.slice(0, pageSize);
  const orgId = c.get("org").orgId;
  const snapshots = await Promise.all(page.map((r) => runStub(c.env, r.id).snapshot(orgId)));
  const tasks = snapshots.filter((s): s is RunSnapshot => s !== null).map((s) => renderTask(dialect, s, p.historyLength, { includeArtifacts: p.includeArtifacts ?? false }));
  const last = page.at(-1);
  return { tasks, nextPageToken: rows.length > pageSize && last ? encodeToken(last, filters) : "", pageSize, totalSize: total };
}

export async function cancelTask(call: A2ACall, params: unknown): Promise<unknown> {
  const { c, dialect } = call;
  const p = parse(TaskIdParams, params);
  const before = await taskSnapshot(call, p.id);
  const stub = runStub(c.env, p.id);
  const orgId = c.get("org").orgId;
  // Cancels every unfinished step of the run (its whole DAG) and the run.
  const canceled = before.status === "canceled" ? false : await stub.cancel(orgId, `canceled by ${c.get("principal") ?? "a caller"} (A2A CancelTask)`);
  if (canceled === null) throw taskNotFound();
  if (canceled) auditRequest(c, { action: "run.cancel", resource: `/runs/${p.id}`, outcome: "success" });
  const after = (await stub.snapshot(orgId)) ?? before;
  // Idempotent for a canceled task; a task that ended otherwise cannot be canceled.
  if (after.status !== "canceled") throw notCancelable(after.status);
  return renderTask(dialect, after);
}

export async function subscribeToTask(call: A2ACall, params: unknown): Promise<Response> {
  const p = parse(TaskIdParams, params);
  const snapshot = await taskSnapshot(call, p.id);
  // A finished task takes no new subscriber, but a stream that dropped (Last-Event-ID) gets
  // what it missed, to the end: no event of a run is lost to a client that reconnects.
  if (settled(snapshot) && call.lastEventId === undefined) throw unsupported(`The task is ${snapshot.status}: there is nothing to subscribe to`);
  return taskStream(call, snapshot.runId);
}

// ---- push notification configs, extended card ---------------------------------------------

const PushTaskParams = z.object({ taskId: z.string().min(1).max(200) }).loose();
const PushConfigParams = z.object({ taskId: z.string().min(1).max(200), id: z.string().min(1).max(200) }).loose();
const PushTaskParamsV03 = z.object({ id: z.string().min(1).max(200) }).loose();
const PushConfigParamsV03 = z.object({ id: z.string().min(1).max(200), pushNotificationConfigId: z.string().min(1).max(200).optional() }).loose();

export async function createPushConfig(call: A2ACall, params: unknown): Promise<unknown> {
  const p = parse(PushTaskParams, params);
  return pushMethods.create(call, p.taskId, params);
}

export async function getPushConfig(call: A2ACall, params: unknown): Promise<unknown> {
  if (call.dialect === "0.3") {
    const p = parse(PushConfigParamsV03, params);
    return pushMethods.get(call, p.id, p.pushNotificationConfigId ?? p.id);
  }
  const p = parse(PushConfigParams, params);
  return pushMethods.get(call, p.taskId, p.id);
}

export async function listPushConfigs(call: A2ACall, params: unknown): Promise<unknown> {
  const taskId = call.dialect === "0.3" ? parse(PushTaskParamsV03, params).id : parse(PushTaskParams, params).taskId;
  const configs = await pushMethods.list(call, taskId);
  return call.dialect === "0.3" ? configs : { configs, nextPageToken: "" };
}

export async function deletePushConfig(call: A2ACall, params: unknown): Promise<unknown> {
  if (call.dialect === "0.3") {
    const p = parse(PushConfigParamsV03, params);
    await pushMethods.remove(call, p.id, p.pushNotificationConfigId ?? p.id);
    return null;
  }
  const p = parse(PushConfigParams, params);
  await pushMethods.remove(call, p.taskId, p.id);
  return {};
}

export async function getExtendedAgentCard(call: A2ACall): Promise<unknown> {
  const card = await extendedCardFor(call.c, call.agent);
  if (!card) throw new JsonRpcError(JSONRPC.EXTENDED_CARD_NOT_CONFIGURED, "This agent has no extended agent card");
  return call.dialect === "0.3" ? v1JsonToV03(card) : card;
}
