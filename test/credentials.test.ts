/**
 * No org secret can be sent to a host the org did not allow (issue 8, item 2). A developer
 * (who may write repositories but holds no `use` on secrets) tries every path that would
 * send a secret to a server they control, the capturing server on 127.0.0.1, and the
 * secret never arrives there; an admin's secret goes only to the hosts on its list.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { mirrorUser, addMember } from "../src/auth/users";
import { assignUserRole } from "../src/authz/builtin";
import { db } from "../src/db/client";
import { orgBySlug } from "../src/db/orgs";
import { bootstrapOrg, orgFetch } from "./helpers";

const ORG = "creds";
const OPENAI_KEY = "sk-creds-org-key-0123456789";
const GIT_TOKEN = "ghp_creds_token_0123456789";
const capture = () => env.TEST_CAPTURE_URL;
let devKey = "";

const json = (body: unknown, method = "POST", key?: string) => ({
  method,
  headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
  body: JSON.stringify(body),
});

async function captured(prefix: string): Promise<Array<{ path: string; headers: Record<string, string> }>> {
  return (await fetch(`${capture()}/__captured?prefix=${encodeURIComponent(prefix)}`)).json();
}

/** Nothing the capturing server saw under `prefix` carried either secret, in any header. */
async function expectNoSecretSent(prefix: string) {
  for (const r of await captured(prefix)) {
    const all = JSON.stringify(r.headers);
    expect(all).not.toContain(OPENAI_KEY);
    expect(all).not.toContain(GIT_TOKEN);
    expect(all).not.toContain(btoa(`x-access-token:${GIT_TOKEN}`));
    expect(r.headers.authorization).toBeUndefined();
  }
}

beforeAll(async () => {
  await bootstrapOrg(ORG);
  const scope = (await orgBySlug(db(env), ORG))!;
  const dev = await mirrorUser(db(env), "dev", "dev@creds.test", "dev@creds.test");
  await addMember(db(env), scope, dev.id);
  await assignUserRole(db(env), scope, dev.id, "developer");
  // the owner's secrets: a provider key (allowed to its API only) and a git token (allowed to github.com)
  expect((await orgFetch(ORG, "/secrets/OPENAI_API_KEY", json({ value: OPENAI_KEY, allowedHosts: ["api.openai.com"] }, "PUT"))).status).toBe(200);
  expect((await orgFetch(ORG, "/secrets/GIT_TOKEN", json({ value: GIT_TOKEN, allowedHosts: ["github.com"] }, "PUT"))).status).toBe(200);
  // a developer-role API key: the developer role's grants (developers cannot make keys themselves)
  const { DEFAULT_ROLES } = await import("../src/authz/builtin");
  const res = await orgFetch(ORG, "/api-keys", json({ name: "developer key", permissions: DEFAULT_ROLES.developer.grants }));
  expect(res.status).toBe(201);
  devKey = ((await res.json()) as { apiKey: { key: string } }).apiKey.key;
  expect(devKey).toMatch(/^shk_/);
});

