/**
 * The tenant isolation suite. Every route of the gateway is listed in ROUTES (a test fails
 * when a route exists that is not listed, so a new route must join). For each one, org A's
 * caller tries org B's resources, through A's subdomain with B's ids, through B's
 * subdomain with A's credentials, and over WebSocket, and the answer must be
 * indistinguishable from a missing resource. Every org route also refuses forged, expired,
 * revoked and malformed credentials.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { createApiKey } from "../src/auth/api-keys";
import { db } from "../src/db/client";
import { orgBySlug } from "../src/db/orgs";
import { createApp } from "../workers/gateway";
import { exampleAgents, keyOf, orgFetch, rpc, seedOrg, sendMessage, worker, type SeedResult } from "./helpers";

const A = "iso-a";
const B = "iso-b";

interface Fixture {
  a: SeedResult;
  b: SeedResult;
  /** A run of org B (and one of A). */
  bRun: string;
  aRun: string;
  bKeyId: string;
  bSecret: string;
  expiredKey: string;
  revokedKey: string;
}
let fx: Fixture;

const MISSING_UUID = "00000000-0000-4000-8000-000000000000";

/**
 * Every route of the app. `path` fills the route's parameters for an org's request:
 * `other` with org B's resource, `missing` with one that exists nowhere. A route without
 * per-resource parameters is checked by its listing (`leaks`) and credentials only.
 */
interface RouteCase {
  method: string;
  pattern: string;
  /**
   * Public or non-org routes: not subject to org credentials. Discovery routes: an org's,
   * public without a credential, authenticated with one (or when the org requires it).
   */
  kind: "org" | "public" | "discovery";
  other?: () => string;
  missing?: () => string;
  body?: () => unknown;
  /** For listings: what of org B must not appear in A's answer. */
  leaks?: () => string[];
  websocket?: boolean;
}

const json = (v: unknown) => JSON.stringify(v);

