/**
 * The org's registry of MCP servers (see docs/agents.md, "MCP servers"):
 *   GET    /mcp-servers          list
 *   GET    /mcp-servers/{name}   one
 *   PUT    /mcp-servers/{name}   { url, headers?: { Header: SECRET_NAME }, bearerSecret?, tools?, requireApproval?, timeoutMs?, description? }: create or replace
 *   PATCH  /mcp-servers/{name}   the same fields, each optional: change those given
 *   DELETE /mcp-servers/{name}
 * Agents name a registered server in their frontmatter (`mcpServers: { name: registered }`).
 * Header values are org secret names, never values. Naming a secret needs `use` on
 * `/secrets/{name}`, and so does pointing a server that carries secrets at another URL.
 * The URL follows the outbound URL policy (in production, https to a public host); every
 * secret still goes only to the hosts it allows, checked when a call is made.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { auditRequest } from "../audit/http";
import { authorize } from "../auth/authorize";
import { config } from "../config";
import { db } from "../db/client";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { jsonBody } from "../http/body";
import { forgetMcpRegistry } from "../mcp";
import { deleteMcpServer, getMcpServer, listMcpServers, putMcpServer, secretsOf, validateMcpServer, type McpServerInput, type RegisteredMcpServer } from "../mcp/registry";
import { outboundUrlProblem } from "../net/url-policy";
import { authorizeCredentialUse } from "./credentials";

const PutBody = z
  .object({
    url: z.string().min(1).max(2048),
    headers: z.record(z.string(), z.string()).optional(),
    bearerSecret: z.string().nullable().optional(),
    tools: z.array(z.string()).nullable().optional(),
    requireApproval: z.array(z.string()).optional(),
    timeoutMs: z.number().int().nullable().optional(),
    description: z.string().max(2000).optional(),
  })
  .strict();
const PatchBody = PutBody.partial().strict();

export const mcpServerRoutes = new Hono<AppEnv>();

const notFound = () => new AppError("NOT_FOUND", "MCP server not found");

function checkUrl(c: Context<AppEnv>, raw: string): void {
  const problem = outboundUrlProblem(raw, { allowPrivateNetwork: !config(c.env).production });
  if (problem) throw new AppError("BAD_REQUEST", `url: ${problem}`);
}

/** What the audit trail keeps of an entry: names only (header values are secret names anyway). */
function auditInput(e: McpServerInput) {
  return { url: e.url, headers: e.headers ?? {}, bearerSecret: e.bearerSecret ?? null, tools: e.tools ?? null, requireApproval: e.requireApproval ?? [], timeoutMs: e.timeoutMs ?? null };
}

/**
 * The `use` checks of a write: every secret the new entry names that the old one did not,
 * and every secret at all when the URL changes (the secrets would go somewhere new).
 */
async function authorizeSecrets(c: Context<AppEnv>, before: RegisteredMcpServer | null, after: McpServerInput): Promise<void> {
  const old = new Set(before ? secretsOf(before) : []);
  const moved = !before || before.url !== after.url;
  for (const secret of secretsOf(after)) {
    const field = after.bearerSecret === secret ? "bearerSecret" : "headers";
    if (moved || !old.has(secret)) await authorizeCredentialUse(c, secret, field);
  }
}

async function write(c: Context<AppEnv>, name: string, entry: McpServerInput, before: RegisteredMcpServer | null, action: string) {
  validateMcpServer(entry);
  checkUrl(c, entry.url);
  await authorizeSecrets(c, before, entry);
  const stored = await putMcpServer(db(c.env), c.get("org"), entry);
  forgetMcpRegistry(c.get("org").orgId);
  auditRequest(c, { action, resource: `/mcp-servers/${name}`, outcome: "success", input: auditInput(entry) });
  return c.json({ mcpServer: stored });
}

mcpServerRoutes.get("/", async (c) => {
  await authorize(c, "/mcp-servers/*", "read");
  return c.json({ mcpServers: await listMcpServers(db(c.env), c.get("org")) });
});

mcpServerRoutes.get("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/mcp-servers/${name}`, "read");
  const server = await getMcpServer(db(c.env), c.get("org"), name);
  if (!server) throw notFound();
  return c.json({ mcpServer: server });
});

mcpServerRoutes.put("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/mcp-servers/${name}`, "write");
  const body = await jsonBody(c, PutBody);
  const before = await getMcpServer(db(c.env), c.get("org"), name);
  return write(c, name, { name, ...body }, before, "mcp_server.put");
});

mcpServerRoutes.patch("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/mcp-servers/${name}`, "write");
  const body = await jsonBody(c, PatchBody);
  const before = await getMcpServer(db(c.env), c.get("org"), name);
  if (!before) throw notFound();
  const entry: McpServerInput = {
    name,
    url: body.url ?? before.url,
    headers: body.headers ?? before.headers,
    bearerSecret: body.bearerSecret !== undefined ? body.bearerSecret : before.bearerSecret,
    tools: body.tools !== undefined ? body.tools : before.tools,
    requireApproval: body.requireApproval ?? before.requireApproval,
    timeoutMs: body.timeoutMs !== undefined ? body.timeoutMs : before.timeoutMs,
    description: body.description ?? before.description,
  };
  return write(c, name, entry, before, "mcp_server.patch");
});

mcpServerRoutes.delete("/:name", async (c) => {
  const name = c.req.param("name");
  await authorize(c, `/mcp-servers/${name}`, "write");
  if (!(await deleteMcpServer(db(c.env), c.get("org"), name))) throw notFound();
  forgetMcpRegistry(c.get("org").orgId);
  auditRequest(c, { action: "mcp_server.delete", resource: `/mcp-servers/${name}`, outcome: "success" });
  return c.body(null, 204);
});
