/**
 * Which model an agent runs on. Agents name a model in their frontmatter as
 * `provider:model` (`anthropic:claude-sonnet-4-5`, `offline:echo`), an alias of their org
 * (`fast`, `smart`), or a bare model id, which goes to the default provider (the provider
 * of the default model, else OpenAI). Providers:
 *
 * - `openai`: OpenAI (`OPENAI_API_KEY`) or one OpenAI-compatible server (`OPENAI_BASE_URL`:
 *   Ollama, vLLM, LM Studio), through `@ai-sdk/openai`.
 * - `anthropic` (`@ai-sdk/anthropic`, Messages API) and `google` (`@ai-sdk/google`,
 *   Gemini generateContent): the platform's key (`ANTHROPIC_API_KEY`,
 *   `GOOGLE_GENERATIVE_AI_API_KEY`) or the org's own, an org secret.
 * - any number of named OpenAI-compatible endpoints an org configures
 *   (`{ kind: "openai-compatible", baseUrl, secret? }`), spoken to with chat completions.
 * - `workers-ai`: Cloudflare Workers AI through the Worker's `AI` binding, when bound.
 * - `offline`: the built-in deterministic model. When no provider is configured at all,
 *   every agent runs on it, so a fresh checkout works with no account and no network.
 *
 * Org configuration lives in the org's settings (src/llm/settings.ts). A request carrying
 * an org secret goes through `credentialFetch(scope)`, which checks the secret's host list
 * when sending; an org key whose list does not cover the endpoint makes that provider's
 * models fail with a clear error, never fall back to the platform's key.
 */
import { createAnthropic } from "@ai-sdk/anthropic";
import { createGoogleGenerativeAI } from "@ai-sdk/google";
import { createOpenAI } from "@ai-sdk/openai";
import type { LanguageModelV4 } from "@ai-sdk/provider";
import { createWorkersAI } from "workers-ai-provider";
import { config } from "../config";
import { db } from "../db/client";
import { AppError } from "../errors";
import { credentialFetch, hostAllowed, type CredentialScope } from "../net/outbound";
import { outboundUrlProblem } from "../net/url-policy";
import { cachedCredential } from "../secrets/cache";
import type { Credential } from "../secrets/store";
import { offlineProvider } from "./offline";
import { parseStoredModelSettings, providerKind, readOrgModelSettings, type OrgModelSettings, type ProviderKind } from "./settings";

export const OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1";
export const ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com/v1";
export const GOOGLE_DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta";

/** Org secret holding the org's own OpenAI (or compatible server) key when its settings name none. */
export const ORG_OPENAI_KEY_SECRET = "OPENAI_API_KEY";

/** The part of the `AI` binding the Workers AI provider uses: `run(model, inputs, options)`. */
export type WorkersAiBinding = Pick<Ai, "run">;

/** One configured provider other than `openai` (which keeps its own fields below). */
export interface ProviderConfig {
  kind: Exclude<ProviderKind, "openai">;
  /** Undefined: the provider's public endpoint. */
  baseUrl?: string | undefined;
  apiKey?: string | undefined;
  /** Set when `apiKey` is an org secret: the hosts it may go to, checked on every request. */
  keyScope?: CredentialScope | undefined;
  /** Set when this provider is configured but may not be used: its models fail with it. */
  refusal?: string | undefined;
  source: "platform" | "org";
}

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
  /** Model for agents that name none: an alias or `provider:model`, e.g. `openai:gpt-4o-mini` or `llama3.2`. */
  defaultModel?: string | undefined;
  /** Providers other than `openai`, by name (`anthropic`, `google`, `workers-ai`, an org's compatible endpoints). */
  providers?: Record<string, ProviderConfig> | undefined;
  /** Alias → `provider:model`. */
  aliases?: Record<string, string> | undefined;
  /** The Worker's `AI` binding, when bound: the `workers-ai` provider. */
  workersAi?: WorkersAiBinding | undefined;
  /** Set when the org's stored model settings do not validate: every non-offline model fails with it. */
  settingsProblem?: string | undefined;
}