const ROUTES: RouteCase[] = [
  { method: "GET", pattern: "/healthz", kind: "public" },
  { method: "GET", pattern: "/.well-known/jwks.json", kind: "public" },
  { method: "POST", pattern: "/_dev/seed", kind: "public" },
  // Local benchmarks only (SHAMAN_ENV=development and SHAMAN_DEV_BENCH=true): reads no org data; test/dev-bench.test.ts.
  { method: "POST", pattern: "/_dev/bench/mcp", kind: "public" },
  { method: "POST", pattern: "/_admin/bootstrap", kind: "public" },
  // CORS preflights of public discovery: the same fixed answer for every org and path, nothing read.
  { method: "OPTIONS", pattern: "/a2a/agents", kind: "public" },
  { method: "OPTIONS", pattern: "/.well-known/agents.json", kind: "public" },
  { method: "OPTIONS", pattern: "/a2a/agents/:name/.well-known/agent-card.json", kind: "public" },
  { method: "OPTIONS", pattern: "/a2a/agents/:repo/:name/.well-known/agent-card.json", kind: "public" },
  { method: "OPTIONS", pattern: "/.well-known/agent-card.json", kind: "public" },
  // Discovery: public without a credential (src/a2a/cards.ts), authenticated with one or when the org requires it.
  {
    method: "GET",
    pattern: "/a2a/agents",
    kind: "discovery",
    leaks: () => ["BetaOnly", fx.b.repository.id],
  },
  { method: "GET", pattern: "/.well-known/agents.json", kind: "discovery", leaks: () => ["BetaOnly", fx.b.repository.id] },
  // A's default agent is ProcessInvoice, B's is BetaOnly.
  { method: "GET", pattern: "/.well-known/agent-card.json", kind: "discovery", leaks: () => ["BetaOnly", "iso-b"] },
  {
    method: "GET",
    pattern: "/a2a/agents/:name/.well-known/agent-card.json",
    kind: "discovery",
    other: () => "/a2a/agents/BetaOnly/.well-known/agent-card.json",
    missing: () => "/a2a/agents/NoSuchAgent/.well-known/agent-card.json",
  },
  {
    method: "GET",
    pattern: "/a2a/agents/:repo/:name/.well-known/agent-card.json",
    kind: "discovery",
    other: () => "/a2a/agents/demo/BetaOnly/.well-known/agent-card.json",
    missing: () => "/a2a/agents/demo/NoSuchAgent/.well-known/agent-card.json",
  },
  {
    method: "POST",
    pattern: "/a2a/agents/:name",
    kind: "org",
    other: () => "/a2a/agents/BetaOnly",
    missing: () => "/a2a/agents/NoSuchAgent",
    body: () => sendMessage("hello"),
  },
  {
    method: "POST",
    pattern: "/a2a/agents/:repo/:name",
    kind: "org",
    other: () => "/a2a/agents/demo/BetaOnly",
    missing: () => "/a2a/agents/demo/NoSuchAgent",
    body: () => sendMessage("hello"),
  },
  // The A2A HTTP+JSON binding (src/a2a/rest.ts), under both agent name forms.
  ...a2aRestRoutes(),
  { method: "GET", pattern: "/runs/:runId", kind: "org", other: () => `/runs/${fx.bRun}`, missing: () => `/runs/${MISSING_UUID}` },
  { method: "POST", pattern: "/runs/:runId/cancel", kind: "org", other: () => `/runs/${fx.bRun}/cancel`, missing: () => `/runs/${MISSING_UUID}/cancel`, body: () => ({}) },
  {
    method: "POST",
    pattern: "/runs/:runId/input/:requestId",
    kind: "org",
    other: () => `/runs/${fx.bRun}/input/${MISSING_UUID}`,
    missing: () => `/runs/${MISSING_UUID}/input/${MISSING_UUID}`,
    body: () => ({ answer: "approved" }),
  },
  {
    method: "GET",
    pattern: "/runs/:runId/events",
    kind: "org",
    other: () => `/runs/${fx.bRun}/events?after=0`,
    missing: () => `/runs/${MISSING_UUID}/events?after=0`,
  },
  // A task's push delivery records (src/push/routes.ts).
  {
    method: "GET",
    pattern: "/runs/:runId/push-deliveries",
    kind: "org",
    other: () => `/runs/${fx.bRun}/push-deliveries`,
    missing: () => `/runs/${MISSING_UUID}/push-deliveries`,
  },
  // A single-use WebSocket ticket for one run (src/runs/ws-ticket.ts).
  { method: "POST", pattern: "/runs/:runId/ws-ticket", kind: "org", other: () => `/runs/${fx.bRun}/ws-ticket`, missing: () => `/runs/${MISSING_UUID}/ws-ticket`, body: () => ({}) },
  {
    method: "GET",
    pattern: "/runs/:runId/ws",
    kind: "org",
    other: () => `/runs/${fx.bRun}/ws`,
    missing: () => `/runs/${MISSING_UUID}/ws`,
    websocket: true,
  },
  { method: "GET", pattern: "/api-keys", kind: "org", leaks: () => [fx.bKeyId] },
  { method: "POST", pattern: "/api-keys", kind: "org", body: () => ({ name: "x", permissions: [{ resource: "/runs/*", action: "read" }] }) },
  { method: "DELETE", pattern: "/api-keys/:id", kind: "org", other: () => `/api-keys/${fx.bKeyId}`, missing: () => `/api-keys/${MISSING_UUID}` },
  { method: "GET", pattern: "/secrets", kind: "org", leaks: () => [fx.bSecret] },
  { method: "PUT", pattern: "/secrets/:name", kind: "org", body: () => ({ value: "v" }) },
  {
    method: "PATCH",
    pattern: "/secrets/:name",
    kind: "org",
    other: () => `/secrets/${fx.bSecret}`,
    missing: () => "/secrets/NO_SUCH_SECRET",
    body: () => ({ allowedHosts: ["example.com"] }),
  },
  { method: "DELETE", pattern: "/secrets/:name", kind: "org", other: () => `/secrets/${fx.bSecret}`, missing: () => "/secrets/NO_SUCH_SECRET" },
  { method: "GET", pattern: "/audit", kind: "org", leaks: () => [fx.bRun, fx.b.org.id] },
  { method: "GET", pattern: "/repositories", kind: "org", leaks: () => [fx.b.repository.id] },
  { method: "POST", pattern: "/repositories", kind: "org", body: () => ({ name: "x", gitUrl: "https://example.com/x.git", sync: false }) },
  ...(["GET /repositories/:id", "PATCH /repositories/:id", "DELETE /repositories/:id", "POST /repositories/:id/sync", "POST /repositories/:id/webhook-secret", "GET /repositories/:id/agents"].map((r) => {
    const [method, pattern] = r.split(" ") as [string, string];
    const suffix = pattern.slice("/repositories/:id".length);
    return {
      method,
      pattern,
      kind: "org" as const,
      other: () => `/repositories/${fx.b.repository.id}${suffix}`,
      missing: () => `/repositories/${MISSING_UUID}${suffix}`,
      ...(method === "PATCH" ? { body: () => ({ isRoot: false }) } : method === "POST" ? { body: () => ({}) } : {}),
    };
  })),
  { method: "GET", pattern: "/external-agents", kind: "org", leaks: () => ["BetaPartner", "partner-b.example.com"] },
  { method: "GET", pattern: "/external-agents/:name", kind: "org", other: () => "/external-agents/BetaPartner", missing: () => "/external-agents/NoSuchPartner" },
  { method: "PUT", pattern: "/external-agents/:name", kind: "org", body: () => ({ url: "https://a.example.com/a2a" }) },
  { method: "DELETE", pattern: "/external-agents/:name", kind: "org", other: () => "/external-agents/BetaPartner", missing: () => "/external-agents/NoSuchPartner" },
  { method: "GET", pattern: "/mcp-servers", kind: "org", leaks: () => ["BetaTools", "tools-b.example.com"] },
  { method: "GET", pattern: "/mcp-servers/:name", kind: "org", other: () => "/mcp-servers/BetaTools", missing: () => "/mcp-servers/NoSuchTools" },
  { method: "PUT", pattern: "/mcp-servers/:name", kind: "org", body: () => ({ url: "https://tools-a.example.com/mcp" }) },
  { method: "PATCH", pattern: "/mcp-servers/:name", kind: "org", other: () => "/mcp-servers/BetaTools", missing: () => "/mcp-servers/NoSuchTools", body: () => ({ description: "mine now" }) },
  { method: "DELETE", pattern: "/mcp-servers/:name", kind: "org", other: () => "/mcp-servers/BetaTools", missing: () => "/mcp-servers/NoSuchTools" },
  { method: "GET", pattern: "/usage", kind: "org", leaks: () => [fx.bRun, fx.b.org.id] },
  { method: "GET", pattern: "/settings/prices", kind: "org", leaks: () => ["b-only:model"] },
  { method: "PUT", pattern: "/settings/prices", kind: "org", body: () => ({ prices: { "a:model": { input: 1, output: 1 } } }) },
  { method: "GET", pattern: "/settings/budget", kind: "org", leaks: () => ["987654321"] },
  { method: "PUT", pattern: "/settings/budget", kind: "org", body: () => ({ period: "month", maxTokens: 1 }) },
  { method: "DELETE", pattern: "/settings/budget", kind: "org" },
  { method: "GET", pattern: "/settings/models", kind: "org", leaks: () => ["beta-only-alias", "claude-beta-model"] },
  { method: "PUT", pattern: "/settings/models", kind: "org", body: () => ({ aliases: { fast: "offline:fast" } }) },
  { method: "GET", pattern: "/settings/discovery", kind: "org", leaks: () => ["BetaOnly"] },
  { method: "PUT", pattern: "/settings/discovery", kind: "org", body: () => ({ defaultAgent: "ProcessInvoice" }) },
  { method: "GET", pattern: "/settings/cors", kind: "org", leaks: () => ["beta-only.example.com"] },
  { method: "PUT", pattern: "/settings/cors", kind: "org", body: () => ({ allowedOrigins: ["https://a.example.com"] }) },
  {
    method: "POST",
    pattern: "/webhooks/git/:repositoryId",
    kind: "org",
    other: () => `/webhooks/git/${fx.b.repository.id}`,
    missing: () => `/webhooks/git/${MISSING_UUID}`,
    body: () => ({ ref: "refs/heads/main" }),
  },
];

