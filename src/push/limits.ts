/**
 * How long a task's push object keeps what it recorded, and how much.
 *
 * Once the task has ended and every config's final update was delivered or given up (or the
 * task has no config left), the object arms its alarm for `PUSH_RETENTION_MS` later and then
 * deletes all its storage (queue, cursors, delivery records) and the finished task's configs:
 * `GET /runs/{id}/push-deliveries` shows the records until then. `PUSH_RETENTION_MS` in the
 * Worker's environment overrides the period (a positive number of milliseconds).
 */
export const PUSH_RETENTION_MS = 7 * 24 * 3_600_000;

/** Delivery records kept per config while the object lives: the newest ones (older ones are deleted as new ones come). */
export const MAX_RECORDS_PER_CONFIG = 1_000;

/** The retention period in effect for `env`. */
export function pushRetentionMs(env: { PUSH_RETENTION_MS?: string }): number {
  const v = Number(env.PUSH_RETENTION_MS);
  return Number.isFinite(v) && v > 0 ? v : PUSH_RETENTION_MS;
}
