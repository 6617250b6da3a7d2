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
import type { RunSnapshot } from "../runs/types";
import { extendedAgentCard } from "./cards";
import { invalidParams, taskNotFound } from "./errors";
import type { A2ACall } from "./methods";
import { taskEventStream } from "./stream";

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

/** The extended card of an agent for an authenticated caller (null: the agent has none → -32007). */
export function extendedCardFor(c: Context<AppEnv>, agent: AgentIndexEntry): Promise<Record<string, unknown> | null> {
  return extendedAgentCard(c, agent);
}

/**
 * A task's event stream (SSE, ./stream.ts): the Task first (`snapshot` when the caller has
 * it, e.g. the one a streaming send's start returned), then its updates, closing at a
 * terminal or interrupted state; with `Last-Event-ID`, the events after it instead.
 */
export function taskStream(call: A2ACall, runId: string, snapshot?: RunSnapshot, historyLength?: number): Promise<Response> {
  return taskEventStream(call.c, {
    runId,
    orgId: call.c.get("org").orgId,
    dialect: call.dialect,
    binding: call.binding,
    ...(call.rpcId !== undefined ? { rpcId: call.rpcId } : {}),
    ...(call.lastEventId !== undefined ? { lastEventId: call.lastEventId } : {}),
    ...(snapshot ? { snapshot } : {}),
    ...(historyLength !== undefined ? { historyLength } : {}),
  });
}
