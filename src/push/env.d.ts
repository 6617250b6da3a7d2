// Optional settings of push notifications (src/push/, durable-objects/push.ts).
interface Env {
  /** How long one push POST may take before it counts as failed and is retried (default 10000 ms). */
  PUSH_TIMEOUT_MS?: string;
  /** How long a finished task's push records are kept before its push object deletes them (default 7 days; src/push/limits.ts). */
  PUSH_RETENTION_MS?: string;
}
