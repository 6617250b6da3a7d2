/**
 * Discovery for clients that only know a URL (issue 11 item 5, src/a2a/cards.ts): public
 * cards with no credential, how they say to authenticate, the org setting that requires a
 * credential, ETag/304 and Cache-Control, the host root card of the default agent, the
 * directory, the extended card, and private agents invisible in every way.
 */
import { Role, type Message, type Part } from "@a2a-js/sdk";
import { ClientFactory, DefaultAgentCardResolver, JsonRpcTransportFactory } from "@a2a-js/sdk/client";
import { env } from "cloudflare:workers";
import { Hono } from "hono";
import { beforeAll, describe, expect, it } from "vitest";
import { AGENT_DETAILS_EXTENSION, extendedAgentCard } from "../src/a2a/cards";
import { authenticate } from "../src/auth/middleware";
import { createApiKey } from "../src/auth/api-keys";
import { findAgent } from "../src/db/agents";
import { db } from "../src/db/client";
import { orgBySlug } from "../src/db/orgs";
import type { AppEnv } from "../src/http/app-env";
import { resolveOrg } from "../src/http/org";
import { eventually, exampleAgents, keyOf, orgFetch, seedOrg, worker, type SeedResult } from "./helpers";

const ORG = "disc";
const EMPTY = "disc-empty"; // an org without agents: there every agent is missing
const BASE = `http://${ORG}.localhost`;

const skilled = `---
description: Audits expense reports
exposed: true
version: 2.1.0
model: offline:echo
tags: [finance]
allowedAgents: [Summarize]
agentcard:
  iconUrl: https://example.com/icon.png
  skills:
    - id: audit
      name: Audit an expense report
      description: Checks each line against the policy
      tags: [expenses]
      examples: ["Audit this report"]
  extended:
    skills:
      - id: fraud
        name: Fraud signals
        description: Internal fraud heuristics
  capabilities:
    streaming: false
---
You audit expense reports.
`;
const noExtended = `---
description: Has nothing more to say to authenticated callers
exposed: true
agentcard:
  extended: false
---
You are brief.
`;

let seed: SeedResult;

/** A GET with no credential at all, straight to the Worker. */
function anon(path: string, headers: Record<string, string> = {}, slug = ORG): Promise<Response> {
  return worker.fetch(`http://${slug}.localhost${path}`, { headers });
}
const v1 = { "A2A-Version": "1.0" };
const json = (v: unknown) => JSON.stringify(v);

function putDiscovery(body: Record<string, unknown>, slug = ORG) {
  return orgFetch(slug, "/settings/discovery", { method: "PUT", headers: { "content-type": "application/json" }, body: json(body) });
}

/** What a caller can observe of an answer, the request id aside. */
async function observable(res: Response) {
  const text = (await res.text()).replace(/"requestId":"[^"]*"/, '"requestId":""');
  const h = (n: string) => res.headers.get(n);
  return { status: res.status, type: h("content-type"), cacheControl: h("cache-control"), vary: h("vary"), etag: h("etag"), text };
}

beforeAll(async () => {
  seed = await seedOrg(ORG, { ...exampleAgents(), "Skilled/prompt.md": skilled, "NoExtended/prompt.md": noExtended });
  expect(seed.errors).toEqual([]);
  await seedOrg(EMPTY, { "Other/prompt.md": "---\nexposed: false\n---\nnothing\n" });
});

