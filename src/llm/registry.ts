/**
 * Which model an agent runs on. Agents name a model in their frontmatter as
 * `provider:model` (`openai:gpt-4o-mini`, `offline:echo`) or a bare model id, which goes
 * to the default provider. Providers come from configuration:
 *
 * - `openai`: OpenAI (`OPENAI_API_KEY`) or any OpenAI-compatible server (`OPENAI_BASE_URL`:
 *   Ollama, vLLM, LM Studio), through `@ai-sdk/openai`.
 * - `offline`: the built-in deterministic model. When no provider is configured at all,
 *   every agent runs on it, so a fresh checkout works with no account and no network.
 */
import { createOpenAI } from "@ai-sdk/openai";
import type { LanguageModelV4 } from "@ai-sdk/provider";
import { AppError } from "../errors";
import { credentialFetch, hostAllowed, type CredentialScope } from "../net/outbound";
import { offlineProvider } from "./offline";

export const OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1";

export interface ModelConfig {
  openaiApiKey?: string | undefined;
  /**
   * Set when `openaiApiKey` is an org secret: the hosts it may go to. Every request made
   * with it is checked at sending (`credentialFetch`).
   */
  openaiKeyScope?: CredentialScope | undefined;
  /** Set when the org's key may not go to the configured endpoint: OpenAI models fail with it. */
  openaiKeyRefusal?: string | undefined;
  openaiBaseUrl?: string | undefined;
  /** Model for agents that name none, e.g. `openai:gpt-4o-mini` or `llama3.2`. */
  defaultModel?: string | undefined;
}

export interface ResolvedModel {
  model: LanguageModelV4;
  /** `provider:model` as used, for events and audit. */
  id: string;
  offline: boolean;
}

/**
 * The configuration with an org's own OpenAI key (an org secret with its allowed hosts):
 * used only if the endpoint the platform would send it to is on the secret's list; if not,
 * OpenAI models fail with a clear error rather than fall back to the platform's key.
 */
export function withOrgOpenAIKey(base: ModelConfig, key: { secret: string; value: string; allowedHosts: readonly string[] }): ModelConfig {
  const endpoint = new URL(base.openaiBaseUrl ?? OPENAI_DEFAULT_BASE_URL);
  const scope = { secret: key.secret, allowedHosts: key.allowedHosts };
  if (!hostAllowed(endpoint, key.allowedHosts)) {
    const where = endpoint.port ? `${endpoint.hostname}:${endpoint.port}` : endpoint.hostname;
    return {
      ...base,
      openaiApiKey: undefined,
      openaiKeyRefusal:
        `the org's secret '${key.secret}' may not be sent to the model endpoint ${where} ` +
        (key.allowedHosts.length ? `(allowed hosts: ${key.allowedHosts.join(", ")})` : "(it has no allowed hosts: PATCH /secrets/" + key.secret + " with allowedHosts)"),
    };
  }
  return { ...base, openaiApiKey: key.value, openaiKeyScope: scope };
}

export function modelConfigFromEnv(env: Env): ModelConfig {
  return {
    openaiApiKey: env.OPENAI_API_KEY || undefined,
    openaiBaseUrl: env.OPENAI_BASE_URL || undefined,
    defaultModel: env.MODEL_DEFAULT || undefined,
  };
}

const OPENAI_FALLBACK_MODEL = "gpt-4o-mini";

// Provider clients hold no per-request state; build them once per configuration.
const openaiClients = new Map<string, ReturnType<typeof createOpenAI>>();

function openaiClient(cfg: ModelConfig) {
  const key = `${cfg.openaiBaseUrl ?? ""}\u0000${cfg.openaiApiKey ?? ""}\u0000${cfg.openaiKeyScope?.allowedHosts.join(",") ?? ""}`;
  let client = openaiClients.get(key);
  if (!client) {
    client = createOpenAI({
      // Local OpenAI-compatible servers usually take any key.
      apiKey: cfg.openaiApiKey ?? "not-needed",
      ...(cfg.openaiBaseUrl ? { baseURL: cfg.openaiBaseUrl.replace(/\/+$/, "") } : {}),
      name: "openai",
      // An org's key goes only where its secret allows, checked on every request.
      ...(cfg.openaiKeyScope ? { fetch: credentialFetch(cfg.openaiKeyScope) } : {}),
    });
    if (openaiClients.size > 16) openaiClients.clear();
    openaiClients.set(key, client);
  }
  return client;
}

export function providersConfigured(cfg: ModelConfig): boolean {
  return Boolean(cfg.openaiApiKey || cfg.openaiBaseUrl || cfg.openaiKeyRefusal);
}

export function resolveModel(cfg: ModelConfig, requested: string | undefined | null): ResolvedModel {
  const spec = (requested ?? "").trim() || (cfg.defaultModel ?? "").trim();
  const colon = spec.indexOf(":");
  const provider = colon > 0 ? spec.slice(0, colon) : "";
  const modelId = colon > 0 ? spec.slice(colon + 1) : spec;

  if (provider === "offline" || !providersConfigured(cfg)) {
    const id = provider === "offline" ? modelId || "default" : modelId || "default";
    return { model: offlineProvider.languageModel(id), id: `offline:${id}`, offline: true };
  }
  if (provider === "" || provider === "openai") {
    if (cfg.openaiKeyRefusal) throw new AppError("UNPROCESSABLE", cfg.openaiKeyRefusal);
    const id = modelId || OPENAI_FALLBACK_MODEL;
    const client = openaiClient(cfg);
    // Compatible servers speak chat completions; OpenAI itself gets its default API.
    const model = cfg.openaiBaseUrl ? client.chat(id) : client(id);
    return { model: model as LanguageModelV4, id: `openai:${id}`, offline: false };
  }
  throw new AppError("UNPROCESSABLE", `unknown model provider '${provider}' (configured: openai, offline)`);
}
