/**
 * One turn of one step, as the executor runs it: claim the turn from the run object, load
 * the agent, call its model once with the platform tools (no `execute`: the model's tool
 * calls come back to us), check each call's arguments, resolve `call_agent` targets (this
 * side has D1), and report the turn to the run object, which carries the calls out (child
 * steps, input requests, run data) and queues what comes next. The executor never waits
 * for a child or a person: the run object queues the parent's next turn when they settle.
 */
import { APICallError } from "ai";
import type { AgentRef } from "../agents/snapshot";
import { loadAgent } from "../agents/snapshot";
import { resolveAgentCall, type CallerAgent } from "../agents/resolve";
import type { AuditEntry } from "../audit/log";
import { agentAudience, InternalTokenError, verifyInternalToken, type VerifiedInternalToken } from "../auth/internal-jwt";
import { agentsOfRepository, listExposedAgents } from "../db/agents";
import { db as dbOf } from "../db/client";
import { orgById } from "../db/orgs";
import type { OrgScope } from "../db/scope";
import { AppError } from "../errors";
import { resolveModel, type ModelConfig } from "../llm/registry";
import type { Json } from "../runs/types";
import { runStub, type RunRpc } from "../runs/stub";
import { checkToolArgs, platformTools, type CallableAgent } from "../tools/platform";
import { messageText } from "./machine";
import { callModel, type GenerateParams, type GenerateResult } from "./model-call";
import type { NewUsageRecord } from "../usage/records";
import type { ConversationMessage, StoredMcpServer, TurnContext, TurnOutcome, TurnToolCall, TurnUsage } from "./types";
import type { AgentFrontmatter } from "../agents/format";
import { agentMcpServers, mcpToolset, mcpToolsForModel, type McpServerSpec, type McpTool } from "../mcp";

export type AuditSink = (entry: AuditEntry) => void;

export interface TurnJobResult {
  orgId: string | null;
  /** Let the queue deliver the job again (with backoff). */
  retry: boolean;
}

/** Agents listed in `call_agent`'s description: as many as one turn may call (at least 50, at most 200). */
const listedMax = (maxCallsPerTurn: number) => Math.min(200, Math.max(50, maxCallsPerTurn));

/** Transient model errors are retried by the queue; anything else fails the step with its reason. */
export function isTransient(err: unknown): boolean {
  if (err instanceof AppError) return err.status >= 500;
  if (APICallError.isInstance(err)) {
    const status = err.statusCode;
    return status === undefined || status === 408 || status === 409 || status === 429 || status >= 500;
  }
  const name = err instanceof Error ? err.name : "";
  return name === "TimeoutError" || name === "AbortError" || /network|fetch failed|connection/i.test(err instanceof Error ? err.message : "");
}

