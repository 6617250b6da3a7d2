/**
 * Calling external A2A agents (issue 10): one bounded call per function, nothing waits
 * across a remote task (the run object schedules the next poll).
 *
 * - The official `@a2a-js/sdk` client (`ClientFactory.createFromUrl` over a cached card
 *   resolver, src/a2a-client/card.ts) with the JSON-RPC and HTTP+JSON transports, v0.3
 *   compatibility on: a v1.0 agent gets v1.0 (`SendMessage`, `returnImmediately: true`,
 *   `SubscribeToTask`, `GetTask`), a v0.3 agent gets v0.3 (`message/send` with
 *   `configuration.blocking: false`, `tasks/resubscribe`, `tasks/get`).
 * - Headers: `X-Shaman-Caller: <JWT>` always (signed with `signInternalToken`: `aud` the
 *   agent's origin, `org_id` / `run_id` / `step_id` / `depth` the calling step, `sub` the
 *   original user when the caller names one; verifiable with
 *   `https://<org>.<domain>/.well-known/jwks.json`). `Authorization: Bearer <org secret>`
 *   when the target names a credential secret, sent only through `credentialFetch` (its
 *   host list is checked at every request); otherwise `Authorization: Bearer <JWT>`.
 * - Every request obeys the outbound URL policy and is bounded (src/a2a-client/http.ts);
 *   failures are `RemoteCallError`s with `transient` set (src/a2a-client/errors.ts).
 */
import { Role, type Message, type Part, type Task } from "@a2a-js/sdk";
import { ClientFactory, JsonRpcTransportFactory, RestTransportFactory, type Client } from "@a2a-js/sdk/client";
import { signInternalToken } from "../auth/internal-jwt";
import { config } from "../config";
import { db } from "../db/client";
import type { OrgScope } from "../db/scope";
import { AppError } from "../errors";
import { credentialFetch } from "../net/outbound";
import { outboundUrlProblem, type UrlPolicy } from "../net/url-policy";
import { cachedCredential } from "../secrets/cache";
import { CachedCardResolver, agentCard } from "./card";
import { classify, RemoteCallError, rpcCodeOf, type CallLog } from "./errors";
import { boundedFetch, REMOTE_REQUEST_TIMEOUT_MS } from "./http";
import { fromMessage, fromTask, isTask, remoteState, SETTLED_REMOTE_STATES, type RemoteTask } from "./map";

export { RemoteCallError } from "./errors";
export type { RemoteState, RemoteTask } from "./map";
export { REMOTE_REQUEST_TIMEOUT_MS } from "./http";
export { CARD_TTL_MS, clearCardCache } from "./card";

/** The header carrying Shaman's own token to an external agent. */
export const CALLER_HEADER = "X-Shaman-Caller";
/** followRemote never waits on a stream longer than this, whatever `waitMs` says. */
export const MAX_FOLLOW_WAIT_MS = 5 * 60_000;

export interface RemoteAgentTarget {
  name: string;
  /** The agent's URL (its card is at `<url>/.well-known/agent-card.json`) or its card's URL (`….json`). */
  url: string;
  /** Org secret sent as `Authorization: Bearer …` (to its allowed hosts only). */
  credentialSecret: string | null;
}

/** Who is calling: the run step the call is made for. */
export interface RemoteCallOptions {
  runId: string;
  stepId: string;
  /** Call depth of the calling step (the root step is 0). */
  depth?: number;
  /** The original user the run works for (the token's `sub`). */
  sub?: string;
  /** Per-request bound (at most REMOTE_REQUEST_TIMEOUT_MS, the default). */
  timeoutMs?: number;
}

export interface SendRemoteOptions extends RemoteCallOptions {
  text: string;
  /** Idempotency: the same messageId for a retried send of the same message. */
  messageId: string;
  /** Continue this remote task (an answer to input-required). */
  taskId?: string;
  contextId?: string;
}

export interface FollowRemoteOptions extends RemoteCallOptions {
  /** How long to read the task's event stream (where the card offers streaming); 0 = one GetTask. */
  waitMs: number;
}

interface Prepared {
  client: Client;
  streaming: boolean;
  log: CallLog;
  who: string;
  secrets: string[];
}

