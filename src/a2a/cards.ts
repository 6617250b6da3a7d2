/**
 * Discovery: how a client that knows nothing but a URL finds an org's agents.
 *   GET /.well-known/agent-card.json                        the card of the org's default agent
 *   GET /.well-known/agents.json                            the org's directory of exposed agents
 *   GET /a2a/agents                                         the same directory
 *   GET /a2a/agents/{name}/.well-known/agent-card.json      an exposed agent's public card
 * `{name}` is `Agent` or `repo-name/Agent`.
 *
 * These routes are mounted BEFORE `authenticate()` (after the per-client rate limit):
 * - with no credential, an exposed agent's card and the directory are public (cacheable by
 *   shared caches for a minute, `Cache-Control: public`);
 * - with a credential (Authorization, X-Session-Token or the Kratos cookie), or always when
 *   the org sets `settings.discovery.requireCredentialForCards`, the request is
 *   authenticated and rate limited like any org route, and answered for that caller (an
 *   agent the caller may not read is missing; private caches only).
 * A private (not exposed) agent is missing in every way: the same 404 as an agent that
 * does not exist, absent from the directory, never the root card.
 *
 * Cards are v1.0 (protobuf JSON names: `supportedInterfaces`, `securityRequirements`) for
 * `A2A-Version: 1.0`; without the header (or with 0.3) a v0.3 card (`url`,
 * `preferredTransport`, `security`, …) that also embeds the v1.0 `supportedInterfaces`, as
 * the SDK's own server does, so old and new clients both find their interface.
 * `extendedAgentCard()` is the card for authenticated callers (GetExtendedAgentCard).
 */
import {
  AgentCard as AgentCardCodec,
  type AgentCard,
  type AgentExtension,
  type AgentInterface,
  type AgentSkill,
  type SecurityRequirement,
  type SecurityScheme,
} from "@a2a-js/sdk";
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { z } from "zod";
import { isAllowed } from "../auth/authorize";
import { authenticate } from "../auth/middleware";
import { findAgent, listExposedAgents, type AgentIndexEntry } from "../db/agents";
import { db } from "../db/client";
import { auditRequest } from "../audit/http";
import { loadAgent } from "../agents/snapshot";
import type { AppEnv } from "../http/app-env";
import { orgBaseUrl } from "../http/org";
import { rateLimit } from "../http/rate-limit";
import { toHex } from "../util/bytes";
import { discoverySettingsOf } from "../api/discovery-settings";

export type CardDialect = "1.0" | "0.3";

/** Seconds a shared cache may keep a public card or directory. */
export const PUBLIC_MAX_AGE = 60;
/** Seconds a caller's browser may keep a card answered for that caller. */
export const PRIVATE_MAX_AGE = 30;

/** The extension (in the extended card's capabilities) that carries internal details. */
export const AGENT_DETAILS_EXTENSION = "urn:shaman:a2a:extension:agent-details:v1";

export const cardRoutes = new Hono<AppEnv>();

// ---- who may see discovery --------------------------------------------------------------

const KRATOS_COOKIE = /(?:^|;\s*)ory_(?:kratos_)?session[^=]*=/;

/** Whether the request carries anything `authenticate()` would read as a credential. */
function hasCredential(c: Context<AppEnv>): boolean {
  if (c.req.header("authorization") !== undefined || c.req.header("x-session-token") !== undefined) return true;
  const cookie = c.req.header("cookie");
  return cookie !== undefined && KRATOS_COOKIE.test(cookie);
}

const authenticated = authenticate();
const limited = rateLimit();

/**
 * Public unless the caller brings a credential or the org requires one: then the same
 * authentication and per-principal/org rate limit as every other org route.
 */
const discoveryAccess: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (!discoverySettingsOf(c.get("org")).requireCredentialForCards && !hasCredential(c)) return next();
  return authenticated(c, async () => {
    const refused = await limited(c, next);
    if (refused) c.res = refused;
  });
};

/** True when the request went through `authenticate()` (a caller is known). */
function isAuthenticated(c: Context<AppEnv>): boolean {
  return c.get("principal") !== null;
}

/**
 * The exposed agent `name`, or null: private and missing agents are alike; an
 * authenticated caller without `read` on the agent gets null too (and an audit row).
 */
