/**
 * Repository sync: ask the remote for the branch head (one cheap request); if it is the
 * synced commit, stop; otherwise fetch that commit's tree (shallow) and import it (R2
 * snapshot + D1 index, per-file change detection). Every trigger (API, webhook, cron)
 * ends here, and a lease on the repository row makes concurrent syncs of one repository
 * safe: the second one reports `busy` and does nothing.
 *
 * A failed sync keeps the last good snapshot and index, records the error on the
 * repository and is retried by the sweep later. A head that hit a hard limit (too large,
 * too many files, too deep) is remembered (`failed_commit`): later syncs only ask for the
 * head (one cheap `info/refs` request) and fetch again once the branch moves, or when
 * forced.
 *
 * The lease carries a token: the sync's final writes (the import's D1 batches, the
 * unchanged and failed marks) apply only while that token still holds the lease, so a
 * sync that ran past its lease and was taken over writes nothing (it reports
 * `lease_lost`).
 *
 * A private repository's token is read with its scope (`readCredential`): the git client
 * sends it only to the secret's `allowedHosts` and never follows a redirect with it to
 * another origin (`credential_refused`).
 */
import { writeAudit } from "../audit/log";
import { config } from "../config";
import { db as dbOf } from "../db/client";
import { acquireSyncLease, getRepository, markRepositoryFailed, markRepositoryUnchanged } from "../db/repositories";
import type { RepositoryRow } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { AppError } from "../errors";
import { fetchTree, isLimitError, remoteHead, type GitRemote } from "../git/client";
import { GitError } from "../git/errors";
import { validateGitUrl } from "../git/url";
import { readCredential } from "../secrets/store";
import { importSnapshot, LeaseLostError, type ImportResult } from "./import";

export type SyncTrigger = "api" | "create" | "webhook" | "schedule";

export interface SyncOutcome {
  status: "synced" | "unchanged" | "busy" | "failed";
  trigger: SyncTrigger;
  durationMs: number;
  commit: string | null;
  result?: ImportResult;
  error?: { code: string; message: string };
  /** A failed outcome that only re-checked the head of a commit already known to fail (nothing fetched, not audited). */
  knownFailure?: boolean;
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

  const token = repo.syncLeaseToken;
  let outcome: SyncOutcome;
  try {
    outcome = await syncLeased(env, scope, repo, token, opts, started);
  } catch (err) {
    const error = describe(err);
    if (!(err instanceof GitError) && !(err instanceof AppError) && !(err instanceof LeaseLostError)) {
      console.error(`sync ${scope.slug}/${repo.name} failed:`, err instanceof Error ? (err.stack ?? err.message) : String(err));
    }
    if (!(err instanceof LeaseLostError)) {
      // A hard limit: remember the head, and re-check only the head until it moves. Any
      // other failure (the remote down, …) keeps what was remembered.
      const limitCommit = isLimitError(err) ? (err.commit ?? null) : null;
      const failedCommit = limitCommit ?? repo.failedCommit;
      const retryMs = limitCommit ? repo.syncIntervalSeconds * 1000 : Math.max(MIN_RETRY_MS, repo.syncIntervalSeconds * 1000);
      const message = limitCommit
        ? `${error.message} (commit ${limitCommit.slice(0, 12)} is not fetched again until the branch moves; POST /repositories/${repo.id}/sync?force=true retries it)`
        : error.message;
      error.message = message;
      const recorded = await markRepositoryFailed(d, scope, repo.id, token, `${error.code}: ${message}`, retryMs, failedCommit).catch((e: unknown) => {
        console.error(`sync ${repo.id}: could not record the failure: ${String(e)}`);
        return true;
      });
      if (!recorded) Object.assign(error, describe(new LeaseLostError()));
    }
    outcome = { status: "failed", trigger: opts.trigger, durationMs: Date.now() - started, commit: repo.lastCommit, error };
  }

  // Unchanged checks and re-checks of a known failure are frequent (every sweep) and say nothing new: not audited.
  if (outcome.status !== "unchanged" && !outcome.knownFailure) {
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

async function syncLeased(env: Env, scope: OrgScope, repo: RepositoryRow, token: string, opts: SyncOptions, started: number): Promise<SyncOutcome> {
  const d = dbOf(env);
  if (repo.gitUrl.startsWith(SEED_URL_PREFIX)) {
    throw new AppError("UNPROCESSABLE", "this repository was created by the local seed and has no git remote to sync from");
  }
  const url = validateGitUrl(repo.gitUrl, { allowPrivateNetwork: !config(env).production });
  const remote: GitRemote = { url: url.href, branch: repo.branch };
  if (repo.credentialSecret) {
    const credential = await readCredential(d, env, scope.orgId, repo.credentialSecret);
    if (credential === null) throw new AppError("UNPROCESSABLE", `the credential secret '${repo.credentialSecret}' does not exist in this org`);
    remote.credential = credential;
  }

  const head = await remoteHead(remote, { signal: AbortSignal.timeout(REMOTE_TIMEOUT_MS) });
  if (head === repo.lastCommit && !opts.force) {
    if (!(await markRepositoryUnchanged(d, scope, repo.id, token, repo.syncIntervalSeconds))) throw new LeaseLostError();
    return { status: "unchanged", trigger: opts.trigger, durationMs: Date.now() - started, commit: head };
  }
  if (head === repo.failedCommit && !opts.force) {
    // Fetching it again would hit the same limit: keep the recorded error, check again later.
    const error = recordedError(repo.lastError);
    if (!(await markRepositoryFailed(d, scope, repo.id, token, repo.lastError ?? `${error.code}: ${error.message}`, repo.syncIntervalSeconds * 1000, head))) {
      throw new LeaseLostError();
    }
    return { status: "failed", trigger: opts.trigger, durationMs: Date.now() - started, commit: repo.lastCommit, error, knownFailure: true };
  }
  const tree = await fetchTree(remote, { commit: head, signal: AbortSignal.timeout(REMOTE_TIMEOUT_MS) });
  const result = await importSnapshot(d, env.SNAPSHOTS, scope, repo, tree.commit, tree.files, tree.skipped, {
    leaseToken: token,
    urlPolicy: { allowPrivateNetwork: !config(env).production },
  });
  return { status: "synced", trigger: opts.trigger, durationMs: Date.now() - started, commit: tree.commit, result };
}

/** `code: message` as `markRepositoryFailed` stored it. */
function recordedError(lastError: string | null): { code: string; message: string } {
  const m = /^([a-z_]+): ([\s\S]*)$/.exec(lastError ?? "");
  return m ? { code: m[1]!, message: m[2]! } : { code: "too_large", message: lastError ?? "this commit hit a sync limit" };
}

function describe(err: unknown): { code: string; message: string } {
  if (err instanceof LeaseLostError) return { code: "lease_lost", message: err.message };
  if (err instanceof GitError) return { code: err.code, message: err.message };
  if (err instanceof AppError) return { code: err.code.toLowerCase(), message: err.message };
  return { code: "internal", message: "internal error during sync" };
}