/** A request to an org route with a chosen credential (`null`: none). */
/**
 * The HTTP+JSON routes of an agent: another org's agent (BetaOnly) or task (B's run, through
 * A's own agent) answers exactly like a missing one.
 */
function a2aRestRoutes(): RouteCase[] {
  const out: RouteCase[] = [];
  for (const [base, prefix] of [["/a2a/agents/:name", "/a2a/agents/"], ["/a2a/agents/:repo/:name", "/a2a/agents/demo/"]] as const) {
    const agent = (name: string) => `${prefix}${name}`;
    const task = (id: string) => `${prefix}ProcessInvoice/tasks/${id}`;
    out.push(
      { method: "POST", pattern: `${base}/:action{message:(?:send|stream)}`, kind: "org", other: () => `${agent("BetaOnly")}/message:send`, missing: () => `${agent("NoSuchAgent")}/message:send`, body: () => sendMessage("hello").params },
      { method: "GET", pattern: `${base}/tasks`, kind: "org", other: () => `${agent("BetaOnly")}/tasks`, missing: () => `${agent("NoSuchAgent")}/tasks` },
      { method: "GET", pattern: `${base}/tasks/:task`, kind: "org", other: () => task(fx.bRun), missing: () => task(MISSING_UUID) },
      { method: "POST", pattern: `${base}/tasks/:task`, kind: "org", other: () => `${task(fx.bRun)}:cancel`, missing: () => `${task(MISSING_UUID)}:cancel`, body: () => ({}) },
      { method: "POST", pattern: `${base}/tasks/:task/pushNotificationConfigs`, kind: "org", other: () => `${task(fx.bRun)}/pushNotificationConfigs`, missing: () => `${task(MISSING_UUID)}/pushNotificationConfigs`, body: () => ({ url: "https://push.example.com/hook" }) },
      { method: "GET", pattern: `${base}/tasks/:task/pushNotificationConfigs`, kind: "org", other: () => `${task(fx.bRun)}/pushNotificationConfigs`, missing: () => `${task(MISSING_UUID)}/pushNotificationConfigs` },
      { method: "GET", pattern: `${base}/tasks/:task/pushNotificationConfigs/:config`, kind: "org", other: () => `${task(fx.bRun)}/pushNotificationConfigs/c1`, missing: () => `${task(MISSING_UUID)}/pushNotificationConfigs/c1` },
      { method: "DELETE", pattern: `${base}/tasks/:task/pushNotificationConfigs/:config`, kind: "org", other: () => `${task(fx.bRun)}/pushNotificationConfigs/c1`, missing: () => `${task(MISSING_UUID)}/pushNotificationConfigs/c1` },
      { method: "GET", pattern: `${base}/extendedAgentCard`, kind: "org", other: () => `${agent("BetaOnly")}/extendedAgentCard`, missing: () => `${agent("NoSuchAgent")}/extendedAgentCard` },
    );
  }
  return out;
}

