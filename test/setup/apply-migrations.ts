import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";

// The same SQL files wrangler applies, applied to the test D1 (idempotent).
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