async function visibleAgent(c: Context<AppEnv>, name: string): Promise<AgentIndexEntry | null> {
  const agent = await findAgent(db(c.env), c.get("org"), name);
  if (!agent?.exposed) return null;
  if (isAuthenticated(c) && !(await isAllowed(c, `/agents/${qualifiedName(agent)}`, "read"))) {
    auditRequest(c, { action: "auth.denied", resource: `/agents/${qualifiedName(agent)}`, outcome: "denied", input: { action: "read" } });
    return null;
  }
  return agent;
}

// ---- routes -----------------------------------------------------------------------------

// Browsers on any origin may read public discovery (the answers are the same for everyone):
// a preflight for the headers A2A clients send, answered before any credential is looked at.
// Answers made for an authenticated caller carry no CORS headers.
const CORS_PUBLIC = { "access-control-allow-origin": "*", "access-control-expose-headers": "ETag" };
const preflight = (c: Context<AppEnv>) =>
  c.body(null, 204, {
    ...CORS_PUBLIC,
    "access-control-allow-methods": "GET",
    "access-control-allow-headers": "A2A-Version, If-None-Match",
    "access-control-max-age": "600",
  });
for (const path of ["/a2a/agents", "/.well-known/agents.json", "/a2a/agents/:name/.well-known/agent-card.json", "/a2a/agents/:repo/:name/.well-known/agent-card.json", "/.well-known/agent-card.json"]) {
  cardRoutes.options(path, preflight);
}

cardRoutes.get("/a2a/agents", discoveryAccess, (c) => directory(c));
cardRoutes.get("/.well-known/agents.json", discoveryAccess, (c) => directory(c));
cardRoutes.get("/a2a/agents/:name/.well-known/agent-card.json", discoveryAccess, (c) => agentCard(c, c.req.param("name")));
cardRoutes.get("/a2a/agents/:repo/:name/.well-known/agent-card.json", discoveryAccess, (c) => agentCard(c, `${c.req.param("repo")}/${c.req.param("name")}`));
cardRoutes.get("/.well-known/agent-card.json", discoveryAccess, (c) => {
  const name = discoverySettingsOf(c.get("org")).defaultAgent;
  return name ? agentCard(c, name) : missing(c);
});

async function directory(c: Context<AppEnv>): Promise<Response> {
  const org = c.get("org");
  const base = orgBaseUrl(c);
  const all = await listExposedAgents(db(c.env), org);
  const visible = isAuthenticated(c) ? await Promise.all(all.map((a) => isAllowed(c, `/agents/${qualifiedName(a)}`, "read"))) : all.map(() => true);
  const agents = all.filter((_, i) => visible[i]);
  const defaultName = discoverySettingsOf(org).defaultAgent;
  const named = defaultName ? await findAgent(db(c.env), org, defaultName) : null;
  const defaultAgent = named ? agents.find((a) => a.repositoryId === named.repositoryId && a.name === named.name) : undefined;
  return cacheable(c, {
    agents: agents.map((a) => ({
      name: qualifiedName(a),
      description: a.description,
      url: `${base}/a2a/agents/${qualifiedName(a)}`,
      agentCard: `${base}/a2a/agents/${qualifiedName(a)}/.well-known/agent-card.json`,
    })),
    // Named only when the default agent is one the caller can see.
    ...(defaultAgent ? { defaultAgent: qualifiedName(defaultAgent), agentCard: `${base}/.well-known/agent-card.json` } : {}),
  });
}

async function agentCard(c: Context<AppEnv>, name: string): Promise<Response> {
  const agent = await visibleAgent(c, name);
  if (!agent) return missing(c);
  return cacheable(c, renderCard(publicCard(c, agent), cardDialectOf(c.req.header("a2a-version"))));
}

function missing(c: Context<AppEnv>): Response {
  return c.json(notFoundProblem(c, "Agent"), 404, { "content-type": "application/problem+json" });
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

// ---- caching ----------------------------------------------------------------------------

/** A weak validator of the body: what changes with it (agent, commit, settings, dialect). */
export async function weakEtag(body: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(body));
  return `W/"${toHex(digest).slice(0, 32)}"`;
}

/** RFC 9110 If-None-Match with weak comparison: `*` or any listed tag whose opaque part matches. */
export function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  const opaque = (t: string) => t.trim().replace(/^W\//, "");
  const mine = opaque(etag);
  return header.split(",").some((t) => t.trim() === "*" || opaque(t) === mine);
}

