/**
 * An org's usage settings: its own prices (`settings.prices`) and its monthly budget
 * (`settings.budget`). Every model call reads them, so they are cached per isolate for a
 * few seconds (one D1 read per org per TTL, none for calls in between); a write in this
 * isolate clears the entry at once, other isolates follow within the TTL.
 */
import { eq, sql } from "drizzle-orm";
import { z } from "zod";
import { db as dbOf } from "../db/client";
import { clearOrgCache } from "../db/orgs";
import { orgs, type OrgSettings } from "../db/schema";
import type { OrgScope } from "../db/scope";
import type { OrgPrices } from "./prices";

export interface Budget {
  period: "month";
  maxTokens?: number | undefined;
  maxUsd?: number | undefined;
}

export interface UsageSettings {
  budget: Budget | null;
  prices: OrgPrices | null;
}

const money = z.number().finite().min(0).max(1_000_000);

export const PriceSchema = z
  .object({
    input: money,
    cachedInput: money.optional(),
    output: money,
  })
  .strict();

export const PricesSchema = z
  .record(
    z
      .string()
      .min(1)
      .max(200)
      .regex(/^[^\s]+$/, "a price key is a `provider:model` prefix without spaces"),
    PriceSchema,
  )
  .refine((v) => Object.keys(v).length <= 500, "at most 500 prices");

export const BudgetSchema = z
  .object({
    period: z.literal("month"),
    maxTokens: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    maxUsd: z.number().finite().min(0).max(1e12).optional(),
  })
  .strict()
  .refine((b) => b.maxTokens !== undefined || b.maxUsd !== undefined, "a budget sets maxTokens, maxUsd or both");

/** The usage settings out of stored org settings; anything malformed reads as unset (validated on write). */
export function usageSettingsOf(settings: OrgSettings | null | undefined): UsageSettings {
  const budget = BudgetSchema.safeParse(settings?.budget);
  const prices = PricesSchema.safeParse(settings?.prices);
  return { budget: budget.success ? budget.data : null, prices: prices.success ? prices.data : null };
}

const TTL_MS = 5_000;
const MAX_ENTRIES = 10_000;
const cache = new Map<string, { value: Promise<UsageSettings>; expires: number }>();

/** The org's usage settings, cached for a few seconds per isolate (a failed read is not cached). */
export function orgUsageSettings(env: Env, orgId: string): Promise<UsageSettings> {
  const now = Date.now();
  const hit = cache.get(orgId);
  if (hit && hit.expires > now) return hit.value;
  const value = dbOf(env)
    .select({ settings: orgs.settings })
    .from(orgs)
    .where(eq(orgs.id, orgId))
    .get()
    .then((row) => usageSettingsOf(row?.settings));
  value.catch(() => cache.delete(orgId));
  if (cache.size >= MAX_ENTRIES) cache.clear();
  cache.set(orgId, { value, expires: now + TTL_MS });
  return value;
}

export function clearUsageSettingsCache(orgId?: string): void {
  if (orgId) cache.delete(orgId);
  else cache.clear();
}

/** Sets (or with null removes) one usage setting; `json_set` touches only that key. */
export async function setUsageSetting(env: Env, scope: OrgScope, key: "budget" | "prices", value: unknown): Promise<void> {
  const path = `$.${key}`;
  const settings = value === null ? sql`json_remove(${orgs.settings}, ${path})` : sql`json_set(${orgs.settings}, ${path}, json(${JSON.stringify(value)}))`;
  await dbOf(env)
    .update(orgs)
    .set({ settings, updatedAt: sql`(unixepoch('subsec') * 1000)` })
    .where(eq(orgs.id, scope.orgId));
  clearUsageSettingsCache(scope.orgId);
  // The org scope (read by slug, cached) carries the settings too: the A2A refusal reads them.
  clearOrgCache();
}
