/**
 * API keys for machine clients: `shk_<prefix>_<secret>`. Shown once at creation; stored as
 * a SHA-256 hash with the visible prefix; revocable; expiring; last use recorded.
 *
 * A key follows its creator (`createdBy`, a user id): it authenticates only while that
 * user is a member of the key's org, and it is only ever allowed what both its own grants
 * and the creator's current grants allow (`src/auth/authorize.ts`). A key without a
 * creator (only possible for rows written outside the API and bootstrap) never
 * authenticates: nobody answers for it, so nothing could ever disable it.
 */
import { and, desc, eq, getTableColumns, isNull, sql } from "drizzle-orm";
import type { Db } from "../db/client";
import { apiKeys, memberships, type ApiKeyRow } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { sha256Hex, timingSafeEqual } from "../util/bytes";
import type { Grant } from "./principal";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const KEY_FORMAT = /^shk_([A-Za-z0-9]{12})_([A-Za-z0-9]{40})$/;

function randomString(length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = "";
  // 256 % 62 bias is negligible for 40 chars of a 238-bit secret; fine for identifiers.
  for (const b of bytes) out += ALPHABET[b % ALPHABET.length];
  return out;
}


export function looksLikeApiKey(token: string): boolean {
  return token.startsWith("shk_");
}

export type ApiKeyView = Omit<ApiKeyRow, "hash" | "orgId">;

/** A key as the list shows it: flags a key that never expires. */
export interface ListedApiKey extends ApiKeyView {
  neverExpires: boolean;
}

/** A verified key: its creator is a member of the key's org (checked when it was verified). */
export type VerifiedApiKey = ApiKeyRow & { createdBy: string };

export interface CreatedApiKey extends ApiKeyView {
  /** The full key: returned once, never stored. */
  key: string;
}

export async function createApiKey(
  db: Db,
  scope: OrgScope,
  // `createdBy` should always be given: a key without a creator never authenticates.
  input: { name: string; permissions: Grant[]; expiresAt?: number | null; createdBy?: string | null },
): Promise<CreatedApiKey> {
  const prefix = randomString(12);
  const key = `shk_${prefix}_${randomString(40)}`;
  const row = {
    id: crypto.randomUUID(),
    orgId: scope.orgId,
    name: input.name,
    prefix,
    hash: await sha256Hex(key),
    permissions: input.permissions,
    createdBy: input.createdBy ?? null,
    createdAt: Date.now(),
    expiresAt: input.expiresAt ?? null,
    revokedAt: null,
    lastUsedAt: null,
  };
  await db.insert(apiKeys).values(row);
  const { hash: _hash, orgId: _org, ...view } = row;
  return { ...view, key };
}

export async function listApiKeys(db: Db, scope: OrgScope): Promise<ListedApiKey[]> {
  const rows = await db.select().from(apiKeys).where(eq(apiKeys.orgId, scope.orgId)).orderBy(desc(apiKeys.createdAt));
  return rows.map(({ hash: _hash, orgId: _org, ...view }) => ({ ...view, neverExpires: view.expiresAt === null }));
}

export async function revokeApiKey(db: Db, scope: OrgScope, id: string): Promise<boolean> {
  const res = await db
    .update(apiKeys)
    .set({ revokedAt: Date.now() })
    .where(and(eq(apiKeys.orgId, scope.orgId), eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
    .returning({ id: apiKeys.id });
  verified.clear();
  return res.length > 0;
}

// Isolate cache of verified keys by hash, with whether the key's creator was a member of
// the key's org when the row was read: a warm gateway verifies a key without D1. A
// revocation or a member's removal elsewhere takes effect here within TTL_MS; here, at
// once (revokeApiKey and removeMember clear it).
const TTL_MS = 30_000;
const verified = new Map<string, { row: ApiKeyRow; creatorIsMember: boolean; expires: number }>();
const LAST_USED_RESOLUTION_MS = 60_000;

/**
 * The key's row if `token` is a valid, unexpired, unrevoked key of `scope`'s org whose
 * creator is still a member of the org; null otherwise (a key of another org, or of a
 * removed member, is as invalid as a forged one). `touch` records the use (at most once a
 * minute per key).
 */
export async function verifyApiKey(db: Db, scope: OrgScope, token: string, touch?: (p: Promise<unknown>) => void): Promise<VerifiedApiKey | null> {
  const m = KEY_FORMAT.exec(token);
  if (!m) return null;
  const hash = await sha256Hex(token);
  const now = Date.now();
  let entry = verified.get(hash);
  if (!entry || entry.expires <= now) {
    // The key and its creator's membership in one query.
    const found = await db
      .select({
        ...getTableColumns(apiKeys),
        creatorIsMember: sql<number>`exists (select 1 from ${memberships} where ${memberships.orgId} = ${apiKeys.orgId} and ${memberships.userId} = ${apiKeys.createdBy})`,
      })
      .from(apiKeys)
      .where(eq(apiKeys.prefix, m[1] ?? ""))
      .get();
    if (!found || !timingSafeEqual(found.hash, hash)) return null;
    const { creatorIsMember, ...row } = found;
    entry = { row, creatorIsMember: Boolean(creatorIsMember), expires: now + TTL_MS };
    if (verified.size > 10_000) verified.clear();
    verified.set(hash, entry);
  }
  const key = entry.row;
  if (key.orgId !== scope.orgId || key.revokedAt !== null || (key.expiresAt !== null && key.expiresAt <= now)) return null;
  if (key.createdBy === null || !entry.creatorIsMember) return null;
  if (touch && (key.lastUsedAt === null || now - key.lastUsedAt > LAST_USED_RESOLUTION_MS)) {
    key.lastUsedAt = now;
    touch(db.update(apiKeys).set({ lastUsedAt: now }).where(and(eq(apiKeys.orgId, scope.orgId), eq(apiKeys.id, key.id))));
  }
  return { ...key, createdBy: key.createdBy };
}

export function clearApiKeyCache(): void {
  verified.clear();
}
