/**
 * Repository sync: ask the remote for the branch head (one cheap request); if it is the
 * synced commit, stop; otherwise fetch that commit's tree (shallow) and import it (R2
 * snapshot + D1 index, per-file change detection). Every trigger (API, webhook, cron)
 * ends here, and a lease on the repository row makes concurrent syncs of one repository
 * safe: the second one reports `busy` and does nothing.
 *
 * A failed sync keeps the last good snapshot and index, records the error on the
 * repository and is retried by the sweep later.
 */
import { writeAudit } from "../audit/log";
import { config } from "../config";
import { db as dbOf } from "../db/client";
import { acquireSyncLease, getRepository, markRepositoryFailed, markRepositoryUnchanged } from "../db/repositories";
import type { RepositoryRow } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { AppError } from "../errors";
import { fetchTree, remoteHead, type GitRemote } from "../git/client";
import { GitError } from "../git/errors";
import { validateGitUrl } from "../git/url";
import { readSecret } from "../secrets/store";
import { importSnapshot, type ImportResult } from "./import";

export type SyncTrigger = "api" | "create" | "webhook" | "schedule";

export interface SyncOutcome {
  status: "synced" | "unchanged" | "busy" | "failed";
  trigger: SyncTrigger;
  durationMs: number;
  commit: string | null;
  result?: ImportResult;
  error?: { code: string; message: string };
}

/** A sync holds the repository this long at most; a crashed one is taken over after it. */
const LEASE_MS = 5 * 60_000;
const REMOTE_TIMEOUT_MS = 60_000;
const MIN_RETRY_MS = 60_000;
/** Local seed repositories have no remote. */
export const SEED_URL_PREFIX = "seed:";

export interface SyncOptions {
  trigger: SyncTrigger;
  /** Who asked (`user:…`, `key:…`, `webhook`, `system`), for the audit row. */
  actor: string;
  userId?: string | null;
  requestId?: string | null;
  /** Fetch and import even if the remote head equals the synced commit. */
  force?: boolean;
}

export async function syncRepository(env: Env, scope: OrgScope, repositoryId: string, opts: SyncOptions): Promise<SyncOutcome> {
  const d = dbOf(env);
  const started = Date.now();
  const repo = await acquireSyncLease(d, scope, repositoryId, LEASE_MS);
  if (!repo) {
    if (!(await getRepository(d, scope, repositoryId))) throw new AppError("NOT_FOUND", "Repository not found");
    return { status: "busy", trigger: opts.trigger, durationMs: Date.now() - started, commit: null };
  }

  let outcome: SyncOutcome;
  try {
    outcome = await syncLeased(env, scope, repo, opts, started);
  } catch (err) {
    const error = describe(err);
    if (!(err instanceof GitError) && !(err instanceof AppError)) {
      console.error(`sync ${scope.slug}/${repo.name} failed:`, err instanceof Error ? (err.stack ?? err.message) : String(err));
    }
    await markRepositoryFailed(d, scope, repo.id, `${error.code}: ${error.message}`, Math.max(MIN_RETRY_MS, repo.syncIntervalSeconds * 1000)).catch(
      (e: unknown) => console.error(`sync ${repo.id}: could not record the failure: ${String(e)}`),
    );
    outcome = { status: "failed", trigger: opts.trigger, durationMs: Date.now() - started, commit: repo.lastCommit, error };
  }

  // Unchanged checks are frequent (every sweep) and say nothing new: not audited.
  if (outcome.status !== "unchanged") {
    await writeAudit(d, scope.orgId, {
      actor: opts.actor,
      userId: opts.userId ?? null,
      requestId: opts.requestId ?? null,
      action: "repository.sync",
      resource: `/repositories/${repo.id}`,
      outcome: outcome.status === "failed" ? "error" : "success",
      durationMs: outcome.durationMs,
      input: { trigger: opts.trigger, branch: repo.branch, force: Boolean(opts.force) },
      output: outcome.result
        ? { commit: outcome.commit, agents: outcome.result.agents.length, changed: outcome.result.changed, removed: outcome.result.removed, errors: outcome.result.errors.length }
        : { commit: outcome.commit },
      ...(outcome.error ? { error: outcome.error } : {}),
    }).catch((e: unknown) => console.error(`sync ${repo.id}: audit write failed: ${String(e)}`));
  }
  return outcome;
}

async function syncLeased(env: Env, scope: OrgScope, repo: RepositoryRow, opts: SyncOptions, started: number): Promise<SyncOutcome> {
  const d = dbOf(env);
  if (repo.gitUrl.startsWith(SEED_URL_PREFIX)) {
    throw new AppError("UNPROCESSABLE", "this repository was created by the local seed and has no git remote to sync from");
  }
  const url = validateGitUrl(repo.gitUrl, { allowPrivateNetwork: !config(env).production });
  const remote: GitRemote = { url: url.href, branch: repo.branch };
  if (repo.credentialSecret) {
    const token = await readSecret(d, env, scope.orgId, repo.credentialSecret);
    if (token === null) throw new AppError("UNPROCESSABLE", `the credential secret '${repo.credentialSecret}' does not exist in this org`);
    remote.token = token;
  }

  const head = await remoteHead(remote, { signal: AbortSignal.timeout(REMOTE_TIMEOUT_MS) });
  if (head === repo.lastCommit && !opts.force) {
    await markRepositoryUnchanged(d, scope, repo.id, repo.syncIntervalSeconds);
    return { status: "unchanged", trigger: opts.trigger, durationMs: Date.now() - started, commit: head };
  }
  const tree = await fetchTree(remote, { commit: head, signal: AbortSignal.timeout(REMOTE_TIMEOUT_MS) });
  const result = await importSnapshot(d, env.SNAPSHOTS, scope, repo, tree.commit, tree.files, tree.skipped);
  return { status: "synced", trigger: opts.trigger, durationMs: Date.now() - started, commit: tree.commit, result };
}

function describe(err: unknown): { code: string; message: string } {
  if (err instanceof GitError) return { code: err.code, message: err.message };
  if (err instanceof AppError) return { code: err.code.toLowerCase(), message: err.message };
  return { code: "internal", message: "internal error during sync" };
}
