import { and, asc, eq, isNull, lt, or, sql } from "drizzle-orm";
import type { Db } from "./client";
import { repositories, type RepositoryRow, type SyncProblem } from "./schema";
import type { OrgScope } from "./scope";

export type RepositoryInput = Pick<RepositoryRow, "name" | "gitUrl" | "branch" | "isRoot"> &
  Partial<Pick<RepositoryRow, "credentialSecret" | "syncIntervalSeconds" | "webhookSecret">>;

export async function getRepositoryByName(db: Db, scope: OrgScope, name: string): Promise<RepositoryRow | null> {
  const row = await db.query.repositories.findFirst({
    where: and(eq(repositories.orgId, scope.orgId), eq(repositories.name, name)),
  });
  return row ?? null;
}

export async function getRepository(db: Db, scope: OrgScope, id: string): Promise<RepositoryRow | null> {
  const row = await db.query.repositories.findFirst({
    where: and(eq(repositories.orgId, scope.orgId), eq(repositories.id, id)),
  });
  return row ?? null;
}

export async function listRepositories(db: Db, scope: OrgScope): Promise<RepositoryRow[]> {
  return db.select().from(repositories).where(eq(repositories.orgId, scope.orgId)).orderBy(asc(repositories.name)).limit(1000);
}

/** Creates the repository if the org has none of that name; returns the stored row. */
export async function ensureRepository(db: Db, scope: OrgScope, input: RepositoryInput): Promise<RepositoryRow> {
  await db
    .insert(repositories)
    .values({ id: crypto.randomUUID(), orgId: scope.orgId, ...input })
    .onConflictDoNothing({ target: [repositories.orgId, repositories.name] });
  const row = await getRepositoryByName(db, scope, input.name);
  if (!row) throw new Error(`repository ${input.name} could not be created`);
  return row;
}

/** Inserts a new repository; null if the org already has one of that name or URL and branch. */
export async function insertRepository(db: Db, scope: OrgScope, id: string, input: RepositoryInput): Promise<RepositoryRow | null> {
  const rows = await db
    .insert(repositories)
    .values({ id, orgId: scope.orgId, ...input, nextSyncAt: 0 })
    .onConflictDoNothing()
    .returning();
  return rows[0] ?? null;
}

export async function updateRepository(
  db: Db,
  scope: OrgScope,
  id: string,
  patch: Partial<Pick<RepositoryRow, "name" | "gitUrl" | "branch" | "isRoot" | "credentialSecret" | "syncIntervalSeconds" | "webhookSecret" | "nextSyncAt">>,
): Promise<RepositoryRow | null> {
  const rows = await db
    .update(repositories)
    .set({ ...patch, updatedAt: Date.now() })
    .where(and(eq(repositories.orgId, scope.orgId), eq(repositories.id, id)))
    .returning();
  return rows[0] ?? null;
}

export async function deleteRepository(db: Db, scope: OrgScope, id: string): Promise<RepositoryRow | null> {
  const rows = await db
    .delete(repositories)
    .where(and(eq(repositories.orgId, scope.orgId), eq(repositories.id, id)))
    .returning();
  return rows[0] ?? null;
}

/**
 * Takes the repository's sync lease if no other sync holds it (or the holder's lease ran
 * out, e.g. it crashed). One conditional UPDATE, so two syncs racing cannot both win.
 * Returns the row as it was taken, its `syncLeaseToken` the new holder's token, or null
 * (missing, or busy). The sync's final writes apply only while that token still holds
 * the lease (`leaseGuardStatement`, `markRepositoryUnchanged`, `markRepositoryFailed`):
 * a sync that outlived its lease and was taken over writes nothing.
 */
export async function acquireSyncLease(
  db: Db,
  scope: OrgScope,
  id: string,
  leaseMs: number,
): Promise<(RepositoryRow & { syncLeaseToken: string }) | null> {
  const now = Date.now();
  const token = crypto.randomUUID();
  const rows = await db
    .update(repositories)
    .set({ syncStatus: "syncing", syncLeaseUntil: now + leaseMs, syncLeaseToken: token })
    .where(
      and(
        eq(repositories.orgId, scope.orgId),
        eq(repositories.id, id),
        or(isNull(repositories.syncLeaseUntil), lt(repositories.syncLeaseUntil, now)),
      ),
    )
    .returning();
  const row = rows[0];
  return row ? { ...row, syncLeaseToken: token } : null;
}

const leaseHolder = (scope: OrgScope, id: string, token: string) =>
  and(eq(repositories.orgId, scope.orgId), eq(repositories.id, id), eq(repositories.syncLeaseToken, token));

