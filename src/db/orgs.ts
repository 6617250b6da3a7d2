import { eq, sql } from "drizzle-orm";
import type { Db } from "./client";
import { orgs, type OrgSettings } from "./schema";
import { scopeOf, type OrgScope } from "./scope";

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export function isValidSlug(slug: string): boolean {
  return SLUG.test(slug);
}

// Isolate cache: every request resolves its org by subdomain, and orgs change rarely.
// Entries live 30 s (positive) or 2 s (negative), so a new or renamed org shows up quickly.
const POSITIVE_TTL_MS = 30_000;
const NEGATIVE_TTL_MS = 2_000;
const MAX_ENTRIES = 10_000;
const bySlug = new Map<string, { scope: OrgScope | null; expires: number }>();

export async function orgBySlug(db: Db, slug: string): Promise<OrgScope | null> {
  if (!isValidSlug(slug)) return null;
  const now = Date.now();
  const hit = bySlug.get(slug);
  if (hit && hit.expires > now) return hit.scope;
  const row = await db.query.orgs.findFirst({
    columns: { id: true, slug: true, name: true, settings: true },
    where: eq(orgs.slug, slug),
  });
  const scope = row ? scopeOf(row) : null;
  if (bySlug.size >= MAX_ENTRIES) bySlug.clear();
  bySlug.set(slug, { scope, expires: now + (scope ? POSITIVE_TTL_MS : NEGATIVE_TTL_MS) });
  return scope;
}

/**
 * The org of an id taken from internal state (a queue job, a repository row), never from
 * a caller: for background work that starts without a request.
 */
export async function orgById(db: Db, id: string): Promise<OrgScope | null> {
  const row = await db.query.orgs.findFirst({ columns: { id: true, slug: true, name: true, settings: true }, where: eq(orgs.id, id) });
  return row ? scopeOf(row) : null;
}

/** Creates an org (or returns the existing one with that slug). */
export async function ensureOrg(db: Db, input: { slug: string; name: string; id?: string }): Promise<OrgScope> {
  if (!isValidSlug(input.slug)) throw new Error(`invalid org slug: ${input.slug}`);
  await db
    .insert(orgs)
    .values({ id: input.id ?? crypto.randomUUID(), slug: input.slug, name: input.name })
    .onConflictDoNothing({ target: orgs.slug });
  bySlug.delete(input.slug);
  const scope = await orgBySlug(db, input.slug);
  if (!scope) throw new Error(`org ${input.slug} could not be created`);
  return scope;
}

/**
 * Sets (or, with null, removes) the org's rate limits. `json_set` edits only that key, so a
 * concurrent change to another setting is not lost. Other isolates see it within the cache TTL.
 */
export async function setOrgRateLimits(db: Db, scope: OrgScope, limits: NonNullable<OrgSettings["rateLimits"]> | null): Promise<void> {
  const settings =
    limits === null
      ? sql`json_remove(${orgs.settings}, '$.rateLimits')`
      : sql`json_set(${orgs.settings}, '$.rateLimits', json(${JSON.stringify(limits)}))`;
  await db
    .update(orgs)
    .set({ settings, updatedAt: sql`(unixepoch('subsec') * 1000)` })
    .where(eq(orgs.id, scope.orgId));
  bySlug.delete(scope.slug);
}

/** Sets the org's run limits (src/workflow/types.ts `limitsFrom` reads them), like `setOrgRateLimits`. */
export async function setOrgRunLimits(db: Db, scope: OrgScope, limits: NonNullable<OrgSettings["runLimits"]>): Promise<void> {
  await db
    .update(orgs)
    .set({ settings: sql`json_set(${orgs.settings}, '$.runLimits', json(${JSON.stringify(limits)}))`, updatedAt: sql`(unixepoch('subsec') * 1000)` })
    .where(eq(orgs.id, scope.orgId));
  bySlug.delete(scope.slug);
}

export function clearOrgCache(): void {
  bySlug.clear();
}
