/**
 * Turns a repository's files at one commit into an R2 snapshot and the D1 agent index,
 * with per-file change detection: a file whose blob id the previous commit already had
 * is neither uploaded nor re-parsed, and only agents whose file changed are written to
 * D1. Git sync and the local seed both end here.
 *
 * Names. Within a repository an agent name is defined once (a second file is an error).
 * Across root repositories, whose agents are called without the `repo-name/` prefix, an
 * exposed agent name belongs to the root repository that exposed it first: another root
 * repository's exposed agent of that name is not indexed and its file gets an error
 * naming the holder. If two root repositories hold it already (a repository made root
 * later, or two syncs at the same moment), the one whose name sorts first keeps it, as
 * the index lookups do, and the other loses it at its next import.
 *
 * With a sync lease token (`opts.leaseToken`), every D1 batch of the import starts with a
 * guard that rolls it back unless the token still holds the repository's lease: a sync
 * that was taken over writes nothing and gets `LeaseLostError`.
 */
import { parseAgentsJson, type AliasEntry } from "../agents/agents-json";
import { agentNameFromPath, parseAgentFile, type FileProblem } from "../agents/format";
import { clearResolveCache } from "../agents/resolve";
import { blobKey, gitBlobSha, readManifest, snapshotManifestKey, type SnapshotManifest } from "../agents/snapshot";
import { aliasReplacementStatements } from "../db/aliases";
import { agentIndexStatements, agentsOfRepository, clearAgentLookupCache, exposedByOtherRoots, type AgentUpsert } from "../db/agents";
import type { Db } from "../db/client";
import { holdsSyncLease, leaseGuardStatement, repositorySyncedStatement } from "../db/repositories";
import type { RepositoryRow, SyncProblem } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { toHex } from "../util/bytes";
import type { UrlPolicy } from "../net/url-policy";

export interface SnapshotFile {
  path: string;
  bytes: Uint8Array;
  /** Git blob id; computed when absent. */
  sha?: string;
}

export interface ImportResult {
  commit: string;
  /** Every agent of the snapshot, by name. */
  agents: string[];
  /** Agents added or whose file changed in this import. */
  changed: string[];
  /** Agents whose files are gone. */
  removed: string[];
  /** Files uploaded to R2 (blobs the previous commit did not have). */
  blobsWritten: number;
  files: number;
  aliases: number;
  errors: FileProblem[];
  warnings: FileProblem[];
}

/** The sync's lease was taken over by another sync: this one's result was not written. */
export class LeaseLostError extends Error {
  constructor() {
    super("another sync of this repository took over its lease (this one ran past it); its result was not written");
    this.name = "LeaseLostError";
  }
}

export interface ImportOptions {
  /** The sync lease token: the writes apply only while it holds the repository's lease. */
  leaseToken?: string;
  /** The URL policy `agents.json` aliases must obey; production's (https, public hosts) when omitted. */
  urlPolicy?: UrlPolicy;
}

const R2_CONCURRENCY = 16;
const D1_STATEMENTS_PER_BATCH = 90;
export const AGENTS_JSON = "agents.json";

