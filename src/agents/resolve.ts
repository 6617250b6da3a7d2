/**
 * How a running agent resolves the name of an agent it wants to call (the executor's
 * `call_agent` tool). The caller's `allowedAgents` is checked first, on the name as written.
 * Then, in this order:
 *
 *   1. an alias in the caller's repository's `agents.json` (a path alias names an agent file
 *      or `Agent` of the same repository, or `repo-name/Agent`; an external alias a URL);
 *   2. an agent of that name in the caller's own repository (private ones included: an
 *      exposed agent may call the private agents of its repository);
 *   3. an exposed agent of that name in a root repository;
 *   4. `repo-name/Agent`: that repository's agent (exposed, unless it is the caller's own
 *      repository);
 *   5. the org's registry of external agents;
 *   6. otherwise NOT_FOUND, naming every step tried (and any private agent passed over).
 *
 * Everything needed is read in one D1 batch (one round trip) and decided in memory; results
 * are cached in the isolate for 5 s.
 */
import { and, asc, desc, eq, or, sql, type SQL } from "drizzle-orm";
import type { Db } from "../db/client";
import type { AgentIndexEntry } from "../db/agents";
import type { AnySQLiteColumn } from "drizzle-orm/sqlite-core";
import { agentAliases, agents, externalAgents, repositories } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { AppError } from "../errors";

export interface CallerAgent {
  repositoryId: string;
  name: string;
  allowedAgents: "*" | string[];
}

export type ResolvedAgent =
  | { kind: "local"; via: "alias" | "same-repository" | "root-repository" | "namespaced"; agent: AgentIndexEntry }
  | { kind: "external"; via: "alias" | "registry"; name: string; url: string; credentialSecret: string | null; description: string };

const AGENT_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,127}$/;
const REPO_NAME = /^[^/\s]{1,100}$/;

// Isolate cache of resolutions by (org, caller repository, name). Only successes are kept;
// a just-synced change shows within the TTL (and at once in the isolate that synced it, if
// the sync calls clearResolveCache).
const TTL_MS = 5_000;
const MAX_ENTRIES = 5_000;
const cache = new Map<string, { value: ResolvedAgent; expires: number }>();

export function clearResolveCache(): void {
  cache.clear();
}

/** Throws FORBIDDEN unless `allowedAgents` lets the caller call `name` (exactly as written). */
export function assertMayCall(caller: CallerAgent, name: string): void {
  const allowed = caller.allowedAgents;
  if (allowed === "*" || allowed.includes(name)) return;
  throw new AppError("FORBIDDEN", `agent '${caller.name}' may not call '${name}': not in its allowedAgents`, {
    caller: caller.name,
    callee: name,
    allowedAgents: allowed,
  });
}

/**
 * A column under a unique result name. D1 batch results come back as objects, so two
 * selected columns of the same name (agents.name and repositories.name) would collide.
 */
function named<T>(column: AnySQLiteColumn, alias: string): SQL.Aliased<T | null> {
  return sql`${column}`.mapWith(column).as(alias) as SQL.Aliased<T | null>;
}

const entryColumns = {
  name: named<string>(agents.name, "e_name"),
  path: named<string>(agents.path, "e_path"),
  repositoryId: named<string>(agents.repositoryId, "e_repository_id"),
  repositoryName: named<string>(repositories.name, "e_repository_name"),
  isRoot: named<boolean>(repositories.isRoot, "e_is_root"),
  commitSha: named<string>(agents.commitSha, "e_commit_sha"),
  exposed: named<boolean>(agents.exposed, "e_exposed"),
  description: named<string>(agents.description, "e_description"),
  version: named<string>(agents.version, "e_version"),
  model: named<string>(agents.model, "e_model"),
  tags: named<string[]>(agents.tags, "e_tags"),
  card: named<Record<string, unknown>>(agents.card, "e_card"),
};

function toEntry(row: {
  name: string | null;
  path: string | null;
  repositoryId: string | null;
  repositoryName: string | null;
  isRoot: boolean | null;
  commitSha: string | null;
  exposed: boolean | null;
  description: string | null;
  version: string | null;
  model: string | null;
  tags: string[] | null;
  card: Record<string, unknown> | null;
}): AgentIndexEntry | null {
  if (row.name === null || row.path === null || row.repositoryId === null || row.repositoryName === null || row.commitSha === null) return null;
  return {
    name: row.name,
    path: row.path,
    repositoryId: row.repositoryId,
    repositoryName: row.repositoryName,
    isRoot: row.isRoot ?? false,
    commitSha: row.commitSha,
    exposed: row.exposed ?? false,
    description: row.description ?? "",
    version: row.version,
    model: row.model,
    tags: row.tags ?? [],
    card: row.card,
  };
}