/**
 * The JSON answer with an ETag, a 304 for a matching If-None-Match, and Cache-Control:
 * public for anonymous discovery, private for an answer made for an authenticated caller
 * (authenticate() adds the credential headers to Vary). The dialect header always varies.
 */
async function cacheable(c: Context<AppEnv>, value: unknown): Promise<Response> {
  const body = JSON.stringify(value);
  const etag = await weakEtag(body);
  const headers: Record<string, string> = {
    etag,
    "cache-control": isAuthenticated(c) ? `private, max-age=${PRIVATE_MAX_AGE}` : `public, max-age=${PUBLIC_MAX_AGE}`,
    // The answer depends on the dialect asked for, and on whether (and which) credential came.
    vary: "A2A-Version, Authorization, Cookie, X-Session-Token",
  };
  if (!isAuthenticated(c)) Object.assign(headers, CORS_PUBLIC);
  if (matchesIfNoneMatch(c.req.header("if-none-match"), etag)) return c.body(null, 304, headers);
  return c.body(body, 200, { ...headers, "content-type": "application/json" });
}

// ---- the card ---------------------------------------------------------------------------

export function qualifiedName(a: AgentIndexEntry): string {
  return a.isRoot ? a.name : `${a.repositoryName}/${a.name}`;
}

/** Card dialect of a card request: v1.0 when asked for, else v0.3 (the spec's default without the header). */
export function cardDialectOf(header: string | undefined): CardDialect {
  const v = header?.trim() ?? "";
  return v === "" || /^0\.3(\.\d+)?$/.test(v) ? "0.3" : "1.0";
}

/** How to authenticate: what `authenticate()` accepts (src/auth/middleware.ts). */
const SECURITY_SCHEMES: Record<string, SecurityScheme> = {
  bearer: {
    scheme: {
      $case: "httpAuthSecurityScheme",
      value: { scheme: "Bearer", bearerFormat: "", description: "An API key of the organization (shk_…) or an Ory Kratos session token: Authorization: Bearer <token>" },
    },
  },
  sessionToken: {
    scheme: { $case: "apiKeySecurityScheme", value: { location: "header", name: "X-Session-Token", description: "An Ory Kratos session token" } },
  },
  sessionCookie: {
    scheme: { $case: "apiKeySecurityScheme", value: { location: "cookie", name: "ory_kratos_session", description: "An Ory Kratos browser session" } },
  },
};
/** Any one of the schemes (each requirement is an alternative). */
const SECURITY_REQUIREMENTS: SecurityRequirement[] = Object.keys(SECURITY_SCHEMES).map((name) => ({ schemes: { [name]: { list: [] } } }));

const Strings = z.array(z.string().min(1).max(200)).max(50);
const SkillSchema = z.object({
  id: z.string().min(1).max(200).optional(),
  name: z.string().min(1).max(200),
  description: z.string().max(4000).default(""),
  tags: Strings.default([]),
  examples: z.array(z.string().max(2000)).max(50).default([]),
  inputModes: Strings.default([]),
  outputModes: Strings.default([]),
});
const Skills = z.array(SkillSchema).max(100);
const HttpsUrl = z.string().url().max(2000);
/**
 * What an agent's `agentcard` frontmatter may set. Fields that would make the card lie
 * (interfaces, capabilities, security) are not taken from it. `extended: false` means the
 * agent has no extended card; `extended: { skills }` adds skills only authenticated callers see.
 */
const CardFields = {
  description: z.string().min(1).max(4000),
  documentationUrl: HttpsUrl,
  iconUrl: HttpsUrl,
  defaultInputModes: Strings.min(1),
  defaultOutputModes: Strings.min(1),
  skills: Skills,
  extended: z.union([z.boolean(), z.object({ skills: Skills.default([]) })]),
};
type CardExtras = { [K in keyof typeof CardFields]?: z.infer<(typeof CardFields)[K]> };

/** The valid fields of `agentcard` (an invalid field is left out, never the whole card). */
export function cardExtras(raw: Record<string, unknown> | null): CardExtras {
  const out: Record<string, unknown> = {};
  if (!raw) return out;
  for (const [key, schema] of Object.entries(CardFields)) {
    if (!(key in raw)) continue;
    const parsed = schema.safeParse(raw[key]);
    if (parsed.success) out[key] = parsed.data;
  }
  return out as CardExtras;
}

/** Whether the agent has an extended card (`agentcard.extended: false` says it has none). */
export function hasExtendedCard(agent: AgentIndexEntry): boolean {
  return cardExtras(agent.card).extended !== false;
}