export interface ResolvedModel {
  model: LanguageModelV4;
  /** `provider:model` as used (after alias expansion), for events, audit and prices. */
  id: string;
  offline: boolean;
  /** The provider's name as configured (`openai`, `anthropic`, `my-vllm`, `offline`, …). */
  provider: string;
  /** The alias the agent named, if it named one. */
  alias?: string;
  /**
   * The most output tokens one call can produce, when known: the model's ceiling (known
   * defaults per provider and model family), capped by the agent's `maxTokens`. Budgets
   * reserve it before a call.
   */
  maxOutputTokens?: number;
}

/**
 * The configuration with an org's own OpenAI key (an org secret with its allowed hosts):
 * used only if the endpoint the platform would send it to is on the secret's list; if not,
 * OpenAI models fail with a clear error rather than fall back to the platform's key.
 */
export function withOrgOpenAIKey(base: ModelConfig, key: { secret: string; value: string; allowedHosts: readonly string[] }): ModelConfig {
  const endpoint = new URL(base.openaiBaseUrl ?? OPENAI_DEFAULT_BASE_URL);
  const refusal = keyRefusal(endpoint, key);
  if (refusal) return { ...base, openaiApiKey: undefined, openaiKeyScope: undefined, openaiKeyRefusal: refusal };
  return { ...base, openaiApiKey: key.value, openaiKeyScope: { secret: key.secret, allowedHosts: key.allowedHosts }, openaiKeyRefusal: undefined };
}

function keyRefusal(endpoint: URL, key: { secret: string; allowedHosts: readonly string[] }): string | null {
  if (hostAllowed(endpoint, key.allowedHosts)) return null;
  const where = endpoint.port ? `${endpoint.hostname}:${endpoint.port}` : endpoint.hostname;
  return (
    `the org's secret '${key.secret}' may not be sent to the model endpoint ${where} ` +
    (key.allowedHosts.length ? `(allowed hosts: ${key.allowedHosts.join(", ")})` : "(it has no allowed hosts: PATCH /secrets/" + key.secret + " with allowedHosts)")
  );
}

export function modelConfigFromEnv(env: Env): ModelConfig {
  const providers: Record<string, ProviderConfig> = {};
  if (env.ANTHROPIC_API_KEY) providers.anthropic = { kind: "anthropic", apiKey: env.ANTHROPIC_API_KEY, baseUrl: env.ANTHROPIC_BASE_URL || undefined, source: "platform" };
  if (env.GOOGLE_GENERATIVE_AI_API_KEY) {
    providers.google = { kind: "google", apiKey: env.GOOGLE_GENERATIVE_AI_API_KEY, baseUrl: env.GOOGLE_GENERATIVE_AI_BASE_URL || undefined, source: "platform" };
  }
  const ai: WorkersAiBinding | undefined = env.AI;
  return {
    openaiApiKey: env.OPENAI_API_KEY || undefined,
    openaiBaseUrl: env.OPENAI_BASE_URL || undefined,
    defaultModel: env.MODEL_DEFAULT || undefined,
    ...(Object.keys(providers).length ? { providers } : {}),
    ...(ai && typeof ai.run === "function" ? { workersAi: ai } : {}),
  };
}

// ---- org configuration -------------------------------------------------------------------

// The org's stored model settings, per isolate for a few seconds (every turn asks; settings
// change rarely). Secrets are not cached here: `cachedCredential` has its own cache, which
// API writes of secrets invalidate.
const SETTINGS_TTL_MS = 5_000;
const MAX_CACHED_ORGS = 5_000;
const settingsCache = new Map<string, { value: Promise<{ found: boolean; raw: unknown }>; expires: number }>();

function cachedOrgSettings(env: Env, orgId: string): Promise<{ found: boolean; raw: unknown }> {
  const now = Date.now();
  const hit = settingsCache.get(orgId);
  if (hit && hit.expires > now) return hit.value;
  const value = readOrgModelSettings(db(env), orgId);
  if (settingsCache.size >= MAX_CACHED_ORGS) settingsCache.clear();
  const entry = { value, expires: now + SETTINGS_TTL_MS };
  settingsCache.set(orgId, entry);
  value.catch(() => {
    if (settingsCache.get(orgId) === entry) settingsCache.delete(orgId);
  });
  return value;
}