function policyOf(env: Env): UrlPolicy {
  return { allowPrivateNetwork: !config(env).production };
}

async function prepare(env: Env, scope: OrgScope, target: RemoteAgentTarget, opts: RemoteCallOptions): Promise<Prepared> {
  const who = `the agent '${target.name}'`;
  const policy = policyOf(env);
  const problem = outboundUrlProblem(target.url, policy);
  if (problem) throw new RemoteCallError(`${who}: its url ${problem}`, false);
  const timeoutMs = opts.timeoutMs !== undefined ? Math.max(1, Math.min(opts.timeoutMs, REMOTE_REQUEST_TIMEOUT_MS)) : undefined;

  let credential: Awaited<ReturnType<typeof cachedCredential>> = null;
  if (target.credentialSecret) {
    credential = await cachedCredential(db(env), env, scope.orgId, target.credentialSecret);
    if (!credential) throw new RemoteCallError(`${who}: its credential secret '${target.credentialSecret}' does not exist`, false);
  }
  let token: string;
  try {
    token = await signInternalToken(env, {
      aud: new URL(target.url).origin,
      orgId: scope.orgId,
      runId: opts.runId,
      stepId: opts.stepId,
      depth: opts.depth ?? 0,
      ...(opts.sub !== undefined ? { sub: opts.sub } : {}),
    });
  } catch (err) {
    // No key set in production: nothing a retry fixes until it is configured.
    throw new RemoteCallError(`${who}: the caller token could not be made: ${err instanceof AppError ? err.message : "signing failed"}`, false);
  }

  const card = await agentCard(target.url, policy, who, timeoutMs);
  const log: CallLog = {};
  const base: typeof fetch = credential ? credentialFetch({ secret: credential.secret, allowedHosts: credential.allowedHosts }) : (input, init) => fetch(input, init);
  const fetchImpl = boundedFetch(base, log, {
    policy,
    who,
    headers: { [CALLER_HEADER]: token, Authorization: `Bearer ${credential ? credential.value : token}` },
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  });
  const factory = new ClientFactory({
    transports: [new JsonRpcTransportFactory({ fetchImpl, legacyCompat: { enabled: true } }), new RestTransportFactory({ fetchImpl, legacyCompat: { enabled: true } })],
    cardResolver: new CachedCardResolver(policy, who, timeoutMs),
  });
  let client: Client;
  try {
    client = await factory.createFromUrl(target.url, "");
  } catch (err) {
    throw classify(err, log, who, []);
  }
  return { client, streaming: card.capabilities?.streaming === true, log, who, secrets: [token, ...(credential ? [credential.value] : [])] };
}

function textPart(text: string): Part {
  return { content: { $case: "text", value: text }, metadata: undefined, filename: "", mediaType: "text/plain" };
}

/**
 * Sends one message (a new task, or an answer to an input-required task with `taskId`)
 * and returns at once with the task as the agent reports it then (often submitted or
 * working; an agent that answers with a plain message gives a completed RemoteTask).
 */
export async function sendRemote(env: Env, scope: OrgScope, target: RemoteAgentTarget, opts: SendRemoteOptions): Promise<RemoteTask> {
  const p = await prepare(env, scope, target, opts);
  const message: Message = {
    messageId: opts.messageId,
    contextId: opts.contextId ?? "",
    taskId: opts.taskId ?? "",
    role: Role.ROLE_USER,
    parts: [textPart(opts.text)],
    metadata: undefined,
    extensions: [],
    referenceTaskIds: [],
  };
  let result: Task | Message;
  try {
    result = await p.client.sendMessage({
      tenant: "",
      message,
      configuration: { returnImmediately: true, acceptedOutputModes: ["text/plain", "application/json"], taskPushNotificationConfig: undefined },
      metadata: undefined,
    });
  } catch (err) {
    throw classify(err, p.log, p.who, p.secrets);
  }
  if (!result || typeof result !== "object") throw new RemoteCallError(`${p.who} answered with something that is not an A2A response`, false);
  return isTask(result) ? fromTask(result, p.streaming) : fromMessage(result, p.streaming);
}

