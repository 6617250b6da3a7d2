/**
 * Repository snapshots in R2. Files are stored content-addressed, once per repository:
 *   orgs/{org}/repos/{repo}/blobs/{git blob sha}
 * and each synced commit has an immutable manifest mapping its paths to blobs:
 *   orgs/{org}/repos/{repo}/commits/{commit}/manifest.json
 * So a sync writes only the blobs the previous commit did not have (one changed file: one
 * put), and agents load by blob id: an entry never goes stale, and a warm executor reads
 * nothing from R2 for an agent it has seen.
 */
import { AppError } from "../errors";
import { parseAgentFile, type AgentDefinition } from "./format";
import { toHex } from "../util/bytes";

export interface AgentRef {
  name: string;
  repositoryId: string;
  commit: string;
  path: string;
  /** Git blob id of the agent file; without it the commit's manifest is consulted. */
  blobSha?: string | undefined;
}

export interface SnapshotManifest {
  commit: string;
  createdAt: string;
  files: Record<string, { sha: string; size: number }>;
}

export const repoPrefix = (orgId: string, repoId: string) => `orgs/${orgId}/repos/${repoId}/`;
export const blobKey = (orgId: string, repoId: string, sha: string) => `${repoPrefix(orgId, repoId)}blobs/${sha}`;
export const snapshotManifestKey = (orgId: string, repoId: string, commit: string) =>
  `${repoPrefix(orgId, repoId)}commits/${commit}/manifest.json`;

// Isolate caches. Keys are content ids (blob sha, commit), so entries never go stale; the
// bounds only cap memory.
const MAX_CACHED_AGENTS = 1_000;
const agentCache = new Map<string, AgentDefinition>();
const MAX_CACHED_MANIFESTS = 50;
const manifestCache = new Map<string, SnapshotManifest>();

function remember<V>(cache: Map<string, V>, max: number, key: string, value: V): void {
  if (cache.size >= max) {
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
  cache.set(key, value);
}

export async function readManifest(bucket: R2Bucket, orgId: string, repoId: string, commit: string): Promise<SnapshotManifest | null> {
  const key = snapshotManifestKey(orgId, repoId, commit);
  const cached = manifestCache.get(key);
  if (cached) return cached;
  const object = await bucket.get(key);
  if (!object) return null;
  const manifest = (await object.json()) as SnapshotManifest;
  remember(manifestCache, MAX_CACHED_MANIFESTS, key, manifest);
  return manifest;
}

export async function loadAgent(bucket: R2Bucket, orgId: string, ref: AgentRef): Promise<AgentDefinition> {
  let sha = ref.blobSha;
  if (!sha) {
    const manifest = await readManifest(bucket, orgId, ref.repositoryId, ref.commit);
    sha = manifest?.files[ref.path]?.sha;
    if (!sha) throw new AppError("NOT_FOUND", `agent file ${ref.path} is missing from snapshot ${ref.commit}`);
  }
  // The path is part of the key: it names the agent (`Name/prompt.md` vs `Other.md`).
  const cacheKey = `${orgId}\u0000${ref.repositoryId}\u0000${sha}\u0000${ref.path}`;
  const cached = agentCache.get(cacheKey);
  if (cached) return cached;
  const object = await bucket.get(blobKey(orgId, ref.repositoryId, sha));
  if (!object) throw new AppError("NOT_FOUND", `agent file ${ref.path} (${sha}) is missing from the repository snapshot`);
  const parsed = parseAgentFile(ref.path, await object.text());
  if (!parsed.ok) {
    throw new AppError("UNPROCESSABLE", `agent ${ref.name} is invalid: ${parsed.error.message}`);
  }
  remember(agentCache, MAX_CACHED_AGENTS, cacheKey, parsed.agent);
  return parsed.agent;
}

export function agentCacheSize(): number {
  return agentCache.size;
}

export function clearAgentCache(): void {
  agentCache.clear();
  manifestCache.clear();
}

/** Git's blob id of a file (sha1 of "blob <len>\0<bytes>"), used for per-file change detection. */
export async function gitBlobSha(bytes: Uint8Array): Promise<string> {
  const header = new TextEncoder().encode(`blob ${bytes.byteLength}\0`);
  const buf = new Uint8Array(header.byteLength + bytes.byteLength);
  buf.set(header, 0);
  buf.set(bytes, header.byteLength);
  return toHex(await crypto.subtle.digest("SHA-1", buf));
}