/** The five reads of a resolution (caller repo, alias + its target, candidates, registry, namespace repo), as one D1 batch. */
function readAll(db: Db, scope: OrgScope, caller: CallerAgent, name: string, repoName: string | null, agentName: string) {
  const org = scope.orgId;
  const callerRepo = db
    .select({ id: repositories.id, name: repositories.name })
    .from(repositories)
    .where(and(eq(repositories.orgId, org), eq(repositories.id, caller.repositoryId)))
    .limit(1);

  // The alias row with the agent a path alias names (if any), in one statement. A target is
  // `dir/Agent/prompt.md` (agent path of the same repository), `Agent` (agent name in the
  // same repository) or `repo/Agent`; agents.json parsing guarantees only these forms.
  const t = agentAliases.target;
  const slash = sql`instr(${t}, '/')`;
  const isFile = sql`substr(${t}, -3) = '.md'`;
  // One equality on repository_id (an index prefix), then the path or name within it.
  const namespacedTarget = sql`(${slash} > 0 AND NOT ${isFile})`;
  const targetRepo = sql`CASE WHEN ${namespacedTarget}
    THEN (SELECT r2.id FROM ${repositories} r2 WHERE r2.org_id = ${agentAliases.orgId} AND r2.name = substr(${t}, 1, ${slash} - 1))
    ELSE ${agentAliases.repositoryId} END`;
  const aliasTarget = and(
    eq(agents.repositoryId, targetRepo),
    sql`CASE WHEN ${isFile} THEN ${agents.path} = ${t}
      WHEN ${slash} = 0 THEN ${agents.name} = ${t}
      ELSE ${agents.name} = substr(${t}, ${slash} + 1) END`,
  );
  const alias = db
    .select({
      kind: agentAliases.kind,
      url: agentAliases.url,
      credentialSecret: agentAliases.credentialSecret,
      target: agentAliases.target,
      aliasDescription: named<string>(agentAliases.description, "alias_description"),
      ...entryColumns,
    })
    .from(agentAliases)
    // `+org_id`: still filtered on the org, but steers SQLite to the (repository_id, name) key.
    .leftJoin(agents, and(eq(agentAliases.kind, "path"), sql`+${agents.orgId} = ${agentAliases.orgId}`, aliasTarget))
    .leftJoin(repositories, and(eq(repositories.id, agents.repositoryId), eq(repositories.orgId, agentAliases.orgId)))
    .where(and(eq(agentAliases.orgId, org), eq(agentAliases.repositoryId, caller.repositoryId), eq(agentAliases.alias, repoName ? "" : name)))
    .limit(2);

  // Every candidate agent: for `Agent`, those of the caller's repository and of root
  // repositories; for `repo/Agent`, that repository's.
  const candidates = db
    .select(entryColumns)
    .from(agents)
    .innerJoin(repositories, and(eq(repositories.id, agents.repositoryId), eq(repositories.orgId, org)))
    .where(
      and(
        eq(agents.orgId, org),
        eq(agents.name, agentName),
        repoName ? eq(repositories.name, repoName) : or(eq(agents.repositoryId, caller.repositoryId), eq(repositories.isRoot, true)),
      ),
    )
    .orderBy(desc(sql`${agents.repositoryId} = ${caller.repositoryId}`), desc(agents.exposed), asc(repositories.name))
    .limit(50);

  const registry = db
    .select({ name: externalAgents.name, url: externalAgents.url, credentialSecret: externalAgents.credentialSecret, description: externalAgents.description })
    .from(externalAgents)
    .where(and(eq(externalAgents.orgId, org), eq(externalAgents.name, repoName ? "" : name)))
    .limit(1);

  const namespace = db
    .select({ id: repositories.id })
    .from(repositories)
    .where(and(eq(repositories.orgId, org), eq(repositories.name, repoName ?? "")))
    .limit(1);

  return db.batch([callerRepo, alias, candidates, registry, namespace]);
}

/**
 * Resolves the agent `name` that `caller` wants to call. Throws FORBIDDEN if the caller's
 * `allowedAgents` does not list the name, NOT_FOUND (with `details.tried`) if nothing
 * callable has that name, UNPROCESSABLE for a name that cannot name an agent.
 */
export async function resolveAgentCall(db: Db, scope: OrgScope, caller: CallerAgent, name: string): Promise<ResolvedAgent> {
  assertMayCall(caller, name);

  const slash = name.indexOf("/");
  const repoName = slash >= 0 ? name.slice(0, slash) : null;
  const agentName = slash >= 0 ? name.slice(slash + 1) : name;
  if (!AGENT_NAME.test(agentName) || (repoName !== null && !REPO_NAME.test(repoName))) {
    throw new AppError("UNPROCESSABLE", `'${name}' is not an agent name (expected 'Agent' or 'repo-name/Agent')`, { name });
  }

  const key = `${scope.orgId}\u0000${caller.repositoryId}\u0000${name}`;
  const now = Date.now();
  const hit = cache.get(key);
  if (hit && hit.expires > now) return hit.value;

  const [callerRepos, aliasRows, candidateRows, registryRows, namespaceRows] = await readAll(db, scope, caller, name, repoName, agentName);
  const callerRepo = callerRepos[0];
  if (!callerRepo) {
    throw new AppError("NOT_FOUND", `repository of the calling agent '${caller.name}' not found`, { repositoryId: caller.repositoryId });
  }
  const value = decide(caller, name, repoName, agentName, callerRepo.name, aliasRows, candidateRows.map(toEntry).filter((e) => e !== null), registryRows[0], namespaceRows.length > 0);

  if (cache.size >= MAX_ENTRIES) cache.clear();
  cache.set(key, { value, expires: now + TTL_MS });
  return value;
}

