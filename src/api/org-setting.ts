/**
 * Routes for one org setting kept in `orgs.settings.<key>` (discovery, CORS, …):
 *   GET  /settings/<key>   `{ <key>: value }`, read fresh from D1 (needs `read` on the resource)
 *   PUT  /settings/<key>   replaces it with the validated body (needs `write`), audited as
 *                          `settings.<key>.put`; this isolate sees it at once, others within
 *                          the org cache's TTL (src/db/orgs.ts).
 */
import { eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import type { z } from "zod";
import { auditRequest } from "../audit/http";
import { authorize } from "../auth/authorize";
import { db } from "../db/client";
import { clearOrgCache } from "../db/orgs";
import { orgs } from "../db/schema";
import type { AppEnv } from "../http/app-env";
import { jsonBody } from "../http/body";

export function orgSettingRoutes<S extends z.ZodType>(opts: {
  key: string;
  schema: S;
  /** The stored value as the API shows it (defaults for anything missing or invalid). */
  from: (raw: unknown) => z.infer<S>;
  /** A last touch before the value is stored (e.g. dropping duplicates). */
  normalise?: (value: z.infer<S>) => z.infer<S>;
}): Hono<AppEnv> {
  const { key, schema, from, normalise = (v) => v } = opts;
  const resource = `/settings/${key}`;
  const routes = new Hono<AppEnv>();
  routes.get("/", async (c) => {
    await authorize(c, resource, "read");
    // Read fresh: the scope's copy may be a few seconds old in this isolate.
    const row = await db(c.env).select({ settings: orgs.settings }).from(orgs).where(eq(orgs.id, c.get("org").orgId)).get();
    return c.json({ [key]: from((row?.settings as Record<string, unknown> | undefined)?.[key]) });
  });
  routes.put("/", async (c) => {
    await authorize(c, resource, "write");
    const value = normalise(await jsonBody(c, schema));
    await db(c.env)
      .update(orgs)
      .set({ settings: sql`json_set(${orgs.settings}, ${`$.${key}`}, json(${JSON.stringify(value)}))`, updatedAt: sql`(unixepoch('subsec') * 1000)` })
      .where(eq(orgs.id, c.get("org").orgId));
    clearOrgCache();
    auditRequest(c, { action: `settings.${key}.put`, resource, outcome: "success", input: value });
    return c.json({ [key]: value });
  });
  return routes;
}
