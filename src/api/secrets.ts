/**
 * Org secrets (provider keys, MCP tokens, git credentials, external agent tokens):
 *   GET    /secrets          names, allowed hosts and times, never values
 *   PUT    /secrets/{name}   create or replace: { "value": "…", "allowedHosts"?: ["github.com", "*.example.com"] }
 *   PATCH  /secrets/{name}   change where it may be sent: { "allowedHosts": [...] }
 *   DELETE /secrets/{name}
 * Values are write-only: no route returns one; only the executor and sync decrypt.
 * `allowedHosts` are the only hosts the secret is ever sent to as an outbound credential
 * (src/net/outbound.ts); a secret without them is sent nowhere. A PUT without
 * `allowedHosts` keeps an existing secret's list.
 */
import { Hono } from "hono";
import { z } from "zod";
import { authorize } from "../auth/authorize";
import { auditRequest } from "../audit/http";
import { db } from "../db/client";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { jsonBody } from "../http/body";
import { deleteSecret, listSecrets, putSecret, setSecretHosts } from "../secrets/store";

const hosts = z.array(z.string().max(260)).max(32);
const PutSecret = z.object({ value: z.string().min(1), allowedHosts: hosts.optional() }).strict();
const PatchSecret = z.object({ allowedHosts: hosts }).strict();

export const secretRoutes = new Hono<AppEnv>();

secretRoutes.get("/", async (c) => {
  await authorize(c, "/secrets/*", "read");
  return c.json({ secrets: await listSecrets(db(c.env), c.get("org")) });
});

secretRoutes.put("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/secrets/${name}`, "write");
  const { value, allowedHosts } = await jsonBody(c, PutSecret);
  const info = await putSecret(db(c.env), c.env, c.get("org"), name, value, allowedHosts);
  auditRequest(c, { action: "secret.put", resource: `/secrets/${name}`, outcome: "success", input: { allowedHosts: info.allowedHosts } });
  return c.json({ secret: info });
});

secretRoutes.patch("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/secrets/${name}`, "write");
  const { allowedHosts } = await jsonBody(c, PatchSecret);
  const info = await setSecretHosts(db(c.env), c.get("org"), name, allowedHosts);
  if (!info) throw new AppError("NOT_FOUND", "Secret not found");
  auditRequest(c, { action: "secret.update", resource: `/secrets/${name}`, outcome: "success", input: { allowedHosts: info.allowedHosts } });
  return c.json({ secret: info });
});

secretRoutes.delete("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/secrets/${name}`, "write");
  if (!(await deleteSecret(db(c.env), c.get("org"), name))) throw new AppError("NOT_FOUND", "Secret not found");
  auditRequest(c, { action: "secret.delete", resource: `/secrets/${name}`, outcome: "success" });
  return c.body(null, 204);
});