/**
 * A statement for the head of a D1 batch: it fails (and so rolls the whole batch back)
 * unless `token` still holds the repository's sync lease. SQLite has no RAISE outside
 * triggers, so the failure is a deliberate `json()` of something that is not JSON, made of
 * a column so that SQLite cannot evaluate it ahead of the CASE. Callers tell a lost lease
 * from another failure with `holdsSyncLease` afterwards.
 */
export function leaseGuardStatement(db: Db, scope: OrgScope, id: string, token: string) {
  return db
    .update(repositories)
    .set({ syncLeaseToken: sql`sync_lease_token` })
    .where(
      and(
        eq(repositories.orgId, scope.orgId),
        eq(repositories.id, id),
        sql`(CASE WHEN ${repositories.syncLeaseToken} = ${token} THEN 1 ELSE json('sync lease lost: ' || ${repositories.id}) END)`,
      ),
    );
}

/** Whether `token` still holds the repository's sync lease. */
export async function holdsSyncLease(db: Db, scope: OrgScope, id: string, token: string): Promise<boolean> {
  const row = await db.query.repositories.findFirst({ columns: { id: true }, where: leaseHolder(scope, id, token) });
  return row !== undefined;
}

/**
 * The statement that records a successful sync and releases the lease; with `leaseToken`,
 * only while that token holds it.
 */
export function repositorySyncedStatement(
  db: Db,
  scope: OrgScope,
  id: string,
  leaseToken: string | null,
  commit: string,
  problems: SyncProblem[],
  intervalSeconds: number,
) {
  const now = Date.now();
  return db
    .update(repositories)
    .set({
      syncStatus: "synced",
      lastCommit: commit,
      lastSyncedAt: now,
      lastCheckedAt: now,
      lastError: null,
      syncProblems: problems,
      syncLeaseUntil: null,
      syncLeaseToken: null,
      failedCommit: null,
      nextSyncAt: now + intervalSeconds * 1000,
      updatedAt: now,
    })
    .where(leaseToken ? leaseHolder(scope, id, leaseToken) : and(eq(repositories.orgId, scope.orgId), eq(repositories.id, id)));
}

/**
 * The remote is still at the synced commit: note the check and release the lease. False
 * (nothing written) if `token` no longer holds the lease.
 */
export async function markRepositoryUnchanged(db: Db, scope: OrgScope, id: string, token: string, intervalSeconds: number): Promise<boolean> {
  const now = Date.now();
  const rows = await db
    .update(repositories)
    .set({
      syncStatus: "synced",
      lastCheckedAt: now,
      lastError: null,
      failedCommit: null,
      syncLeaseUntil: null,
      syncLeaseToken: null,
      nextSyncAt: now + intervalSeconds * 1000,
    })
    .where(leaseHolder(scope, id, token))
    .returning({ id: repositories.id });
  return rows.length > 0;
}

/**
 * A failed sync: the last good snapshot stays; the error is recorded; retry after
 * `retryMs`. `failedCommit`: a head that hit a hard limit, not fetched again until the
 * branch moves (null clears it). False (nothing written) if `token` no longer holds the
 * lease.
 */
export async function markRepositoryFailed(
  db: Db,
  scope: OrgScope,
  id: string,
  token: string,
  error: string,
  retryMs: number,
  failedCommit: string | null = null,
): Promise<boolean> {
  const now = Date.now();
  const rows = await db
    .update(repositories)
    .set({
      syncStatus: "error",
      lastCheckedAt: now,
      lastError: error.slice(0, 2000),
      failedCommit,
      syncLeaseUntil: null,
      syncLeaseToken: null,
      nextSyncAt: now + retryMs,
      updatedAt: now,
    })
    .where(leaseHolder(scope, id, token))
    .returning({ id: repositories.id });
  return rows.length > 0;
}

/**
 * For the cron sweep (all orgs): repositories whose next sync time has come. Each one's
 * next time is pushed forward in the same statement, so overlapping sweeps do not queue
 * a repository twice.
 */
export async function claimDueRepositories(db: Db, limit: number, pushMs: number): Promise<{ id: string; orgId: string }[]> {
  const now = Date.now();
  return db
    .update(repositories)
    .set({ nextSyncAt: sql`${now + pushMs}` })
    .where(
      sql`${repositories.id} IN (SELECT id FROM repositories WHERE next_sync_at <= ${now} AND git_url NOT LIKE 'seed:%' ORDER BY next_sync_at LIMIT ${limit})`,
    )
    .returning({ id: repositories.id, orgId: repositories.orgId });
}