function skillOf(s: z.infer<typeof SkillSchema>): AgentSkill {
  return {
    id: s.id ?? s.name,
    name: s.name,
    description: s.description,
    tags: s.tags,
    examples: s.examples,
    inputModes: s.inputModes,
    outputModes: s.outputModes,
    securityRequirements: [],
  };
}

function interfacesOf(url: string): AgentInterface[] {
  return [
    { url, protocolBinding: "JSONRPC", protocolVersion: "1.0", tenant: "" },
    { url, protocolBinding: "HTTP+JSON", protocolVersion: "1.0", tenant: "" },
    // The JSON-RPC endpoint also speaks v0.3 (method names and shapes, without A2A-Version: 1.0).
    { url, protocolBinding: "JSONRPC", protocolVersion: "0.3", tenant: "" },
  ];
}

/** The public card of an exposed agent (the SDK's v1.0 type). */
export function publicCard(c: Context<AppEnv>, agent: AgentIndexEntry): AgentCard {
  const base = orgBaseUrl(c);
  const extras = cardExtras(agent.card);
  const description = extras.description ?? (agent.description || `${agent.name} agent`);
  const skills = extras.skills?.map(skillOf) ?? [
    { id: agent.name, name: agent.name, description, tags: agent.tags, examples: [], inputModes: [], outputModes: [], securityRequirements: [] },
  ];
  return {
    name: qualifiedName(agent),
    description,
    supportedInterfaces: interfacesOf(`${base}/a2a/agents/${qualifiedName(agent)}`),
    provider: { organization: c.get("org").name, url: base },
    version: agent.version ?? "0.0.0",
    ...(extras.documentationUrl ? { documentationUrl: extras.documentationUrl } : {}),
    ...(extras.iconUrl ? { iconUrl: extras.iconUrl } : {}),
    capabilities: { streaming: true, pushNotifications: true, extendedAgentCard: extras.extended !== false, extensions: [] },
    securitySchemes: SECURITY_SCHEMES,
    securityRequirements: SECURITY_REQUIREMENTS,
    defaultInputModes: extras.defaultInputModes ?? ["text/plain", "application/json"],
    defaultOutputModes: extras.defaultOutputModes ?? ["text/plain", "application/json"],
    skills,
    signatures: [],
  };
}

/**
 * The extended card for an authenticated caller (GetExtendedAgentCard, REST GET
 * /extendedAgentCard), as v1.0 JSON; null when the agent has none (-32007). It is the
 * public card plus the skills of `agentcard.extended.skills`, and, for a caller with
 * `read` on the agent, the agent's internal details (repository, path, commit, model,
 * allowed agents, MCP servers, tools) in the `AGENT_DETAILS_EXTENSION` extension.
 * The caller must be authenticated (G's dispatcher runs behind `authenticate()`).
 */
export async function extendedAgentCard(c: Context<AppEnv>, agent: AgentIndexEntry): Promise<Record<string, unknown> | null> {
  const extras = cardExtras(agent.card);
  if (extras.extended === false || !agent.exposed) return null;
  const card = publicCard(c, agent);
  const more = typeof extras.extended === "object" ? extras.extended.skills.map(skillOf) : [];
  const ids = new Set(card.skills.map((s) => s.id));
  card.skills = [...card.skills, ...more.filter((s) => !ids.has(s.id))];
  if (isAuthenticated(c) && (await isAllowed(c, `/agents/${qualifiedName(agent)}`, "read"))) {
    card.capabilities = { ...card.capabilities!, extensions: [await detailsExtension(c, agent)] };
  }
  return toV1Json(card);
}

async function detailsExtension(c: Context<AppEnv>, agent: AgentIndexEntry): Promise<AgentExtension> {
  const params: Record<string, unknown> = {
    repository: { id: agent.repositoryId, name: agent.repositoryName, root: agent.isRoot },
    path: agent.path,
    commit: agent.commitSha,
    model: agent.model,
    tags: agent.tags,
  };
  try {
    const def = await loadAgent(c.env.SNAPSHOTS, c.get("org").orgId, {
      name: agent.name,
      repositoryId: agent.repositoryId,
      commit: agent.commitSha,
      path: agent.path,
      blobSha: agent.blobSha,
    });
    const fm = def.frontmatter;
    params.allowedAgents = fm.allowedAgents;
    params.mcpServers = fm.mcpServers.map((s) => s.name);
    params.tools = fm.tools;
    params.maxIterations = fm.maxIterations;
  } catch (err) {
    // The index alone still says a lot; a snapshot that cannot be read is logged, not fatal.
    console.error(`extended card ${qualifiedName(agent)}: agent file unreadable:`, err instanceof Error ? err.message : String(err));
  }
  return { uri: AGENT_DETAILS_EXTENSION, description: "Shaman: where the agent comes from and what it may call", required: false, params };
}

