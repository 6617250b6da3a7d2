/** Authentication (Kratos sessions, API keys, the dev identity), bootstrap, and authorisation at the gateway. */
import { env } from "cloudflare:workers";
import { inject } from "vitest";
import { beforeAll, describe, expect, it } from "vitest";
import { clearApiKeyCache, createApiKey, revokeApiKey } from "../src/auth/api-keys";
import { privateCacheHeaders } from "../src/auth/middleware";
import { addMember, mirrorUser, removeMember } from "../src/auth/users";
import { assignUserRole, grantUserPermission, unassignUserRole } from "../src/authz/builtin";
import { db } from "../src/db/client";
import { orgBySlug } from "../src/db/orgs";
import type { OrgScope } from "../src/db/scope";
import { createApp } from "../workers/gateway";
import { BOOTSTRAP_TOKEN, bootstrapOrg, eventually, orgFetch, rpc, seedOrg, sendMessage, worker, type SeedResult } from "./helpers";

const kratos = () => inject("kratosUrl");
async function kratosSession(token: string, identityId: string, email: string, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${kratos()}/__sessions`, { method: "POST", body: JSON.stringify({ token, identityId, email, ...extra }) });
  expect(res.status).toBe(201);
}
/** Whoami calls that carried `token` (other test files share the server). */
const whoamiCalls = async (token: string) =>
  ((await (await fetch(`${kratos()}/__stats?token=${encodeURIComponent(token)}`)).json()) as { tokenCalls: number }).tokenCalls;
const noAuth = (init: RequestInit = {}) => ({ ...init, headers: { ...(init.headers as Record<string, string>), authorization: "Bearer " } });

let seed: SeedResult;
let otherSeed: SeedResult;
let scope: OrgScope;
beforeAll(async () => {
  seed = await seedOrg("authn");
  otherSeed = await seedOrg("authn-other");
  const s = await orgBySlug(db(env), "authn");
  if (!s) throw new Error("no org");
  scope = s;
});

async function member(identityId: string, email: string, role?: string) {
  const user = await mirrorUser(db(env), "kratos", identityId, email);
  await addMember(db(env), scope, user.id);
  if (role) await assignUserRole(db(env), scope, user.id, role);
  return user;
}

describe("Kratos sessions", () => {
  it("accepts a session token as Bearer, as X-Session-Token and as the browser cookie", async () => {
    await member("kr-alice", "alice@authn.test", "developer");
    await kratosSession("tok-alice-1", "kr-alice", "alice@authn.test");
    const variants: Record<string, string>[] = [
      { authorization: "Bearer tok-alice-1" },
      { "x-session-token": "tok-alice-1" },
      { cookie: "theme=dark; ory_kratos_session=tok-alice-1" },
    ];
    for (const headers of variants) {
      const res = await orgFetch("authn", "/a2a/agents", { headers });
      expect(res.status, JSON.stringify(headers)).toBe(200);
    }
  });

  it("caches a positive answer briefly (no Kratos call per request)", async () => {
    await member("kr-bob", "bob@authn.test", "viewer");
    await kratosSession("tok-bob", "kr-bob", "bob@authn.test");
    const before = await whoamiCalls("tok-bob");
    for (let i = 0; i < 5; i++) expect((await orgFetch("authn", "/a2a/agents", { headers: { "x-session-token": "tok-bob" } })).status).toBe(200);
    expect((await whoamiCalls("tok-bob")) - before).toBe(1);
  });

  it("caches a refusal briefly: many requests with one bad token make one Kratos call", async () => {
    const bad = `tok-bad-${crypto.randomUUID()}`;
    const expired = `tok-expired-${crypto.randomUUID()}`;
    await member("kr-erin", "erin@authn.test", "viewer");
    await kratosSession(expired, "kr-erin", "erin@authn.test", { expiresAt: new Date(Date.now() - 1000).toISOString() });
    for (const token of [bad, expired]) {
      for (let i = 0; i < 8; i++) {
        const res = await orgFetch("authn", "/a2a/agents", { headers: { "x-session-token": token } });
        expect(res.status, token).toBe(401);
      }
      expect(await whoamiCalls(token), token).toBe(1);
    }
    // the same bad token as a browser cookie: one more call, then cached as well
    for (let i = 0; i < 4; i++) expect((await orgFetch("authn", "/a2a/agents", { headers: { cookie: `ory_kratos_session=${bad}` } })).status).toBe(401);
    expect(await whoamiCalls(bad)).toBe(2);
  });

  it("never caches an unavailable Kratos as a refusal", async () => {
    const token = `tok-outage-${crypto.randomUUID()}`;
    await member("kr-frank", "frank@authn.test", "viewer");
    await kratosSession(token, "kr-frank", "frank@authn.test", { unavailable: true });
    for (let i = 0; i < 2; i++) {
      const res = await orgFetch("authn", "/a2a/agents", { headers: { "x-session-token": token } });
      expect(res.status).toBe(503);
    }
    expect(await whoamiCalls(token)).toBe(2);
    await kratosSession(token, "kr-frank", "frank@authn.test"); // Kratos is back
    expect((await orgFetch("authn", "/a2a/agents", { headers: { "x-session-token": token } })).status).toBe(200);
  });

  it("refuses unknown, expired and inactive sessions with 401, and asks for a second factor with 403", async () => {
    await member("kr-carol", "carol@authn.test", "viewer");
    await kratosSession("tok-expired", "kr-carol", "carol@authn.test", { expiresAt: new Date(Date.now() - 1000).toISOString() });
    await kratosSession("tok-inactive", "kr-carol", "carol@authn.test", { active: false });
    await kratosSession("tok-aal2", "kr-carol", "carol@authn.test", { aal2Required: true });
    for (const token of ["tok-nope", "tok-expired", "tok-inactive"]) {
      const res = await orgFetch("authn", "/a2a/agents", { headers: { "x-session-token": token } });
      expect(res.status, token).toBe(401);
      expect(res.headers.get("www-authenticate")).toContain("Bearer");
    }
    expect((await orgFetch("authn", "/a2a/agents", { headers: { "x-session-token": "tok-aal2" } })).status).toBe(403);
  });

  it("answers 503 (never a pass) when Kratos is unreachable", async () => {
    const app = createApp();
    const down = { ...env, KRATOS_URL: "http://127.0.0.1:9" } as Env;
    const res = await app.request("http://authn.localhost/a2a/agents", { headers: { "x-session-token": "tok-alice-1-uncached" } }, down);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { code: string; detail: string };
    expect(body.code).toBe("UNAVAILABLE");
    expect(JSON.stringify(body)).not.toContain("127.0.0.1");
  });

  it("treats a valid session of a non-member like a missing org", async () => {
    await mirrorUser(db(env), "kratos", "kr-mallory", "mallory@evil.test");
    await kratosSession("tok-mallory", "kr-mallory", "mallory@evil.test");
    const res = await orgFetch("authn", "/a2a/agents", { headers: { "x-session-token": "tok-mallory" } });
    const missing = await worker.fetch("http://no-such-org.localhost/a2a/agents");
    expect(res.status).toBe(404);
    const strip = (b: any) => ({ ...b, requestId: undefined });
    expect(strip(await res.json())).toEqual(strip(await missing.json()));
  });
});

describe("API keys", () => {
  it("authenticates with a key of the org and refuses a key of another org, a forged, revoked or expired key", async () => {
    const ok = await createApiKey(db(env), scope, { name: "ci", permissions: [{ resource: "/agents/*", action: "*" }], createdBy: seed.ownerId });
    expect(ok.key).toMatch(/^shk_[A-Za-z0-9]{12}_[A-Za-z0-9]{40}$/);
    expect((await orgFetch("authn", "/a2a/agents", { headers: { authorization: `Bearer ${ok.key}` } })).status).toBe(200);

    const otherKey = (await orgFetch("authn-other", "/a2a/agents")).status; // the other org's own key works there
    expect(otherKey).toBe(200);
    const other = await createApiKey(db(env), (await orgBySlug(db(env), "authn-other")) as OrgScope, { name: "x", permissions: [{ resource: "/*", action: "*" }], createdBy: otherSeed.ownerId });
    const forged = `shk_${ok.prefix}_${"A".repeat(40)}`;
    const expired = await createApiKey(db(env), scope, { name: "old", permissions: [{ resource: "/*", action: "*" }], expiresAt: Date.now() - 1, createdBy: seed.ownerId });
    const revoked = await createApiKey(db(env), scope, { name: "gone", permissions: [{ resource: "/*", action: "*" }], createdBy: seed.ownerId });
    expect((await orgFetch("authn", "/a2a/agents", { headers: { authorization: `Bearer ${revoked.key}` } })).status).toBe(200);
    expect(await revokeApiKey(db(env), scope, revoked.id)).toBe(true);
    const bodies: string[] = [];
    for (const key of [other.key, forged, expired.key, revoked.key, "shk_malformed"]) {
      const res = await orgFetch("authn", "/a2a/agents", { headers: { authorization: `Bearer ${key}` } });
      expect(res.status, key).toBe(401);
      bodies.push(((await res.json()) as { detail: string }).detail);
    }
    // nothing in the answer tells a key of another org from a forged one
    expect(new Set(bodies.slice(0, 4)).size).toBe(1);
    const row = await env.DB.prepare("SELECT hash, last_used_at FROM api_keys WHERE id = ?").bind(ok.id).first<{ hash: string; last_used_at: number | null }>();
    expect(row?.hash).not.toContain(ok.key.slice(4));
    expect(row?.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(row?.last_used_at).toBeGreaterThan(0);
  });

  it("refuses malformed Authorization headers", async () => {
    for (const value of ["Basic abc", "Bearer", "Bearer a b"]) {
      const res = await orgFetch("authn", "/a2a/agents", { headers: { authorization: value } });
      expect(res.status, value).toBe(401);
    }
    expect((await orgFetch("authn", "/a2a/agents", noAuth())).status).toBe(401);
  });

  it("limits a key to its grants", async () => {
    const readOnly = await createApiKey(db(env), scope, { name: "reader", permissions: [{ resource: "/agents/*", action: "read" }], createdBy: seed.ownerId });
    const headers = { authorization: `Bearer ${readOnly.key}` };
    expect((await orgFetch("authn", "/a2a/agents/Summarize/.well-known/agent-card.json", { headers })).status).toBe(200);
    const r = await rpc("authn", "Summarize", sendMessage("hi"), { "A2A-Version": "1.0", ...headers });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe(-32601);
  });
});

describe("API keys follow their creator", () => {
  const call = (key: string, agent = "Summarize") => rpc("authn", agent, sendMessage(`via ${agent}`), { "A2A-Version": "1.0", authorization: `Bearer ${key}` });
  const agentsSeenBy = async (key: string) => {
    const res = await orgFetch("authn", "/a2a/agents", { headers: { authorization: `Bearer ${key}` } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { agents: { name: string }[] }).agents.map((a) => a.name).sort();
  };

  it("a key is allowed only what its own grants and its creator's current grants both allow", async () => {
    const creator = await member("kr-keymaker", "keymaker@authn.test", "developer");
    const key = await createApiKey(db(env), scope, {
      name: "follows",
      permissions: [
        { resource: "/agents/*", action: "execute" },
        { resource: "/agents/*", action: "read" },
      ],
      createdBy: creator.id,
    });
    expect((await call(key.key)).body.result.task.status.state).toBe("TASK_STATE_COMPLETED");
    expect(await agentsSeenBy(key.key)).toEqual(["ProcessInvoice", "Summarize"]);

    // The creator loses the role: the key loses it at once (same isolate) without being touched.
    expect(await unassignUserRole(db(env), scope, creator.id, "developer")).toBe(true);
    const refused = await call(key.key);
    expect(refused.status).toBe(404);
    expect(refused.body.error.code).toBe(-32601);
    expect(await agentsSeenBy(key.key)).toEqual([]);

    // The creator gets one agent back: the key, whose own grants cover every agent, gets just that one.
    await grantUserPermission(db(env), scope, creator.id, "/agents/Summarize", "execute");
    await grantUserPermission(db(env), scope, creator.id, "/agents/Summarize", "read");
    expect((await call(key.key)).status).toBe(200);
    expect((await call(key.key, "ProcessInvoice")).status).toBe(404);
    expect(await agentsSeenBy(key.key)).toEqual(["Summarize"]);

    // ...and the key still never exceeds its own grants: the creator can read runs, the key cannot.
    await grantUserPermission(db(env), scope, creator.id, "/runs/*", "read");
    const runId = (await call(key.key)).body.result.task.id as string;
    expect((await orgFetch("authn", `/runs/${runId}`, { headers: { authorization: `Bearer ${key.key}` } })).status).toBe(403);
  });

  it("a key made through the API by another key follows the person behind that key", async () => {
    const creator = await member("kr-chain", "chain@authn.test", "admin");
    const parent = await createApiKey(db(env), scope, { name: "parent", permissions: [{ resource: "/*", action: "*" }], createdBy: creator.id });
    const res = await orgFetch("authn", "/api-keys", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${parent.key}` },
      body: JSON.stringify({ name: "child", permissions: [{ resource: "/agents/*", action: "read" }] }),
    });
    expect(res.status).toBe(201);
    const child = ((await res.json()) as { apiKey: { id: string; key: string; createdBy: string } }).apiKey;
    expect(child.createdBy).toBe(creator.id);
    expect(await agentsSeenBy(child.key)).toEqual(["ProcessInvoice", "Summarize"]);
    await removeMember(db(env), scope, creator.id);
    expect((await orgFetch("authn", "/a2a/agents", { headers: { authorization: `Bearer ${child.key}` } })).status).toBe(401);
  });

  it("removing the creator disables their keys at once: 401 exactly like a revoked key", async () => {
    const creator = await member("kr-leaver", "leaver@authn.test", "developer");
    const keys = await Promise.all(
      ["a", "b"].map((n) => createApiKey(db(env), scope, { name: `leaver-${n}`, permissions: [{ resource: "/agents/*", action: "*" }], createdBy: creator.id })),
    );
    const revoked = await createApiKey(db(env), scope, { name: "revoked", permissions: [{ resource: "/agents/*", action: "*" }], createdBy: seed.ownerId });
    await revokeApiKey(db(env), scope, revoked.id);
    for (const k of keys) expect(await agentsSeenBy(k.key)).toEqual(["ProcessInvoice", "Summarize"]);

    const disabled = await removeMember(db(env), scope, creator.id);
    expect(disabled.sort()).toEqual(keys.map((k) => k.id).sort());

    const answer = async (key: string) => {
      const res = await orgFetch("authn", "/a2a/agents", { headers: { authorization: `Bearer ${key}` } });
      const body = (await res.json()) as Record<string, unknown>;
      return { status: res.status, www: res.headers.get("www-authenticate"), body: { ...body, requestId: undefined } };
    };
    const like = await answer(revoked.key);
    expect(like.status).toBe(401);
    for (const k of keys) expect(await answer(k.key)).toEqual(like);
    const r = await call(keys[0]!.key);
    expect(r.status).toBe(401);

    // The list shows them revoked; adding the user back does not revive them.
    const listed = ((await (await orgFetch("authn", "/api-keys")).json()) as { apiKeys: { id: string; revokedAt: number | null }[] }).apiKeys;
    for (const k of keys) expect(listed.find((l) => l.id === k.id)?.revokedAt).toBeGreaterThan(0);
    await addMember(db(env), scope, creator.id);
    expect(await answer(keys[1]!.key)).toEqual(like);
  });

  it("a key stops once its creator's membership is gone, however it was removed (within the 30 s key cache)", async () => {
    const creator = await member("kr-gone", "gone@authn.test", "developer");
    const key = await createApiKey(db(env), scope, { name: "orphaned", permissions: [{ resource: "/agents/*", action: "*" }], createdBy: creator.id });
    expect(await agentsSeenBy(key.key)).toEqual(["ProcessInvoice", "Summarize"]);
    // Removed by another isolate (or straight in D1): this isolate learns it when its cached key expires.
    await env.DB.prepare("DELETE FROM memberships WHERE org_id = ? AND user_id = ?").bind(scope.orgId, creator.id).run();
    clearApiKeyCache(); // stands for the 30 s key cache running out
    const res = await orgFetch("authn", "/a2a/agents", { headers: { authorization: `Bearer ${key.key}` } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { detail: string }).detail).toBe("invalid, expired or revoked API key");
  });

  it("a key without a creator never authenticates", async () => {
    const orphan = await createApiKey(db(env), scope, { name: "nobody's", permissions: [{ resource: "/*", action: "*" }] });
    expect(orphan.createdBy).toBeNull();
    expect((await orgFetch("authn", "/a2a/agents", { headers: { authorization: `Bearer ${orphan.key}` } })).status).toBe(401);
  });
});

