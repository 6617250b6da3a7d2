/**
 * Agent aliases (from each repository's `agents.json`) and the org's registry of external
 * A2A agents: the first and the last step of agent name resolution (src/agents/resolve.ts).
 */
import { and, asc, eq, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import { ALIAS_NAME, isHttpUrl, SECRET_NAME, type AliasEntry } from "../agents/agents-json";
import { clearResolveCache } from "../agents/resolve";
import { AppError } from "../errors";
import type { Db } from "./client";
import { agentAliases, externalAgents, repositories, type ExternalAgentRow } from "./schema";
import type { OrgScope } from "./scope";

/**
 * The statements that replace a repository's aliases with `aliases`: a delete, then one
 * insert of every alias through `json_each` (one bound JSON parameter, so D1's limit of 100
 * bound parameters a statement never bites). The insert writes rows only if the repository
 * belongs to the org. Put them in the same `db.batch` as the agent index update to make a
 * sync atomic; or call `replaceRepositoryAliases`.
 */
export function aliasReplacementStatements(db: Db, scope: OrgScope, repositoryId: string, aliases: AliasEntry[]): [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]] {
  // The last entry of an alias wins (a parse never yields duplicates; callers might).
  const unique = [...new Map(aliases.map((a) => [a.alias, a])).values()].map((a) => ({
    alias: a.alias,
    kind: a.kind,
    url: a.kind === "external" ? (a.url ?? null) : null,
    credentialSecret: a.kind === "external" ? (a.credentialSecret ?? null) : null,
    target: a.kind === "path" ? (a.target ?? null) : null,
    description: a.description ?? "",
  }));
  const remove = db.delete(agentAliases).where(and(eq(agentAliases.orgId, scope.orgId), eq(agentAliases.repositoryId, repositoryId)));
  if (!unique.length) return [remove];
  // Columns in the table's order (org_id, repository_id, alias, kind, url, credential_secret,
  // target, description): drizzle lists every column of agent_aliases for an INSERT … SELECT.
  const insert = db.insert(agentAliases).select(sql`
    SELECT r.org_id, r.id,
           json_extract(j.value, '$.alias'), json_extract(j.value, '$.kind'), json_extract(j.value, '$.url'),
           json_extract(j.value, '$.credentialSecret'), json_extract(j.value, '$.target'), json_extract(j.value, '$.description')
    FROM ${repositories} r, json_each(${JSON.stringify(unique)}) j
    WHERE r.id = ${repositoryId} AND r.org_id = ${scope.orgId}`);
  return [remove, insert];
}

/** Replaces a repository's aliases (one D1 batch). */
export async function replaceRepositoryAliases(db: Db, scope: OrgScope, repositoryId: string, aliases: AliasEntry[]): Promise<void> {
  const [first, ...rest] = aliasReplacementStatements(db, scope, repositoryId, aliases);
  await db.batch([first, ...rest]);
  clearResolveCache();
}

export async function listRepositoryAliases(db: Db, scope: OrgScope, repositoryId: string): Promise<AliasEntry[]> {
  const rows = await db
    .select()
    .from(agentAliases)
    .where(and(eq(agentAliases.orgId, scope.orgId), eq(agentAliases.repositoryId, repositoryId)))
    .orderBy(asc(agentAliases.alias));
  return rows.map((r) => ({
    alias: r.alias,
    kind: r.kind,
    ...(r.url !== null ? { url: r.url } : {}),
    ...(r.credentialSecret !== null ? { credentialSecret: r.credentialSecret } : {}),
    ...(r.target !== null ? { target: r.target } : {}),
    description: r.description,
  }));
}

// ---- the org's registry of external agents ------------------------------------------------

export type ExternalAgent = Omit<ExternalAgentRow, "orgId">;

export interface ExternalAgentInput {
  name: string;
  url: string;
  /** Name of the org secret holding the bearer token sent to the agent. */
  credentialSecret?: string | null;
  description?: string;
}

const registryColumns = {
  name: externalAgents.name,
  url: externalAgents.url,
  credentialSecret: externalAgents.credentialSecret,
  description: externalAgents.description,
  createdAt: externalAgents.createdAt,
  updatedAt: externalAgents.updatedAt,
};

export async function listExternalAgents(db: Db, scope: OrgScope): Promise<ExternalAgent[]> {
  return db.select(registryColumns).from(externalAgents).where(eq(externalAgents.orgId, scope.orgId)).orderBy(asc(externalAgents.name)).limit(1000);
}

export async function getExternalAgent(db: Db, scope: OrgScope, name: string): Promise<ExternalAgent | null> {
  const rows = await db
    .select(registryColumns)
    .from(externalAgents)
    .where(and(eq(externalAgents.orgId, scope.orgId), eq(externalAgents.name, name)))
    .limit(1);
  return rows[0] ?? null;
}

/** Validates an external agent; throws UNPROCESSABLE naming the bad field. */
function validateExternalAgent(input: ExternalAgentInput): void {
  const bad = (field: string, message: string) => new AppError("UNPROCESSABLE", `external agent ${field} ${message}`, { field });
  if (!ALIAS_NAME.test(input.name)) throw bad("name", "must start with a letter and hold only letters, digits, '_' or '-' (at most 128)");
  if (input.url.length > 2048 || !isHttpUrl(input.url)) throw bad("url", "must be an http(s) URL (at most 2048 characters)");
  if (input.credentialSecret != null && !SECRET_NAME.test(input.credentialSecret)) {
    throw bad("credentialSecret", "must be a secret name (letters, digits, '_', '.', '-'; at most 128)");
  }
  if ((input.description ?? "").length > 2000) throw bad("description", "must be at most 2000 characters");
}

/** Creates or replaces an external agent of the org's registry; returns the stored entry. */
export async function putExternalAgent(db: Db, scope: OrgScope, input: ExternalAgentInput): Promise<ExternalAgent> {
  validateExternalAgent(input);
  const values = { url: input.url, credentialSecret: input.credentialSecret ?? null, description: input.description ?? "" };
  const [row] = await db
    .insert(externalAgents)
    .values({ orgId: scope.orgId, name: input.name, ...values })
    .onConflictDoUpdate({ target: [externalAgents.orgId, externalAgents.name], set: { ...values, updatedAt: Date.now() } })
    .returning(registryColumns);
  clearResolveCache();
  if (!row) throw new Error(`external agent ${input.name} could not be stored`);
  return row;
}

/** Removes an external agent from the registry; false if the org had none of that name. */
export async function deleteExternalAgent(db: Db, scope: OrgScope, name: string): Promise<boolean> {
  const removed = await db
    .delete(externalAgents)
    .where(and(eq(externalAgents.orgId, scope.orgId), eq(externalAgents.name, name)))
    .returning({ name: externalAgents.name });
  clearResolveCache();
  return removed.length > 0;
}
