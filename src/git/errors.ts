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
 * - `too_large`        the download, the files kept, everything unpacked or one object exceeds its limit
 * - `too_many_files`   more files, or tree entries visited, than the walk allows
 * - `too_deep`         folders nested deeper than the walk allows
 * - `credential_refused` the token was not sent: the host is not in the secret's `allowedHosts`,
 *                      or the server redirected a request carrying it to another origin
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
  | "too_many_files"
  | "too_deep"
  | "credential_refused"
  | "invalid_url"
  | "protocol";

export class GitError extends Error {
  readonly code: GitErrorCode;
  /** HTTP status of the answer that caused the error, when there was one. */
  readonly status: number | undefined;
  /** For a limit error (`too_large`, `too_many_files`, `too_deep`): the commit that hit it. */
  readonly commit: string | undefined;
  constructor(code: GitErrorCode, message: string, options?: { status?: number; commit?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GitError";
    this.code = code;
    this.status = options?.status;
    this.commit = options?.commit;
  }
}