describe("no agent existence oracle", () => {
  it("an exposed agent the key may not execute or read answers byte for byte like a missing agent", async () => {
    await bootstrapOrg("authn-empty"); // an org without agents: there, Summarize is missing
    const denied = await createApiKey(db(env), scope, { name: "runs-only", permissions: [{ resource: "/runs/*", action: "read" }], createdBy: seed.ownerId });
    const asDenied = { authorization: `Bearer ${denied.key}` };
    const body = JSON.stringify(sendMessage("who is there?", {}, "req-7"));
    const post = (slug: string, headers: Record<string, string> = {}) =>
      orgFetch(slug, "/a2a/agents/Summarize", { method: "POST", headers: { "content-type": "application/json", "A2A-Version": "1.0", ...headers }, body });
    const card = (slug: string, headers: Record<string, string> = {}) => orgFetch(slug, "/a2a/agents/Summarize/.well-known/agent-card.json", { headers });
    const shape = async (res: Response) => ({
      status: res.status,
      contentType: res.headers.get("content-type"),
      cacheControl: res.headers.get("cache-control"),
      vary: res.headers.get("vary"),
      text: (await res.text()).replace(/"requestId":"[^"]*"/, '"requestId":""'),
    });

    const forbiddenRpc = await shape(await post("authn", asDenied));
    const missingRpc = await shape(await post("authn-empty"));
    expect(forbiddenRpc.status).toBe(404);
    expect(forbiddenRpc).toEqual(missingRpc);
    expect(JSON.parse(forbiddenRpc.text)).toEqual({ jsonrpc: "2.0", id: "req-7", error: { code: -32601, message: "No agent named 'Summarize' is available here" } });

    const forbiddenCard = await shape(await card("authn", asDenied));
    const missingCard = await shape(await card("authn-empty"));
    expect(forbiddenCard.status).toBe(404);
    expect(forbiddenCard).toEqual(missingCard);

    // The refused execute and read are still in the audit trail.
    const rows = await eventually(
      async () => ((await (await orgFetch("authn", `/audit?action=auth.denied&actor=key:${denied.id}`)).json()) as { entries: any[] }).entries,
      (r) => r.length >= 2,
    );
    expect(rows.map((r) => [r.resource, r.summary?.input?.action, r.outcome]).sort()).toEqual([
      ["/agents/Summarize", "execute", "denied"],
      ["/agents/Summarize", "read", "denied"],
    ]);
  });
});

