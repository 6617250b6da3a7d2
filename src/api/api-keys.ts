/**
 * API keys of the org, for machine clients:
 *   GET    /api-keys        list (never the key or its hash); flags keys that never expire
 *   POST   /api-keys        create; the key is in this response only
 *   DELETE /api-keys/{id}   revoke
 * A key can hold only grants its creator holds, so no one mints more than they have; and
 * it keeps following its creator (src/auth/api-keys.ts): it stops when they leave the org
 * and loses what they lose.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { createApiKey, listApiKeys, revokeApiKey } from "../auth/api-keys";
import { authorize, isAllowed } from "../auth/authorize";
import { auditRequest } from "../audit/http";
import { ACTIONS, grantSchema, type Grant } from "../authz/match";
import { db } from "../db/client";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { jsonBody } from "../http/body";

const CreateKey = z.object({
  name: z.string().trim().min(1).max(100),
  permissions: z.array(grantSchema).min(1).max(50),
  expiresInDays: z.number().int().positive().max(3650).optional(),
});

const KEY_ID = /^[0-9a-f-]{36}$/;

export const apiKeyRoutes = new Hono<AppEnv>();

apiKeyRoutes.get("/", async (c) => {
  await authorize(c, "/api-keys/*", "read");
  const keys = await listApiKeys(db(c.env), c.get("org"));
  const forever = keys.filter((k) => k.neverExpires && k.revokedAt === null);
  const warnings = forever.length
    ? [
        {
          code: "API_KEYS_NEVER_EXPIRE",
          message: `${forever.length} active API key${forever.length === 1 ? "" : "s"} never expire${forever.length === 1 ? "s" : ""}; create keys with expiresInDays and revoke the old ones`,
          keyIds: forever.map((k) => k.id),
        },
      ]
    : [];
  return c.json({ apiKeys: keys, warnings });
});

apiKeyRoutes.post("/", async (c) => {
  await authorize(c, "/api-keys/*", "admin");
  const body = await jsonBody(c, CreateKey);
  for (const grant of body.permissions) {
    if (!(await holdsGrant(c, grant))) {
      auditRequest(c, { action: "apikey.create", resource: "/api-keys", outcome: "denied", input: { name: body.name, permissions: body.permissions } });
      throw new AppError("FORBIDDEN", `cannot grant ${grant.action} on ${grant.resource}: the caller does not hold it`);
    }
  }
  const auth = c.get("auth");
  const key = await createApiKey(db(c.env), c.get("org"), {
    name: body.name,
    permissions: body.permissions,
    createdBy: auth.kind === "user" ? auth.userId : auth.createdBy,
    expiresAt: body.expiresInDays ? Date.now() + body.expiresInDays * 86_400_000 : null,
  });
  auditRequest(c, {
    action: "apikey.create",
    resource: `/api-keys/${key.id}`,
    outcome: "success",
    input: { name: key.name, permissions: key.permissions, expiresAt: key.expiresAt },
    output: { id: key.id, prefix: key.prefix },
  });
  return c.json({ apiKey: key }, 201);
});

apiKeyRoutes.delete("/:id", async (c) => {
  const id = c.req.param("id");
  await authorize(c, `/api-keys/${id}`, "admin");
  const revoked = KEY_ID.test(id) && (await revokeApiKey(db(c.env), c.get("org"), id));
  if (!revoked) throw new AppError("NOT_FOUND", "API key not found");
  auditRequest(c, { action: "apikey.revoke", resource: `/api-keys/${id}`, outcome: "success" });
  return c.body(null, 204);
});

/** Whether the caller holds `grant` (every action, for `*`). */
async function holdsGrant(c: Context<AppEnv>, grant: Grant): Promise<boolean> {
  const actions = grant.action === "*" ? ACTIONS : [grant.action];
  for (const action of actions) if (!(await isAllowed(c, grant.resource, action))) return false;
  return true;
}
