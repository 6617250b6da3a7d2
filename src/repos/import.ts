/**
 * Turns a set of repository files at one commit into an R2 snapshot and the D1 agent
 * index. Git sync and the local demo seed both end here.
 */
import { parseAgentFile, type FileProblem } from "../agents/format";
import { gitBlobSha, snapshotFileKey, snapshotManifestKey, type SnapshotManifest } from "../agents/snapshot";
import type { Db } from "../db/client";
import { replaceRepositoryAgents, type AgentUpsert } from "../db/agents";
import { markRepositorySynced } from "../db/repositories";
import type { RepositoryRow } from "../db/schema";
import type { OrgScope } from "../db/scope";

export interface ImportResult {
  commit: string;
  agents: string[];
  errors: FileProblem[];
  warnings: FileProblem[];
}

const R2_CONCURRENCY = 16;

export async function importSnapshot(
  db: Db,
  bucket: R2Bucket,
  scope: OrgScope,
  repo: Pick<RepositoryRow, "id">,
  commit: string,
  files: Map<string, Uint8Array>,
): Promise<ImportResult> {
  const manifest: SnapshotManifest = { commit, createdAt: new Date().toISOString(), files: {} };
  const entries: AgentUpsert[] = [];
  const errors: FileProblem[] = [];
  const warnings: FileProblem[] = [];
  const decoder = new TextDecoder();
  const seen = new Map<string, string>();

  for (const [path, bytes] of files) {
    const sha = await gitBlobSha(bytes);
    manifest.files[path] = { sha, size: bytes.byteLength };
    if (!path.endsWith(".md")) continue;
    const parsed = parseAgentFile(path, decoder.decode(bytes));
    if (!parsed.ok) {
      if (parsed.error.message !== "not an agent file name") errors.push(parsed.error);
      continue;
    }
    const { agent } = parsed;
    const other = seen.get(agent.name);
    if (other) {
      errors.push({ path, message: `agent name '${agent.name}' is already defined by ${other}` });
      continue;
    }
    seen.set(agent.name, path);
    warnings.push(...parsed.warnings);
    const fm = agent.frontmatter;
    entries.push({
      name: agent.name,
      path,
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

  const paths = [...files.keys()];
  for (let i = 0; i < paths.length; i += R2_CONCURRENCY) {
    await Promise.all(
      paths.slice(i, i + R2_CONCURRENCY).map((path) => {
        const body = files.get(path);
        return body ? bucket.put(snapshotFileKey(scope.orgId, repo.id, commit, path), body) : undefined;
      }),
    );
  }
  // The manifest goes last: its presence marks a complete snapshot.
  await bucket.put(snapshotManifestKey(scope.orgId, repo.id, commit), JSON.stringify(manifest), {
    httpMetadata: { contentType: "application/json" },
  });
  await replaceRepositoryAgents(db, scope, repo.id, entries);
  await markRepositorySynced(db, scope, repo.id, commit);
  return { commit, agents: entries.map((e) => e.name).sort(), errors, warnings };
}

/** A content id for a set of files without git (the local seed): sha1 over sorted path + blob ids. */
export async function contentCommitId(files: Map<string, Uint8Array>): Promise<string> {
  const lines: string[] = [];
  for (const path of [...files.keys()].sort()) {
    const bytes = files.get(path);
    if (bytes) lines.push(`${await gitBlobSha(bytes)} ${path}`);
  }
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(lines.join("\n")));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