describe("authenticated answers are not publicly cacheable", () => {
  const credentialVary = (res: Response) => (res.headers.get("vary") ?? "").split(",").map((v) => v.trim().toLowerCase());
  const expectPrivate = (res: Response, what: string) => {
    const cc = res.headers.get("cache-control") ?? "";
    expect(cc, what).toMatch(/\b(private|no-store)\b/);
    expect(cc, what).not.toMatch(/\bpublic\b|s-maxage/);
    expect(credentialVary(res), what).toEqual(expect.arrayContaining(["authorization", "cookie", "x-session-token"]));
  };

  it("marks every answer behind authenticate() private and varying on the credential headers, refusals included", async () => {
    await member("kr-cache", "cache@authn.test", "viewer");
    await kratosSession("tok-cache", "kr-cache", "cache@authn.test");
    const requests: [string, Promise<Response>][] = [
      ["agent list (key)", orgFetch("authn", "/a2a/agents")],
      ["agent list (session cookie)", orgFetch("authn", "/a2a/agents", { headers: { cookie: "ory_kratos_session=tok-cache" } })],
      ["agent card", orgFetch("authn", "/a2a/agents/Summarize/.well-known/agent-card.json")],
      ["api keys", orgFetch("authn", "/api-keys")],
      ["secrets", orgFetch("authn", "/secrets")],
      ["audit", orgFetch("authn", "/audit")],
      ["repositories", orgFetch("authn", "/repositories")],
      ["missing run", orgFetch("authn", `/runs/${crypto.randomUUID()}`)],
      ["forbidden (viewer writes a secret)", orgFetch("authn", "/secrets/X", { method: "PUT", headers: { "x-session-token": "tok-cache", "content-type": "application/json" }, body: '{"value":"v"}' })],
      ["no credential", orgFetch("authn", "/a2a/agents", noAuth())],
      ["bad key", orgFetch("authn", "/a2a/agents", { headers: { authorization: "Bearer shk_nope" } })],
    ];
    const statuses: number[] = [];
    for (const [what, p] of requests) {
      const res = await p;
      statuses.push(res.status);
      expectPrivate(res, what);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 200, 404, 403, 401, 401]);
    const rpcRes = await orgFetch("authn", "/a2a/agents/Summarize", { method: "POST", headers: { "content-type": "application/json", "A2A-Version": "1.0" }, body: JSON.stringify(sendMessage("cache?")) });
    expect(rpcRes.status).toBe(200);
    expectPrivate(rpcRes, "JSON-RPC");
    // The card keeps its own freshness for the caller's browser, but only there.
    const card = await orgFetch("authn", "/a2a/agents/Summarize/.well-known/agent-card.json");
    expect(card.headers.get("cache-control")).toBe("private, max-age=30");
  });

  it("turns a public Cache-Control private, keeps a stricter one, and merges Vary", () => {
    const h = (init: Record<string, string>) => {
      const headers = new Headers(init);
      privateCacheHeaders(headers);
      return [headers.get("cache-control"), headers.get("vary")];
    };
    expect(h({})).toEqual(["private, no-store", "Authorization, Cookie, X-Session-Token"]);
    expect(h({ "cache-control": "public, max-age=30, s-maxage=300", vary: "Accept" })).toEqual(["private, max-age=30", "Accept, Authorization, Cookie, X-Session-Token"]);
    expect(h({ "cache-control": "no-store", vary: "cookie" })).toEqual(["no-store", "cookie, Authorization, X-Session-Token"]);
    expect(h({ "cache-control": "private, max-age=5", vary: "*" })).toEqual(["private, max-age=5", "*"]);
  });
});

