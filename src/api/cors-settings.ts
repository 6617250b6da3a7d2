/**
 * Which browser origins may call the org's API (src/http/cors.ts), `settings.cors`:
 *   GET /settings/cors
 *   PUT /settings/cors  { allowedOrigins: ["https://dash.example.com", …] | ["*"] }
 * PUT replaces the whole setting and is audited.
 */
import { eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import { auditRequest } from "../audit/http";
import { authorize } from "../auth/authorize";
import { db } from "../db/client";
import { clearOrgCache } from "../db/orgs";
import { orgs } from "../db/schema";
import type { AppEnv } from "../http/app-env";
import { jsonBody } from "../http/body";
import { CorsSchema, corsSettingsFrom } from "../http/cors";

export const corsSettingsRoutes = new Hono<AppEnv>();

corsSettingsRoutes.get("/", async (c) => {
  await authorize(c, "/settings/cors", "read");
  // Read fresh: the scope's copy may be a few seconds old in this isolate.
  const row = await db(c.env).select({ settings: orgs.settings }).from(orgs).where(eq(orgs.id, c.get("org").orgId)).get();
  return c.json({ cors: corsSettingsFrom((row?.settings as { cors?: unknown } | undefined)?.cors) });
});

corsSettingsRoutes.put("/", async (c) => {
  await authorize(c, "/settings/cors", "write");
  const cors = await jsonBody(c, CorsSchema);
  cors.allowedOrigins = [...new Set(cors.allowedOrigins)];
  await db(c.env)
    .update(orgs)
    .set({ settings: sql`json_set(${orgs.settings}, '$.cors', json(${JSON.stringify(cors)}))`, updatedAt: sql`(unixepoch('subsec') * 1000)` })
    .where(eq(orgs.id, c.get("org").orgId));
  // This isolate sees it at once; others within the org cache's TTL (src/db/orgs.ts).
  clearOrgCache();
  auditRequest(c, { action: "settings.cors.put", resource: "/settings/cors", outcome: "success", input: cors });
  return c.json({ cors });
});
