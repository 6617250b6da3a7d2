import { and, eq } from "drizzle-orm";
import type { Db } from "./client";
import { repositories, type RepositoryRow } from "./schema";
import type { OrgScope } from "./scope";

export type RepositoryInput = Pick<RepositoryRow, "name" | "gitUrl" | "branch" | "isRoot"> &
  Partial<Pick<RepositoryRow, "credentialSecret" | "syncIntervalSeconds">>;

export async function getRepositoryByName(db: Db, scope: OrgScope, name: string): Promise<RepositoryRow | null> {
  const row = await db.query.repositories.findFirst({
    where: and(eq(repositories.orgId, scope.orgId), eq(repositories.name, name)),
  });
  return row ?? null;
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

export async function markRepositorySynced(db: Db, scope: OrgScope, repositoryId: string, commit: string): Promise<void> {
  const now = Date.now();
  await db
    .update(repositories)
    .set({ syncStatus: "synced", lastCommit: commit, lastSyncedAt: now, lastError: null, updatedAt: now })
    .where(and(eq(repositories.orgId, scope.orgId), eq(repositories.id, repositoryId)));
}
