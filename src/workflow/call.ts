/**
 * One work call of a step's turn, as the executor carries it out: an MCP tool, or an
 * external A2A agent's task (sent, followed, canceled). The job is verified like a turn's
 * (the run object's token for exactly this job), the call claimed from the run object
 * (null: done already, so a redelivered job runs nothing), carried out once within a
 * bound, and its outcome recorded. Nothing here waits for long: an external task that is
 * still going is followed again by a later job the run object's alarm queues.
 */
import { cancelRemote, followRemote, RemoteCallError, sendRemote, type RemoteTask } from "../a2a-client/remote";
import { agentAudience, InternalTokenError, verifyInternalToken, type VerifiedInternalToken } from "../auth/internal-jwt";
import { db as dbOf } from "../db/client";
import { orgById } from "../db/orgs";
import type { OrgScope } from "../db/scope";
import { callMcpTool, type McpServerSpec } from "../mcp";
import type { CallJob, Json } from "../runs/types";
import { runStub } from "../runs/stub";
import type { AuditSink, TurnJobResult } from "./turn";
import { STREAM_WINDOW_MS, STREAMED_FOLLOWS } from "./machine";
import type { CallContext, RemoteProgress, WorkOutcome } from "./types";


export async function runCall(job: CallJob, env: Env, audit: AuditSink): Promise<TurnJobResult> {
  const run = runStub(env, job.runId);
  const resource = `/runs/${job.runId}/steps/${job.stepId}/calls/${job.callId}`;
  const refuse = (reason: string, detail: string): TurnJobResult => {
    audit({ actor: "system", runId: job.runId, stepId: job.stepId, action: "job.refused", resource, outcome: "denied", input: { callId: job.callId, reason }, error: detail });
    console.warn(`executor: refused a call job for ${job.runId}/${job.stepId}/${job.callId}: ${reason}`);
    return { orgId: job.orgId, retry: false };
  };
  let verified: VerifiedInternalToken;
  try {
    if (!job.token || !job.agent) return refuse("missing", "the job carries no internal token");
    verified = await verifyInternalToken(env, job.token, { aud: agentAudience(job.orgId, job.agent), orgId: job.orgId, runId: job.runId, stepId: job.stepId });
  } catch (err) {
    // An expired token: the run object's watchdog sends the call's job again.
    if (err instanceof InternalTokenError) return refuse(err.reason, err.message);
    console.error(`executor: cannot verify jobs: ${errorText(err)}`);
    return { orgId: null, retry: true };
  }
  let claimed: CallContext | null | { refused: "replayed" | "audience" };
  try {
    claimed = await run.claimCall(job.orgId, job.stepId, job.turn, job.callId, { jti: verified.jti, agent: job.agent });
  } catch (err) {
    console.error(`executor: claim of call ${job.runId}/${job.stepId}/${job.callId} failed: ${errorText(err)}`);
    return { orgId: null, retry: true };
  }
  if (claimed && "refused" in claimed) return refuse(claimed.refused, claimed.refused === "replayed" ? "the token is not the one issued for this call's current job" : "the token is for another agent");
  const ctx = claimed;
  if (!ctx) return { orgId: null, retry: false };

  const scope = await orgById(dbOf(env), ctx.orgId);
  if (!scope) return { orgId: null, retry: false };
  const who = { actor: ctx.initiatedBy ?? "system", userId: ctx.userId, runId: ctx.runId, stepId: ctx.stepId };
  const started = Date.now();
  let outcome: WorkOutcome;
  const work = ctx.work;
  if (work.kind === "mcp") {
    const traceparent = await traceparentOf(ctx.runId, `${ctx.stepId}/${ctx.turn}/${ctx.callId}`);
    const r = await callMcpTool(env, scope, work.server as unknown as McpServerSpec, work.tool, work.args, {
      callId: `${ctx.runId}/${ctx.stepId}/${ctx.turn}/${ctx.callId}`,
      traceparent,
      ...(work.timeoutMs !== undefined ? { timeoutMs: work.timeoutMs } : {}),
    });
    outcome = r.ok ? { result: r.result } : { error: r.error };
    audit({
      ...who,
      action: "tool.execute",
      resource: `/tools/${ctx.name}`,
      outcome: r.ok ? "success" : "error",
      durationMs: Date.now() - started,
      input: { callId: ctx.callId, server: work.server.name, tool: work.tool, args: work.args, traceparent },
      ...(r.ok ? { output: { result: r.result } } : { error: r.error }),
    });
  } else {
    outcome = await remoteCall(env, scope, ctx);
    if (ctx.phase === "cancel") return { orgId: ctx.orgId, retry: false };
    const failed = "error" in outcome;
    const final = "remote" in outcome ? outcome.remote.state : failed ? "error" : "done";
    // One audit row when the call is made and one when its task settles (not one per look).
    if (ctx.phase === "run" || failed || !["submitted", "working", "unknown"].includes(final)) {
      audit({
        ...who,
        action: "agent.call",
        resource: `/agents/${work.target.name}`,
        outcome: failed || final === "failed" || final === "rejected" ? "error" : "success",
        durationMs: Date.now() - started,
        input: { callId: ctx.callId, external: true, phase: ctx.phase, url: work.target.url, ...(ctx.phase === "run" ? { input: work.text } : {}) },
        ...("remote" in outcome ? { output: { taskId: outcome.remote.taskId, state: final, ...(outcome.remote.text ? { text: outcome.remote.text } : {}) } } : {}),
        ...("error" in outcome ? { error: outcome.error } : {}),
      });
    }
  }
  try {
    await run.recordCall(ctx.orgId, ctx.stepId, ctx.turn, ctx.callId, outcome);
  } catch (err) {
    // The call was made; its claim runs out and the watchdog decides (a follow is looked at again; a tool is not rerun unless safe).
    console.error(`executor: could not record call ${ctx.runId}/${ctx.stepId}/${ctx.callId}: ${errorText(err)}`);
  }
  return { orgId: ctx.orgId, retry: false };
}

