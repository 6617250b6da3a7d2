/**
 * Org secrets (provider keys, MCP tokens, git credentials, external agent tokens):
 *   GET    /secrets          names and times, never values
 *   PUT    /secrets/{name}   create or replace: { "value": "…" }
 *   DELETE /secrets/{name}
 * Values are write-only: no route returns one; only the executor and sync decrypt.
 */
import { Hono } from "hono";
import { z } from "zod";
import { authorize } from "../auth/authorize";
import { auditRequest } from "../audit/http";
import { db } from "../db/client";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { jsonBody } from "../http/body";
import { deleteSecret, listSecrets, putSecret } from "../secrets/store";

const PutSecret = z.object({ value: z.string().min(1) }).strict();

export const secretRoutes = new Hono<AppEnv>();

secretRoutes.get("/", async (c) => {
  await authorize(c, "/secrets/*", "read");
  return c.json({ secrets: await listSecrets(db(c.env), c.get("org")) });
});

secretRoutes.put("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/secrets/${name}`, "write");
  const { value } = await jsonBody(c, PutSecret);
  const info = await putSecret(db(c.env), c.env, c.get("org"), name, value);
  auditRequest(c, { action: "secret.put", resource: `/secrets/${name}`, outcome: "success" });
  return c.json({ secret: info });
});

secretRoutes.delete("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/secrets/${name}`, "write");
  if (!(await deleteSecret(db(c.env), c.get("org"), name))) throw new AppError("NOT_FOUND", "Secret not found");
  auditRequest(c, { action: "secret.delete", resource: `/secrets/${name}`, outcome: "success" });
  return c.body(null, 204);
});