describe("authorisation through roles", () => {
  it("lets a developer execute agents and keeps a viewer to reading", async () => {
    await member("kr-dev", "dev@authn.test", "developer");
    await member("kr-view", "view@authn.test", "viewer");
    await kratosSession("tok-dev", "kr-dev", "dev@authn.test");
    await kratosSession("tok-view", "kr-view", "view@authn.test");
    const dev = await rpc("authn", "Summarize", sendMessage("from a developer"), { "A2A-Version": "1.0", "x-session-token": "tok-dev", authorization: "Bearer tok-dev" });
    expect(dev.body.result.task.status.state).toBe("TASK_STATE_COMPLETED");
    const run = await orgFetch("authn", `/runs/${dev.body.result.task.id}`, { headers: { authorization: "Bearer tok-view" } });
    expect(run.status).toBe(200);
    const viewer = await rpc("authn", "Summarize", sendMessage("from a viewer"), { "A2A-Version": "1.0", authorization: "Bearer tok-view" });
    expect(viewer.status).toBe(404); // like a missing agent
    // the run records who started it
    const row = await env.DB.prepare("SELECT initiated_by FROM runs WHERE id = ?").bind(dev.body.result.task.id).first<{ initiated_by: string }>();
    expect(row?.initiated_by).toMatch(/^user:/);
  });

  it("a member with no role can do nothing", async () => {
    await member("kr-none", "none@authn.test");
    await kratosSession("tok-none", "kr-none", "none@authn.test");
    const list = await orgFetch("authn", "/a2a/agents", { headers: { authorization: "Bearer tok-none" } });
    expect(list.status).toBe(200);
    expect(((await list.json()) as { agents: unknown[] }).agents).toEqual([]);
    expect((await rpc("authn", "Summarize", sendMessage("x"), { authorization: "Bearer tok-none" })).status).toBe(404);
  });
});

