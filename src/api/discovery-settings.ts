/**
 * How the org's agents are discovered (src/a2a/cards.ts), `settings.discovery`:
 *   GET /settings/discovery
 *   PUT /settings/discovery  { requireCredentialForCards?: boolean, defaultAgent?: string | null }
 * - `requireCredentialForCards` (default false): cards, the root card and the directory
 *   need a credential, like every other org route, instead of being public.
 * - `defaultAgent` (default none): the agent whose card the host root serves at
 *   `/.well-known/agent-card.json` (`Agent` or `repo-name/Agent`); only an exposed agent
 *   is ever served there, anything else answers 404 like a missing agent.
 * PUT replaces the whole setting (an absent field takes its default) and is audited
 * (src/api/org-setting.ts).
 */
import { z } from "zod";
import type { OrgScope } from "../db/scope";
import { orgSettingRoutes } from "./org-setting";

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

export const discoverySettingsRoutes = orgSettingRoutes({ key: "discovery", schema: DiscoverySchema, from: settingsFrom });