describe("a developer cannot send an org secret anywhere", () => {
  it("cannot name a secret as a repository credential", async () => {
    for (const secret of ["OPENAI_API_KEY", "GIT_TOKEN", "NO_SUCH_SECRET"]) {
      const res = await orgFetch(ORG, "/repositories", json({ name: `steal-${secret.toLowerCase().replace(/_/g, "-")}`, gitUrl: `${capture()}/dev-create/${secret}.git`, credentialSecret: secret }, "POST", devKey));
      // the same answer whether or not the secret exists: no oracle for secret names either
      expect(res.status).toBe(403);
      expect(((await res.json()) as { detail: string }).detail).toBe(`not allowed: use on /secrets/${secret}`);
    }
    expect(await captured("/dev-create")).toEqual([]);
  });

  it("cannot attach a secret to an existing repository, nor move a repository that carries one", async () => {
    // the owner registers a repository with a credential (no sync: the token is for github.com)
    const owned = await orgFetch(ORG, "/repositories", json({ name: "owned", gitUrl: "https://github.com/creds/agents.git", credentialSecret: "GIT_TOKEN", sync: false }));
    expect(owned.status).toBe(201);
    const ownedId = ((await owned.json()) as any).repository.id;
    const moved = await orgFetch(ORG, `/repositories/${ownedId}`, json({ gitUrl: `${capture()}/dev-move/x.git` }, "PATCH", devKey));
    expect(moved.status).toBe(403);
    // a repository of the developer's own, given the owner's secret afterwards
    const mine = await orgFetch(ORG, "/repositories", json({ name: "mine", gitUrl: `${capture()}/dev-attach/x.git`, sync: false }, "POST", devKey));
    expect(mine.status).toBe(201);
    const mineId = ((await mine.json()) as any).repository.id;
    const attach = await orgFetch(ORG, `/repositories/${mineId}`, json({ credentialSecret: "OPENAI_API_KEY" }, "PATCH", devKey));
    expect(attach.status).toBe(403);
    // the repository is unchanged, and a sync of it sends nothing secret
    const after = ((await (await orgFetch(ORG, `/repositories/${ownedId}`)).json()) as any).repository;
    expect(after.gitUrl).toBe("https://github.com/creds/agents.git");
    expect((await orgFetch(ORG, `/repositories/${mineId}/sync`, json({}, "POST", devKey))).status).toBe(200);
    await expectNoSecretSent("/dev-attach");
    expect(await captured("/dev-move")).toEqual([]);
    // changing the branch of a repository that carries a credential keeps it where it was: allowed
    expect((await orgFetch(ORG, `/repositories/${ownedId}`, json({ branch: "dev" }, "PATCH", devKey))).status).toBe(200);
  });

  it("cannot make a repository root (admin only)", async () => {
    const res = await orgFetch(ORG, "/repositories", json({ name: "rooted", gitUrl: `${capture()}/dev-root/x.git`, isRoot: true, sync: false }, "POST", devKey));
    expect(res.status).toBe(403);
    const mine = await orgFetch(ORG, "/repositories", json({ name: "later-root", gitUrl: `${capture()}/dev-root/y.git`, sync: false }, "POST", devKey));
    const id = ((await mine.json()) as any).repository.id;
    expect((await orgFetch(ORG, `/repositories/${id}`, json({ isRoot: true }, "PATCH", devKey))).status).toBe(403);
    expect((await orgFetch(ORG, `/repositories/${id}`, json({ isRoot: true }, "PATCH"))).status).toBe(200);
  });

  it("cannot name a secret for an external agent, nor change a secret's hosts", async () => {
    const devUser = { authorization: "Bearer dev:dev@creds.test", "content-type": "application/json" };
    // the developer role has no write on external agents either; grant it to show `use` is what stops them
    const scope = (await orgBySlug(db(env), ORG))!;
    const { grantUserPermission } = await import("../src/authz/builtin");
    const dev = await mirrorUser(db(env), "dev", "dev@creds.test", "dev@creds.test");
    await grantUserPermission(db(env), scope, dev.id, "/external-agents/*", "write");
    const { clearPolicyCache } = await import("../src/authz/builtin");
    clearPolicyCache();
    const plain = await orgFetch(ORG, "/external-agents/Thief", { method: "PUT", headers: devUser, body: JSON.stringify({ url: `${capture()}/dev-ext` }) });
    expect(plain.status).toBe(200);
    const named = await orgFetch(ORG, "/external-agents/Thief", { method: "PUT", headers: devUser, body: JSON.stringify({ url: `${capture()}/dev-ext`, credentialSecret: "OPENAI_API_KEY" }) });
    expect(named.status).toBe(403);
    // the owner names it; the developer may not then move it elsewhere
    expect((await orgFetch(ORG, "/external-agents/Thief", json({ url: "https://api.openai.com/v1/a2a", credentialSecret: "OPENAI_API_KEY" }, "PUT"))).status).toBe(200);
    const movedAway = await orgFetch(ORG, "/external-agents/Thief", { method: "PUT", headers: devUser, body: JSON.stringify({ url: `${capture()}/dev-ext`, credentialSecret: "OPENAI_API_KEY" }) });
    expect(movedAway.status).toBe(403);
    const patched = await orgFetch(ORG, "/secrets/OPENAI_API_KEY", { method: "PATCH", headers: devUser, body: JSON.stringify({ allowedHosts: ["127.0.0.1"] }) });
    expect(patched.status).toBe(403);
    expect(((await (await orgFetch(ORG, "/secrets")).json()) as any).secrets.find((s: any) => s.name === "OPENAI_API_KEY").allowedHosts).toEqual(["api.openai.com"]);
    expect(await captured("/dev-ext")).toEqual([]);
  });
});

describe("secret host lists", () => {
  it("are set with the secret, validated, listed and changed with PATCH", async () => {
    const bad = await orgFetch(ORG, "/secrets/HOSTY", json({ value: "v", allowedHosts: ["https://github.com/x"] }, "PUT"));
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).detail).toMatch(/^allowedHosts: 'https:\/\/github.com\/x' is not a host pattern/);
    const put = await orgFetch(ORG, "/secrets/HOSTY", json({ value: "v", allowedHosts: ["GitHub.com", "*.example.com", "github.com"] }, "PUT"));
    expect(((await put.json()) as any).secret.allowedHosts).toEqual(["github.com", "*.example.com"]);
    // a PUT without allowedHosts keeps the list
    expect(((await (await orgFetch(ORG, "/secrets/HOSTY", json({ value: "v2" }, "PUT"))).json()) as any).secret.allowedHosts).toEqual(["github.com", "*.example.com"]);
    const patched = await orgFetch(ORG, "/secrets/HOSTY", json({ allowedHosts: [] }, "PATCH"));
    expect(((await patched.json()) as any).secret.allowedHosts).toEqual([]);
    expect((await orgFetch(ORG, "/secrets/NOPE", json({ allowedHosts: [] }, "PATCH"))).status).toBe(404);
    const audit = ((await (await orgFetch(ORG, "/audit?actionPrefix=secret.&resource=/secrets/HOSTY")).json()) as any).entries;
    expect(JSON.stringify(audit)).not.toContain('"v2"');
  });

  it("an owner's secret is not sent to a host off its list, even by the owner's own repository", async () => {
    const res = await orgFetch(ORG, "/repositories", json({ name: "offlist", gitUrl: `${capture()}/owner-offlist/x.git`, credentialSecret: "GIT_TOKEN" }));
    expect(res.status).toBe(201);
    const body = (await res.json()) as any;
    expect(body.sync.status).toBe("failed");
    expect(body.sync.error.message).toMatch(/GIT_TOKEN.*may not be sent to 127\.0\.0\.1/);
    expect(body.sync.error.message).not.toContain(GIT_TOKEN);
    expect(await captured("/owner-offlist")).toEqual([]);
  });
});