describe("a public card", () => {
  it("is served with no credential and says how to authenticate (v1.0)", async () => {
    const res = await anon("/a2a/agents/ProcessInvoice/.well-known/agent-card.json", v1);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("public, max-age=60");
    expect(res.headers.get("vary")).toContain("A2A-Version");
    expect(res.headers.get("etag")).toMatch(/^W\/"[0-9a-f]{32}"$/);
    const card = (await res.json()) as any;
    expect(card.name).toBe("ProcessInvoice");
    expect(card.version).toBe("1.0.0");
    expect(card.documentationUrl).toBe("https://example.com/docs/process-invoice");
    expect(card.provider).toEqual({ organization: `${ORG} Inc.`, url: BASE });
    expect(card.capabilities).toEqual({ streaming: true, pushNotifications: true, extendedAgentCard: true });
    expect(card.supportedInterfaces).toEqual([
      { url: `${BASE}/a2a/agents/ProcessInvoice`, protocolBinding: "JSONRPC", protocolVersion: "1.0" },
      { url: `${BASE}/a2a/agents/ProcessInvoice`, protocolBinding: "HTTP+JSON", protocolVersion: "1.0" },
      { url: `${BASE}/a2a/agents/ProcessInvoice`, protocolBinding: "JSONRPC", protocolVersion: "0.3" },
    ]);
    // What authenticate() accepts: bearer (API key or Kratos session token), X-Session-Token, the Kratos cookie.
    expect(card.securitySchemes).toEqual({
      bearer: { httpAuthSecurityScheme: { scheme: "Bearer", description: expect.stringContaining("API key") } },
      sessionToken: { apiKeySecurityScheme: { location: "header", name: "X-Session-Token", description: expect.any(String) } },
      sessionCookie: { apiKeySecurityScheme: { location: "cookie", name: "ory_kratos_session", description: expect.any(String) } },
    });
    expect(card.securityRequirements).toEqual([{ schemes: { bearer: {} } }, { schemes: { sessionToken: {} } }, { schemes: { sessionCookie: {} } }]);
    expect(card.skills).toEqual([{ id: "ProcessInvoice", name: "ProcessInvoice", description: expect.any(String), tags: ["finance", "invoices", "extraction"] }]);
  });

  it("works for each credential the card names (a key, a session token header, the cookie) as the gateway reads them", async () => {
    // A credential is read, never ignored: a bad one is refused like on any org route.
    const bad: Record<string, string>[] = [{ authorization: "Bearer shk_nope" }, { "x-session-token": "no-such-session" }, { cookie: "ory_kratos_session=forged" }];
    for (const headers of bad) {
      expect((await anon("/a2a/agents/ProcessInvoice/.well-known/agent-card.json", headers)).status, JSON.stringify(headers)).toBe(401);
    }
    // An unrelated cookie is no credential: the card stays public.
    expect((await anon("/a2a/agents/ProcessInvoice/.well-known/agent-card.json", { cookie: "theme=dark" })).status).toBe(200);
    // A good key: answered for that caller, private caches only.
    const mine = await orgFetch(ORG, "/a2a/agents/ProcessInvoice/.well-known/agent-card.json", { headers: v1 });
    expect(mine.status).toBe(200);
    expect(mine.headers.get("cache-control")).toBe("private, max-age=30");
    expect(mine.headers.get("vary")).toMatch(/Authorization/);
    expect(mine.headers.get("ratelimit-limit")).toBe("600");
  });

  it("takes what the agent's agentcard frontmatter may set, never a capability that would lie", async () => {
    const card = (await (await anon("/a2a/agents/Skilled/.well-known/agent-card.json", v1)).json()) as any;
    expect(card.version).toBe("2.1.0");
    expect(card.iconUrl).toBe("https://example.com/icon.png");
    expect(card.capabilities.streaming).toBe(true);
    expect(card.skills.map((s: any) => s.id)).toEqual(["audit"]);
    expect(card.skills[0]).toMatchObject({ name: "Audit an expense report", tags: ["expenses"], examples: ["Audit this report"] });
    // Extended-only skills and internal details are not in the public card.
    expect(JSON.stringify(card)).not.toMatch(/fraud|offline:echo|allowedAgents|Summarize/);
  });

  it("is a v0.3 card without A2A-Version (the v1.0 interfaces embedded), a v1.0 card with it", async () => {
    const res = await anon("/a2a/agents/ProcessInvoice/.well-known/agent-card.json");
    expect(res.status).toBe(200);
    const card = (await res.json()) as any;
    expect(card).toMatchObject({
      protocolVersion: "0.3.0",
      url: `${BASE}/a2a/agents/ProcessInvoice`,
      preferredTransport: "JSONRPC",
      capabilities: { streaming: true, pushNotifications: true },
      supportsAuthenticatedExtendedCard: true,
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer" },
        sessionToken: { type: "apiKey", in: "header", name: "X-Session-Token" },
        sessionCookie: { type: "apiKey", in: "cookie", name: "ory_kratos_session" },
      },
      security: [{ bearer: [] }, { sessionToken: [] }, { sessionCookie: [] }],
    });
    expect(card.supportedInterfaces[0]).toEqual({ url: `${BASE}/a2a/agents/ProcessInvoice`, protocolBinding: "JSONRPC", protocolVersion: "1.0" });
    const v03 = await anon("/a2a/agents/ProcessInvoice/.well-known/agent-card.json", { "A2A-Version": "0.3" });
    expect(await v03.json()).toEqual(card);
  });

  it("is found by @a2a-js/sdk's ClientFactory.createFromUrl from the org URL alone, which then calls the agent", async () => {
    expect((await putDiscovery({ defaultAgent: "Summarize" })).status).toBe(200);
    const cardRequests: Request[] = [];
    const anonymous: typeof fetch = async (input, init) => {
      const req = new Request(input as RequestInfo, init);
      cardRequests.push(req.clone());
      return worker.fetch(req);
    };
    const withKey: typeof fetch = async (input, init) => {
      const req = new Request(input as RequestInfo, init);
      req.headers.set("authorization", `Bearer ${keyOf(ORG)}`);
      return worker.fetch(req);
    };
    const factory = new ClientFactory({
      transports: [new JsonRpcTransportFactory({ fetchImpl: withKey })],
      cardResolver: new DefaultAgentCardResolver({ fetchImpl: anonymous }),
    });
    const client = await factory.createFromUrl(BASE);
    expect(cardRequests.map((r) => [new URL(r.url).pathname, r.headers.get("authorization")])).toEqual([["/.well-known/agent-card.json", null]]);
    // The card as the SDK read it (its resolver, no credential).
    const card = await new DefaultAgentCardResolver({ fetchImpl: anonymous }).resolve(BASE);
    expect(card.name).toBe("Summarize");
    expect(card.securitySchemes.bearer?.scheme?.$case).toBe("httpAuthSecurityScheme");
    expect(card.capabilities?.extendedAgentCard).toBe(true);

    const part: Part = { content: { $case: "text", value: "Summarise: discovery works." }, metadata: undefined, filename: "", mediaType: "text/plain" };
    const message: Message = { messageId: crypto.randomUUID(), contextId: "", taskId: "", role: Role.ROLE_USER, parts: [part], metadata: undefined, extensions: [], referenceTaskIds: [] };
    const result = await client.sendMessage({ tenant: "", message, configuration: { returnImmediately: true, acceptedOutputModes: [], taskPushNotificationConfig: undefined }, metadata: undefined });
    expect(result).toHaveProperty("id");
    expect((result as { id: string }).id).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe("private agents cannot be seen from outside", () => {
  it("a private agent's card is a 404 exactly like a missing agent's, with and without a credential", async () => {
    for (const [path, headers] of [
      ["ValidateData", {}],
      ["demo/ValidateData", v1],
    ] as const) {
      const priv = await observable(await anon(`/a2a/agents/${path}/.well-known/agent-card.json`, headers));
      const missing = await observable(await anon(`/a2a/agents/${path}/.well-known/agent-card.json`, headers, EMPTY));
      expect(priv.status).toBe(404);
      expect(priv.type).toContain("application/problem+json");
      expect(priv).toEqual(missing);
      const nope = await observable(await anon(`/a2a/agents/${path.replace("ValidateData", "NoSuchAgent")}/.well-known/agent-card.json`, headers));
      expect(nope).toEqual(missing);
    }
    const withKey = (slug: string) => orgFetch(slug, "/a2a/agents/ValidateData/.well-known/agent-card.json");
    const privKey = await observable(await withKey(ORG));
    const missingKey = await observable(await withKey(EMPTY));
    expect(privKey.status).toBe(404);
    expect(privKey).toEqual(missingKey);
  });

  it("is never in the directory, and never the root card even when named the default agent", async () => {
    for (const path of ["/a2a/agents", "/.well-known/agents.json"]) {
      const text = await (await anon(path)).text();
      expect(text).not.toContain("ValidateData");
      expect(text).not.toContain("VendorCheck");
    }
    expect((await putDiscovery({ defaultAgent: "ValidateData" })).status).toBe(200);
    const root = await observable(await anon("/.well-known/agent-card.json", v1));
    expect((await putDiscovery({ defaultAgent: "NoSuchAgent" })).status).toBe(200);
    const rootMissing = await observable(await anon("/.well-known/agent-card.json", v1));
    expect(root.status).toBe(404);
    expect(root).toEqual(rootMissing);
    const dir = (await (await anon("/.well-known/agents.json")).json()) as any;
    expect(dir.defaultAgent).toBeUndefined();
  });
});

describe("the host root card and the directory", () => {
  it("the root card is the default agent's; 404 like a missing agent when none is set", async () => {
    expect((await putDiscovery({})).status).toBe(200);
    const unset = await observable(await anon("/.well-known/agent-card.json", v1));
    const missingAgent = await observable(await anon("/a2a/agents/NoSuchAgent/.well-known/agent-card.json", v1));
    expect(unset.status).toBe(404);
    expect(unset).toEqual(missingAgent);

    expect((await putDiscovery({ defaultAgent: "ProcessInvoice" })).status).toBe(200);
    const root = await anon("/.well-known/agent-card.json", v1);
    expect(root.status).toBe(200);
    const direct = await anon("/a2a/agents/ProcessInvoice/.well-known/agent-card.json", v1);
    expect(await root.text()).toEqual(await direct.text());
    // The same card under the local path prefix names the prefixed URL.
    const prefixed = (await (await worker.fetch(`http://localhost/_org/${ORG}/.well-known/agent-card.json`, { headers: v1 })).json()) as any;
    expect(prefixed.supportedInterfaces[0].url).toBe(`http://localhost/_org/${ORG}/a2a/agents/ProcessInvoice`);
  });

  it("the directory lists the exposed agents with no credential, in both places, and names the default agent", async () => {
    expect((await putDiscovery({ defaultAgent: "demo/ProcessInvoice" })).status).toBe(200);
    const a = await anon("/a2a/agents");
    const b = await anon("/.well-known/agents.json");
    expect(a.status).toBe(200);
    expect(a.headers.get("cache-control")).toBe("public, max-age=60");
    const body = (await a.json()) as any;
    expect(await b.json()).toEqual(body);
    expect(body.agents.map((x: any) => x.name)).toEqual(["NoExtended", "ProcessInvoice", "Skilled", "Summarize"]);
    expect(body.agents[1]).toEqual({
      name: "ProcessInvoice",
      description: expect.any(String),
      url: `${BASE}/a2a/agents/ProcessInvoice`,
      agentCard: `${BASE}/a2a/agents/ProcessInvoice/.well-known/agent-card.json`,
    });
    expect(body.defaultAgent).toBe("ProcessInvoice");
    expect(body.agentCard).toBe(`${BASE}/.well-known/agent-card.json`);
  });

  it("an unknown org is a 404 problem before anything else", async () => {
    const res = await anon("/.well-known/agent-card.json", v1, "disc-nowhere");
    expect(res.status).toBe(404);
    expect(((await res.json()) as any).detail).toBe("Organization not found");
  });
});

describe("browsers on other origins (CORS)", () => {
  it("may read public discovery: preflights answered, anonymous answers open to any origin, answers for a credential not", async () => {
    for (const path of ["/a2a/agents/Summarize/.well-known/agent-card.json", "/.well-known/agent-card.json", "/.well-known/agents.json", "/a2a/agents"]) {
      const pre = await worker.fetch(`http://${ORG}.localhost${path}`, {
        method: "OPTIONS",
        headers: { origin: "https://app.example", "access-control-request-method": "GET", "access-control-request-headers": "a2a-version" },
      });
      expect(pre.status, path).toBe(204);
      expect(pre.headers.get("access-control-allow-origin")).toBe("*");
      expect(pre.headers.get("access-control-allow-headers")).toContain("A2A-Version");
      const got = await anon(path, { ...v1, origin: "https://app.example" });
      expect(got.status, path).toBe(200);
      expect(got.headers.get("access-control-allow-origin")).toBe("*");
    }
    const withKey = await anon("/a2a/agents/Summarize/.well-known/agent-card.json", { ...v1, authorization: `Bearer ${keyOf(ORG)}`, origin: "https://app.example" });
    expect(withKey.status).toBe(200);
    expect(withKey.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("ETag and If-None-Match", () => {
  it("answers 304 for a matching (weak or strong, listed or *) tag, 200 for a stale one; the tag follows the card and the dialect", async () => {
    const path = "/a2a/agents/Summarize/.well-known/agent-card.json";
    const first = await anon(path, v1);
    const etag = first.headers.get("etag")!;
    expect(etag).toMatch(/^W\//);
    for (const inm of [etag, etag.slice(2), `W/"stale", ${etag}`, "*"]) {
      const res = await anon(path, { ...v1, "if-none-match": inm });
      expect(res.status, inm).toBe(304);
      expect(res.headers.get("etag")).toBe(etag);
      expect(res.headers.get("cache-control")).toBe("public, max-age=60");
      expect(await res.text()).toBe("");
    }
    expect((await anon(path, { ...v1, "if-none-match": 'W/"stale"' })).status).toBe(200);
    // The v0.3 card is another representation: another tag.
    expect((await anon(path)).headers.get("etag")).not.toBe(etag);
    // Another agent's card, another tag; the directory has one too.
    expect((await anon("/a2a/agents/ProcessInvoice/.well-known/agent-card.json", v1)).headers.get("etag")).not.toBe(etag);
    const dir = await anon("/.well-known/agents.json");
    expect((await anon("/.well-known/agents.json", { "if-none-match": dir.headers.get("etag")! })).status).toBe(304);
    // With a credential the 304 stays private.
    const mine = await orgFetch(ORG, path, { headers: { ...v1, "if-none-match": etag } });
    expect(mine.status).toBe(304);
    expect(mine.headers.get("cache-control")).toBe("private, max-age=30");
  });
});

describe("settings.discovery.requireCredentialForCards", () => {
  it("requires a credential for cards, the root card and the directory; GET/PUT /settings/discovery are audited and validated", async () => {
    const put = await putDiscovery({ requireCredentialForCards: true, defaultAgent: "ProcessInvoice" });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({ discovery: { requireCredentialForCards: true, defaultAgent: "ProcessInvoice" } });
    expect(await (await orgFetch(ORG, "/settings/discovery")).json()).toEqual({ discovery: { requireCredentialForCards: true, defaultAgent: "ProcessInvoice" } });

    for (const path of ["/a2a/agents/ProcessInvoice/.well-known/agent-card.json", "/.well-known/agent-card.json", "/.well-known/agents.json", "/a2a/agents"]) {
      const res = await anon(path, v1);
      expect(res.status, path).toBe(401);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(res.headers.get("cache-control")).toMatch(/private|no-store/);
      const ok = await orgFetch(ORG, path, { headers: v1 });
      expect(ok.status, path).toBe(200);
      expect(ok.headers.get("cache-control")).toBe("private, max-age=30");
    }
    // A private agent is still exactly a missing one for a caller with a credential.
    const priv = await observable(await orgFetch(ORG, "/a2a/agents/ValidateData/.well-known/agent-card.json"));
    const missing = await observable(await orgFetch(ORG, "/a2a/agents/NoSuchAgent/.well-known/agent-card.json"));
    expect(priv).toEqual(missing);

    const rows = await eventually(
      async () => ((await (await orgFetch(ORG, "/audit?action=settings.discovery.put")).json()) as { entries: any[] }).entries,
      (r) => r.some((e) => e.summary?.input?.defaultAgent === "ProcessInvoice"),
    );
    // (The audit redactor hides any key that names a credential, this flag included.)
    expect(rows.find((e) => e.summary?.input?.defaultAgent === "ProcessInvoice")).toMatchObject({ resource: "/settings/discovery", outcome: "success", actor: expect.stringMatching(/^key:/) });

    // Invalid bodies are 400 problems; a reader without write on the setting is 403.
    for (const body of [{ requireCredentialForCards: "yes" }, { defaultAgent: "../etc" }, { other: 1 }]) {
      expect((await putDiscovery(body)).status, JSON.stringify(body)).toBe(400);
    }
    const scope = (await orgBySlug(db(env), ORG))!;
    const reader = await createApiKey(db(env), scope, { name: "reader", permissions: [{ resource: "/settings/*", action: "read" }], createdBy: seed.ownerId });
    const auth = { authorization: `Bearer ${reader.key}` };
    expect((await orgFetch(ORG, "/settings/discovery", { headers: auth })).status).toBe(200);
    expect((await orgFetch(ORG, "/settings/discovery", { method: "PUT", headers: { ...auth, "content-type": "application/json" }, body: "{}" })).status).toBe(403);

    expect((await putDiscovery({ requireCredentialForCards: false })).status).toBe(200);
    expect((await anon("/a2a/agents/ProcessInvoice/.well-known/agent-card.json", v1)).status).toBe(200);
  });
});

describe("the extended card (authenticated callers only)", () => {
  /** A small app with the gateway's own org resolver and authenticate(), calling extendedAgentCard like the dispatcher does. */
  function extendedApp() {
    const app = new Hono<AppEnv>();
    app.use(async (c, next) => {
      c.set("principal", null);
      await next();
    });
    app.use(resolveOrg());
    app.use(authenticate());
    app.get("/extended/:name{.+}", async (c) => {
      const agent = await findAgent(db(c.env), c.get("org"), c.req.param("name"));
      return c.json({ card: agent ? await extendedAgentCard(c, agent) : "missing" });
    });
    const ctx = { waitUntil: () => {}, passThroughOnException: () => {}, props: {} } as unknown as ExecutionContext;
    return (name: string, headers: Record<string, string>) => app.request(`${BASE}/extended/${name}`, { headers }, env, ctx);
  }

  it("needs a credential, has the extended skills, and the internal details for a caller with read on the agent", async () => {
    const call = extendedApp();
    expect((await call("Skilled", {})).status).toBe(401);

    const owner = await call("Skilled", { authorization: `Bearer ${keyOf(ORG)}` });
    expect(owner.status).toBe(200);
    const card = ((await owner.json()) as any).card;
    expect(card.skills.map((s: any) => s.id)).toEqual(["audit", "fraud"]);
    expect(card.capabilities).toMatchObject({ streaming: true, pushNotifications: true, extendedAgentCard: true });
    const details = card.capabilities.extensions.find((e: any) => e.uri === AGENT_DETAILS_EXTENSION);
    expect(details.params).toMatchObject({
      repository: { id: seed.repository.id, name: "demo", root: true },
      path: "Skilled/prompt.md",
      commit: seed.commit,
      model: "offline:echo",
      allowedAgents: ["Summarize"],
      mcpServers: [],
    });

    // A key that may execute the agent but not read it: the extended skills, no internal details.
    const scope = (await orgBySlug(db(env), ORG))!;
    const runner = await createApiKey(db(env), scope, { name: "runner", permissions: [{ resource: "/agents/*", action: "execute" }], createdBy: seed.ownerId });
    const limited = ((await (await call("Skilled", { authorization: `Bearer ${runner.key}` })).json()) as any).card;
    expect(limited.skills.map((s: any) => s.id)).toEqual(["audit", "fraud"]);
    expect(limited.capabilities.extensions).toBeUndefined();
    expect(JSON.stringify(limited)).not.toContain(seed.commit);
  });

  it("over the wire: the SDK client with a credential gets the extended card; -32007 for an agent without one; no credential is a 401", async () => {
    const withKey: typeof fetch = async (input, init) => {
      const req = new Request(input as RequestInfo, init);
      req.headers.set("authorization", `Bearer ${keyOf(ORG)}`);
      return worker.fetch(req);
    };
    const factory = new ClientFactory({ transports: [new JsonRpcTransportFactory({ fetchImpl: withKey })], cardResolver: new DefaultAgentCardResolver({ fetchImpl: withKey }) });
    const client = await factory.createFromUrl(`${BASE}/a2a/agents/Skilled/.well-known/agent-card.json`, "");
    const card = await client.getAgentCard(); // the public card says extendedAgentCard: true, so the client asks for it
    expect(card.skills.map((s) => s.id)).toEqual(["audit", "fraud"]);
    expect(card.capabilities?.extensions.map((e) => e.uri)).toEqual([AGENT_DETAILS_EXTENSION]);

    const rpcCall = (agent: string, method: string, headers: Record<string, string>) =>
      worker.fetch(`${BASE}/a2a/agents/${agent}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: json({ jsonrpc: "2.0", id: 1, method, params: {} }) });
    const none = (await (await rpcCall("NoExtended", "GetExtendedAgentCard", { ...v1, authorization: `Bearer ${keyOf(ORG)}` })).json()) as any;
    expect(none.error.code).toBe(-32007);
    expect((await rpcCall("Skilled", "GetExtendedAgentCard", v1)).status).toBe(401);
    const rest = await worker.fetch(`${BASE}/a2a/agents/Skilled/extendedAgentCard`, { headers: { ...v1, authorization: `Bearer ${keyOf(ORG)}` } });
    expect(rest.status).toBe(200);
    expect(((await rest.json()) as any).skills.map((s: any) => s.id)).toEqual(["audit", "fraud"]);
  });

  it("is null (GetExtendedAgentCard answers -32007) for an agent whose agentcard says extended: false, and its public card says so", async () => {
    const call = extendedApp();
    const res = await call("NoExtended", { authorization: `Bearer ${keyOf(ORG)}` });
    expect(((await res.json()) as any).card).toBeNull();
    const pub = (await (await anon("/a2a/agents/NoExtended/.well-known/agent-card.json", v1)).json()) as any;
    expect(pub.capabilities.extendedAgentCard).toBe(false);
    const v03 = (await (await anon("/a2a/agents/NoExtended/.well-known/agent-card.json")).json()) as any;
    expect(v03.supportsAuthenticatedExtendedCard).toBe(false);
    // A private agent has none either (it is not reachable over A2A at all).
    const priv = await call("ValidateData", { authorization: `Bearer ${keyOf(ORG)}` });
    expect(((await priv.json()) as any).card).toBeNull();
  });
});
