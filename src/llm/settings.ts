/**
 * An org's model configuration, stored as `orgs.settings.models` (JSON, no migration):
 *
 *   {
 *     "defaultModel": "smart",                              // an alias or provider:model
 *     "aliases": { "fast": "anthropic:claude-haiku-4-5", "smart": "google:gemini-2.5-pro" },
 *     "providers": {
 *       "anthropic": { "secret": "ANTHROPIC_KEY", "baseUrl"?: "https://…/v1" },
 *       "google":    { "secret": "GEMINI_KEY", "baseUrl"?: "https://…/v1beta" },
 *       "openai":    { "secret"?: "OPENAI_KEY", "baseUrl"?: "https://…/v1" },
 *       "workers-ai": {},
 *       "local-vllm": { "kind": "openai-compatible", "baseUrl": "https://vllm.example.com/v1", "secret"?: "VLLM_KEY" }
 *     }
 *   }
 *
 * Keys are org secrets, named here and never stored here; they go only to the hosts the
 * secret allows (src/net/outbound.ts). Read and written through GET/PUT /settings/models
 * (src/api/model-settings.ts); read by the executor through `orgModelConfig`.
 */
import { eq, sql } from "drizzle-orm";
import { z } from "zod";
import type { Db } from "../db/client";
import { orgs } from "../db/schema";
import { SECRET_NAME } from "../secrets/store";

/** Provider kinds the registry knows; `openai-compatible` endpoints carry their own names. */
export const BUILTIN_PROVIDERS = ["openai", "anthropic", "google", "workers-ai"] as const;
export type BuiltinProvider = (typeof BUILTIN_PROVIDERS)[number];
export type ProviderKind = BuiltinProvider | "openai-compatible";

export const PROVIDER_NAME = /^[a-z][a-z0-9-]{0,31}$/;
export const ALIAS_NAME = /^[a-z][a-z0-9_.-]{0,47}$/;
export const MAX_ALIASES = 64;
export const MAX_PROVIDERS = 16;
/** A model reference: `provider:model` (model ids may contain `/`, `@`, `:` and `.`). */
const MODEL_REF = /^[a-z][a-z0-9-]{0,31}:\S{1,200}$/;

const secret = z.string().regex(SECRET_NAME, "must be an org secret name (letters, digits, _ . -, starting with a letter)");
const baseUrl = z.string().min(1).max(2048);

const KeyedProvider = z.object({ secret: secret.optional(), baseUrl: baseUrl.optional() }).strict();
const WorkersAiProvider = z.object({}).strict();
const CompatibleProvider = z.object({ kind: z.literal("openai-compatible"), baseUrl, secret: secret.optional() }).strict();

export type KeyedProviderSettings = z.infer<typeof KeyedProvider>;
export type CompatibleProviderSettings = z.infer<typeof CompatibleProvider>;
export type ProviderSettings = KeyedProviderSettings | CompatibleProviderSettings | Record<string, never>;