/** Drops this isolate's cached model settings of an org (after PUT /settings/models). */
export function forgetOrgModelSettings(orgId?: string): void {
  if (orgId === undefined) settingsCache.clear();
  else settingsCache.delete(orgId);
}

/**
 * The model configuration for an org: the platform's (env), with the org's settings
 * (`settings.models`: providers, keys from org secrets, aliases, default model) on top.
 */
export async function orgModelConfig(env: Env, orgId: string): Promise<ModelConfig> {
  const base = modelConfigFromEnv(env);
  const stored = await cachedOrgSettings(env, orgId);
  const { settings, problem } = parseStoredModelSettings(stored.raw);
  if (problem) return { ...base, settingsProblem: problem };
  return applyOrgSettings(env, base, settings, (name) => cachedCredential(db(env), env, orgId, name));
}

/** `base` with an org's settings applied; `credential` reads an org secret by name. */
export async function applyOrgSettings(env: Env, base: ModelConfig, settings: OrgModelSettings, credential: (name: string) => Promise<Credential | null>): Promise<ModelConfig> {
  const policy = { allowPrivateNetwork: !config(env).production };
  const entries = Object.entries(settings.providers ?? {}) as [string, { secret?: string; baseUrl?: string }][];
  const secrets = new Map<string, Credential | null>();
  const names = new Set(entries.map(([, p]) => p.secret).filter((s): s is string => Boolean(s)));
  if (!settings.providers?.openai) names.add(ORG_OPENAI_KEY_SECRET);
  await Promise.all([...names].map(async (n) => secrets.set(n, await credential(n))));

  let cfg: ModelConfig = { ...base, providers: { ...(base.providers ?? {}) } };
  if (settings.defaultModel) cfg.defaultModel = settings.defaultModel;
  if (settings.aliases && Object.keys(settings.aliases).length) cfg.aliases = { ...(base.aliases ?? {}), ...settings.aliases };

  // OpenAI: the secret the settings name, else the org secret OPENAI_API_KEY if it exists.
  const openai = settings.providers?.openai as { secret?: string; baseUrl?: string } | undefined;
  const implicit = secrets.get(ORG_OPENAI_KEY_SECRET);
  if (!openai) {
    if (implicit) cfg = withOrgOpenAIKey(cfg, implicit);
  } else {
    const urlProblem = openai.baseUrl ? outboundUrlProblem(openai.baseUrl, policy) : null;
    if (openai.baseUrl) cfg = { ...cfg, openaiBaseUrl: openai.baseUrl, openaiApiKey: undefined, openaiKeyScope: undefined };
    if (urlProblem) {
      cfg = { ...cfg, openaiApiKey: undefined, openaiKeyRefusal: `providers.openai.baseUrl: ${urlProblem}` };
    } else if (openai.secret) {
      const key = secrets.get(openai.secret);
      cfg = key ? withOrgOpenAIKey(cfg, key) : { ...cfg, openaiApiKey: undefined, openaiKeyScope: undefined, openaiKeyRefusal: missingSecret("openai", openai.secret) };
    }
    // An org endpoint without an org secret gets no key at all (never the platform's);
    // `openai: {}` keeps the platform's endpoint and key.
  }

  for (const [name, p] of entries) {
    if (name === "openai") continue;
    const kind = providerKind(name);
    if (kind === "workers-ai") {
      cfg.providers![name] = { kind, source: "org", ...(cfg.workersAi ? {} : { refusal: "the platform has no Workers AI binding (AI): workers-ai models are not available here" }) };
      continue;
    }
    const kindName = kind as Exclude<ProviderKind, "openai" | "workers-ai">;
    const urlProblem = p.baseUrl ? outboundUrlProblem(p.baseUrl, policy) : null;
    if (urlProblem) {
      cfg.providers![name] = { kind: kindName, baseUrl: p.baseUrl, source: "org", refusal: `providers.${name}.baseUrl: ${urlProblem}` };
      continue;
    }
    if (p.secret) {
      const key = secrets.get(p.secret);
      if (!key) {
        cfg.providers![name] = { kind: kindName, baseUrl: p.baseUrl, source: "org", refusal: missingSecret(name, p.secret) };
        continue;
      }
      const refusal = keyRefusal(new URL(p.baseUrl ?? defaultBaseUrl(kindName)), key);
      cfg.providers![name] = refusal
        ? { kind: kindName, baseUrl: p.baseUrl, source: "org", refusal }
        : { kind: kindName, baseUrl: p.baseUrl, apiKey: key.value, keyScope: { secret: key.secret, allowedHosts: key.allowedHosts }, source: "org" };
      continue;
    }
    if (p.baseUrl) {
      // The org's own endpoint without a key of its own: no key is sent (the platform's never goes there).
      cfg.providers![name] = { kind: kindName, baseUrl: p.baseUrl, source: "org" };
      continue;
    }
    const platform = base.providers?.[name];
    cfg.providers![name] = platform ?? {
      kind: kindName,
      source: "org",
      refusal: `provider '${name}' has no key: name an org secret in providers.${name}.secret (PUT /settings/models)${kindName === "anthropic" ? " or set ANTHROPIC_API_KEY on the platform" : kindName === "google" ? " or set GOOGLE_GENERATIVE_AI_API_KEY on the platform" : ""}`,
    };
  }
  return cfg;
}