function call(slug: string, route: RouteCase, path: string, auth: Record<string, string> | null): Promise<Response> {
  const headers: Record<string, string> = { "A2A-Version": "1.0", ...(auth ?? { authorization: "" }) };
  if (route.websocket) headers.upgrade = "websocket";
  const init: RequestInit = { method: route.method, headers };
  if (route.body) {
    headers["content-type"] = "application/json";
    init.body = json(route.body());
  }
  if (auth === null) delete headers.authorization;
  // Straight to the worker: `orgFetch` would add the org's key to a credential-less request.
  return worker.fetch(`http://${slug}.localhost${path}`, init);
}

const samplePath = (r: RouteCase) => r.missing?.() ?? r.pattern.replace(":name", "X").replace(":id", MISSING_UUID);

/** Status, content type and body with the request id removed: what a caller can observe. */
async function observable(res: Response) {
  const text = await res.text();
  let body: unknown = text;
  try {
    const parsed = JSON.parse(text) as Record<string, unknown>;
    delete parsed.requestId;
    if (parsed.error && typeof parsed.error === "object") delete (parsed.error as { data?: { requestId?: unknown } }).data?.requestId;
    body = parsed;
  } catch {}
  return { status: res.status, type: res.headers.get("content-type"), body, webSocket: res.webSocket ? "upgraded" : null };
}

