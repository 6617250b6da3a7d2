/**
 * Discovery of an org's exposed agents (moved out of routes.ts):
 *   GET  /a2a/agents/{name}/.well-known/agent-card.json     the agent's card
 *   GET  /a2a/agents                                        the org's exposed agents
 * `{name}` is `Agent` or `repo-name/Agent`. A private or missing agent answers 404 alike.
 */
import { Hono, type Context } from "hono";
import { isAllowed } from "../auth/authorize";
import { findAgent, listExposedAgents, type AgentIndexEntry } from "../db/agents";
import { db } from "../db/client";
import { auditRequest } from "../audit/http";
import type { AppEnv } from "../http/app-env";
import { orgBaseUrl } from "../http/org";

export const cardRoutes = new Hono<AppEnv>();

cardRoutes.get("/agents", async (c) => {
  const org = c.get("org");
  const base = orgBaseUrl(c);
  const all = await listExposedAgents(db(c.env), org);
  const visible = await Promise.all(all.map((a) => isAllowed(c, `/agents/${qualifiedName(a)}`, "read")));
  const agents = all.filter((_, i) => visible[i]);
  return c.json({
    agents: agents.map((a) => ({
      name: qualifiedName(a),
      description: a.description,
      url: `${base}/a2a/agents/${qualifiedName(a)}`,
      agentCard: `${base}/a2a/agents/${qualifiedName(a)}/.well-known/agent-card.json`,
    })),
  });
});

cardRoutes.get("/agents/:name/.well-known/agent-card.json", (c) => agentCard(c, c.req.param("name")));
cardRoutes.get("/agents/:repo/:name/.well-known/agent-card.json", (c) => agentCard(c, `${c.req.param("repo")}/${c.req.param("name")}`));

function qualifiedName(a: AgentIndexEntry): string {
  return a.isRoot ? a.name : `${a.repositoryName}/${a.name}`;
}

async function exposedAgent(c: Context<AppEnv>, name: string): Promise<AgentIndexEntry | null> {
  const agent = await findAgent(db(c.env), c.get("org"), name);
  return agent?.exposed ? agent : null;
}

async function agentCard(c: Context<AppEnv>, name: string) {
  const agent = await exposedAgent(c, name);
  const missing = () => c.json(notFoundProblem(c, "Agent"), 404, { "content-type": "application/problem+json" });
  if (!agent) return missing();
  // An agent the caller may not read answers exactly like a missing one (no existence oracle).
  if (!(await isAllowed(c, `/agents/${qualifiedName(agent)}`, "read"))) {
    auditRequest(c, { action: "auth.denied", resource: `/agents/${qualifiedName(agent)}`, outcome: "denied", input: { action: "read" } });
    return missing();
  }
  const url = `${orgBaseUrl(c)}/a2a/agents/${qualifiedName(agent)}`;
  const extra = agent.card ?? {};
  const card = {
    name: qualifiedName(agent),
    description: agent.description || `${agent.name} agent`,
    version: agent.version ?? "0.0.0",
    provider: { organization: c.get("org").name, url: orgBaseUrl(c) },
    capabilities: { streaming: false, pushNotifications: false, extensions: [] },
    defaultInputModes: ["text/plain", "application/json"],
    defaultOutputModes: ["text/plain"],
    skills: [
      {
        id: agent.name,
        name: agent.name,
        description: agent.description || `${agent.name} agent`,
        tags: agent.tags,
        examples: [],
      },
    ],
    supportedInterfaces: [{ url, protocolBinding: "JSONRPC", protocolVersion: "1.0" }],
    ...extra,
  };
  // The card needs a credential: private caches only (authenticate() enforces it as well).
  return c.json(card, 200, { "cache-control": "private, max-age=30" });
}

function notFoundProblem(c: Context<AppEnv>, what: string) {
  return {
    type: "urn:shaman:error:not_found",
    title: "Not Found",
    status: 404,
    detail: `${what} not found`,
    code: "NOT_FOUND",
    requestId: c.get("requestId"),
  };
}