function missingSecret(provider: string, secret: string): string {
  return `the org has no secret '${secret}' (named by providers.${provider}.secret in the org's model settings): PUT /secrets/${secret} first`;
}

function defaultBaseUrl(kind: ProviderKind): string {
  return kind === "anthropic" ? ANTHROPIC_DEFAULT_BASE_URL : kind === "google" ? GOOGLE_DEFAULT_BASE_URL : OPENAI_DEFAULT_BASE_URL;
}

// ---- clients -----------------------------------------------------------------------------

const OPENAI_FALLBACK_MODEL = "gpt-4o-mini";
const MAX_CLIENTS = 32;

// Provider clients hold no per-request state; build them once per configuration.
type ModelFactory = (modelId: string) => LanguageModelV4;
const clients = new Map<string, ModelFactory>();
const workersAiClients = new WeakMap<object, ModelFactory>();

function cacheKey(parts: readonly unknown[]): string {
  return JSON.stringify(parts);
}

function remember(key: string, make: () => ModelFactory): ModelFactory {
  let client = clients.get(key);
  if (!client) {
    client = make();
    if (clients.size >= MAX_CLIENTS) clients.clear();
    clients.set(key, client);
  }
  return client;
}

function openaiFactory(cfg: ModelConfig): ModelFactory {
  const key = cacheKey(["openai", cfg.openaiBaseUrl ?? "", cfg.openaiApiKey ?? "", cfg.openaiKeyScope?.secret ?? "", cfg.openaiKeyScope?.allowedHosts ?? []]);
  return remember(key, () => {
    const client = createOpenAI({
      // Local OpenAI-compatible servers usually take any key.
      apiKey: cfg.openaiApiKey ?? "not-needed",
      baseURL: (cfg.openaiBaseUrl ?? OPENAI_DEFAULT_BASE_URL).replace(/\/+$/, ""),
      name: "openai",
      // An org's key goes only where its secret allows, checked on every request.
      ...(cfg.openaiKeyScope ? { fetch: credentialFetch(cfg.openaiKeyScope) } : {}),
    });
    // Compatible servers speak chat completions; OpenAI itself gets its default API.
    return (id) => (cfg.openaiBaseUrl ? client.chat(id) : client(id)) as LanguageModelV4;
  });
}

