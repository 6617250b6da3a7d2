/**
 * Repository snapshots in R2. A snapshot is immutable: one object per file under
 * `orgs/{org}/repos/{repo}/commits/{commit}/files/{path}` plus a manifest, so agents load
 * by commit and a cached copy never goes stale.
 */
import { AppError } from "../errors";
import { parseAgentFile, type AgentDefinition } from "./format";

export interface AgentRef {
  name: string;
  repositoryId: string;
  commit: string;
  path: string;
}

export interface SnapshotManifest {
  commit: string;
  createdAt: string;
  files: Record<string, { sha: string; size: number }>;
}

export const snapshotPrefix = (orgId: string, repoId: string, commit: string) =>
  `orgs/${orgId}/repos/${repoId}/commits/${commit}`;
export const snapshotFileKey = (orgId: string, repoId: string, commit: string, path: string) =>
  `${snapshotPrefix(orgId, repoId, commit)}/files/${path}`;
export const snapshotManifestKey = (orgId: string, repoId: string, commit: string) =>
  `${snapshotPrefix(orgId, repoId, commit)}/manifest.json`;

// Isolate cache of parsed agents. Keys include the commit, and snapshots never change, so
// entries never go stale; the bound only caps memory. A warm executor makes no R2 read.
const MAX_CACHED_AGENTS = 1_000;
const agentCache = new Map<string, AgentDefinition>();

export async function loadAgent(bucket: R2Bucket, orgId: string, ref: AgentRef): Promise<AgentDefinition> {
  const key = snapshotFileKey(orgId, ref.repositoryId, ref.commit, ref.path);
  const cached = agentCache.get(key);
  if (cached) return cached;
  const object = await bucket.get(key);
  if (!object) throw new AppError("NOT_FOUND", `agent file ${ref.path} is missing from snapshot ${ref.commit}`);
  const parsed = parseAgentFile(ref.path, await object.text());
  if (!parsed.ok) {
    throw new AppError("UNPROCESSABLE", `agent ${ref.name} is invalid: ${parsed.error.message}`);
  }
  if (agentCache.size >= MAX_CACHED_AGENTS) {
    const oldest = agentCache.keys().next().value;
    if (oldest !== undefined) agentCache.delete(oldest);
  }
  agentCache.set(key, parsed.agent);
  return parsed.agent;
}

export function agentCacheSize(): number {
  return agentCache.size;
}

export function clearAgentCache(): void {
  agentCache.clear();
}

/** Git's blob id of a file (sha1 of "blob <len>\0<bytes>"), used for per-file change detection. */
export async function gitBlobSha(bytes: Uint8Array): Promise<string> {
  const header = new TextEncoder().encode(`blob ${bytes.byteLength}\0`);
  const buf = new Uint8Array(header.byteLength + bytes.byteLength);
  buf.set(header, 0);
  buf.set(bytes, header.byteLength);
  const digest = await crypto.subtle.digest("SHA-1", buf);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
