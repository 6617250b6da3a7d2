/**
 * One model call of a turn: the seam where usage is counted, priced and held to the org's
 * budget. The turn loop (src/workflow/turn.ts) calls this and nothing else to reach a model.
 *
 * 1. The org's usage settings (prices, budget; cached a few seconds per isolate).
 * 2. With a budget: the call's maximum (input estimated from what is sent, plus the most
 *    output it may produce, priced at the model's price) is reserved in the org's budget
 *    object for the month; a call that does not fit throws `BudgetExceededError` (not
 *    transient: the step fails with its message). Without a budget: no round trip at all.
 * 3. The call: streamed when the caller takes text as it is generated (`onTextDelta`), else
 *    one `generateText`. When it throws, the reservation is released (settled at zero).
 * 4. The reservation is settled with what the provider reported, and one usage row is
 *    written (its id is the call's, so writing it again adds nothing).
 */
import { generateText, streamText } from "ai";
import { db as dbOf } from "../db/client";
import { AppError } from "../errors";
import { BudgetExceededError, reserveBudget, settleBudget, type Reservation } from "../usage/budget";
import { estimateInputTokens, maxOutputOf, type EstimatableParams } from "../usage/estimate";
import { costOf, priceFor, type PriceMatch } from "../usage/prices";
import { callIdOf, writeUsage, type NewUsageRecord } from "../usage/records";
import { orgUsageSettings } from "../usage/settings";
import type { TurnContext, TurnUsage } from "./types";

export type GenerateParams = Parameters<typeof generateText>[0];
/** What a call returns, streamed or not (the parts of `generateText`'s result the turn reads). */
export type GenerateResult = Pick<Awaited<ReturnType<typeof generateText>>, "text" | "toolCalls" | "response" | "usage" | "totalUsage">;

export interface ModelCallInput {
  env: Env;
  ctx: TurnContext;
  /** `provider:model` as resolved (for prices, events and audit). */
  modelId: string;
  params: GenerateParams;
  /** The model's output ceiling, when the provider registry knows it (`ResolvedModel.maxOutputTokens`). */
  maxOutputTokens?: number | undefined;
  /**
   * Takes the call's usage row instead of writing it here: a caller that writes rows in
   * batches (the executor, with its audit rows: `writeUsageMany`) keeps the D1 write off the
   * turn's path. Without it the row is written before `callModel` returns.
   */
  recordUsage?: ((row: NewUsageRecord) => void) | undefined;
  /** Takes the model's text as it is generated: the call is streamed (`streamText`). */
  onTextDelta?: ((text: string) => void) | undefined;
}

export interface ModelCallOutput {
  result: GenerateResult;
  usage: TurnUsage;
}