/** The provider's reason for a failed call, as the step's error. */
export function modelErrorText(err: unknown): string {
  if (APICallError.isInstance(err)) {
    let reason = err.message;
    try {
      const body = err.responseBody ? (JSON.parse(err.responseBody) as { error?: { message?: string } }) : null;
      if (body?.error?.message) reason = body.error.message;
    } catch {
      // not JSON
    }
    return `the model provider refused the call${err.statusCode ? ` (HTTP ${err.statusCode})` : ""}: ${reason}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs turn `turn` of a step. `attempts` is the queue's delivery count; `maxAttempts` the
 * most the queue will try. `modelConfig` gives the org's model configuration.
 */
export async function runTurn(
  job: { runId: string; orgId: string; stepId: string; turn: number; token?: string | undefined; agent?: string | undefined },
  attempts: number,
  maxAttempts: number,
  env: Env,
  modelConfig: (orgId: string) => Promise<ModelConfig>,
  audit: AuditSink,
  /** Takes the model call's usage row to write with the batch's audit rows (else it is written at once). */
  recordUsage?: (row: NewUsageRecord) => void,
): Promise<TurnJobResult> {
  const run = runStub(env, job.runId);
  // Nothing runs without the run object's token for exactly this job: verified here
  // (signature, expiry, audience, org, run, step), and its jti checked by the claim.
  const refuse = (reason: string, detail: string): TurnJobResult => {
    audit({
      actor: "system",
      runId: job.runId,
      stepId: job.stepId,
      action: "job.refused",
      resource: `/runs/${job.runId}/steps/${job.stepId}`,
      outcome: "denied",
      input: { turn: job.turn, reason },
      error: detail,
    });
    console.warn(`executor: refused a job for ${job.runId}/${job.stepId}#${job.turn}: ${reason}`);
    return { orgId: job.orgId, retry: false };
  };
  let verified: VerifiedInternalToken;
  try {
    if (!job.token || !job.agent) return refuse("missing", "the job carries no internal token");
    verified = await verifyInternalToken(env, job.token, { aud: agentAudience(job.orgId, job.agent), orgId: job.orgId, runId: job.runId, stepId: job.stepId });
  } catch (err) {
    if (err instanceof InternalTokenError) {
      if (err.reason === "expired") {
        // A job that waited too long in the queue: the run object issues a fresh one (if the step still waits for it).
        const reissued = await run.reissueTurn(job.orgId, job.stepId, job.turn).catch(() => false);
        return refuse("expired", `the job's token expired before it ran${reissued ? "; a new job was issued" : ""}`);
      }
      return refuse(err.reason, err.message);
    }
    console.error(`executor: cannot verify jobs: ${errorText(err)}`);
    return { orgId: null, retry: true }; // no key set (configuration): try again later
  }
  let claimed: TurnContext | null | { refused: "replayed" | "audience" };
  try {
    claimed = await run.claimTurn(job.orgId, job.stepId, job.turn, { jti: verified.jti, agent: job.agent });
  } catch (err) {
    console.error(`executor: claim ${job.runId}/${job.stepId}#${job.turn} failed: ${errorText(err)}`);
    return { orgId: null, retry: true };
  }
  if (claimed && "refused" in claimed) return refuse(claimed.refused, claimed.refused === "replayed" ? "the token is not the one issued for this step's current job" : "the token is for another agent");
  const ctx = claimed;
  if (!ctx) return { orgId: null, retry: false }; // recorded already, finished, or canceled: nothing to run

  const who = { actor: ctx.initiatedBy ?? "system", userId: ctx.userId, runId: ctx.runId, stepId: ctx.stepId };
  const started = Date.now();
  try {
    const [agent, cfg, scope] = await Promise.all([loadAgent(env.SNAPSHOTS, ctx.orgId, ctx.agent), modelConfig(ctx.orgId), orgById(dbOf(env), ctx.orgId)]);
    if (!scope) return { orgId: null, retry: false }; // the org is gone
    const { model, id, maxOutputTokens } = resolveModel(cfg, agent.frontmatter.model, { maxTokens: agent.frontmatter.maxTokens });
    const caller: CallerAgent = { repositoryId: ctx.agent.repositoryId, name: ctx.agent.name, allowedAgents: agent.frontmatter.allowedAgents };
    const [callable, mcp] = await Promise.all([callableAgents(env, scope, caller, listedMax(ctx.maxCallsPerTurn)), agentTools(env, scope, agent.frontmatter)]);
    const mcpByName = new Map(mcp.tools.map((t) => [t.name, t]));
    const messages: ConversationMessage[] = ctx.messages.length > 0 ? ctx.messages : [{ role: "user", content: messageText(ctx.input) }];
    let result: GenerateResult;
    let usage: TurnUsage;
    // The model's text goes to the run object as it is generated (batched), for live streams.
    const deltas = new DeltaSink(run, ctx);
    try {
      ({ result, usage } = await callModel({
        env,
        ctx,
        modelId: id,
        maxOutputTokens,
        recordUsage,
        ...(ctx.liveText ? { onTextDelta: (text: string) => deltas.push(text) } : {}),
        params: {
          model,
          system: mcp.problems.length ? `${agent.systemPrompt}\n\n(Platform note: some of your tools are unavailable now: ${mcp.problems.join("; ")})` : agent.systemPrompt,
          // The stored conversation is the AI SDK's own message shape, kept as JSON.
          messages: messages as unknown as GenerateParams["messages"] & object,
          tools: { ...platformTools(callable), ...mcpToolsForModel(mcp.tools) },
          ...(agent.frontmatter.temperature !== undefined ? { temperature: agent.frontmatter.temperature } : {}),
          ...(agent.frontmatter.maxTokens !== undefined ? { maxOutputTokens: agent.frontmatter.maxTokens } : {}),
          // Retries go through the queue (with backoff), not inside one consumer invocation.
          maxRetries: 0,
        },
      }));
    } catch (err) {
      await deltas.end();
      audit({ ...who, action: "model.call", resource: `/models/${id}`, outcome: "error", durationMs: Date.now() - started, input: { turn: ctx.turn }, error: errorText(err) });
      throw err;
    }
    // Every batch lands before the turn is recorded: a stream shows the text, then the turn.
    await deltas.end();
    audit({
      ...who,
      action: "model.call",
      resource: `/models/${id}`,
      outcome: "success",
      durationMs: Date.now() - started,
      input: { turn: ctx.turn, messages: messages.length },
      output: { text: result.text, toolCalls: result.toolCalls.map((c) => c.toolName), usage },
    });

    const toolCalls: TurnToolCall[] = [];
    for (const call of result.toolCalls) {
      const args = (call.input ?? {}) as Json;
      const mcpTool = mcpByName.get(call.toolName);
      const checked = mcpTool ? { ok: true as const, args } : checkToolArgs(call.toolName, args);
      const entry: TurnToolCall = { id: call.toolCallId, name: call.toolName, args };
      if (!checked.ok) entry.error = checked.error;
      else if (mcpTool) {
        const server = mcp.servers.find((s) => s.name === mcpTool.server);
        if (!server) entry.error = `the MCP server of ${call.toolName} is not available`;
        else {
          entry.work = {
            kind: "mcp",
            server: server as unknown as StoredMcpServer,
            tool: mcpTool.tool,
            args,
            rerunnable: mcpTool.rerunnable,
            ...(server.timeoutMs !== undefined ? { timeoutMs: server.timeoutMs } : {}),
          };
          if (mcpTool.requiresApproval) entry.approval = approvalPrompt(ctx.agent.name, mcpTool.server, mcpTool.tool, mcpTool.destructive, args);
        }
      } else if (call.toolName === "call_agent") {
        const target = (checked.args as { agent: string }).agent;
        try {
          const resolved = await resolveAgentCall(dbOf(env), scope, caller, target);
          if (resolved.kind === "external") {
            const a = checked.args as { input: string; context?: string; taskId?: string; contextId?: string };
            const text = [a.input, a.context ? `Context:\n${a.context}` : ""].filter(Boolean).join("\n\n");
            entry.work = {
              kind: "remote",
              target: { name: resolved.name, url: resolved.url, credentialSecret: resolved.credentialSecret },
              text,
              messageId: `${ctx.runId}-${ctx.stepId}-${ctx.turn}-${call.toolCallId}`,
              ...(a.taskId ? { taskId: a.taskId } : {}),
              ...(a.contextId ? { contextId: a.contextId } : {}),
            };
          } else {
            const a = resolved.agent;
            const ref: AgentRef = { name: a.name, repositoryId: a.repositoryId, commit: a.commitSha, path: a.path, ...(a.blobSha ? { blobSha: a.blobSha } : {}) };
            entry.resolved = { agent: ref, qualifiedName: a.isRoot ? a.name : `${a.repositoryName}/${a.name}` };
          }
        } catch (err) {
          entry.error = err instanceof AppError ? err.message : `could not resolve '${target}': ${errorText(err)}`;
        }
        audit({
          ...who,
          action: "agent.call",
          resource: `/agents/${entry.resolved?.qualifiedName ?? target}`,
          outcome: entry.error ? "denied" : "success",
          input: { caller: ctx.agent.name, internal: !entry.work, turn: ctx.turn },
          ...(entry.error ? { error: entry.error } : {}),
        });
      }
      if (!entry.work) audit({
        ...who,
        action: "tool.execute",
        resource: `/tools/${call.toolName}`,
        outcome: entry.error ? "error" : "success",
        input: { callId: call.toolCallId, args },
        ...(entry.error ? { error: entry.error } : {}),
      });
      toolCalls.push(entry);
    }
    const assistant = (result.response.messages.find((m) => m.role === "assistant") ?? { role: "assistant", content: result.text }) as unknown as ConversationMessage;
    const outcome: TurnOutcome = { assistant, text: result.text, toolCalls, model: id, durationMs: Date.now() - started, usage };
    await run.recordTurn(ctx.orgId, ctx.stepId, ctx.turn, outcome, agent.frontmatter.maxIterations);
    audit({ ...who, action: "step.run", resource: `/agents/${ctx.agent.name}`, outcome: "success", durationMs: Date.now() - started, input: { turn: ctx.turn, attempt: ctx.attempt, depth: ctx.depth } });
    return { orgId: ctx.orgId, retry: false };
  } catch (err) {
    const retrying = isTransient(err) && attempts < maxAttempts;
    const text = modelErrorText(err);
    audit({ ...who, action: "step.run", resource: `/agents/${ctx.agent.name}`, outcome: "error", durationMs: Date.now() - started, input: { turn: ctx.turn, attempt: ctx.attempt }, error: { message: text, retrying } });
    try {
      await run.failTurn(ctx.orgId, ctx.stepId, ctx.turn, text, retrying);
    } catch (reportErr) {
      console.error(`executor: could not report failure of ${ctx.runId}/${ctx.stepId}: ${errorText(reportErr)}`);
    }
    return { orgId: ctx.orgId, retry: retrying };
  }
}

