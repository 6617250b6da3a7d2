/**
 * The queue consumer: the worker role. Each message is one agent step. Messages of a
 * batch run concurrently (locally only one batch per queue is in flight, so this is
 * where parallelism comes from). A step: claim it from the run object, load the agent
 * from its snapshot (cached per isolate by commit), run the model, report the result.
 */
import { generateText, type ModelMessage } from "ai";
import { loadAgent } from "../src/agents/snapshot";
import { AppError } from "../src/errors";
import { modelConfigFromEnv, resolveModel } from "../src/llm/registry";
import { runStub } from "../src/runs/stub";
import type { Job, StepContext, StepResult, StoredMessage } from "../src/runs/types";

/** Must match `max_retries` + 1 in wrangler.toml. */
export const MAX_ATTEMPTS = 4;

export async function handleJobs(batch: MessageBatch<Job>, env: Env): Promise<void> {
  await Promise.all(batch.messages.map((message) => handleJob(message, env)));
}

async function handleJob(message: Message<Job>, env: Env): Promise<void> {
  const job = message.body;
  if (!job || job.kind !== "step" || typeof job.runId !== "string" || typeof job.stepId !== "string") {
    console.error("executor: dropping malformed job");
    message.ack();
    return;
  }
  const run = runStub(env, job.runId);
  let ctx: StepContext | null;
  try {
    ctx = await run.claimStep(job.orgId, job.stepId);
  } catch (err) {
    // The run object is unreachable right now: let the queue redeliver.
    console.error(`executor: claim ${job.runId}/${job.stepId} failed: ${errorText(err)}`);
    message.retry({ delaySeconds: backoffSeconds(message.attempts) });
    return;
  }
  if (!ctx) {
    message.ack(); // already finished (a redelivery) or the run is gone
    return;
  }
  try {
    const result = await runStep(ctx, env);
    await run.completeStep(ctx.orgId, ctx.stepId, result);
    message.ack();
  } catch (err) {
    const permanent = err instanceof AppError && err.status < 500;
    const retrying = !permanent && message.attempts < MAX_ATTEMPTS;
    const text = errorText(err);
    try {
      await run.failStep(ctx.orgId, ctx.stepId, text, retrying);
    } catch (reportErr) {
      console.error(`executor: could not report failure of ${ctx.runId}/${ctx.stepId}: ${errorText(reportErr)}`);
    }
    if (retrying) message.retry({ delaySeconds: backoffSeconds(message.attempts) });
    else message.ack();
  }
}

export async function runStep(ctx: StepContext, env: Env): Promise<StepResult> {
  const agent = await loadAgent(env.SNAPSHOTS, ctx.orgId, ctx.agent);
  const { model, id } = resolveModel(modelConfigFromEnv(env), agent.frontmatter.model);
  const started = Date.now();
  const result = await generateText({
    model,
    system: agent.systemPrompt,
    messages: [toModelMessage(ctx.input)],
    ...(agent.frontmatter.temperature !== undefined ? { temperature: agent.frontmatter.temperature } : {}),
    ...(agent.frontmatter.maxTokens !== undefined ? { maxOutputTokens: agent.frontmatter.maxTokens } : {}),
    // Retries go through the queue (with backoff), not inside one consumer invocation.
    maxRetries: 0,
  });
  return {
    text: result.text,
    model: id,
    durationMs: Date.now() - started,
    usage: { inputTokens: result.usage.inputTokens, outputTokens: result.usage.outputTokens },
  };
}

function toModelMessage(message: StoredMessage): ModelMessage {
  const text = message.parts
    .map((p) => {
      if (p.kind === "text") return p.text;
      if (p.kind === "data") return "```json\n" + JSON.stringify(p.data, null, 2) + "\n```";
      return `[file ${p.filename ?? p.url ?? "attachment"}${p.mediaType ? ` (${p.mediaType})` : ""}]`;
    })
    .join("\n\n");
  return { role: "user", content: text };
}

function backoffSeconds(attempts: number): number {
  return Math.min(30, 2 ** Math.max(0, attempts - 1));
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