/**
 * The task's state now, or after at most `waitMs`: where the card offers streaming, reads
 * the task's event stream (SubscribeToTask; v0.3 tasks/resubscribe) until the task
 * settles (terminal, input-required, auth-required), the stream ends, or `waitMs` passes,
 * then aborts it and returns the latest state; otherwise (or when the stream cannot be
 * had) one GetTask.
 */
export async function followRemote(env: Env, scope: OrgScope, target: RemoteAgentTarget, taskId: string, opts: FollowRemoteOptions): Promise<RemoteTask> {
  const p = await prepare(env, scope, target, opts);
  const waitMs = Math.max(0, Math.min(Number.isFinite(opts.waitMs) ? opts.waitMs : 0, MAX_FOLLOW_WAIT_MS));
  if (p.streaming && waitMs > 0) {
    let task: Task | undefined;
    try {
      task = await readStream(p, taskId, waitMs);
    } catch (err) {
      // A stream refused by the agent (e.g. the task is already terminal and cannot be
      // subscribed to) falls back to GetTask below; a network failure does not.
      const e = classify(err, p.log, p.who, p.secrets);
      if (e.transient || rpcCodeOf(err) === undefined) throw e;
    }
    if (task) return fromTask(task, p.streaming);
    p.log.lastStatus = undefined;
  }
  try {
    return fromTask(await p.client.getTask({ tenant: "", id: taskId }), p.streaming);
  } catch (err) {
    throw classify(err, p.log, p.who, p.secrets);
  }
}

async function readStream(p: Prepared, taskId: string, waitMs: number): Promise<Task | undefined> {
  const controller = new AbortController();
  const deadline = setTimeout(() => controller.abort(new Error("wait over")), waitMs);
  let task: Task | undefined;
  try {
    for await (const event of p.client.resubscribeTask({ tenant: "", id: taskId }, { signal: controller.signal })) {
      task = apply(task, event?.payload, taskId);
      if (task && SETTLED_REMOTE_STATES.has(remoteState(task.status?.state))) break;
    }
  } catch (err) {
    // The wait is over: not an error, the latest state is the answer.
    if (!controller.signal.aborted) throw err;
  } finally {
    clearTimeout(deadline);
    controller.abort();
  }
  return task;
}

/** Folds one stream event into the task seen so far. */
function apply(task: Task | undefined, payload: { $case: string; value: unknown } | undefined, taskId: string): Task | undefined {
  if (!payload) return task;
  switch (payload.$case) {
    case "task":
      return structuredClone(payload.value as Task);
    case "statusUpdate": {
      const ev = payload.value as { taskId: string; contextId: string; status: Task["status"] };
      const t = task ?? { id: ev.taskId || taskId, contextId: ev.contextId, status: undefined, artifacts: [], history: [], metadata: undefined };
      return { ...t, status: ev.status };
    }
    case "artifactUpdate": {
      const ev = payload.value as { artifact?: Task["artifacts"][number]; append?: boolean; taskId: string; contextId: string };
      if (!ev.artifact) return task;
      const t = task ?? { id: ev.taskId || taskId, contextId: ev.contextId, status: undefined, artifacts: [], history: [], metadata: undefined };
      const artifacts = [...(t.artifacts ?? [])];
      const at = artifacts.findIndex((a) => a.artifactId === ev.artifact!.artifactId);
      if (at < 0) artifacts.push(ev.artifact);
      else artifacts[at] = ev.append ? { ...artifacts[at]!, parts: [...artifacts[at]!.parts, ...ev.artifact.parts] } : ev.artifact;
      return { ...t, artifacts };
    }
    default:
      return task;
  }
}

/**
 * Asks the agent to cancel the task. A task that is already finished (the agent says it
 * is not cancelable) is not an error.
 */
export async function cancelRemote(env: Env, scope: OrgScope, target: RemoteAgentTarget, taskId: string, opts: RemoteCallOptions): Promise<void> {
  const p = await prepare(env, scope, target, opts);
  try {
    await p.client.cancelTask({ tenant: "", id: taskId, metadata: undefined });
  } catch (err) {
    const TASK_NOT_CANCELABLE = -32002;
    if (rpcCodeOf(err) === TASK_NOT_CANCELABLE) return;
    throw classify(err, p.log, p.who, p.secrets);
  }
}