/** An observation about B's resource, with B's ids replaced by the missing ones asked for instead. */
function asMissing<T>(o: T): T {
  let text = JSON.stringify(o);
  const swaps: [string, string][] = [
    ["BetaOnly", "NoSuchAgent"],
    [fx.bRun, MISSING_UUID],
    [fx.bKeyId, MISSING_UUID],
    [fx.bSecret, "NO_SUCH_SECRET"],
    [fx.b.repository.id, MISSING_UUID],
    ["BetaPartner", "NoSuchPartner"],
    ["BetaTools", "NoSuchTools"],
  ];
  for (const [from, to] of swaps) text = text.split(from).join(to);
  return JSON.parse(text) as T;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

beforeAll(async () => {
  const betaOnly = "---\ndescription: only org B has this agent\nexposed: true\n---\nYou belong to org B.\n";
  const a = await seedOrg(A);
  const b = await seedOrg(B, { ...exampleAgents(), "BetaOnly/prompt.md": betaOnly });
  const aCall = await rpc(A, "ProcessInvoice", sendMessage("Invoice A-1"));
  const bCall = await rpc(B, "ProcessInvoice", sendMessage("Invoice B-1"));
  expect(aCall.status).toBe(200);
  expect(bCall.status).toBe(200);

  const bKey = await orgFetch(B, "/api-keys", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: json({ name: "b-key", permissions: [{ resource: "/*", action: "*" }] }),
  });
  const bKeyId = ((await bKey.json()) as any).apiKey.id as string;
  const bSecret = "B_ONLY_SECRET";
  expect((await orgFetch(B, `/secrets/${bSecret}`, { method: "PUT", headers: { "content-type": "application/json" }, body: json({ value: "b-value" }) })).status).toBe(200);

  // B's prices and budget (never shown to A)
  expect((await orgFetch(B, "/settings/prices", { method: "PUT", headers: { "content-type": "application/json" }, body: json({ prices: { "b-only:model": { input: 1, output: 2 } } }) })).status).toBe(200);
  expect((await orgFetch(B, "/settings/budget", { method: "PUT", headers: { "content-type": "application/json" }, body: json({ period: "month", maxTokens: 987654321 }) })).status).toBe(200);

  const tools = await orgFetch(B, "/mcp-servers/BetaTools", { method: "PUT", headers: { "content-type": "application/json" }, body: json({ url: "https://tools-b.example.com/mcp", description: "B's tools" }) });
  expect(tools.status).toBe(200);
  const partner = await orgFetch(B, "/external-agents/BetaPartner", {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: json({ url: "https://partner-b.example.com/a2a/agents/Pay", description: "B's partner" }),
  });
  expect(partner.status).toBe(200);
  const models = await orgFetch(B, "/settings/models", { method: "PUT", headers: { "content-type": "application/json" }, body: json({ aliases: { "beta-only-alias": "anthropic:claude-beta-model" } }) });
  expect(models.status).toBe(200);
  const discovery = (slug: string, defaultAgent: string) =>
    orgFetch(slug, "/settings/discovery", { method: "PUT", headers: { "content-type": "application/json" }, body: json({ defaultAgent }) });
  expect((await discovery(A, "ProcessInvoice")).status).toBe(200);
  expect((await discovery(B, "BetaOnly")).status).toBe(200);
  expect((await orgFetch(B, "/settings/cors", { method: "PUT", headers: { "content-type": "application/json" }, body: json({ allowedOrigins: ["https://beta-only.example.com"] }) })).status).toBe(200);
  const scopeA = (await orgBySlug(db(env), A))!;
  const expired = await createApiKey(db(env), scopeA, { name: "expired", permissions: [{ resource: "/*", action: "*" }], expiresAt: Date.now() - 1000 });
  const revokedRes = await orgFetch(A, "/api-keys", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: json({ name: "revoked", permissions: [{ resource: "/*", action: "*" }] }),
  });
  const revoked = ((await revokedRes.json()) as any).apiKey;
  expect((await orgFetch(A, `/api-keys/${revoked.id}`, { method: "DELETE" })).status).toBe(204);

  fx = {
    a,
    b,
    aRun: aCall.body.result.task.id,
    bRun: bCall.body.result.task.id,
    bKeyId,
    bSecret,
    expiredKey: expired.key,
    revokedKey: revoked.key,
  };
});

