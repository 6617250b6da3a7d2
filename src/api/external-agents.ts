/**
 * The org's registry of external A2A agents, the last step of agent name resolution
 * (see src/agents/resolve.ts):
 *   GET    /external-agents          list
 *   GET    /external-agents/{name}   one
 *   PUT    /external-agents/{name}   { "url", "credentialSecret"?, "description"? }: create or replace
 *   DELETE /external-agents/{name}
 * The bearer token sent to the agent lives in the named org secret, never here, and goes
 * only to the hosts the secret allows. Naming a secret needs `use` on `/secrets/{name}`, and
 * so does moving an agent that carries one to another URL. The URL follows the outbound
 * URL policy (src/net/url-policy.ts): in production, https to a public host.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { auditRequest } from "../audit/http";
import { authorize } from "../auth/authorize";
import { config } from "../config";
import { db } from "../db/client";
import { deleteExternalAgent, getExternalAgent, listExternalAgents, putExternalAgent } from "../db/aliases";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { jsonBody } from "../http/body";
import { outboundUrlProblem } from "../net/url-policy";
import { authorizeCredentialUse } from "./credentials";

const PutExternalAgent = z
  .object({
    url: z.string().min(1).max(2048),
    credentialSecret: z.string().nullable().optional(),
    description: z.string().max(2000).optional(),
  })
  .strict();

export const externalAgentRoutes = new Hono<AppEnv>();

const notFound = () => new AppError("NOT_FOUND", "External agent not found");

function checkUrl(c: Context<AppEnv>, raw: string): void {
  const problem = outboundUrlProblem(raw, { allowPrivateNetwork: !config(c.env).production });
  if (problem) throw new AppError("BAD_REQUEST", `url: ${problem}`);
}

externalAgentRoutes.get("/", async (c) => {
  await authorize(c, "/external-agents/*", "read");
  return c.json({ externalAgents: await listExternalAgents(db(c.env), c.get("org")) });
});

externalAgentRoutes.get("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/external-agents/${name}`, "read");
  const agent = await getExternalAgent(db(c.env), c.get("org"), name);
  if (!agent) throw notFound();
  return c.json({ externalAgent: agent });
});

externalAgentRoutes.put("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/external-agents/${name}`, "write");
  const body = await jsonBody(c, PutExternalAgent);
  checkUrl(c, body.url);
  const credential = body.credentialSecret ?? null;
  if (credential) {
    // Naming the secret, or pointing an agent that carries it somewhere new, is a use of it.
    const before = await getExternalAgent(db(c.env), c.get("org"), name);
    if (!before || before.credentialSecret !== credential || before.url !== body.url) await authorizeCredentialUse(c, credential);
  }
  const stored = await putExternalAgent(db(c.env), c.get("org"), {
    name,
    url: body.url,
    credentialSecret: body.credentialSecret ?? null,
    ...(body.description !== undefined ? { description: body.description } : {}),
  });
  auditRequest(c, { action: "external_agent.put", resource: `/external-agents/${name}`, outcome: "success", input: { url: body.url, credentialSecret: body.credentialSecret ?? null } });
  return c.json({ externalAgent: stored });
});

externalAgentRoutes.delete("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/external-agents/${name}`, "write");
  if (!(await deleteExternalAgent(db(c.env), c.get("org"), name))) throw notFound();
  auditRequest(c, { action: "external_agent.delete", resource: `/external-agents/${name}`, outcome: "success" });
  return c.body(null, 204);
});
