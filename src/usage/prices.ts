/**
 * What a model call costs. Prices are US dollars per million tokens: `input` (input tokens
 * not served from the provider's prompt cache), `cachedInput` (input tokens read from it;
 * the input price when a provider has no cache price) and `output` (reasoning tokens are
 * output tokens and are priced as such).
 *
 * A model is `provider:model` as resolved (`openai:gpt-4o-mini-2024-07-18`). It is priced by
 * the org's own table (`settings.prices`, `PUT /settings/prices`) first, then by the default
 * table below; in each, the longest key that is a prefix of the model id wins, so
 * `openai:gpt-4o` prices dated snapshots of gpt-4o and `openai:gpt-4o-mini` its own family,
 * and an org key `openai:` prices every OpenAI model at the org's negotiated rate. The
 * offline model is free. A model no table knows costs 0 and is flagged (`priced: false`),
 * in usage rows and in `GET /usage`, so a missing price is visible rather than silently free.
 *
 * The defaults are the providers' published list prices (standard tier, prompts up to the
 * first price break) as of late 2025: orgs with other rates, batch pricing or new models set
 * their own. `maxOutputTokens` is the model's output ceiling, reserved against a budget when
 * an agent sets no `maxTokens` and the provider registry does not know it.
 */

export interface ModelPrice {
  /** USD per million input tokens (not cached). */
  input: number;
  /** USD per million cached input tokens; the input price when absent. */
  cachedInput?: number | undefined;
  /** USD per million output tokens (reasoning included). */
  output: number;
}

export interface PriceEntry extends ModelPrice {
  /** The model's output ceiling in tokens, where known. */
  maxOutputTokens?: number;
}

const p = (input: number, cachedInput: number | undefined, output: number, maxOutputTokens?: number): PriceEntry => ({
  input,
  ...(cachedInput !== undefined ? { cachedInput } : {}),
  output,
  ...(maxOutputTokens !== undefined ? { maxOutputTokens } : {}),
});

/** The default table: `provider:model` prefixes. */
export const DEFAULT_PRICES: Readonly<Record<string, PriceEntry>> = Object.freeze({
  // OpenAI
  "openai:gpt-5": p(1.25, 0.125, 10, 128_000),
  "openai:gpt-5-mini": p(0.25, 0.025, 2, 128_000),
  "openai:gpt-5-nano": p(0.05, 0.005, 0.4, 128_000),
  "openai:gpt-4.1": p(2, 0.5, 8, 32_768),
  "openai:gpt-4.1-mini": p(0.4, 0.1, 1.6, 32_768),
  "openai:gpt-4.1-nano": p(0.1, 0.025, 0.4, 32_768),
  "openai:gpt-4o": p(2.5, 1.25, 10, 16_384),
  "openai:gpt-4o-mini": p(0.15, 0.075, 0.6, 16_384),
  "openai:gpt-4-turbo": p(10, undefined, 30, 4_096),
  "openai:gpt-3.5-turbo": p(0.5, undefined, 1.5, 4_096),
  "openai:o1": p(15, 7.5, 60, 100_000),
  "openai:o3": p(2, 0.5, 8, 100_000),
  "openai:o3-mini": p(1.1, 0.55, 4.4, 100_000),
  "openai:o4-mini": p(1.1, 0.275, 4.4, 100_000),
  // Anthropic (cached = cache reads)
  "anthropic:claude-opus-4": p(15, 1.5, 75, 32_000),
  "anthropic:claude-opus-4-5": p(5, 0.5, 25, 64_000),
  "anthropic:claude-sonnet-4": p(3, 0.3, 15, 64_000),
  "anthropic:claude-haiku-4": p(1, 0.1, 5, 64_000),
  "anthropic:claude-3-7-sonnet": p(3, 0.3, 15, 64_000),
  "anthropic:claude-3-5-sonnet": p(3, 0.3, 15, 8_192),
  "anthropic:claude-3-5-haiku": p(0.8, 0.08, 4, 8_192),
  "anthropic:claude-3-opus": p(15, 1.5, 75, 4_096),
  "anthropic:claude-3-haiku": p(0.25, 0.03, 1.25, 4_096),
  // Google (prompts up to 200k tokens where the price has a break)
  "google:gemini-2.5-pro": p(1.25, 0.31, 10, 65_536),
  "google:gemini-2.5-flash": p(0.3, 0.03, 2.5, 65_536),
  "google:gemini-2.5-flash-lite": p(0.1, 0.01, 0.4, 65_536),
  "google:gemini-2.0-flash": p(0.1, 0.025, 0.4, 8_192),
  "google:gemini-2.0-flash-lite": p(0.075, undefined, 0.3, 8_192),
  "google:gemini-1.5-pro": p(1.25, 0.3125, 5, 8_192),
  "google:gemini-1.5-flash": p(0.075, 0.01875, 0.3, 8_192),
  // Workers AI (Cloudflare's per-model token prices)
  "workers-ai:@cf/meta/llama-3.1-8b-instruct": p(0.282, undefined, 0.827),
  "workers-ai:@cf/meta/llama-3.1-8b-instruct-fp8-fast": p(0.045, undefined, 0.384),
  "workers-ai:@cf/meta/llama-3.2-1b-instruct": p(0.027, undefined, 0.201),
  "workers-ai:@cf/meta/llama-3.2-3b-instruct": p(0.051, undefined, 0.335),
  "workers-ai:@cf/meta/llama-3.3-70b-instruct-fp8-fast": p(0.293, undefined, 2.253),
  "workers-ai:@cf/meta/llama-4-scout-17b-16e-instruct": p(0.27, undefined, 0.85),
  "workers-ai:@cf/mistral/mistral-7b-instruct-v0.1": p(0.11, undefined, 0.19),
  "workers-ai:@cf/qwen/qwq-32b": p(0.66, undefined, 1),
  "workers-ai:@cf/deepseek-ai/deepseek-r1-distill-qwen-32b": p(0.497, undefined, 4.881),
  "workers-ai:@cf/openai/gpt-oss-120b": p(0.35, undefined, 0.75),
  "workers-ai:@cf/openai/gpt-oss-20b": p(0.2, undefined, 0.3),
  // The built-in deterministic model
  "offline:": p(0, 0, 0),
});

