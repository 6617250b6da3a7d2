/**
 * How the org's agents are discovered (src/a2a/cards.ts), `settings.discovery`:
 *   GET /settings/discovery
 *   PUT /settings/discovery  { requireCredentialForCards?: boolean, defaultAgent?: string | null }
 * - `requireCredentialForCards` (default false): cards, the root card and the directory
 *   need a credential, like every other org route, instead of being public.
 * - `defaultAgent` (default none): the agent whose card the host root serves at
 *   `/.well-known/agent-card.json` (`Agent` or `repo-name/Agent`); only an exposed agent
 *   is ever served there, anything else answers 404 like a missing agent.
 * PUT replaces the whole setting (an absent field takes its default) and is audited.
 */
import { eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import { z } from "zod";
import { auditRequest } from "../audit/http";
import { authorize } from "../auth/authorize";
import { db } from "../db/client";
import { clearOrgCache } from "../db/orgs";
import { orgs } from "../db/schema";
import type { OrgScope } from "../db/scope";
import type { AppEnv } from "../http/app-env";
import { jsonBody } from "../http/body";

export interface DiscoverySettings {
  requireCredentialForCards: boolean;
  defaultAgent: string | null;
}

/** `Agent` or `repo-name/Agent` (agent names as src/agents/format.ts allows them). */
const AGENT_NAME = /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,127}\/)?[A-Za-z][A-Za-z0-9_-]{0,127}$/;

export const DiscoverySchema = z
  .object({
    requireCredentialForCards: z.boolean().default(false),
    defaultAgent: z.string().regex(AGENT_NAME, "expected an agent name: Agent or repo-name/Agent").nullable().default(null),
  })
  .strict();

/** The org's discovery settings, read from the scope (no query); anything invalid takes the default. */
export function discoverySettingsOf(scope: OrgScope): DiscoverySettings {
  return settingsFrom((scope.settings as { discovery?: unknown }).discovery);
}

function settingsFrom(raw: unknown): DiscoverySettings {
  const parsed = DiscoverySchema.safeParse(raw ?? {});
  return parsed.success ? parsed.data : { requireCredentialForCards: false, defaultAgent: null };
}

export const discoverySettingsRoutes = new Hono<AppEnv>();

discoverySettingsRoutes.get("/", async (c) => {
  await authorize(c, "/settings/discovery", "read");
  // Read fresh: the scope's copy may be a few seconds old in this isolate.
  const row = await db(c.env).select({ settings: orgs.settings }).from(orgs).where(eq(orgs.id, c.get("org").orgId)).get();
  return c.json({ discovery: settingsFrom((row?.settings as { discovery?: unknown } | undefined)?.discovery) });
});

discoverySettingsRoutes.put("/", async (c) => {
  await authorize(c, "/settings/discovery", "write");
  const discovery = await jsonBody(c, DiscoverySchema);
  const org = c.get("org");
  await db(c.env)
    .update(orgs)
    .set({ settings: sql`json_set(${orgs.settings}, '$.discovery', json(${JSON.stringify(discovery)}))`, updatedAt: sql`(unixepoch('subsec') * 1000)` })
    .where(eq(orgs.id, org.orgId));
  // This isolate sees it at once; others within the org cache's TTL (src/db/orgs.ts).
  clearOrgCache();
  auditRequest(c, { action: "settings.discovery.put", resource: "/settings/discovery", outcome: "success", input: discovery });
  return c.json({ discovery });
});
