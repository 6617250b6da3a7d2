/**
 * Errors of the git layer. Every failure of `remoteHead`, `fetchTree` and `validateGitUrl`
 * is a `GitError` with one of these codes and a message fit to show an org admin (it never
 * contains a token):
 *
 * - `invalid_url`      the URL was refused before any request (scheme, credentials, private host, length)
 * - `unreachable`      no answer, or the host could not serve the request right now: DNS failure,
 *                      connection refused/reset, timeout or abort, HTTP 408/429/5xx. Worth retrying later.
 * - `auth`             HTTP 401/403: credentials missing or rejected
 * - `not_found`        HTTP 404/410 on the ref advertisement: no such repository (or the token cannot see it)
 * - `not_git`          an answer that is not git smart-HTTP (e.g. a 200 HTML page, a "dumb" HTTP server)
 * - `branch_not_found` the repository has no `refs/heads/<branch>` (the message lists the branches it has)
 * - `too_large`        the download or the files kept exceed `maxTotalBytes`
 * - `protocol`         anything else the server did that a git client cannot work with
 *                      (unexpected HTTP status, malformed pack, …)
 */
export type GitErrorCode =
  | "unreachable"
  | "auth"
  | "not_found"
  | "branch_not_found"
  | "not_git"
  | "too_large"
  | "invalid_url"
  | "protocol";

export class GitError extends Error {
  readonly code: GitErrorCode;
  /** HTTP status of the answer that caused the error, when there was one. */
  readonly status: number | undefined;
  constructor(code: GitErrorCode, message: string, options?: { status?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GitError";
    this.code = code;
    this.status = options?.status;
  }
}
