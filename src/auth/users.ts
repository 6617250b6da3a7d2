/** The user mirror: identities of the identity provider, and their org memberships. */
import { and, eq, isNull } from "drizzle-orm";
import { clearPolicyCache } from "../authz/builtin";
import type { Db } from "../db/client";
import { apiKeys, memberships, users } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { clearApiKeyCache } from "./api-keys";

export interface MirroredUser {
  id: string;
  email: string | null;
}

// Isolate cache: every authenticated request maps an identity to its user row; identities
// change rarely. 60 s, bounded.
const TTL_MS = 60_000;
const byIdentity = new Map<string, { user: MirroredUser; expires: number }>();
const memberCache = new Map<string, { member: boolean; expires: number }>();

/** Finds or creates the mirror row of an identity (provider + provider user id). */
export async function mirrorUser(db: Db, provider: string, providerUserId: string, email: string | null, name: string | null = null): Promise<MirroredUser> {
  const key = `${provider}\u0000${providerUserId}`;
  const now = Date.now();
  const hit = byIdentity.get(key);
  if (hit && hit.expires > now && hit.user.email === email) return hit.user;
  await db
    .insert(users)
    .values({ id: crypto.randomUUID(), identityProvider: provider, identityProviderUserId: providerUserId, email, name })
    .onConflictDoUpdate({ target: [users.identityProvider, users.identityProviderUserId], set: { email, updatedAt: now } });
  const row = await db.query.users.findFirst({
    columns: { id: true, email: true },
    where: and(eq(users.identityProvider, provider), eq(users.identityProviderUserId, providerUserId)),
  });
  if (!row) throw new Error("user mirror write failed");
  if (byIdentity.size > 10_000) byIdentity.clear();
  byIdentity.set(key, { user: row, expires: now + TTL_MS });
  return row;
}

export async function isMember(db: Db, scope: OrgScope, userId: string): Promise<boolean> {
  const key = `${scope.orgId}\u0000${userId}`;
  const now = Date.now();
  const hit = memberCache.get(key);
  if (hit && hit.expires > now) return hit.member;
  const row = await db.query.memberships.findFirst({
    columns: { userId: true },
    where: and(eq(memberships.orgId, scope.orgId), eq(memberships.userId, userId)),
  });
  if (memberCache.size > 10_000) memberCache.clear();
  memberCache.set(key, { member: Boolean(row), expires: now + TTL_MS });
  return Boolean(row);
}

export async function addMember(db: Db, scope: OrgScope, userId: string): Promise<void> {
  await db.insert(memberships).values({ orgId: scope.orgId, userId }).onConflictDoNothing();
  memberCache.delete(`${scope.orgId}\u0000${userId}`);
}

/**
 * Removes a user from an org and, in the same batch, revokes every API key the user
 * created there (a key follows its creator; re-adding the user does not bring them
 * back). This isolate stops accepting the keys and the user's grants at once; other
 * isolates within their cache bounds (30 s for keys, 10 s for grants). Returns the ids of
 * the keys revoked.
 */
export async function removeMember(db: Db, scope: OrgScope, userId: string): Promise<string[]> {
  const [, revoked] = await db.batch([
    db.delete(memberships).where(and(eq(memberships.orgId, scope.orgId), eq(memberships.userId, userId))),
    db
      .update(apiKeys)
      .set({ revokedAt: Date.now() })
      .where(and(eq(apiKeys.orgId, scope.orgId), eq(apiKeys.createdBy, userId), isNull(apiKeys.revokedAt)))
      .returning({ id: apiKeys.id }),
  ]);
  memberCache.delete(`${scope.orgId}\u0000${userId}`);
  clearApiKeyCache();
  clearPolicyCache();
  return revoked.map((r) => r.id);
}

export function clearUserCaches(): void {
  byIdentity.clear();
  memberCache.clear();
}