type AliasRow = Awaited<ReturnType<typeof readAll>>[1][number];
type RegistryRow = Awaited<ReturnType<typeof readAll>>[3][number];

function notFound(name: string, tried: string[], extra: Record<string, unknown> = {}): AppError {
  return new AppError("NOT_FOUND", `agent '${name}' not found; tried: ${tried.join(", ")}`, { tried, ...extra });
}

function decide(
  caller: CallerAgent,
  name: string,
  repoName: string | null,
  agentName: string,
  callerRepoName: string,
  aliasRows: AliasRow[],
  candidates: AgentIndexEntry[],
  registry: RegistryRow | undefined,
  namespaceExists: boolean,
): ResolvedAgent {
  const tried: string[] = [];
  const passedOver: string[] = [];
  const aliasStep = `alias in agents.json of repo '${callerRepoName}'`;

  // 1. alias
  const aliasRow = aliasRows[0];
  if (repoName !== null) {
    tried.push(`${aliasStep} (not an alias name)`);
  } else if (!aliasRow) {
    tried.push(aliasStep);
  } else if (aliasRow.kind === "external") {
    return { kind: "external", via: "alias", name, url: aliasRow.url ?? "", credentialSecret: aliasRow.credentialSecret, description: aliasRow.aliasDescription ?? "" };
  } else {
    // An alias is an explicit choice: if its target is missing or not callable, say so
    // rather than fall through to some other agent of the same name.
    const agent = toEntry(aliasRow);
    const step = `${aliasStep} (alias '${name}' points to '${aliasRow.target ?? ""}'`;
    if (!agent) throw notFound(name, [`${step}, which is not an agent of the org)`], { alias: { target: aliasRow.target } });
    if (agent.repositoryId !== caller.repositoryId && !agent.exposed) {
      throw notFound(name, [`${step}, which is private to repo '${agent.repositoryName}')`], {
        alias: { target: aliasRow.target },
        private: [`${agent.repositoryName}/${agent.name}`],
      });
    }
    return { kind: "local", via: "alias", agent };
  }

  if (repoName === null) {
    // 2. the caller's own repository (private agents included)
    const own = candidates.find((c) => c.repositoryId === caller.repositoryId);
    if (own) return { kind: "local", via: "same-repository", agent: own };
    tried.push(`repository '${callerRepoName}'`);

    // 3. root repositories: exposed agents only
    const roots = candidates.filter((c) => c.isRoot && c.repositoryId !== caller.repositoryId);
    const exposed = roots.find((c) => c.exposed);
    if (exposed) return { kind: "local", via: "root-repository", agent: exposed };
    if (roots.length) {
      const names = roots.map((c) => `'${c.repositoryName}'`).join(", ");
      passedOver.push(...roots.map((c) => `${c.repositoryName}/${c.name}`));
      tried.push(`root repositories (found in ${names} but it is private)`);
    } else {
      tried.push("root repositories (none had it)");
    }
    tried.push(`namespaced 'repo/Agent' (not a namespaced name)`);
  } else {
    tried.push(`repository '${callerRepoName}' (not for a namespaced name)`);
    tried.push("root repositories (not for a namespaced name)");
    // 4. repo-name/Agent: exposed, unless it is the caller's own repository
    const found = candidates[0];
    if (found && (found.exposed || found.repositoryId === caller.repositoryId)) return { kind: "local", via: "namespaced", agent: found };
    if (found) {
      passedOver.push(`${found.repositoryName}/${found.name}`);
      tried.push(`namespaced '${name}' (found, but it is private to repo '${found.repositoryName}')`);
    } else if (!namespaceExists) {
      tried.push(`namespaced '${name}' (no repository '${repoName}')`);
    } else {
      tried.push(`namespaced '${name}' (repository '${repoName}' has no agent '${agentName}')`);
    }
  }

  // 5. the org's registry of external agents
  if (registry) {
    return { kind: "external", via: "registry", name: registry.name, url: registry.url, credentialSecret: registry.credentialSecret, description: registry.description };
  }
  tried.push(repoName === null ? "external agent registry" : "external agent registry (not for a namespaced name)");
  throw notFound(name, tried, passedOver.length ? { private: passedOver } : {});
}
