import { and, asc, desc, eq, inArray, ne, sql } from "drizzle-orm";
import type { Db } from "./client";
import { agents, repositories, type AgentRow } from "./schema";
import type { OrgScope } from "./scope";

export interface AgentIndexEntry {
  name: string;
  path: string;
  repositoryId: string;
  repositoryName: string;
  isRoot: boolean;
  commitSha: string;
  /** Git blob id of the agent file (loads it from the snapshot without the manifest). */
  blobSha?: string;
  exposed: boolean;
  description: string;
  version: string | null;
  model: string | null;
  tags: string[];
  card: Record<string, unknown> | null;
}

// Isolate cache of agent lookups by (org, name). The gateway resolves the agent on every
// call; a short TTL bounds how long a just-synced change takes to show (5 s).
const TTL_MS = 5_000;
const MAX_ENTRIES = 10_000;
const byName = new Map<string, { entry: AgentIndexEntry; expires: number }>();

const columns = {
  name: agents.name,
  path: agents.path,
  repositoryId: agents.repositoryId,
  repositoryName: repositories.name,
  isRoot: repositories.isRoot,
  commitSha: agents.commitSha,
  blobSha: agents.blobSha,
  exposed: agents.exposed,
  description: agents.description,
  version: agents.version,
  model: agents.model,
  tags: agents.tags,
  card: agents.card,
};

/**
 * Finds the agent an external caller means by `name`: `Agent` (an agent of a root
 * repository) or `repo-name/Agent` (any repository). Returns null when there is none.
 * Deterministic when several root repositories have the name: an exposed agent before a
 * private one, then by repository name (the sync keeps an exposed name to one root
 * repository, see src/repos/import.ts; this decides while two still have it).
 */
export async function findAgent(db: Db, scope: OrgScope, name: string): Promise<AgentIndexEntry | null> {
  const key = `${scope.orgId}\u0000${name}`;
  const now = Date.now();
  const hit = byName.get(key);
  if (hit && hit.expires > now) return hit.entry;

  const slash = name.indexOf("/");
  const repoName = slash > 0 ? name.slice(0, slash) : null;
  const agentName = slash > 0 ? name.slice(slash + 1) : name;
  const rows = await db
    .select(columns)
    .from(agents)
    .innerJoin(repositories, eq(repositories.id, agents.repositoryId))
    .where(
      and(
        eq(agents.orgId, scope.orgId),
        eq(repositories.orgId, scope.orgId),
        eq(agents.name, agentName),
        ...(repoName ? [eq(repositories.name, repoName)] : [eq(repositories.isRoot, true)]),
      ),
    )
    .orderBy(desc(agents.exposed), asc(repositories.name))
    .limit(1);
  const entry = rows[0] ?? null;
  if (entry) {
    if (byName.size >= MAX_ENTRIES) byName.clear();
    byName.set(key, { entry, expires: now + TTL_MS });
  }
  return entry;
}

export async function listExposedAgents(db: Db, scope: OrgScope): Promise<AgentIndexEntry[]> {
  return db
    .select(columns)
    .from(agents)
    .innerJoin(repositories, eq(repositories.id, agents.repositoryId))
    .where(and(eq(agents.orgId, scope.orgId), eq(repositories.orgId, scope.orgId), eq(agents.exposed, true)))
    .orderBy(agents.name)
    .limit(500);
}

/**
 * Exposed agents named `names` in root repositories other than `repositoryId`, with their
 * repository's name (by repository name): who already holds an unqualified name.
 */
export async function exposedByOtherRoots(db: Db, scope: OrgScope, repositoryId: string, names: string[]): Promise<{ name: string; repositoryName: string }[]> {
  if (names.length === 0) return [];
  return db
    .select({ name: agents.name, repositoryName: repositories.name })
    .from(agents)
    .innerJoin(repositories, eq(repositories.id, agents.repositoryId))
    .where(
      and(
        eq(agents.orgId, scope.orgId),
        eq(repositories.orgId, scope.orgId),
        eq(repositories.isRoot, true),
        ne(agents.repositoryId, repositoryId),
        eq(agents.exposed, true),
        sql`${agents.name} IN (SELECT value FROM json_each(${JSON.stringify(names)}))`,
      ),
    )
    .orderBy(asc(repositories.name));
}

export type AgentUpsert = Omit<AgentRow, "orgId" | "updatedAt">;

// 13 columns a row; D1 binds at most 100 parameters a statement.
const UPSERT_ROWS = 7;

/**
 * Statements that bring a repository's agent index to `names` (every agent the new
 * snapshot has), writing only `changed` entries (new or with a new blob) and deleting
 * agents whose files are gone. For a `db.batch` with the repository's own update.
 */
export function agentIndexStatements(db: Db, scope: OrgScope, repositoryId: string, names: string[], changed: AgentUpsert[]) {
  const scoped = and(eq(agents.orgId, scope.orgId), eq(agents.repositoryId, repositoryId));
  const statements = [
    db.delete(agents).where(and(scoped, sql`${agents.name} NOT IN (SELECT value FROM json_each(${JSON.stringify(names)}))`)),
  ];
  const now = Date.now();
  for (let i = 0; i < changed.length; i += UPSERT_ROWS) {
    const rows = changed.slice(i, i + UPSERT_ROWS).map((e) => ({ ...e, orgId: scope.orgId, repositoryId, updatedAt: now }));
    statements.push(
      db
        .insert(agents)
        .values(rows)
        .onConflictDoUpdate({
          target: [agents.repositoryId, agents.name],
          set: {
            path: sql`excluded.path`,
            commitSha: sql`excluded.commit_sha`,
            blobSha: sql`excluded.blob_sha`,
            exposed: sql`excluded.exposed`,
            description: sql`excluded.description`,
            version: sql`excluded.version`,
            model: sql`excluded.model`,
            tags: sql`excluded.tags`,
            card: sql`excluded.card`,
            updatedAt: sql`excluded.updated_at`,
          },
        }) as unknown as (typeof statements)[number],
    );
  }
  return statements;
}

export async function agentsOfRepository(db: Db, scope: OrgScope, repositoryIds: string[]): Promise<AgentRow[]> {
  if (!repositoryIds.length) return [];
  return db.select().from(agents).where(and(eq(agents.orgId, scope.orgId), inArray(agents.repositoryId, repositoryIds)));
}

export function clearAgentLookupCache(): void {
  byName.clear();
}
