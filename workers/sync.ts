/**
 * The cron trigger: reserved for the repository sync sweep (git sync lands with the
 * repositories issue). It must never throw: a failed sweep is retried by the next tick.
 */
export async function handleScheduled(_controller: ScheduledController, _env: Env): Promise<void> {
  // No repositories are synced from git yet; snapshots come from the local seed.
}
