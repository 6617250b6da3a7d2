/**
 * The most a model call can use, before it is made: input tokens estimated from the size of
 * what is sent (system prompt, messages, tool definitions), plus the most output it may
 * produce. Tokenizers differ by provider; about 4 bytes of English or JSON make a token, so
 * counting one token per 3 bytes errs on the side of reserving too much, which a budget can
 * afford (the reservation is released at settle) better than too little.
 */

/** Output tokens reserved for a call whose model's ceiling is not known and whose agent sets no `maxTokens`. */
export const DEFAULT_OUTPUT_CEILING = 8_192;

const BYTES_PER_TOKEN = 3;
/** Per message: role and framing tokens the providers add. */
const MESSAGE_OVERHEAD = 4;
/** A tool whose schema cannot be read is counted as this many bytes. */
const UNREADABLE_SCHEMA_BYTES = 2_000;

const encoder = new TextEncoder();
const bytes = (s: string) => encoder.encode(s).length;

function schemaBytes(schema: unknown): number {
  if (!schema || typeof schema !== "object") return 0;
  try {
    const json = (schema as { jsonSchema?: unknown }).jsonSchema;
    if (json && typeof json === "object" && typeof (json as { then?: unknown }).then !== "function") return bytes(JSON.stringify(json));
  } catch {
    // a lazy schema that fails to build: counted below
  }
  return UNREADABLE_SCHEMA_BYTES;
}

export interface EstimatableParams {
  system?: unknown;
  prompt?: unknown;
  messages?: unknown;
  tools?: Record<string, { description?: string | undefined; inputSchema?: unknown } | undefined> | undefined;
}

/** Input tokens a call will be charged for, at most (roughly). */
export function estimateInputTokens(params: EstimatableParams): number {
  let size = 0;
  let messages = 0;
  const text = (v: unknown) => (typeof v === "string" ? v : v === undefined || v === null ? "" : JSON.stringify(v));
  size += bytes(text(params.system));
  size += bytes(text(params.prompt));
  if (Array.isArray(params.messages)) {
    messages = params.messages.length;
    size += bytes(JSON.stringify(params.messages));
  }
  for (const [name, tool] of Object.entries(params.tools ?? {})) {
    size += bytes(name) + bytes(tool?.description ?? "") + schemaBytes(tool?.inputSchema);
  }
  return Math.ceil(size / BYTES_PER_TOKEN) + MESSAGE_OVERHEAD * (messages + 1);
}

/** Output tokens a call may produce: the agent's own cap, else the model's ceiling, else a default. */
export function maxOutputOf(requested: number | undefined, modelCeiling: number | undefined): number {
  const valid = (n: number | undefined) => (typeof n === "number" && Number.isFinite(n) && n > 0 ? Math.floor(n) : undefined);
  const ask = valid(requested);
  const ceiling = valid(modelCeiling);
  if (ask !== undefined) return ceiling !== undefined ? Math.min(ask, ceiling) : ask;
  return ceiling ?? DEFAULT_OUTPUT_CEILING;
}