function providerFactory(name: string, p: ProviderConfig, cfg: ModelConfig): ModelFactory {
  // Every option is explicit: the SDKs would otherwise read ANTHROPIC_API_KEY, …_BASE_URL
  // and the like from process.env (populated from the Worker's env), i.e. the platform's.
  const fetchOption = p.keyScope ? { fetch: credentialFetch(p.keyScope) } : {};
  const apiKey = p.apiKey ?? "";
  const baseURL = (p.baseUrl ?? defaultBaseUrl(p.kind)).replace(/\/+$/, "");
  const key = cacheKey([p.kind, name, baseURL, apiKey, p.keyScope?.secret ?? "", p.keyScope?.allowedHosts ?? []]);
  switch (p.kind) {
    case "anthropic":
      return remember(key, () => {
        const client = createAnthropic({ apiKey, baseURL, ...fetchOption });
        return (id) => client(id) as LanguageModelV4;
      });
    case "google":
      return remember(key, () => {
        const client = createGoogleGenerativeAI({ apiKey, baseURL, ...fetchOption });
        return (id) => client(id) as LanguageModelV4;
      });
    case "openai-compatible":
      return remember(key, () => {
        const client = createOpenAI({ apiKey: apiKey || "not-needed", baseURL, name, ...fetchOption });
        return (id) => client.chat(id) as LanguageModelV4;
      });
    case "workers-ai": {
      const binding = cfg.workersAi!;
      let client = workersAiClients.get(binding);
      if (!client) {
        const ai = createWorkersAI({ binding: binding as Ai });
        client = (id) => ai(id as Parameters<typeof ai>[0]) as unknown as LanguageModelV4;
        workersAiClients.set(binding, client);
      }
      return client;
    }
  }
}

// ---- resolution --------------------------------------------------------------------------

function openaiConfigured(cfg: ModelConfig): boolean {
  return Boolean(cfg.openaiApiKey || cfg.openaiBaseUrl || cfg.openaiKeyRefusal);
}

/** The providers an agent may name, in order (`offline` is always there). */
export function configuredProviders(cfg: ModelConfig): string[] {
  const names: string[] = [];
  if (openaiConfigured(cfg)) names.push("openai");
  for (const name of Object.keys(cfg.providers ?? {})) if (!names.includes(name)) names.push(name);
  if (cfg.workersAi && !names.includes("workers-ai")) names.push("workers-ai");
  return names;
}

export function providersConfigured(cfg: ModelConfig): boolean {
  return configuredProviders(cfg).length > 0 || Boolean(cfg.settingsProblem);
}

/** What is configured, for error messages: providers, aliases and the default model. */
export function describeConfiguration(cfg: ModelConfig): string {
  const providers = [...configuredProviders(cfg), "offline"].join(", ");
  const aliases = Object.entries(cfg.aliases ?? {})
    .map(([a, t]) => `${a} → ${t}`)
    .join(", ");
  return `configured providers: ${providers}; aliases: ${aliases || "none"}${cfg.defaultModel ? `; default model: ${cfg.defaultModel}` : ""}`;
}

function splitSpec(spec: string): { provider: string; model: string } {
  const colon = spec.indexOf(":");
  return colon > 0 ? { provider: spec.slice(0, colon), model: spec.slice(colon + 1) } : { provider: "", model: spec };
}

function offlineModel(id: string, maxTokens: number | undefined): ResolvedModel {
  const name = id || "default";
  return { model: offlineProvider.languageModel(name), id: `offline:${name}`, offline: true, provider: "offline", ...(maxTokens ? { maxOutputTokens: maxTokens } : {}) };
}

export interface ResolveOptions {
  /** The agent's `maxTokens`: caps `maxOutputTokens`. */
  maxTokens?: number | undefined;
}

export function resolveModel(cfg: ModelConfig, requested: string | undefined | null, options: ResolveOptions = {}): ResolvedModel {
  const maxTokens = options.maxTokens && options.maxTokens > 0 ? options.maxTokens : undefined;
  let spec = (requested ?? "").trim() || (cfg.defaultModel ?? "").trim();
  let alias: string | undefined;
  if (spec && !spec.includes(":") && cfg.aliases?.[spec]) {
    alias = spec;
    spec = cfg.aliases[spec]!.trim();
  }
  let { provider, model: modelId } = splitSpec(spec);

  if (provider === "offline" || !providersConfigured(cfg)) {
    const resolved = offlineModel(modelId, maxTokens);
    return alias ? { ...resolved, alias } : resolved;
  }
  if (cfg.settingsProblem) throw new AppError("UNPROCESSABLE", cfg.settingsProblem);

  if (!spec) {
    if (!openaiConfigured(cfg)) {
      throw new AppError("UNPROCESSABLE", `the agent names no model and no default model is set (set defaultModel with PUT /settings/models, or MODEL_DEFAULT); ${describeConfiguration(cfg)}`);
    }
    provider = "openai";
    modelId = OPENAI_FALLBACK_MODEL;
  } else if (!provider) {
    // A bare model id: the default model's provider, else OpenAI.
    const fallback = defaultProvider(cfg);
    if (!fallback) {
      throw new AppError("UNPROCESSABLE", `unknown model or alias '${spec}': name a model as provider:model or an alias (${describeConfiguration(cfg)})`);
    }
    provider = fallback;
  }
  if (!modelId) throw new AppError("UNPROCESSABLE", `'${spec}' names no model after '${provider}:' (${describeConfiguration(cfg)})`);

  const resolved = resolveProviderModel(cfg, provider, modelId, alias ?? spec);
  const ceiling = outputCeiling(resolved.kind, modelId);
  const max = ceiling && maxTokens ? Math.min(ceiling, maxTokens) : (maxTokens ?? ceiling);
  return {
    model: resolved.model,
    id: `${provider}:${modelId}`,
    offline: false,
    provider,
    ...(alias ? { alias } : {}),
    ...(max ? { maxOutputTokens: max } : {}),
  };
}

