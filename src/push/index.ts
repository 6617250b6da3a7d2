/**
 * Push notifications of A2A tasks (issue 11 item 9). A task's configs live in D1
 * (./config.ts); one Durable Object per task (durable-objects/push.ts) turns the task's
 * events into `StreamResponse`s and POSTs them to each config's URL, in order, retrying
 * with backoff from its alarm, and records every attempt.
 *
 * G's dispatcher calls the four config functions for both bindings and both dialects:
 *   createPushConfig / getPushConfig / listPushConfigs / deletePushConfig
 * with a `PushCaller` (build it with `pushCaller(c, { dialect, agent })`) and renders what
 * they return with `renderPushConfig(dialect, config)`. They throw `PushError` (see its
 * codes) for the caller's mistakes. The run object calls `notifyPush` for its events.
 */
import type { Context } from "hono";
import { isAllowed } from "../auth/authorize";
import { db } from "../db/client";
import { getRun } from "../db/runs";
import type { OrgScope } from "../db/scope";
import type { AppEnv } from "../http/app-env";
import type { Dialect } from "../a2a/wire";
import { RUN_ID, runStub } from "../runs/stub";
import type { RunEvent } from "../runs/types";
import { anyConfig, parsePushConfigInput, PushError, readConfig, readConfigs, removeConfig, storeConfig, type PushConfig, type PushConfigInput } from "./config";
import { mayPush } from "./updates";

export { PushError, parsePushConfigInput, MAX_CONFIGS_PER_TASK, type PushConfig, type PushConfigInput, type PushErrorCode } from "./config";

/** The task a config is for, as the caller check sees it (from the org's D1 run row). */
export interface PushTask {
  runId: string;
  agentName: string;
  repositoryId: string;
  initiatedBy: string | null;
}

/** Who configures pushes, and what they may do. */
export interface PushCaller {
  /** `user:<id>` / `key:<id>`: recorded as the config's creator. */
  principal: string | null;
  /** The A2A version of the request: the shape of what is pushed to this config. */
  dialect: Dialect;
  /** Whether the caller may read the task (only such a caller may configure its pushes). */
  mayReadTask(task: PushTask): Promise<boolean>;
  /** Whether the caller may send an org secret as the push credentials (`use` on `/secrets/{name}`). */
  mayUseSecret(name: string): Promise<boolean>;
}

/**
 * The caller of an A2A request. With `agent` (the endpoint's agent), a task of another
 * agent is not found. The caller may read a task they started, or any task when they may
 * read `/runs/{id}`.
 */
export function pushCaller(c: Context<AppEnv>, opts: { dialect: Dialect; agent?: { name: string; repositoryId: string } }): PushCaller {
  const principal = c.get("principal") ?? null;
  return {
    principal,
    dialect: opts.dialect,
    async mayReadTask(task) {
      if (opts.agent && (task.agentName !== opts.agent.name || task.repositoryId !== opts.agent.repositoryId)) return false;
      if (principal !== null && task.initiatedBy === principal) return true;
      return isAllowed(c, `/runs/${task.runId}`, "read");
    },
    mayUseSecret: (name) => isAllowed(c, `/secrets/${name}`, "use"),
  };
}

const taskNotFound = () => new PushError("task_not_found", "Task not found");

async function findTask(env: Env, scope: OrgScope, caller: PushCaller, taskId: string): Promise<PushTask> {
  if (typeof taskId !== "string" || !RUN_ID.test(taskId)) throw taskNotFound();
  const row = await getRun(db(env), scope, taskId);
  if (!row) throw taskNotFound();
  const task: PushTask = { runId: row.id, agentName: row.agentName, repositoryId: row.repositoryId, initiatedBy: row.initiatedBy };
  if (!(await caller.mayReadTask(task))) throw taskNotFound();
  return task;
}

function inputOf(config: unknown): PushConfigInput {
  return parsePushConfigInput(config);
}

/**
 * Creates (or replaces, by `id`) a push config of a task: pushes cover the task's events
 * from now on. `config` is the client's config in either version's shape.
 */
export async function createPushConfig(env: Env, scope: OrgScope, caller: PushCaller, taskId: string, config: unknown): Promise<PushConfig> {
  const input = inputOf(config);
  await findTask(env, scope, caller, taskId);
  const snapshot = await runStub(env, taskId).snapshot(scope.orgId);
  if (!snapshot) throw taskNotFound();
  // The run object first: from now on its events wake the push object (a config whose
  // store then fails only costs a wake that finds nothing).
  if (!(await runStub(env, taskId).enablePush(scope.orgId))) throw taskNotFound();
  const stored = await storeConfig(env, scope, { runId: taskId, input, dialect: caller.dialect, principal: caller.principal, fromSeq: snapshot.lastSeq, mayUseSecret: (n) => caller.mayUseSecret(n) });
  await wake(env, scope.orgId, taskId, 0);
  return stored;
}

/**
 * A config given with the message that starts a task (SendMessage's
 * `configuration.taskPushNotificationConfig`, v0.3 `pushNotificationConfig`): call it with
 * the new run's id BEFORE starting the run; pushes cover the task from its first event.
 * The caller is the one starting the task, so no task check is made (none exists yet).
 */
export async function attachPushConfig(env: Env, scope: OrgScope, caller: PushCaller, runId: string, config: unknown): Promise<PushConfig> {
  const input = inputOf(config);
  if (!RUN_ID.test(runId)) throw taskNotFound();
  const stored = await storeConfig(env, scope, { runId, input, dialect: caller.dialect, principal: caller.principal, fromSeq: 0, mayUseSecret: (n) => caller.mayUseSecret(n) });
  await wake(env, scope.orgId, runId, 0);
  return stored;
}