/** How often the text of a turn goes to the run object: after this long, or this many characters. */
export const DELTA_FLUSH_MS = 150;
export const DELTA_FLUSH_CHARS = 2_048;

/**
 * Batches a turn's text deltas into `model.delta` events: a batch goes out `DELTA_FLUSH_MS`
 * after its first character or when it holds `DELTA_FLUSH_CHARS`, one RPC at a time and in
 * order; `end()` sends what is left, marked last. Best effort: a batch the run object
 * refuses or that fails is dropped (the turn's recorded text is what counts).
 */
class DeltaSink {
  private buffer = "";
  private index = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly run: RunRpc,
    private readonly ctx: TurnContext,
  ) {}

  push(text: string): void {
    if (this.stopped) return;
    this.buffer += text;
    if (this.buffer.length >= DELTA_FLUSH_CHARS) this.flush(false);
    else this.timer ??= setTimeout(() => this.flush(false), DELTA_FLUSH_MS);
  }

  /** Sends the rest (marked last, if any text was streamed) and waits for every batch. */
  async end(): Promise<void> {
    if (!this.stopped && (this.buffer || this.index > 0)) this.flush(true);
    this.stopped = true;
    await this.chain;
  }

  private flush(last: boolean): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || (!this.buffer && !last)) return;
    const delta = { turn: this.ctx.turn, attempt: this.ctx.attempt, index: this.index++, text: this.buffer, ...(last ? { last: true } : {}) };
    this.buffer = "";
    this.chain = this.chain.then(() =>
      this.run.appendDelta(this.ctx.orgId, this.ctx.stepId, delta).then(
        (ok) => {
          if (!ok) this.stopped = true; // the turn is no longer this executor's
        },
        (err: unknown) => console.warn(`executor: a text batch of ${this.ctx.runId}/${this.ctx.stepId}#${this.ctx.turn} was not delivered: ${errorText(err)}`),
      ),
    );
  }
}