/** Sends to, follows or cancels an external agent's task. */
async function remoteCall(env: Env, scope: OrgScope, ctx: CallContext): Promise<WorkOutcome> {
  const work = ctx.work;
  if (work.kind !== "remote") return { error: "not an external agent call" };
  const opts = { runId: ctx.runId, stepId: ctx.stepId };
  try {
    if (ctx.phase === "cancel") {
      if (ctx.remote?.taskId) await cancelRemote(env, scope, work.target, ctx.remote.taskId, opts);
      return { result: null };
    }
    let task: RemoteTask;
    if (ctx.remote?.taskId) {
      const stream = ctx.remote.streaming && ctx.follows < STREAMED_FOLLOWS;
      task = await followRemote(env, scope, work.target, ctx.remote.taskId, { ...opts, waitMs: stream ? STREAM_WINDOW_MS : 0 });
    } else {
      task = await sendRemote(env, scope, work.target, {
        ...opts,
        text: work.text,
        messageId: work.messageId,
        ...(work.taskId ? { taskId: work.taskId } : {}),
        ...(work.contextId ? { contextId: work.contextId } : {}),
      });
    }
    return { remote: progressOf(task) };
  } catch (err) {
    if (ctx.phase === "cancel") return { result: null }; // best effort
    if (err instanceof RemoteCallError) return { error: `external agent ${work.target.name}: ${err.message}`, retrying: err.transient };
    return { error: `external agent ${work.target.name}: ${errorText(err)}`, retrying: false };
  }
}

function progressOf(task: RemoteTask): RemoteProgress {
  return {
    taskId: task.taskId,
    ...(task.contextId ? { contextId: task.contextId } : {}),
    state: task.state,
    text: task.text,
    ...(task.data !== undefined ? { data: task.data as Json } : {}),
    ...(task.error ? { error: task.error } : {}),
    streaming: task.streaming,
  };
}

/**
 * A W3C traceparent for a call: the trace is the run (so every call of a run shares it),
 * the span the call.
 */
export async function traceparentOf(runId: string, span: string): Promise<string> {
  const hex = async (s: string) => [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const trace = /^[0-9a-f-]{36}$/.test(runId) ? runId.replace(/-/g, "") : (await hex(runId)).slice(0, 32);
  return `00-${trace}-${(await hex(`${runId}/${span}`)).slice(0, 16)}-01`;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
