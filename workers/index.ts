/** Shaman's one Worker: fetch = gateway, queue = step executor, scheduled = repository sync. */
import type { Job } from "../src/runs/types";
import { handleJobs } from "./executor";
import { createApp } from "./gateway";
import { handleScheduled } from "./sync";

export { BudgetObject } from "../durable-objects/budget";
export { PushObject } from "../durable-objects/push";
export { RateLimiter } from "../durable-objects/rate-limiter";
export { RunObject } from "../durable-objects/run-object";

const app = createApp();

export default {
  fetch: app.fetch,
  queue: (batch, env, _ctx) => handleJobs(batch, env),
  scheduled: (controller, env, ctx) => ctx.waitUntil(handleScheduled(controller, env)),
} satisfies ExportedHandler<Env, Job>;