export const OrgModelSettingsSchema = z
  .object({
    defaultModel: z.string().trim().min(1).max(240).optional(),
    aliases: z.record(z.string(), z.string().trim()).optional(),
    providers: z.record(z.string(), z.unknown()).optional(),
  })
  .strict()
  .superRefine((value, ctx) => {
    const providers = value.providers ?? {};
    const names = Object.keys(providers);
    if (names.length > MAX_PROVIDERS) ctx.addIssue({ code: "custom", path: ["providers"], message: `at most ${MAX_PROVIDERS} providers` });
    for (const name of names) {
      if (name === "offline") {
        ctx.addIssue({ code: "custom", path: ["providers", name], message: "'offline' is built in and needs no configuration" });
        continue;
      }
      if (!PROVIDER_NAME.test(name)) {
        ctx.addIssue({ code: "custom", path: ["providers", name], message: "a provider name is lower case letters, digits and '-', starting with a letter" });
        continue;
      }
      const schema = name === "workers-ai" ? WorkersAiProvider : (BUILTIN_PROVIDERS as readonly string[]).includes(name) ? KeyedProvider : CompatibleProvider;
      const parsed = schema.safeParse(providers[name]);
      if (!parsed.success) {
        for (const issue of parsed.error.issues) {
          const hint =
            name === "workers-ai"
              ? " (workers-ai takes no settings: {})"
              : schema === CompatibleProvider
                ? ` (a provider other than ${BUILTIN_PROVIDERS.join(", ")} is an OpenAI-compatible endpoint: { kind: "openai-compatible", baseUrl, secret? })`
                : " (expected { secret?, baseUrl? })";
          ctx.addIssue({ code: "custom", path: ["providers", name, ...issue.path.map(String)], message: issue.message + hint });
        }
      }
    }
    const aliases = value.aliases ?? {};
    const aliasNames = Object.keys(aliases);
    if (aliasNames.length > MAX_ALIASES) ctx.addIssue({ code: "custom", path: ["aliases"], message: `at most ${MAX_ALIASES} aliases` });
    const known = new Set<string>([...BUILTIN_PROVIDERS, "offline", ...names]);
    for (const alias of aliasNames) {
      if (!ALIAS_NAME.test(alias)) {
        ctx.addIssue({ code: "custom", path: ["aliases", alias], message: "an alias is lower case letters, digits, '_', '.' and '-', starting with a letter (no ':')" });
        continue;
      }
      if (known.has(alias)) ctx.addIssue({ code: "custom", path: ["aliases", alias], message: "an alias may not have a provider's name" });
      const target = aliases[alias]!;
      if (!MODEL_REF.test(target)) {
        ctx.addIssue({ code: "custom", path: ["aliases", alias], message: `'${target}' is not provider:model (aliases name a model, not another alias)` });
        continue;
      }
      const provider = target.slice(0, target.indexOf(":"));
      if (!known.has(provider)) ctx.addIssue({ code: "custom", path: ["aliases", alias], message: `unknown provider '${provider}' (known: ${[...known].join(", ")})` });
    }
    if (value.defaultModel !== undefined) {
      const d = value.defaultModel;
      const colon = d.indexOf(":");
      if (colon > 0 && !known.has(d.slice(0, colon))) {
        ctx.addIssue({ code: "custom", path: ["defaultModel"], message: `unknown provider '${d.slice(0, colon)}' (known: ${[...known].join(", ")})` });
      } else if (colon < 0 && !aliases[d]) {
        ctx.addIssue({ code: "custom", path: ["defaultModel"], message: `'${d}' is neither an alias (${aliasNames.join(", ") || "none configured"}) nor provider:model` });
      }
    }
  });

export interface OrgModelSettings {
  defaultModel?: string;
  aliases?: Record<string, string>;
  providers?: Record<string, ProviderSettings>;
}

/** Kind of a configured provider by its name and settings. */
export function providerKind(name: string): ProviderKind {
  return (BUILTIN_PROVIDERS as readonly string[]).includes(name) ? (name as BuiltinProvider) : "openai-compatible";
}

/** Every secret the settings name, with the field that names it. */
export function namedSecrets(settings: OrgModelSettings): { provider: string; secret: string; baseUrl: string | undefined }[] {
  const out: { provider: string; secret: string; baseUrl: string | undefined }[] = [];
  for (const [provider, p] of Object.entries(settings.providers ?? {})) {
    const s = p as { secret?: string; baseUrl?: string };
    if (s.secret) out.push({ provider, secret: s.secret, baseUrl: s.baseUrl });
  }
  return out;
}

/**
 * The stored settings as they are, validated again (a hand-edited or older row that does
 * not validate is reported, not half-used).
 */
export function parseStoredModelSettings(raw: unknown): { settings: OrgModelSettings; problem: string | null } {
  if (raw === undefined || raw === null) return { settings: {}, problem: null };
  const parsed = OrgModelSettingsSchema.safeParse(raw);
  if (parsed.success) return { settings: parsed.data as OrgModelSettings, problem: null };
  const first = parsed.error.issues[0];
  return { settings: {}, problem: `the org's model settings are invalid (${first ? `${first.path.join(".")}: ${first.message}` : "unknown problem"}): fix them with PUT /settings/models` };
}

/** The org's stored model settings (raw JSON, undefined when none). */
export async function readOrgModelSettings(db: Db, orgId: string): Promise<{ found: boolean; raw: unknown }> {
  const rows = await db
    .select({ models: sql<string | null>`json_extract(${orgs.settings}, '$.models')` })
    .from(orgs)
    .where(eq(orgs.id, orgId))
    .limit(1);
  const row = rows[0];
  if (!row) return { found: false, raw: undefined };
  // json_extract gives objects back as JSON text.
  return { found: true, raw: row.models === null ? undefined : JSON.parse(row.models) };
}

/** Replaces the org's model settings (`json_set` edits only that key). */
export async function writeOrgModelSettings(db: Db, orgId: string, settings: OrgModelSettings): Promise<void> {
  await db
    .update(orgs)
    .set({ settings: sql`json_set(${orgs.settings}, '$.models', json(${JSON.stringify(settings)}))`, updatedAt: sql`(unixepoch('subsec') * 1000)` })
    .where(eq(orgs.id, orgId));
}
