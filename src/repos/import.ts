/**
 * Turns a repository's files at one commit into an R2 snapshot and the D1 agent index,
 * with per-file change detection: a file whose blob id the previous commit already had
 * is neither uploaded nor re-parsed, and only agents whose file changed are written to
 * D1. Git sync and the local seed both end here.
 */
import { parseAgentsJson, type AliasEntry } from "../agents/agents-json";
import { agentNameFromPath, parseAgentFile, type FileProblem } from "../agents/format";
import { clearResolveCache } from "../agents/resolve";
import { blobKey, gitBlobSha, readManifest, snapshotManifestKey, type SnapshotManifest } from "../agents/snapshot";
import { aliasReplacementStatements } from "../db/aliases";
import { agentIndexStatements, agentsOfRepository, clearAgentLookupCache, type AgentUpsert } from "../db/agents";
import type { Db } from "../db/client";
import { repositorySyncedStatement } from "../db/repositories";
import type { RepositoryRow, SyncProblem } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { toHex } from "../util/bytes";

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

const R2_CONCURRENCY = 16;
const D1_STATEMENTS_PER_BATCH = 90;
export const AGENTS_JSON = "agents.json";

export async function importSnapshot(
  db: Db,
  bucket: R2Bucket,
  scope: OrgScope,
  repo: Pick<RepositoryRow, "id" | "lastCommit" | "syncProblems" | "syncIntervalSeconds">,
  commit: string,
  input: SnapshotFile[] | Map<string, Uint8Array>,
  extraProblems: FileProblem[] = [],
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
  const changed: AgentUpsert[] = [];
  const names: string[] = [];
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
      const parsed = parseAgentsJson(file.path, decoder.decode(file.bytes));
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
    repositorySyncedStatement(db, scope, repo.id, commit, problems, repo.syncIntervalSeconds),
  ];
  for (let i = 0; i < statements.length; i += D1_STATEMENTS_PER_BATCH) {
    const [first, ...rest] = statements.slice(i, i + D1_STATEMENTS_PER_BATCH);
    if (first) await db.batch([first, ...rest]);
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
