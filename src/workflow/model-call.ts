/**
 * One model call of a turn: the seam where usage is counted, priced and held to the org's
 * budget (reserve before, settle after). The turn loop (src/workflow/turn.ts) calls this
 * and nothing else to reach a model.
 */
import { generateText } from "ai";
import type { TurnContext, TurnUsage } from "./types";

export type GenerateParams = Parameters<typeof generateText>[0];
export type GenerateResult = Awaited<ReturnType<typeof generateText>>;

export interface ModelCallInput {
  env: Env;
  ctx: TurnContext;
  /** `provider:model` as resolved (for prices, events and audit). */
  modelId: string;
  params: GenerateParams;
}

export interface ModelCallOutput {
  result: GenerateResult;
  usage: TurnUsage;
}

export async function callModel(input: ModelCallInput): Promise<ModelCallOutput> {
  const result = await generateText(input.params);
  return { result, usage: usageOf(result) };
}

export function usageOf(result: GenerateResult): TurnUsage {
  return { inputTokens: result.usage.inputTokens ?? 0, outputTokens: result.usage.outputTokens ?? 0 };
}