// ---- wire forms -------------------------------------------------------------------------

/** The v1.0 JSON of a card (protobuf JSON names, as the SDK reads it). */
export function toV1Json(card: AgentCard): Record<string, unknown> {
  return AgentCardCodec.toJSON(card) as Record<string, unknown>;
}

/** A card in the caller's dialect: v1.0 JSON, or the v0.3 card with the v1.0 interfaces embedded. */
export function renderCard(card: AgentCard, dialect: CardDialect): Record<string, unknown> {
  return dialect === "1.0" ? toV1Json(card) : toV03Json(card);
}

function v03Scheme(s: SecurityScheme): Record<string, unknown> {
  switch (s.scheme?.$case) {
    case "httpAuthSecurityScheme": {
      const v = s.scheme.value;
      return { type: "http", scheme: v.scheme.toLowerCase(), ...(v.bearerFormat ? { bearerFormat: v.bearerFormat } : {}), ...(v.description ? { description: v.description } : {}) };
    }
    case "apiKeySecurityScheme": {
      const v = s.scheme.value;
      return { type: "apiKey", in: v.location, name: v.name, ...(v.description ? { description: v.description } : {}) };
    }
    default:
      return {};
  }
}

/**
 * The v0.3 card (JSON Schema names of the v0.3 spec: `url`, `preferredTransport`,
 * `protocolVersion`, `additionalInterfaces`, `security`, `supportsAuthenticatedExtendedCard`),
 * from the v0.3 interfaces of the card, with the v1.0 `supportedInterfaces` embedded.
 */
export function toV03Json(card: AgentCard): Record<string, unknown> {
  const legacy = card.supportedInterfaces.filter((i) => i.protocolVersion.startsWith("0."));
  const [primary, ...others] = legacy.length > 0 ? legacy : card.supportedInterfaces;
  const v1 = toV1Json(card);
  return {
    protocolVersion: "0.3.0",
    name: card.name,
    description: card.description,
    url: primary?.url,
    preferredTransport: primary?.protocolBinding,
    ...(others.length > 0 ? { additionalInterfaces: others.map((i) => ({ url: i.url, transport: i.protocolBinding })) } : {}),
    ...(card.provider ? { provider: card.provider } : {}),
    version: card.version,
    ...(card.documentationUrl ? { documentationUrl: card.documentationUrl } : {}),
    ...(card.iconUrl ? { iconUrl: card.iconUrl } : {}),
    capabilities: {
      streaming: card.capabilities?.streaming ?? false,
      pushNotifications: card.capabilities?.pushNotifications ?? false,
      ...(card.capabilities?.extensions.length ? { extensions: card.capabilities.extensions } : {}),
    },
    securitySchemes: Object.fromEntries(Object.entries(card.securitySchemes).map(([k, s]) => [k, v03Scheme(s)])),
    security: card.securityRequirements.map((r) => Object.fromEntries(Object.entries(r.schemes).map(([k, l]) => [k, l.list]))),
    defaultInputModes: card.defaultInputModes,
    defaultOutputModes: card.defaultOutputModes,
    skills: card.skills.map((s) => ({
      id: s.id,
      name: s.name,
      description: s.description,
      tags: s.tags,
      ...(s.examples.length ? { examples: s.examples } : {}),
      ...(s.inputModes.length ? { inputModes: s.inputModes } : {}),
      ...(s.outputModes.length ? { outputModes: s.outputModes } : {}),
    })),
    supportsAuthenticatedExtendedCard: card.capabilities?.extendedAgentCard ?? false,
    supportedInterfaces: v1.supportedInterfaces,
  };
}

/** For G's v0.3 `agent/getAuthenticatedExtendedCard`: a v1.0 JSON card in the v0.3 form. */
export function v1JsonToV03(card: Record<string, unknown>): Record<string, unknown> {
  return toV03Json(AgentCardCodec.fromJSON(card));
}
