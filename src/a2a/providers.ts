/**
 * What the A2A methods (./methods.ts) take from the other A2A modules: push configs
 * (src/push), the extended agent card (./cards.ts) and task event streams (./stream.ts),
 * with the errors of those modules turned into A2A errors.
 */
import type { Context } from "hono";
import type { AgentIndexEntry } from "../db/agents";
import type { AppEnv } from "../http/app-env";
import {
  attachPushConfig,
  createPushConfig,
  deletePushConfig,
  getPushConfig,
  listPushConfigs,
  pushCaller,
  PushError,
  renderPushConfig,
} from "../push";
import { runStub } from "../runs/stub";
import { TERMINAL_RUN_STATUSES } from "../runs/types";
import { invalidParams, taskNotFound } from "./errors";
import { rpcResult } from "./jsonrpc";
import type { A2ACall } from "./methods";
import { renderTask } from "./wire";
import { config } from "../config";

function pushError(err: unknown): never {
  if (err instanceof PushError) {
    if (err.code === "task_not_found" || err.code === "config_not_found") throw Object.assign(taskNotFound(), { message: err.message });
    throw invalidParams(err.message, { reason: err.code });
  }
  throw err;
}

const callerOf = (call: A2ACall) => pushCaller(call.c, { dialect: call.dialect, agent: { name: call.agent.name, repositoryId: call.agent.repositoryId } });

export const pushMethods = {
  async attach(call: A2ACall, runId: string, config: unknown): Promise<void> {
    await attachPushConfig(call.c.env, call.c.get("org"), callerOf(call), runId, config).catch(pushError);
  },
  async create(call: A2ACall, taskId: string, config: unknown): Promise<unknown> {
    const stored = await createPushConfig(call.c.env, call.c.get("org"), callerOf(call), taskId, config).catch(pushError);
    return renderPushConfig(call.dialect, stored);
  },
  async get(call: A2ACall, taskId: string, id: string): Promise<unknown> {
    const found = await getPushConfig(call.c.env, call.c.get("org"), callerOf(call), taskId, id).catch(pushError);
    return renderPushConfig(call.dialect, found);
  },
  async list(call: A2ACall, taskId: string): Promise<unknown[]> {
    const all = await listPushConfigs(call.c.env, call.c.get("org"), callerOf(call), taskId).catch(pushError);
    return all.map((p) => renderPushConfig(call.dialect, p));
  },
  async remove(call: A2ACall, taskId: string, id: string): Promise<void> {
    await deletePushConfig(call.c.env, call.c.get("org"), callerOf(call), taskId, id).catch(pushError);
  },
};

/**
 * The extended card of an agent for an authenticated caller (null: the agent has none).
 * TEMPORARY until ./cards.ts exports `extendedAgentCard`: none.
 */
export async function extendedCardFor(_c: Context<AppEnv>, _agent: AgentIndexEntry): Promise<Record<string, unknown> | null> {
  return null;
}

/**
 * A task's event stream (SSE): the Task first, then its updates, closing at a terminal or
 * interrupted state. TEMPORARY until ./stream.ts (`taskEventStream`) lands: the Task now
 * and, once it ends or needs input, the Task again.
 */
export async function taskStream(call: A2ACall, runId: string): Promise<Response> {
  const { c, dialect } = call;
  const orgId = c.get("org").orgId;
  const stub = runStub(c.env, runId);
  const frame = (v: unknown) => `data: ${JSON.stringify(call.binding === "jsonrpc" ? rpcResult(call.rpcId ?? null, v) : v)}\n\n`;
  const wrap = (task: Record<string, unknown>) => (dialect === "1.0" ? { task } : task);
  const first = await stub.snapshot(orgId);
  if (!first) throw taskNotFound();
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const enc = new TextEncoder();
      controller.enqueue(enc.encode(frame(wrap(renderTask(dialect, first)))));
      if (!TERMINAL_RUN_STATUSES.has(first.status) && first.status !== "input_required") {
        const last = await stub.wait(orgId, config(c.env).runWaitTimeoutMs);
        if (last) controller.enqueue(enc.encode(frame(wrap(renderTask(dialect, last)))));
      }
      controller.close();
    },
  });
  return new Response(body, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
}