export async function callModel(input: ModelCallInput): Promise<ModelCallOutput> {
  const { env, ctx, modelId, params } = input;
  const settings = await orgUsageSettings(env, ctx.orgId);
  const price = priceFor(modelId, settings.prices);
  const maxOutput = maxOutputOf(params.maxOutputTokens, input.maxOutputTokens ?? price.maxOutputTokens);
  const inputTokens = estimateInputTokens(params as EstimatableParams);
  const need = { tokens: inputTokens + maxOutput, usd: costOf({ inputTokens, outputTokens: maxOutput }, price.price) };
  const callId = callIdOf(ctx);

  let reservation: Reservation | null = null;
  if (settings.budget) {
    try {
      reservation = await reserveBudget(env, ctx.orgId, callId, need, settings);
    } catch (err) {
      if (err instanceof BudgetExceededError) throw err;
      // The budget could not be asked: no call without it (retried by the queue).
      throw new AppError("UNAVAILABLE", `the org's budget could not be checked: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  let result: GenerateResult;
  try {
    result = input.onTextDelta ? await streamed(params, input.onTextDelta) : await generateText(params);
  } catch (err) {
    if (reservation) await settle(env, ctx.orgId, reservation, { tokens: 0, usd: 0 });
    throw err;
  }

  const usage = usageOf(result, price);
  const row: NewUsageRecord = {
    id: callId,
    orgId: ctx.orgId,
    runId: ctx.runId,
    stepId: ctx.stepId,
    turn: ctx.turn,
    attempt: ctx.attempt,
    agent: ctx.agent.name,
    repositoryId: ctx.agent.repositoryId,
    model: modelId,
    inputTokens: usage.inputTokens,
    cachedInputTokens: usage.cachedInputTokens ?? 0,
    outputTokens: usage.outputTokens,
    reasoningTokens: usage.reasoningTokens ?? 0,
    costUsd: usage.costUsd ?? 0,
    priced: price.priced,
    reservedTokens: need.tokens,
    reservedUsd: need.usd,
    at: Date.now(),
  };
  if (input.recordUsage) input.recordUsage(row);
  await Promise.all([
    reservation ? settle(env, ctx.orgId, reservation, { tokens: usage.inputTokens + usage.outputTokens, usd: usage.costUsd ?? 0 }) : null,
    input.recordUsage
      ? null
      : writeUsage(dbOf(env), row).catch((err: unknown) => {
          // The call happened and is paid for: failing the turn now would only make it run (and be paid) again.
          console.error(`usage: the row of ${callId} could not be written: ${err instanceof Error ? err.message : String(err)}`);
        }),
  ]);
  return { result, usage };
}

/**
 * One model call with `streamText`: text deltas go to `onTextDelta` as they arrive; the
 * result has the same text, tool calls, response messages and usage as `generateText`'s.
 * A provider error is thrown as the provider's own error (not the SDK's "no output"), so
 * retries and the step's error read the same as with `generateText`.
 */
async function streamed(params: GenerateParams, onTextDelta: (text: string) => void): Promise<GenerateResult> {
  let failure: { error: unknown } | null = null;
  const r = streamText({ ...(params as Parameters<typeof streamText>[0]), onError: ({ error }) => void (failure ??= { error }) });
  for await (const part of r.fullStream) {
    if (part.type === "text-delta") {
      if (part.text) onTextDelta(part.text);
    } else if (part.type === "error") failure ??= { error: part.error };
  }
  const failed = failure as { error: unknown } | null;
  if (failed) throw failed.error;
  const [text, toolCalls, response, usage, totalUsage] = await Promise.all([r.text, r.toolCalls, r.response, r.usage, r.totalUsage]);
  return { text, toolCalls, response, usage, totalUsage } as unknown as GenerateResult;
}

/** Settles a reservation, once more if the first try fails; a reservation left behind expires with its lease. */
async function settle(env: Env, orgId: string, reservation: Reservation, actual: { tokens: number; usd: number }): Promise<void> {
  for (let i = 0; i < 2; i++) {
    try {
      await settleBudget(env, orgId, reservation, actual);
      return;
    } catch (err) {
      if (i === 1) console.error(`budget: ${reservation.callId} could not be settled (its reservation expires with its lease): ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

/** Tokens of a call as the AI SDK reports them (cached and reasoning where the provider says), and its cost. */
export function usageOf(result: Pick<GenerateResult, "usage"> & { totalUsage?: GenerateResult["usage"] }, price: PriceMatch = priceFor("")): TurnUsage {
  const u = result.totalUsage ?? result.usage;
  const inputTokens = u.inputTokens ?? 0;
  const outputTokens = u.outputTokens ?? 0;
  const cachedInputTokens = u.inputTokenDetails?.cacheReadTokens ?? 0;
  const reasoningTokens = u.outputTokenDetails?.reasoningTokens ?? 0;
  return {
    inputTokens,
    outputTokens,
    cachedInputTokens,
    reasoningTokens,
    costUsd: costOf({ inputTokens, cachedInputTokens, outputTokens }, price.price),
  };
}
