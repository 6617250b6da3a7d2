/**
 * The org's model configuration (src/llm/settings.ts):
 *   GET /settings/models   the stored settings and what agents of the org can use now
 *   PUT /settings/models   { defaultModel?, aliases?, providers? }: replaces them
 * Authorised on `/settings/models` (`read`, `write`): owners and admins write, viewers
 * read, the default developer role neither. Naming a secret as a provider key, or moving a
 * provider that carries one to another base URL, is a use of the secret (`use` on
 * `/secrets/{name}`, src/api/credentials.ts). Base URLs follow the outbound URL policy.
 */
import { Hono } from "hono";
import { auditRequest } from "../audit/http";
import { authorize } from "../auth/authorize";
import { config } from "../config";
import { db } from "../db/client";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { jsonBody } from "../http/body";
import { applyOrgSettings, configuredProviders, forgetOrgModelSettings, modelConfigFromEnv, orgModelConfig, type ModelConfig } from "../llm/registry";
import { OrgModelSettingsSchema, parseStoredModelSettings, providerKind, readOrgModelSettings, writeOrgModelSettings, type OrgModelSettings } from "../llm/settings";
import { outboundUrlProblem } from "../net/url-policy";
import { cachedCredential } from "../secrets/cache";
import { authorizeCredentialUse } from "./credentials";

export const modelSettingsRoutes = new Hono<AppEnv>();

const RESOURCE = "/settings/models";

/** What the org's agents can use with this configuration (no key values, ever). */
function effective(cfg: ModelConfig) {
  const providers = configuredProviders(cfg).map((name) => {
    if (name === "openai") {
      return { name, kind: "openai", source: cfg.openaiKeyScope ? "org" : "platform", usable: !cfg.openaiKeyRefusal, ...(cfg.openaiKeyRefusal ? { problem: cfg.openaiKeyRefusal } : {}) };
    }
    const p = cfg.providers?.[name];
    if (!p) return { name, kind: providerKind(name), source: "platform", usable: true };
    return { name, kind: p.kind, source: p.source, usable: !p.refusal, ...(p.refusal ? { problem: p.refusal } : {}) };
  });
  return {
    providers: [...providers, { name: "offline", kind: "offline", source: "platform", usable: true }],
    aliases: cfg.aliases ?? {},
    defaultModel: cfg.defaultModel ?? null,
    ...(cfg.settingsProblem ? { problem: cfg.settingsProblem } : {}),
  };
}

modelSettingsRoutes.get("/", async (c) => {
  await authorize(c, RESOURCE, "read");
  const org = c.get("org");
  const stored = await readOrgModelSettings(db(c.env), org.orgId);
  forgetOrgModelSettings(org.orgId);
  const cfg = await orgModelConfig(c.env, org.orgId);
  return c.json({ models: stored.raw ?? {}, effective: effective(cfg) });
});

modelSettingsRoutes.put("/", async (c) => {
  await authorize(c, RESOURCE, "write");
  const org = c.get("org");
  const body = (await jsonBody(c, OrgModelSettingsSchema)) as OrgModelSettings;
  const policy = { allowPrivateNetwork: !config(c.env).production };
  const providers = Object.entries(body.providers ?? {}) as [string, { secret?: string; baseUrl?: string }][];
  for (const [name, p] of providers) {
    const problem = p.baseUrl ? outboundUrlProblem(p.baseUrl, policy) : null;
    if (problem) throw new AppError("BAD_REQUEST", `providers.${name}.baseUrl: ${problem}`);
  }
  const before = parseStoredModelSettings((await readOrgModelSettings(db(c.env), org.orgId)).raw).settings;
  for (const [name, p] of providers) {
    if (!p.secret) continue;
    // Naming the secret, or sending a provider that carries it somewhere new, is a use of it.
    const was = before.providers?.[name] as { secret?: string; baseUrl?: string } | undefined;
    if (!was || was.secret !== p.secret || was.baseUrl !== p.baseUrl) await authorizeCredentialUse(c, p.secret, `providers.${name}.secret`);
  }
  await writeOrgModelSettings(db(c.env), org.orgId, body);
  forgetOrgModelSettings(org.orgId);
  auditRequest(c, { action: "settings.models.update", resource: RESOURCE, outcome: "success", input: { settings: body } });
  const cfg = await applyOrgSettings(c.env, modelConfigFromEnv(c.env), body, (n) => cachedCredential(db(c.env), c.env, org.orgId, n));
  const eff = effective(cfg);
  const warnings = eff.providers.filter((p) => "problem" in p && p.problem).map((p) => `${p.name}: ${(p as { problem: string }).problem}`);
  return c.json({ models: body, effective: eff, ...(warnings.length ? { warnings } : {}) });
});