describe("route coverage", () => {
  it("lists every route the gateway serves", () => {
    const served = new Set(
      createApp()
        .routes.filter((r) => r.method !== "ALL" && !r.path.startsWith("/_org/"))
        .map((r) => `${r.method} ${r.path.replace(/\/$/, "") || "/"}`),
    );
    const listed = new Set(ROUTES.map((r) => `${r.method} ${r.pattern}`));
    expect([...served].filter((r) => !listed.has(r)), "routes missing from the isolation suite").toEqual([]);
    expect([...listed].filter((r) => !served.has(r)), "listed routes that no longer exist").toEqual([]);
  });
});

/** Routes of an org (discovery included): with a credential they are all authenticated. */
const orgRoutes = ROUTES.filter((r) => r.kind !== "public");
const discoveryRoutes = ROUTES.filter((r) => r.kind === "discovery");

describe("another org's resources answer exactly like missing ones", () => {
  for (const route of orgRoutes.filter((r) => r.other)) {
    it(`${route.method} ${route.pattern}`, async () => {
      const other = await observable(await call(A, route, route.other!(), bearer(keyOf(A)!)));
      const missing = await observable(await call(A, route, route.missing!(), bearer(keyOf(A)!)));
      expect(other.status).toBeGreaterThanOrEqual(400);
      // Errors may echo the name asked for; apart from that the answers must be identical.
      expect(asMissing(other)).toEqual(missing);
    });
  }

  for (const route of orgRoutes.filter((r) => r.leaks)) {
    it(`${route.method} ${route.pattern} shows nothing of the other org`, async () => {
      const res = await call(A, route, route.pattern, bearer(keyOf(A)!));
      expect(res.status).toBe(200);
      const text = await res.text();
      for (const secret of route.leaks!()) expect(text).not.toContain(secret);
    });
  }

  it("GetTask of another org's task through a same-named agent answers TASK_NOT_FOUND like a missing task", async () => {
    const get = (id: string) => rpc(A, "ProcessInvoice", { jsonrpc: "2.0", id: 1, method: "GetTask", params: { id } });
    const other = await get(fx.bRun);
    const missing = await get(MISSING_UUID);
    expect(other.body.error.code).toBe(-32001);
    expect(other).toEqual(missing);
  });

  it("writes by name stay in the caller's org", async () => {
    expect((await orgFetch(A, `/secrets/${fx.bSecret}`, { method: "PUT", headers: { "content-type": "application/json" }, body: json({ value: "a-value" }) })).status).toBe(200);
    const bList = ((await (await orgFetch(B, "/secrets")).json()) as any).secrets;
    const aList = ((await (await orgFetch(A, "/secrets")).json()) as any).secrets;
    expect(bList.filter((s: any) => s.name === fx.bSecret)).toHaveLength(1);
    expect(aList.filter((s: any) => s.name === fx.bSecret)).toHaveLength(1);
    expect((await orgFetch(A, `/secrets/${fx.bSecret}`, { method: "DELETE" })).status).toBe(204);
    expect(((await (await orgFetch(B, "/secrets")).json()) as any).secrets.map((s: any) => s.name)).toContain(fx.bSecret);
    // After every attempt above, B's repository and agents are intact.
    expect((await orgFetch(B, `/repositories/${fx.b.repository.id}`)).status).toBe(200);
    expect((await rpc(B, "BetaOnly", sendMessage("still mine?"))).status).toBe(200);
    expect((await orgFetch(B, "/external-agents/BetaPartner")).status).toBe(200);
    expect(((await (await orgFetch(B, "/mcp-servers/BetaTools")).json()) as any).mcpServer.description).toBe("B's tools");
  });

  it("an unknown subdomain and an org the caller is not a member of look the same", async () => {
    const route = orgRoutes.find((r) => r.pattern === "/a2a/agents")!;
    const nonMember = await observable(await call(B, route, "/a2a/agents", bearer(`dev:owner@${A}.test`)));
    const unknown = await observable(await call("iso-nowhere", route, "/a2a/agents", bearer(`dev:owner@${A}.test`)));
    expect(nonMember.status).toBe(404);
    expect(nonMember).toEqual(unknown);
  });
});

