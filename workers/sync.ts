/**
 * The cron trigger: the repository sync sweep. Each tick claims the repositories whose
 * next sync time has come (pushing that time forward in the same statement, so
 * overlapping ticks never queue one twice) and queues a sync job for each; the queue
 * consumer does the work, concurrently. It never throws: a failed sweep is retried by the
 * next tick.
 */
import { db } from "../src/db/client";
import { claimDueRepositories } from "../src/db/repositories";
import type { SyncJob } from "../src/runs/types";

/** Repositories queued per tick; the rest wait for the next one. */
export const SWEEP_LIMIT = 500;
/** A queued repository is not claimed again before this, even if its sync never ran. */
const CLAIM_MS = 10 * 60_000;
const SEND_BATCH = 100;

export async function sweepRepositories(env: Env): Promise<number> {
  const due = await claimDueRepositories(db(env), SWEEP_LIMIT, CLAIM_MS);
  for (let i = 0; i < due.length; i += SEND_BATCH) {
    await env.JOBS.sendBatch(
      due.slice(i, i + SEND_BATCH).map((r) => ({ body: { kind: "sync", orgId: r.orgId, repositoryId: r.id, trigger: "schedule" } satisfies SyncJob })),
    );
  }
  return due.length;
}

export async function handleScheduled(_controller: ScheduledController, env: Env): Promise<void> {
  try {
    const queued = await sweepRepositories(env);
    if (queued > 0) console.log(`sync sweep: queued ${queued} repositories`);
  } catch (err) {
    console.error("sync sweep failed:", err instanceof Error ? err.message : String(err));
  }
}