function defaultProvider(cfg: ModelConfig): string | null {
  let d = (cfg.defaultModel ?? "").trim();
  if (d && !d.includes(":") && cfg.aliases?.[d]) d = cfg.aliases[d]!;
  const { provider } = splitSpec(d);
  if (provider) return provider;
  return openaiConfigured(cfg) ? "openai" : null;
}

function resolveProviderModel(cfg: ModelConfig, provider: string, modelId: string, asked: string): { model: LanguageModelV4; kind: ProviderKind } {
  const via = asked.includes(":") ? "" : ` (alias '${asked}')`;
  if (provider === "openai" && openaiConfigured(cfg)) {
    if (cfg.openaiKeyRefusal) throw new AppError("UNPROCESSABLE", cfg.openaiKeyRefusal);
    return { model: openaiFactory(cfg)(modelId), kind: "openai" };
  }
  let p = cfg.providers?.[provider];
  if (!p && provider === "workers-ai" && cfg.workersAi) p = { kind: "workers-ai", source: "platform" };
  if (!p) {
    throw new AppError("UNPROCESSABLE", `unknown model provider '${provider}' in '${provider}:${modelId}'${via}: ${describeConfiguration(cfg)}`);
  }
  if (p.refusal) throw new AppError("UNPROCESSABLE", p.refusal);
  return { model: providerFactory(provider, p, cfg)(modelId), kind: p.kind };
}

/**
 * The most output tokens a model can produce in one call, where known. Anthropic's
 * figures are the ones `@ai-sdk/anthropic` sends as `max_tokens` when a call sets none.
 */
export function outputCeiling(kind: ProviderKind, modelId: string): number | undefined {
  const m = modelId.toLowerCase();
  switch (kind) {
    case "anthropic":
      if (/claude-(sonnet|opus|haiku|fable)-5|claude-(opus|sonnet)-4-[678]/.test(m)) return 128_000;
      if (/claude-(sonnet|opus|haiku)-4-5/.test(m)) return 64_000;
      if (/claude-opus-4-1/.test(m)) return 32_000;
      if (/claude-sonnet-4(-|@|$)|claude-3-7-sonnet/.test(m)) return 64_000;
      if (/claude-opus-4(-|@|$)/.test(m)) return 32_000;
      if (/claude-3-5-(sonnet|haiku)/.test(m)) return 8_192;
      if (/claude-3-haiku|claude-3-(opus|sonnet)/.test(m)) return 4_096;
      return m.includes("claude-") ? 128_000 : 4_096;
    case "google":
      if (/gemini-(2\.5|3)/.test(m)) return 65_536;
      if (/gemini-(1\.5|2\.0)/.test(m)) return 8_192;
      return undefined;
    case "openai":
      if (/^(o1|o3|o4)/.test(m)) return 100_000;
      if (/^gpt-5/.test(m)) return 128_000;
      if (/^gpt-4\.1/.test(m)) return 32_768;
      if (/^gpt-4o/.test(m)) return 16_384;
      if (/^gpt-4-turbo|^gpt-3\.5/.test(m)) return 4_096;
      return undefined;
    case "workers-ai":
      // Workers AI text models answer at most `max_tokens`, 256 when a call sets none.
      return undefined;
    case "openai-compatible":
      return undefined;
  }
}
