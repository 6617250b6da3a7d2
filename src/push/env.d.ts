// Optional settings of push notifications (src/push/, durable-objects/push.ts).
interface Env {
  /** How long one push POST may take before it counts as failed and is retried (default 10000 ms). */
  PUSH_TIMEOUT_MS?: string;
}