describe("development identity and bootstrap", () => {
  it("accepts dev:<email> only when enabled and never under production configuration", async () => {
    const ok = await orgFetch("authn", "/a2a/agents", { headers: { authorization: `Bearer dev:owner@authn.test` } });
    expect(ok.status).toBe(200);
    const app = createApp();
    const prod = { ...env, SHAMAN_ENV: "production", SHAMAN_DEV_IDENTITY: "true", SHAMAN_DOMAIN: "localhost" } as Env;
    const refused = await app.request("http://authn.localhost/a2a/agents", { headers: { authorization: "Bearer dev:owner@authn.test" } }, prod);
    expect(refused.status).toBe(401);
    const off = { ...env, SHAMAN_DEV_IDENTITY: "false" } as Env;
    expect((await app.request("http://authn.localhost/a2a/agents", { headers: { authorization: "Bearer dev:owner@authn.test" } }, off)).status).toBe(401);
  });

  it("bootstraps only with the bootstrap token, and validates its body", async () => {
    const body = JSON.stringify({ org: { slug: "boot-x", name: "X" }, owner: { email: "o@x.test", identityProvider: "dev" } });
    const wrong = await worker.fetch("http://localhost/_admin/bootstrap", { method: "POST", headers: { authorization: "Bearer nope" }, body });
    expect(wrong.status).toBe(404);
    const none = await createApp().request("http://localhost/_admin/bootstrap", { method: "POST", headers: { authorization: `Bearer ${BOOTSTRAP_TOKEN}` }, body }, { ...env, SHAMAN_BOOTSTRAP_TOKEN: undefined } as Env);
    expect(none.status).toBe(404);
    const bad = await worker.fetch("http://localhost/_admin/bootstrap", { method: "POST", headers: { authorization: `Bearer ${BOOTSTRAP_TOKEN}` }, body: "{}" });
    expect(bad.status).toBe(400);
    const good = await worker.fetch("http://localhost/_admin/bootstrap", { method: "POST", headers: { authorization: `Bearer ${BOOTSTRAP_TOKEN}` }, body });
    expect(good.status).toBe(200);
    expect(good.headers.get("cache-control")).toBe("no-store"); // it may carry a new API key
    const roles = await env.DB.prepare("SELECT r.name FROM roles r JOIN orgs o ON o.id = r.org_id WHERE o.slug = 'boot-x' ORDER BY r.name").all<{ name: string }>();
    expect(roles.results.map((r) => r.name)).toEqual(["admin", "developer", "owner", "viewer"]);
  });
});