export async function getPushConfig(env: Env, scope: OrgScope, caller: PushCaller, taskId: string, id: string): Promise<PushConfig> {
  await findTask(env, scope, caller, taskId);
  const found = typeof id === "string" ? await readConfig(env, scope, taskId, id) : null;
  if (!found) throw new PushError("config_not_found", `No push notification config '${String(id)}' for this task`);
  return found;
}

export async function listPushConfigs(env: Env, scope: OrgScope, caller: PushCaller, taskId: string): Promise<PushConfig[]> {
  await findTask(env, scope, caller, taskId);
  return readConfigs(env, scope, taskId);
}

/** Deletes a config and stops its pushes; false when the task has no such config (A2A treats that as success). */
export async function deletePushConfig(env: Env, scope: OrgScope, caller: PushCaller, taskId: string, id: string): Promise<boolean> {
  await findTask(env, scope, caller, taskId);
  const removed = typeof id === "string" ? await removeConfig(env, scope, taskId, id) : false;
  if (removed) {
    try {
      await pushStub(env, taskId).forget(scope.orgId, id);
    } catch (err) {
      // The object also drops a config it no longer finds in D1 before its next push.
      console.error(`push: task ${taskId}: could not tell the push object config ${id} was deleted: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return removed;
}

/** A config in the A2A wire shape of `dialect` (no token, no literal credentials). */
export function renderPushConfig(dialect: Dialect, config: PushConfig): Record<string, unknown> {
  const auth = config.authentication;
  if (dialect === "1.0") {
    return {
      id: config.id,
      taskId: config.taskId,
      url: config.url,
      ...(auth ? { authentication: { scheme: auth.scheme, ...(auth.secret ? { credentials: `secret:${auth.secret}` } : {}) } } : {}),
    };
  }
  return {
    taskId: config.taskId,
    pushNotificationConfig: {
      id: config.id,
      url: config.url,
      ...(auth ? { authentication: { schemes: [auth.scheme], ...(auth.secret ? { credentials: `secret:${auth.secret}` } : {}) } } : {}),
    },
  };
}

// ---- delivery ------------------------------------------------------------------------

/** The push object's RPC contract (durable-objects/push.ts implements it). */
export interface PushRpc {
  wake(orgId: string, runId: string, seq: number): Promise<void>;
  forget(orgId: string, configId: string): Promise<void>;
  /** The task's delivery records, oldest first; null when the object has none for this org (never woken, another org's, or deleted after its retention). */
  deliveries(orgId: string, query?: DeliveryQuery): Promise<DeliveryRecord[] | null>;
  status(orgId: string): Promise<PushStatus | null>;
}

/** Which delivery records to read: one config's, after a record id, at most `limit` (default: all). */
export interface DeliveryQuery {
  configId?: string;
  after?: number;
  limit?: number;
}

/** One delivery attempt, as recorded by the push object (never a token, credential or URL query). */
export interface DeliveryRecord {
  /** Increasing within the task (the `after` of the next page). */
  id: number;
  configId: string;
  /** The task event the push came from, and the push's place in the config's queue. */
  seq: number;
  n: number;
  attempt: number;
  at: number;
  /** HTTP status, or null when no response came (timeout, refused, policy). */
  status: number | null;
  error: string | null;
  outcome: "delivered" | "retrying" | "gave_up" | "dropped";
  /** When a retry is due (outcome "retrying"). */
  retryAt: number | null;
}

export interface PushStatus {
  ended: boolean;
  done: boolean;
  /** Pushes waiting per config. */
  pending: Record<string, number>;
  /** When all the object's storage is deleted (nothing left to do), or null while it has work. */
  purgeAt: number | null;
}

export function pushStub(env: Env, runId: string): PushRpc {
  return env.PUSH.get(env.PUSH.idFromName(runId)) as unknown as PushRpc;
}

async function wake(env: Env, orgId: string, runId: string, seq: number): Promise<void> {
  try {
    await pushStub(env, runId).wake(orgId, runId, seq);
  } catch (err) {
    // The task's next event wakes it again.
    console.error(`push: task ${runId}: could not wake the push object: ${err instanceof Error ? err.message : String(err)}`);
  }
}

// Tasks known to have configs (a config is never moved to another task), for runs recorded
// before the run object knew (`RunInit.push` absent): their events cost one indexed D1 read
// each, only for the few event types that become pushes. Bounded; cleared wholesale when full.
const withConfigs = new Set<string>();
const MAX_KNOWN = 10_000;

/**
 * Hands a task event to the task's push object (the run object calls it for the events of
 * a task with push configs: `configured`; and for runs that predate that flag, which look
 * it up). Events that do not become pushes cost nothing. Never throws: a push must not
 * break the run.
 */
export async function notifyPush(env: Env, orgId: string, runId: string, event: RunEvent, configured = false): Promise<void> {
  if (!mayPush(event)) return;
  try {
    const key = `${orgId}\u0000${runId}`;
    if (!configured && !withConfigs.has(key)) {
      if (!(await anyConfig(env, orgId, runId))) return;
      if (withConfigs.size >= MAX_KNOWN) withConfigs.clear();
      withConfigs.add(key);
    }
    await pushStub(env, runId).wake(orgId, runId, event.seq);
  } catch (err) {
    console.error(`push: task ${runId}: event ${event.seq} not handed to the push object: ${err instanceof Error ? err.message : String(err)}`);
  }
}