/** An org's own prices (`settings.prices`): the same keys and fields. */
export type OrgPrices = Record<string, ModelPrice>;

export interface PriceMatch {
  price: ModelPrice;
  /** The key that matched, or null (unknown model). */
  pattern: string | null;
  source: "org" | "default" | "unknown";
  /** False for a model no table knows: it is priced 0. */
  priced: boolean;
  maxOutputTokens?: number | undefined;
}

const FREE: ModelPrice = Object.freeze({ input: 0, cachedInput: 0, output: 0 });

function longestPrefix<T>(table: Readonly<Record<string, T>>, modelId: string): [string, T] | null {
  let best: [string, T] | null = null;
  for (const key of Object.keys(table)) {
    if (modelId.startsWith(key) && (!best || key.length > best[0].length)) best = [key, table[key]!];
  }
  return best;
}

/** The price of a model: the org's table first, then the defaults; unknown → 0, flagged. */
export function priceFor(modelId: string, orgPrices?: OrgPrices | null): PriceMatch {
  const own = orgPrices ? longestPrefix(orgPrices, modelId) : null;
  const fallback = longestPrefix(DEFAULT_PRICES, modelId);
  // The ceiling is a property of the model, not of the price: taken from the defaults either way.
  const maxOutputTokens = fallback?.[1].maxOutputTokens;
  if (own) return { price: own[1], pattern: own[0], source: "org", priced: true, maxOutputTokens };
  if (fallback) {
    const { maxOutputTokens: _m, ...price } = fallback[1];
    return { price, pattern: fallback[0], source: "default", priced: true, maxOutputTokens };
  }
  return { price: FREE, pattern: null, source: "unknown", priced: false };
}

export interface TokenCounts {
  inputTokens: number;
  /** Part of inputTokens. */
  cachedInputTokens?: number | undefined;
  outputTokens: number;
}

/** US dollars for these tokens at this price (cached input at the cached price). */
export function costOf(tokens: TokenCounts, price: ModelPrice): number {
  const cached = Math.min(Math.max(0, tokens.cachedInputTokens ?? 0), Math.max(0, tokens.inputTokens));
  const fresh = Math.max(0, tokens.inputTokens) - cached;
  const usd = (fresh * price.input + cached * (price.cachedInput ?? price.input) + Math.max(0, tokens.outputTokens) * price.output) / 1_000_000;
  // Rounded to a billionth of a dollar: sums of many calls stay clean.
  return Math.round(usd * 1e9) / 1e9;
}