/**
 * A D1 whose reads answer only when `release()` is called (after reading the old row): a
 * read that was slow to come back, as in production where requests overlap.
 */
function slowReads(): { d1: D1Database; release(): void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const wrap = (stmt: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(stmt, {
      get(target, prop) {
        if (prop === "bind") return (...args: unknown[]) => wrap(target.bind(...args));
        if (prop === "raw" || prop === "all" || prop === "first") {
          return async (...args: unknown[]) => {
            const result = await (target[prop] as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            await gate;
            return result;
          };
        }
        const v = Reflect.get(target, prop);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  const d1 = new Proxy(env.DB, {
    get(target, prop) {
      if (prop === "prepare") return (q: string) => wrap(target.prepare(q));
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { d1, release };
}

describe("the secret cache", () => {
  it("never puts back a value read before a put or a delete", async () => {
    const { cachedCredential, cachedSecret, clearSecretCache } = await import("../src/secrets/cache");
    const { putSecret, deleteSecret } = await import("../src/secrets/store");
    const scope = (await orgBySlug(db(env), ORG))!;
    clearSecretCache();
    await putSecret(db(env), env, scope, "ROTATED", "old-value", ["example.com"]);
    // a read that started before the put comes back after it, with the old value…
    const slow = slowReads();
    const early = cachedCredential(db({ DB: slow.d1 }), env, scope.orgId, "ROTATED");
    await new Promise((r) => setTimeout(r, 50));
    await putSecret(db(env), env, scope, "ROTATED", "new-value", ["example.org"]);
    // …a reader arriving after the put does not wait for it…
    expect(await cachedCredential(db(env), env, scope.orgId, "ROTATED")).toMatchObject({ value: "new-value" });
    slow.release();
    expect((await early)?.value).toBe("old-value");
    // …and it does not fill the cache with the old value
    expect(await cachedCredential(db(env), env, scope.orgId, "ROTATED")).toMatchObject({ value: "new-value", allowedHosts: ["example.org"] });
    // the same for a delete
    const slow2 = slowReads();
    const before = cachedSecret(db({ DB: slow2.d1 }), env, scope.orgId, "ROTATED");
    await new Promise((r) => setTimeout(r, 50));
    await deleteSecret(db(env), scope, "ROTATED");
    slow2.release();
    expect(await before).toBe("new-value");
    expect(await cachedSecret(db(env), env, scope.orgId, "ROTATED")).toBeNull();
  });
});

describe("agents.json URLs", () => {
  it("obey the outbound URL policy at import: https and public hosts unless in local development", async () => {
    const { importSnapshot } = await import("../src/repos/import");
    const scope = (await orgBySlug(db(env), ORG))!;
    const created = await orgFetch(ORG, "/repositories", json({ name: "aliases", gitUrl: "https://git.example.com/aliases.git", sync: false }));
    const repo = ((await created.json()) as any).repository;
    const agentsJson = JSON.stringify({ agents: { Local: { url: "http://127.0.0.1:9/a2a", secret: "GIT_TOKEN" }, Public: "https://agents.example.com/a2a" } });
    const files = new Map([["agents.json", new TextEncoder().encode(agentsJson)]]);
    const row = { id: repo.id, name: "aliases", isRoot: false, lastCommit: null, syncProblems: [], syncIntervalSeconds: 300 };
    const prod = await importSnapshot(db(env), env.SNAPSHOTS, scope, row, "a".repeat(40), files);
    expect(prod.errors).toEqual([expect.objectContaining({ path: "agents.json", message: expect.stringMatching(/^alias 'Local': 'url' must use https:\/\//) })]);
    const aliasRows = await env.DB.prepare("SELECT alias FROM agent_aliases WHERE repository_id = ? ORDER BY alias").bind(repo.id).all<{ alias: string }>();
    expect(aliasRows.results.map((r) => r.alias)).toEqual(["Public"]);
    const local = await importSnapshot(db(env), env.SNAPSHOTS, scope, { ...row, lastCommit: null }, "b".repeat(40), files, [], { urlPolicy: { allowPrivateNetwork: true } });
    expect(local.errors).toEqual([]);
  });
});