export async function importSnapshot(
  db: Db,
  bucket: R2Bucket,
  scope: OrgScope,
  repo: Pick<RepositoryRow, "id" | "name" | "isRoot" | "lastCommit" | "syncProblems" | "syncIntervalSeconds">,
  commit: string,
  input: SnapshotFile[] | Map<string, Uint8Array>,
  extraProblems: FileProblem[] = [],
  opts: ImportOptions = {},
): Promise<ImportResult> {
  const files: SnapshotFile[] = input instanceof Map ? [...input].map(([path, bytes]) => ({ path, bytes })) : input;
  await Promise.all(files.map(async (f) => (f.sha ??= await gitBlobSha(f.bytes))));

  const [previous, existing] = await Promise.all([
    repo.lastCommit ? readManifest(bucket, scope.orgId, repo.id, repo.lastCommit) : Promise.resolve(null),
    agentsOfRepository(db, scope, [repo.id]),
  ]);
  const known = new Map(existing.map((a) => [a.path, a]));
  const previousShas = new Set(Object.values(previous?.files ?? {}).map((f) => f.sha));
  const previousWarnings = (repo.syncProblems ?? []).filter((p) => p.severity === "warning");

  const manifest: SnapshotManifest = { commit, createdAt: new Date().toISOString(), files: {} };
  let changed: AgentUpsert[] = [];
  let names: string[] = [];
  /** Exposed agents of this snapshot: name → path, and whether the index has it exposed already. */
  const exposed = new Map<string, { path: string; indexed: boolean }>();
  const errors: FileProblem[] = [...extraProblems];
  const warnings: FileProblem[] = [];
  const seen = new Map<string, string>();
  const decoder = new TextDecoder();
  let aliases: AliasEntry[] | null = null;
  let aliasCount = 0;

  for (const file of files.sort((a, b) => a.path.localeCompare(b.path))) {
    const sha = file.sha as string;
    manifest.files[file.path] = { sha, size: file.bytes.byteLength };

    if (file.path === AGENTS_JSON) {
      const parsed = parseAgentsJson(file.path, decoder.decode(file.bytes), opts.urlPolicy);
      errors.push(...parsed.problems);
      warnings.push(...parsed.warnings);
      aliasCount = parsed.aliases.length;
      // Unchanged file, unchanged aliases: nothing to write.
      if (!previous || previous.files[AGENTS_JSON]?.sha !== sha) aliases = parsed.aliases;
      continue;
    }
    if (!file.path.endsWith(".md")) continue;
    const name = agentNameFromPath(file.path);
    if (!name) continue;

    const before = known.get(file.path);
    if (before && before.blobSha === sha && before.name === name) {
      // Same content at the same path: still valid, nothing to parse or write.
      if (claim(seen, errors, name, file.path)) {
        names.push(name);
        if (before.exposed) exposed.set(name, { path: file.path, indexed: true });
        warnings.push(...previousWarnings.filter((w) => w.path === file.path).map(({ severity: _s, ...w }) => w));
      }
      continue;
    }
    const parsed = parseAgentFile(file.path, decoder.decode(file.bytes));
    if (!parsed.ok) {
      errors.push(parsed.error);
      continue;
    }
    if (!claim(seen, errors, name, file.path)) continue;
    names.push(name);
    warnings.push(...parsed.warnings);
    const fm = parsed.agent.frontmatter;
    if (fm.exposed) exposed.set(name, { path: file.path, indexed: before?.name === name && before.exposed });
    changed.push({
      name,
      path: file.path,
      repositoryId: repo.id,
      commitSha: commit,
      blobSha: sha,
      exposed: fm.exposed,
      description: fm.description,
      version: fm.version ?? null,
      model: fm.model ?? null,
      tags: fm.tags,
      card: fm.agentcard ?? null,
    });
  }
  if (previous?.files[AGENTS_JSON] && !manifest.files[AGENTS_JSON]) aliases = [];

  // A root repository's exposed names must not be exposed by another root repository already.
  if (repo.isRoot && exposed.size > 0) {
    const holders = await exposedByOtherRoots(db, scope, repo.id, [...exposed.keys()]);
    const lost = new Set<string>();
    for (const holder of holders) {
      const mine = exposed.get(holder.name);
      if (!mine || lost.has(holder.name)) continue;
      // Both already hold it (made root later, or a race): the first by repository name keeps it.
      if (mine.indexed && repo.name < holder.repositoryName) continue;
      lost.add(holder.name);
      errors.push({
        path: mine.path,
        message: `exposed agent name '${holder.name}' is already exposed by root repository '${holder.repositoryName}': this agent is not loaded (rename it, or set exposed: false; the root repository that exposed a name first keeps it)`,
      });
    }
    if (lost.size > 0) {
      names = names.filter((n) => !lost.has(n));
      changed = changed.filter((c) => !lost.has(c.name));
    }
  }

  // Blobs first, manifest last: a manifest in R2 means every blob it names is there.
  const uploads = files.filter((f) => !previousShas.has(f.sha as string));
  const unique = [...new Map(uploads.map((f) => [f.sha as string, f])).values()];
  for (let i = 0; i < unique.length; i += R2_CONCURRENCY) {
    await Promise.all(unique.slice(i, i + R2_CONCURRENCY).map((f) => bucket.put(blobKey(scope.orgId, repo.id, f.sha as string), f.bytes)));
  }
  await bucket.put(snapshotManifestKey(scope.orgId, repo.id, commit), JSON.stringify(manifest), {
    httpMetadata: { contentType: "application/json" },
  });

  const problems: SyncProblem[] = [
    ...errors.map((p) => ({ ...p, severity: "error" as const })),
    ...warnings.map((p) => ({ ...p, severity: "warning" as const })),
  ];
  const statements = [
    ...agentIndexStatements(db, scope, repo.id, names, changed),
    ...(aliases ? aliasReplacementStatements(db, scope, repo.id, aliases) : []),
    // Last, so the repository says "synced at <commit>" only with its index in place.
    repositorySyncedStatement(db, scope, repo.id, opts.leaseToken ?? null, commit, problems, repo.syncIntervalSeconds),
  ];
  const token = opts.leaseToken;
  const perBatch = token ? D1_STATEMENTS_PER_BATCH - 1 : D1_STATEMENTS_PER_BATCH;
  for (let i = 0; i < statements.length; i += perBatch) {
    const chunk = statements.slice(i, i + perBatch);
    try {
      if (token) await db.batch([leaseGuardStatement(db, scope, repo.id, token), ...chunk]);
      else if (chunk[0]) await db.batch([chunk[0], ...chunk.slice(1)]);
    } catch (err) {
      if (token && !(await holdsSyncLease(db, scope, repo.id, token))) throw new LeaseLostError();
      throw err;
    }
  }

  clearAgentLookupCache();
  clearResolveCache();

  const existingNames = new Set(existing.map((a) => a.name));
  const kept = new Set(names);
  return {
    commit,
    agents: [...names].sort(),
    changed: changed.map((c) => c.name).sort(),
    removed: [...existingNames].filter((n) => !kept.has(n)).sort(),
    blobsWritten: unique.length,
    files: files.length,
    aliases: aliasCount,
    errors,
    warnings,
  };
}

/** Records `name` for `path`; a second file defining the same agent is an error. */
function claim(seen: Map<string, string>, errors: FileProblem[], name: string, path: string): boolean {
  const other = seen.get(name);
  if (other) {
    errors.push({ path, message: `agent name '${name}' is already defined by ${other}` });
    return false;
  }
  seen.set(name, path);
  return true;
}

/** A content id for a set of files without git (the local seed): sha1 over sorted path + blob ids. */
export async function contentCommitId(files: Map<string, Uint8Array>): Promise<string> {
  const lines: string[] = [];
  for (const path of [...files.keys()].sort()) {
    const bytes = files.get(path);
    if (bytes) lines.push(`${await gitBlobSha(bytes)} ${path}`);
  }
  return toHex(await crypto.subtle.digest("SHA-1", new TextEncoder().encode(lines.join("\n"))));
}