/** The MCP tools an agent may use (none when it names no server): listed from cache where it can. */
async function agentTools(env: Env, scope: OrgScope, frontmatter: AgentFrontmatter): Promise<{ servers: McpServerSpec[]; tools: McpTool[]; problems: string[] }> {
  const { servers, problems } = await agentMcpServers(env, scope, frontmatter);
  if (servers.length === 0) return { servers, tools: [], problems };
  const set = await mcpToolset(env, scope, servers);
  return { servers, tools: set.tools, problems: [...problems, ...set.problems] };
}

/** What a person is asked before a tool that needs approval runs. */
function approvalPrompt(agent: string, server: string, tool: string, destructive: boolean, args: Json): string {
  const shown = JSON.stringify(args);
  return `${agent} wants to call ${tool} on MCP server ${server}${destructive ? " (marked destructive)" : ""} with ${shown.length > 2_000 ? `${shown.slice(0, 2_000)}…` : shown}. Approve?`;
}

/** The agents a caller may call, as listed in `call_agent`'s description. */
async function callableAgents(env: Env, scope: OrgScope, caller: CallerAgent, max: number): Promise<CallableAgent[]> {
  const allowed = caller.allowedAgents;
  if (allowed !== "*" && allowed.length === 0) return [];
  const d = dbOf(env);
  if (allowed !== "*") {
    // Resolved together (each is cached 5 s per isolate); one that is not callable now (missing, renamed) is not offered.
    const found = await Promise.all(
      allowed.slice(0, max).map(async (name): Promise<CallableAgent | null> => {
        try {
          const r = await resolveAgentCall(d, scope, caller, name);
          return { name, description: r.kind === "local" ? r.agent.description : r.description };
        } catch {
          return null;
        }
      }),
    );
    return found.filter((a): a is CallableAgent => a !== null);
  }
  const [exposed, same] = await Promise.all([listExposedAgents(d, scope), agentsOfRepository(d, scope, [caller.repositoryId])]);
  const seen = new Set<string>();
  const out: CallableAgent[] = [];
  for (const a of same) {
    if (a.name === caller.name || seen.has(a.name)) continue;
    seen.add(a.name);
    out.push({ name: a.name, description: a.description });
  }
  for (const a of exposed) {
    const name = a.isRoot ? a.name : `${a.repositoryName}/${a.name}`;
    if (seen.has(name) || (a.repositoryId === caller.repositoryId && a.name === caller.name)) continue;
    seen.add(name);
    out.push({ name, description: a.description });
  }
  return out.slice(0, max);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
