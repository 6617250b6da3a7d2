/** Authentication (Kratos sessions, API keys, the dev identity), bootstrap, and authorisation at the gateway. */
import { env } from "cloudflare:workers";
import { inject } from "vitest";
import { beforeAll, describe, expect, it } from "vitest";
import { createApiKey, revokeApiKey } from "../src/auth/api-keys";
import { addMember, mirrorUser } from "../src/auth/users";
import { assignUserRole } from "../src/authz/builtin";
import { db } from "../src/db/client";
import { orgBySlug } from "../src/db/orgs";
import type { OrgScope } from "../src/db/scope";
import { createApp } from "../workers/gateway";
import { BOOTSTRAP_TOKEN, orgFetch, rpc, seedOrg, sendMessage, worker, type SeedResult } from "./helpers";

const kratos = () => inject("kratosUrl");
async function kratosSession(token: string, identityId: string, email: string, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${kratos()}/__sessions`, { method: "POST", body: JSON.stringify({ token, identityId, email, ...extra }) });
  expect(res.status).toBe(201);
}
const whoamiCalls = async () => ((await (await fetch(`${kratos()}/__stats`)).json()) as { whoamiCalls: number }).whoamiCalls;
const noAuth = (init: RequestInit = {}) => ({ ...init, headers: { ...(init.headers as Record<string, string>), authorization: "Bearer " } });

let seed: SeedResult;
let scope: OrgScope;
beforeAll(async () => {
  seed = await seedOrg("authn");
  await seedOrg("authn-other");
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
    const before = await whoamiCalls();
    for (let i = 0; i < 5; i++) expect((await orgFetch("authn", "/a2a/agents", { headers: { "x-session-token": "tok-bob" } })).status).toBe(200);
    expect((await whoamiCalls()) - before).toBe(1);
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
    const ok = await createApiKey(db(env), scope, { name: "ci", permissions: [{ resource: "/agents/*", action: "*" }] });
    expect(ok.key).toMatch(/^shk_[A-Za-z0-9]{12}_[A-Za-z0-9]{40}$/);
    expect((await orgFetch("authn", "/a2a/agents", { headers: { authorization: `Bearer ${ok.key}` } })).status).toBe(200);

    const otherKey = (await orgFetch("authn-other", "/a2a/agents")).status; // the other org's own key works there
    expect(otherKey).toBe(200);
    const other = await createApiKey(db(env), (await orgBySlug(db(env), "authn-other")) as OrgScope, { name: "x", permissions: [{ resource: "/*", action: "*" }] });
    const forged = `shk_${ok.prefix}_${"A".repeat(40)}`;
    const expired = await createApiKey(db(env), scope, { name: "old", permissions: [{ resource: "/*", action: "*" }], expiresAt: Date.now() - 1 });
    const revoked = await createApiKey(db(env), scope, { name: "gone", permissions: [{ resource: "/*", action: "*" }] });
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
    const readOnly = await createApiKey(db(env), scope, { name: "reader", permissions: [{ resource: "/agents/*", action: "read" }] });
    const headers = { authorization: `Bearer ${readOnly.key}` };
    expect((await orgFetch("authn", "/a2a/agents/Summarize/.well-known/agent-card.json", { headers })).status).toBe(200);
    const r = await rpc("authn", "Summarize", sendMessage("hi"), { "A2A-Version": "1.0", ...headers });
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe(-32000);
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
    expect(viewer.status).toBe(403);
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
    expect((await rpc("authn", "Summarize", sendMessage("x"), { authorization: "Bearer tok-none" })).status).toBe(403);
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
    const roles = await env.DB.prepare("SELECT r.name FROM roles r JOIN orgs o ON o.id = r.org_id WHERE o.slug = 'boot-x' ORDER BY r.name").all<{ name: string }>();
    expect(roles.results.map((r) => r.name)).toEqual(["admin", "developer", "owner", "viewer"]);
  });
});