describe("credentials", () => {
  const forged = "shk_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
  const cases: [string, () => Record<string, string> | null][] = [
    ["none", () => null],
    ["forged API key", () => bearer(forged)],
    ["expired API key", () => bearer(fx.expiredKey)],
    ["revoked API key", () => bearer(fx.revokedKey)],
    ["malformed Authorization", () => ({ authorization: "Basic dXNlcjpwYXNz" })],
    ["empty Bearer", () => ({ authorization: "Bearer " })],
    ["truncated API key", () => bearer(keyOf(A)!.slice(0, 30))],
    ["unknown session token", () => bearer("not-a-session")],
    ["unknown session cookie", () => ({ cookie: "ory_kratos_session=forged" })],
  ];

  for (const route of orgRoutes) {
    it(`${route.method} ${route.pattern} refuses bad credentials with 401`, async () => {
      const path = samplePath(route);
      for (const [label, auth] of cases) {
        // Without a credential, discovery is public (tested below).
        if (route.kind === "discovery" && label === "none") continue;
        const res = await call(A, route, path, auth());
        expect(res.status, label).toBe(401);
        expect(res.headers.get("content-type"), label).toContain("application/problem+json");
        const text = await res.text();
        expect(text, label).not.toMatch(/at .*\.(ts|js):\d+/);
      }
    });

    it(`${route.method} ${route.pattern} with org A's key on org B answers like a forged key`, async () => {
      const path = route.other?.() ?? samplePath(route);
      const aKeyOnB = await observable(await call(B, route, path, bearer(keyOf(A)!)));
      const forgedOnB = await observable(await call(B, route, path, bearer(forged)));
      expect(aKeyOnB.status).toBe(401);
      expect(aKeyOnB).toEqual(forgedOnB);
    });
  }
});

describe("discovery without a credential", () => {
  for (const route of discoveryRoutes.filter((r) => r.other)) {
    it(`${route.method} ${route.pattern}: another org's agent answers exactly like a missing one`, async () => {
      const other = await observable(await call(A, route, route.other!(), null));
      const missing = await observable(await call(A, route, route.missing!(), null));
      expect(other.status).toBe(404);
      expect(asMissing(other)).toEqual(missing);
    });
  }

  for (const route of discoveryRoutes.filter((r) => r.leaks)) {
    it(`${route.method} ${route.pattern} shows nothing of the other org`, async () => {
      const res = await call(A, route, route.pattern, null);
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toMatch(/^public\b/);
      const text = await res.text();
      for (const secret of route.leaks!()) expect(text).not.toContain(secret);
    });
  }
});

describe("discovery when the org requires a credential", () => {
  const put = (requireCredentialForCards: boolean) =>
    orgFetch(A, "/settings/discovery", { method: "PUT", headers: { "content-type": "application/json" }, body: json({ requireCredentialForCards, defaultAgent: "ProcessInvoice" }) });
  beforeAll(async () => {
    expect((await put(true)).status).toBe(200);
    return async () => {
      expect((await put(false)).status).toBe(200);
    };
  });

  for (const route of discoveryRoutes) {
    it(`${route.method} ${route.pattern} refuses a missing or bad credential with 401`, async () => {
      const path = route.other ? route.missing!() : route.pattern;
      for (const [label, auth] of [
        ["none", null],
        ["forged API key", bearer("shk_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB")],
        ["org B's key", bearer(keyOf(B)!)],
      ] as const) {
        const res = await call(A, route, path, auth);
        expect(res.status, label).toBe(401);
        expect(res.headers.get("content-type"), label).toContain("application/problem+json");
      }
      if (route.other) {
        const other = await observable(await call(A, route, route.other(), bearer(keyOf(A)!)));
        const missing = await observable(await call(A, route, route.missing!(), bearer(keyOf(A)!)));
        expect(asMissing(other)).toEqual(missing);
      }
    });
  }
});

describe("WebSocket", () => {
  it("A cannot subscribe to B's run; its own run streams", async () => {
    const route = ROUTES.find((r) => r.websocket)!;
    const theirs = await call(A, route, `/runs/${fx.bRun}/ws?after=0`, bearer(keyOf(A)!));
    expect(theirs.status).toBe(404);
    expect(theirs.webSocket).toBeFalsy();
    const mine = await call(A, route, `/runs/${fx.aRun}/ws?after=0`, bearer(keyOf(A)!));
    expect(mine.status).toBe(101);
    const ws = mine.webSocket!;
    ws.accept();
    const first = await new Promise<any>((resolve) => ws.addEventListener("message", (e) => resolve(JSON.parse(e.data as string))));
    expect(first.runId).toBe(fx.aRun);
    ws.close();
  });
});
