/**
 * Repository sync end to end, against a real git smart-HTTP server (`git http-backend`
 * behind a small Node server started by globalSetup): registration, first sync, unchanged
 * resync, changed and deleted files, broken frontmatter, force-push, an outage, a private
 * repository, webhooks and the cron sweep; credentials sent only to their secret's hosts,
 * repositories that hit a limit, the lease token, and root repositories sharing a name.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { db } from "../src/db/client";
import { acquireSyncLease, markRepositoryFailed, markRepositoryUnchanged } from "../src/db/repositories";
import { orgBySlug } from "../src/db/orgs";
import { syncRepository } from "../src/repos/sync";
import { sweepRepositories } from "../workers/sync";
import { bootstrapOrg, eventually, exampleAgents, orgFetch, rpc, sendMessage } from "./helpers";

const ORG = "gitsync";
const gitUrl = () => env.TEST_GIT_URL;

async function admin(path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${gitUrl()}/__admin/${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  if (!res.ok) throw new Error(`git admin ${path}: ${res.status} ${await res.text()}`);
  return res.json();
}
const stats = (repo: string) => admin(`stats?repo=${encodeURIComponent(repo)}`);

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  orgFetch(ORG, path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });

async function register(name: string, repoUrl: string, extra: Record<string, unknown> = {}) {
  const res = await post("/repositories", { name, gitUrl: repoUrl, isRoot: false, ...extra });
  return { status: res.status, body: (await res.json()) as any };
}

async function sync(id: string, query = "") {
  const res = await post(`/repositories/${id}/sync${query}`, {});
  return { status: res.status, body: (await res.json()) as any };
}

async function repoAgents(id: string): Promise<any[]> {
  return ((await (await orgFetch(ORG, `/repositories/${id}/agents`)).json()) as any).agents;
}

async function hmac(secret: string, body: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)));
  return [...mac].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const agentFile = (description: string, body = "You help.", exposed = true) => `---\ndescription: ${description}\nexposed: ${exposed}\n---\n${body}\n`;

beforeAll(async () => {
  await bootstrapOrg(ORG);
});

describe("registering and syncing a repository", () => {
  let repoId = "";
  let url = "";

  it("first sync imports every agent and agents.json; the agents answer over A2A", async () => {
    const created = await admin("repos", {
      name: "gitsync/main",
      files: { ...exampleAgents(), "agents.json": JSON.stringify({ agents: { Invoices: { path: "ProcessInvoice" } } }) },
    });
    url = created.url;
    const { status, body } = await register("main", url, { isRoot: true });
    expect(status).toBe(201);
    repoId = body.repository.id;
    expect(body.sync).toMatchObject({ status: "synced", commit: created.head });
    expect(body.sync.result.agents).toEqual(["ProcessInvoice", "Summarize", "ValidateData", "VendorCheck"]);
    expect(body.sync.result.aliases).toBe(1);
    expect(body.repository).toMatchObject({ syncStatus: "synced", lastCommit: created.head, lastError: null });
    expect(body.webhook.secret).toMatch(/^[A-Za-z0-9_-]{40,}$/);

    const call = await rpc(ORG, "ProcessInvoice", sendMessage("Invoice 5 from Hooli, total 10 USD"));
    expect(call.status).toBe(200);
    expect(call.body.result.task.status.state).toBe("TASK_STATE_COMPLETED");
    const listed = await repoAgents(repoId);
    expect(listed.map((a) => a.name)).toEqual(["ProcessInvoice", "Summarize", "ValidateData", "VendorCheck"]);
    expect(listed.find((a) => a.name === "ValidateData").exposed).toBe(false);
  });

  it("an unchanged resync asks only for the head (no pack download) and writes nothing", async () => {
    const before = await stats("gitsync/main");
    const { status, body } = await sync(repoId);
    expect(status).toBe(200);
    expect(body.sync.status).toBe("unchanged");
    const after = await stats("gitsync/main");
    expect(after["info-refs"] - before["info-refs"]).toBe(1);
    expect(after["upload-pack"]).toBe(before["upload-pack"]);
  });

  it("one changed file: only that agent is re-indexed and only its blob is uploaded", async () => {
    const { head } = await admin("repos/gitsync/main/commit", { files: { "Summarize/prompt.md": agentFile("Summarises anything, now shorter") } });
    const { body } = await sync(repoId);
    expect(body.sync).toMatchObject({ status: "synced", commit: head });
    expect(body.sync.result.changed).toEqual(["Summarize"]);
    expect(body.sync.result.removed).toEqual([]);
    expect(body.sync.result.blobsWritten).toBe(1);
    const card = (await (await orgFetch(ORG, "/a2a/agents/Summarize/.well-known/agent-card.json")).json()) as any;
    expect(card.description).toBe("Summarises anything, now shorter");
  });

  it("a deleted agent file removes the agent", async () => {
    await admin("repos/gitsync/main/commit", { files: { "Summarize/prompt.md": null } });
    const { body } = await sync(repoId);
    expect(body.sync.result.removed).toEqual(["Summarize"]);
    expect((await repoAgents(repoId)).map((a) => a.name)).toEqual(["ProcessInvoice", "ValidateData", "VendorCheck"]);
    const gone = await rpc(ORG, "Summarize", sendMessage("x"));
    expect(gone.status).toBe(404);
  });

  it("broken frontmatter is a per-file error with its line; the other agents still sync", async () => {
    await admin("repos/gitsync/main/commit", {
      files: {
        "Broken/prompt.md": "---\ndescription: fine\nexposed: [unclosed\n---\nBody\n",
        "Typo/prompt.md": "---\ndescription: has an unknown field\nexposd: true\n---\nBody\n",
        "Fresh/prompt.md": agentFile("a new one"),
      },
    });
    const { body } = await sync(repoId);
    expect(body.sync.status).toBe("synced");
    expect(body.sync.result.agents).toEqual(["Fresh", "ProcessInvoice", "Typo", "ValidateData", "VendorCheck"]);
    const broken = body.repository.problems.find((p: any) => p.path === "Broken/prompt.md");
    expect(broken).toMatchObject({ severity: "error", line: expect.any(Number) });
    expect(broken.message).toMatch(/YAML/i);
    expect(body.repository.problems.find((p: any) => p.path === "Typo/prompt.md")).toMatchObject({ severity: "warning", message: expect.stringContaining("exposd") });
  });

  it("a force-push replaces the snapshot with the new history", async () => {
    const { head } = await admin("repos/gitsync/main/force-push", { files: { "Solo/prompt.md": agentFile("the only one") } });
    const { body } = await sync(repoId);
    expect(body.sync).toMatchObject({ status: "synced", commit: head });
    expect(body.sync.result.agents).toEqual(["Solo"]);
    expect(body.sync.result.removed).toEqual(["Fresh", "ProcessInvoice", "Typo", "ValidateData", "VendorCheck"]);
    expect(body.repository.problems).toEqual([]);
    expect((await rpc(ORG, "Solo", sendMessage("hi"))).body.result.task.status.state).toBe("TASK_STATE_COMPLETED");
  });

  it("a remote that is down fails the sync, keeps the last good snapshot, and recovers", async () => {
    await admin("repos/gitsync/main/commit", { files: { "Solo/prompt.md": agentFile("changed while down") } });
    await admin("down", { down: true, repo: "gitsync/main" });
    try {
      const { status, body } = await sync(repoId);
      expect(status).toBe(200);
      expect(body.sync).toMatchObject({ status: "failed", error: { code: "unreachable" } });
      expect(body.repository.syncStatus).toBe("error");
      expect(body.repository.lastError).toMatch(/^unreachable: /);
      // The last good snapshot still serves.
      expect((await rpc(ORG, "Solo", sendMessage("still there?"))).body.result.task.status.state).toBe("TASK_STATE_COMPLETED");
    } finally {
      await admin("down", { down: false, repo: "gitsync/main" });
    }
    const { body } = await sync(repoId);
    expect(body.sync.status).toBe("synced");
    expect(body.repository).toMatchObject({ syncStatus: "synced", lastError: null });
  });

  it("a sync already running makes another one answer 409 and do nothing", async () => {
    const scope = (await orgBySlug(db(env), ORG))!;
    expect(await acquireSyncLease(db(env), scope, repoId, 60_000)).not.toBeNull();
    const { status, body } = await sync(repoId);
    expect(status).toBe(409);
    expect(body.detail).toContain("already running");
    // A crashed holder's lease runs out; then syncs work again.
    await env.DB.prepare("UPDATE repositories SET sync_lease_until = 1 WHERE id = ?").bind(repoId).run();
    expect((await sync(repoId)).status).toBe(200);
  });

  it("push webhooks: GitHub, GitLab and generic signatures queue a sync; bad ones are refused alike", async () => {
    const rotated = (await (await post(`/repositories/${repoId}/webhook-secret`, {})).json()) as any;
    const secret = rotated.webhook.secret as string;
    const { head } = await admin("repos/gitsync/main/commit", { files: { "Hooked/prompt.md": agentFile("came by webhook") } });
    const payload = JSON.stringify({ ref: "refs/heads/main", after: head });
    const hook = (headers: Record<string, string>, body = payload, id = repoId) =>
      orgFetch(ORG, `/webhooks/git/${id}`, { method: "POST", headers: { "content-type": "application/json", authorization: "", ...headers }, body });

    const bad = await hook({ "x-hub-signature-256": `sha256=${"0".repeat(64)}`, "x-github-event": "push" });
    const missing = await hook({ "x-hub-signature-256": `sha256=${await hmac(secret, payload)}` }, payload, crypto.randomUUID());
    const unsigned = await hook({});
    expect(bad.status).toBe(401);
    const strip = async (r: Response) => {
      const b = (await r.json()) as any;
      delete b.requestId;
      return { status: r.status, b };
    };
    const [badBody, missingBody, unsignedBody] = await Promise.all([strip(bad), strip(missing), strip(unsigned)]);
    expect(missingBody).toEqual(badBody);
    expect(unsignedBody).toEqual(badBody);

    const ok = await hook({ "x-hub-signature-256": `sha256=${await hmac(secret, payload)}`, "x-github-event": "push" });
    expect(ok.status).toBe(202);
    expect(((await ok.json()) as any).status).toBe("queued");
    const synced = await eventually(
      async () => ((await (await orgFetch(ORG, `/repositories/${repoId}`)).json()) as any).repository,
      (r) => r.lastCommit === head,
    );
    expect(synced.lastCommit).toBe(head);
    expect((await repoAgents(repoId)).map((a) => a.name)).toContain("Hooked");
    const hookAudit = await eventually(
      async () => ((await (await orgFetch(ORG, `/audit?action=repository.sync&resource=/repositories/${repoId}`)).json()) as any).entries as any[],
      (rows) => rows.some((e: any) => e.actor === "webhook" && e.summary.input.trigger === "webhook"),
    );
    expect(hookAudit.some((e: any) => e.actor === "webhook" && e.summary.input.trigger === "webhook")).toBe(true);

    expect((await hook({ "x-gitlab-token": "wrong" })).status).toBe(401);
    expect((await hook({ "x-gitlab-token": secret, "x-gitlab-event": "Push Hook" })).status).toBe(202);
    expect((await hook({ "x-shaman-signature-256": `sha256=${await hmac("nope", payload)}` })).status).toBe(401);
    expect((await hook({ "x-shaman-signature-256": `sha256=${await hmac(secret, payload)}` })).status).toBe(202);
    const other = JSON.stringify({ ref: "refs/heads/feature" });
    const ignored = await hook({ "x-hub-signature-256": `sha256=${await hmac(secret, other)}` }, other);
    expect(ignored.status).toBe(202);
    expect(((await ignored.json()) as any).status).toBe("ignored");
    const ping = await hook({ "x-hub-signature-256": `sha256=${await hmac(secret, "{}")}`, "x-github-event": "ping" }, "{}");
    expect(((await ping.json()) as any).status).toBe("pong");
  });

  it("webhook deliveries are rate limited like any anonymous caller", async () => {
    const { setOrgRateLimits } = await import("../src/db/orgs");
    const scope = (await orgBySlug(db(env), ORG))!;
    // Unverified deliveries count per client address (never against the org's budget).
    await setOrgRateLimits(db(env), scope, { perPrincipal: 1_000_000, perOrg: 1_000_000, perClient: 3, windowSeconds: 3600 });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await orgFetch(ORG, `/webhooks/git/${repoId}`, { method: "POST", headers: { authorization: "", "cf-connecting-ip": "203.0.113.9" }, body: "{}" });
        statuses.push(res.status);
      }
      expect(statuses).toEqual([401, 401, 401, 429, 429]);
    } finally {
      await setOrgRateLimits(db(env), scope, null);
    }
  });

  it("the cron sweep queues due repositories and the queue syncs them", async () => {
    // A repository of its own: webhook jobs of the tests above may still be in the queue.
    const created = await admin("repos", { name: "gitsync/swept", files: { "Before/prompt.md": agentFile("before the sweep") } });
    const reg = await register("swept", created.url);
    expect(reg.body.sync.status).toBe("synced");
    const sweptId = reg.body.repository.id as string;
    const { head } = await admin("repos/gitsync/swept/commit", { files: { "Swept/prompt.md": agentFile("came by the sweep") } });
    await env.DB.prepare("UPDATE repositories SET next_sync_at = 0 WHERE id = ?").bind(sweptId).run();
    const queued = await sweepRepositories(env);
    expect(queued).toBeGreaterThanOrEqual(1);
    // Claimed: its next time moved forward, so an immediate second sweep does not queue it again.
    const row = await env.DB.prepare("SELECT next_sync_at FROM repositories WHERE id = ?").bind(sweptId).first<{ next_sync_at: number }>();
    expect(Number(row?.next_sync_at)).toBeGreaterThan(Date.now());
    const synced = await eventually(
      async () => ((await (await orgFetch(ORG, `/repositories/${sweptId}`)).json()) as any).repository,
      (r) => r.lastCommit === head,
    );
    expect(synced.lastCommit).toBe(head);
    expect((await repoAgents(sweptId)).map((a) => a.name)).toEqual(["Before", "Swept"]);
    // The sync writes its audit row just after the repository row.
    const audit = await eventually(
      async () => ((await (await orgFetch(ORG, `/audit?action=repository.sync&resource=/repositories/${sweptId}`)).json()) as any).entries as any[],
      (rows) => rows.some((e: any) => e.summary.input.trigger === "schedule"),
    );
    expect(audit.some((e: any) => e.actor === "system" && e.summary.input.trigger === "schedule")).toBe(true);
    expect((await orgFetch(ORG, `/repositories/${sweptId}`, { method: "DELETE" })).status).toBe(204);
  });

  it("removing the repository removes its agents", async () => {
    expect((await orgFetch(ORG, `/repositories/${repoId}`, { method: "DELETE" })).status).toBe(204);
    expect((await orgFetch(ORG, `/repositories/${repoId}`)).status).toBe(404);
    expect((await rpc(ORG, "Solo", sendMessage("x"))).status).toBe(404);
  });
});

describe("private repositories", () => {
  it("need the token from an org secret, which never shows in errors or audit", async () => {
    const token = "glpat-private-token-0123456789";
    const created = await admin("repos", { name: "gitsync/private", private: { token }, files: { "Secretive/prompt.md": agentFile("private repo agent") } });
    const { body } = await register("private", created.url);
    expect(body.sync).toMatchObject({ status: "failed", error: { code: "auth" } });

    expect((await orgFetch(ORG, "/secrets/GIT_TOKEN", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ value: "wrong-token", allowedHosts: ["127.0.0.1"] }) })).status).toBe(200);
    const patched = await orgFetch(ORG, `/repositories/${body.repository.id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ credentialSecret: "GIT_TOKEN" }),
    });
    expect(patched.status).toBe(200);
    const wrong = await sync(body.repository.id);
    expect(wrong.body.sync.error.code).toBe("auth");
    expect(JSON.stringify(wrong.body)).not.toContain("wrong-token");

    await orgFetch(ORG, "/secrets/GIT_TOKEN", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ value: token, allowedHosts: ["127.0.0.1"] }) });
    const right = await sync(body.repository.id);
    expect(right.body.sync).toMatchObject({ status: "synced", result: { agents: ["Secretive"] } });
    // Not a root repository: its agents are called as `repo-name/Agent` only.
    expect((await rpc(ORG, "private/Secretive", sendMessage("hi"))).body.result.task.status.state).toBe("TASK_STATE_COMPLETED");
    expect((await rpc(ORG, "Secretive", sendMessage("hi"))).status).toBe(404);
    const audit = await (await orgFetch(ORG, "/audit?actionPrefix=repository.")).text();
    expect(audit).not.toContain(token);
    expect(audit).not.toContain("wrong-token");
  });
});

const putSecret = (name: string, body: unknown, method = "PUT") =>
  orgFetch(ORG, `/secrets/${name}`, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const repoRow = (id: string) =>
  env.DB.prepare("SELECT last_commit, failed_commit, sync_status, last_error, last_checked_at, last_synced_at, sync_lease_token FROM repositories WHERE id = ?")
    .bind(id)
    .first<{ last_commit: string | null; failed_commit: string | null; sync_status: string; last_error: string | null; last_checked_at: number | null; last_synced_at: number | null; sync_lease_token: string | null }>();

describe("credentials go only to their secret's hosts", () => {
  it("a credential secret that does not list the git server's host fails the sync; the server never sees the token", async () => {
    const token = "glpat-scoped-token-0123456789";
    const created = await admin("repos", { name: "gitsync/scoped", private: { token }, files: { "Scoped/prompt.md": agentFile("scoped agent") } });
    expect((await putSecret("SCOPED_TOKEN", { value: token, allowedHosts: ["github.com"] })).status).toBe(200);
    const { body } = await register("scoped", created.url, { credentialSecret: "SCOPED_TOKEN" });
    expect(body.sync).toMatchObject({ status: "failed", error: { code: "credential_refused" } });
    expect(body.sync.error.message).toContain("SCOPED_TOKEN");
    expect(body.sync.error.message).toContain("127.0.0.1");
    expect(body.repository.lastError).toMatch(/^credential_refused: /);
    expect(JSON.stringify(body)).not.toContain(token);
    expect(await stats("gitsync/scoped")).toEqual({ "info-refs": 0, "upload-pack": 0, other: 0 });
    expect((await admin("auth-seen?repo=gitsync/scoped")).count).toBe(0);

    // once the secret allows the host, the same repository syncs
    expect((await putSecret("SCOPED_TOKEN", { allowedHosts: ["127.0.0.1"] }, "PATCH")).status).toBe(200);
    const ok = await sync(body.repository.id);
    expect(ok.body.sync).toMatchObject({ status: "synced", result: { agents: ["Scoped"] } });
    expect((await admin("auth-seen?repo=gitsync/scoped")).count).toBe(3); // head check, then advertisement + pack
  });
});

describe("limits", () => {
  it("a repository that hits a limit fails with a clear error, and its head is not fetched again until it moves", async () => {
    const created = await admin("repos", { name: "gitsync/bomb", files: { "Fine/prompt.md": agentFile("fine") } });
    const reg = await register("bomb", created.url);
    expect(reg.body.sync.status).toBe("synced");
    const id = reg.body.repository.id as string;
    const { head } = await admin("repos/gitsync/bomb/tree-bomb", { fanout: 10, depth: 6 });

    const failed = await sync(id);
    expect(failed.body.sync).toMatchObject({ status: "failed", error: { code: "too_many_files" } });
    expect(failed.body.sync.error.message).toMatch(/more than 20,000 files.*not fetched again until the branch moves/);
    expect(failed.body.repository).toMatchObject({ syncStatus: "error", lastCommit: created.head });
    expect((await repoRow(id))?.failed_commit).toBe(head);
    // the last good snapshot still serves
    expect((await repoAgents(id)).map((a) => a.name)).toEqual(["Fine"]);

    // the sweep only asks for the head: no pack download, no new audit row
    const auditCount = async () =>
      (((await (await orgFetch(ORG, `/audit?action=repository.sync&resource=/repositories/${id}`)).json()) as any).entries as any[]).length;
    const audited = await auditCount();
    const before = await stats("gitsync/bomb");
    const checked = (await repoRow(id))!.last_checked_at!;
    await env.DB.prepare("UPDATE repositories SET next_sync_at = 0 WHERE id = ?").bind(id).run();
    expect(await sweepRepositories(env)).toBeGreaterThanOrEqual(1);
    await eventually(() => repoRow(id), (r) => (r?.last_checked_at ?? 0) > checked && r?.sync_lease_token === null);
    const afterSweep = await stats("gitsync/bomb");
    expect(afterSweep["info-refs"] - before["info-refs"]).toBe(1);
    expect(afterSweep["upload-pack"]).toBe(before["upload-pack"]);
    // so does a plain sync request, which reports the recorded error
    const again = await sync(id);
    expect(again.body.sync).toMatchObject({ status: "failed", error: { code: "too_many_files" }, knownFailure: true });
    expect((await stats("gitsync/bomb"))["upload-pack"]).toBe(before["upload-pack"]);
    expect(await auditCount()).toBe(audited);
    expect((await repoRow(id))).toMatchObject({ failed_commit: head, sync_status: "error" });

    // a forced sync fetches it again (and fails again)
    const forced = await sync(id, "?force=true");
    expect(forced.body.sync).toMatchObject({ status: "failed", error: { code: "too_many_files" } });
    expect((await stats("gitsync/bomb"))["upload-pack"]).toBe(before["upload-pack"] + 1);

    // the branch moves: fetched, synced, forgotten
    const { head: fixed } = await admin("repos/gitsync/bomb/force-push", { files: { "Fine/prompt.md": agentFile("fine again"), "Next/prompt.md": agentFile("next") } });
    const ok = await sync(id);
    expect(ok.body.sync).toMatchObject({ status: "synced", commit: fixed, result: { agents: ["Fine", "Next"] } });
    expect(await repoRow(id)).toMatchObject({ failed_commit: null, sync_status: "synced", last_error: null });
  });
});

describe("the sync lease token", () => {
  it("a sync whose lease ran out and was taken over does not overwrite the newer sync's result", async () => {
    const scope = (await orgBySlug(db(env), ORG))!;
    const created = await admin("repos", { name: "gitsync/lease", files: { "Kept/prompt.md": agentFile("kept") } });
    const id = (await register("lease", created.url)).body.repository.id as string;
    await admin("repos/gitsync/lease/commit", { files: { "Slow/prompt.md": agentFile("seen by the slow sync") } });

    // the slow sync stops while its pack is on the way
    await admin("hold", { repo: "gitsync/lease", hold: true });
    const packs = (await stats("gitsync/lease"))["upload-pack"];
    const slow = syncRepository(env, scope, id, { trigger: "api", actor: "test" });
    let newer = "";
    try {
      await eventually(() => stats("gitsync/lease"), (s) => s["upload-pack"] > packs);
      // its lease runs out; a newer sync takes over and finishes with a newer commit
      await env.DB.prepare("UPDATE repositories SET sync_lease_until = 1 WHERE id = ?").bind(id).run();
      newer = (await admin("repos/gitsync/lease/commit", { files: { "Slow/prompt.md": null, "Fast/prompt.md": agentFile("seen by the newer sync") } })).head;
      const fast = await sync(id);
      expect(fast.body.sync).toMatchObject({ status: "synced", commit: newer });
    } finally {
      await admin("hold", { repo: "gitsync/lease", hold: false });
    }
    const outcome = await slow;
    // the newer sync's result stands (the slow one read the older commit, with Slow)
    expect((await repoAgents(id)).map((a) => a.name)).toEqual(["Fast", "Kept"]);
    expect(await repoRow(id)).toMatchObject({ last_commit: newer, sync_status: "synced", last_error: null, sync_lease_token: null });
    expect(outcome).toMatchObject({ status: "failed", error: { code: "lease_lost" } });

    // the unchanged and failed marks are conditional on the token too
    const stale = (await acquireSyncLease(db(env), scope, id, 60_000))!;
    await env.DB.prepare("UPDATE repositories SET sync_lease_until = 1 WHERE id = ?").bind(id).run();
    const current = (await acquireSyncLease(db(env), scope, id, 60_000))!;
    expect(current.syncLeaseToken).not.toBe(stale.syncLeaseToken);
    expect(await markRepositoryFailed(db(env), scope, id, stale.syncLeaseToken, "protocol: stale", 60_000)).toBe(false);
    expect(await markRepositoryUnchanged(db(env), scope, id, stale.syncLeaseToken, 300)).toBe(false);
    expect(await repoRow(id)).toMatchObject({ sync_status: "syncing", last_error: null, sync_lease_token: current.syncLeaseToken });
    expect(await markRepositoryUnchanged(db(env), scope, id, current.syncLeaseToken, 300)).toBe(true);
    expect(await repoRow(id)).toMatchObject({ sync_status: "synced", sync_lease_token: null });
  });
});

describe("root repositories sharing an exposed agent name", () => {
  const card = async (name: string) => ((await (await orgFetch(ORG, `/a2a/agents/${name}/.well-known/agent-card.json`)).json()) as any).description;

  it("the root repository that exposed it first keeps the name; the other's file gets a problem", async () => {
    const a = await admin("repos", { name: "gitsync/root-a", files: { "Shared/prompt.md": agentFile("Shared from zz-root-a"), "OnlyA/prompt.md": agentFile("a") } });
    const b = await admin("repos", { name: "gitsync/root-b", files: { "Shared/prompt.md": agentFile("Shared from aa-root-b"), "OnlyB/prompt.md": agentFile("b") } });
    // registered first, though its name sorts last
    const ra = await register("zz-root-a", a.url, { isRoot: true });
    expect(ra.body.sync.result.agents).toEqual(["OnlyA", "Shared"]);
    const rb = await register("aa-root-b", b.url, { isRoot: true });
    expect(rb.body.sync.status).toBe("synced");
    expect(rb.body.sync.result.agents).toEqual(["OnlyB"]);
    expect(rb.body.repository.problems).toEqual([
      expect.objectContaining({ path: "Shared/prompt.md", severity: "error", message: expect.stringContaining("exposed agent name 'Shared' is already exposed by root repository 'zz-root-a'") }),
    ]);
    expect(await card("Shared")).toBe("Shared from zz-root-a");
    expect(await card("OnlyB")).toBe("b");

    // the holder lets go: the other takes the name at its next import
    await admin("repos/gitsync/root-a/commit", { files: { "Shared/prompt.md": null } });
    await sync(ra.body.repository.id);
    await admin("repos/gitsync/root-b/commit", { files: { "OnlyB/prompt.md": agentFile("b2") } });
    const taken = await sync(rb.body.repository.id);
    expect(taken.body.sync.result.agents).toEqual(["OnlyB", "Shared"]);
    expect(taken.body.repository.problems).toEqual([]);
    expect(await card("Shared")).toBe("Shared from aa-root-b");
    // and now the first one is refused it
    await admin("repos/gitsync/root-a/commit", { files: { "Shared/prompt.md": agentFile("Shared from zz-root-a, again") } });
    const refused = await sync(ra.body.repository.id);
    expect(refused.body.sync.result.agents).toEqual(["OnlyA"]);
    expect(refused.body.repository.problems[0]).toMatchObject({ path: "Shared/prompt.md", message: expect.stringContaining("root repository 'aa-root-b'") });
    // a private agent of the same name in a root repository is no conflict
    await admin("repos/gitsync/root-a/commit", { files: { "Shared/prompt.md": agentFile("private twin", "You help.", false) } });
    const privateTwin = await sync(ra.body.repository.id);
    expect(privateTwin.body.sync.result.agents).toEqual(["OnlyA", "Shared"]);
    expect(privateTwin.body.repository.problems).toEqual([]);
    expect(await card("Shared")).toBe("Shared from aa-root-b");

    for (const r of [ra, rb]) expect((await orgFetch(ORG, `/repositories/${r.body.repository.id}`, { method: "DELETE" })).status).toBe(204);
  });

  it("when two root repositories hold a name already, the lookup is deterministic and the sync settles it the same way", async () => {
    const a = await admin("repos", { name: "gitsync/twin-a", files: { "Twin/prompt.md": agentFile("Twin from twin-a") } });
    const b = await admin("repos", { name: "gitsync/twin-b", files: { "Twin/prompt.md": agentFile("Twin from twin-b") } });
    const rb = await register("twin-b", b.url, { isRoot: true });
    // not root when it synced, so nothing checked its names; made root afterwards
    const ra = await register("twin-a", a.url, { isRoot: false });
    expect(ra.body.sync.result.agents).toEqual(["Twin"]);
    await env.DB.prepare("UPDATE repositories SET is_root = 1 WHERE id = ?").bind(ra.body.repository.id).run();
    const { clearAgentLookupCache } = await import("../src/db/agents");
    clearAgentLookupCache();
    // both hold it: the repository whose name sorts first answers, every time
    for (let i = 0; i < 3; i++) expect(await card("Twin")).toBe("Twin from twin-a");
    // and its own resync keeps it, while the other's loses it
    expect((await sync(ra.body.repository.id, "?force=true")).body.repository.problems).toEqual([]);
    const lost = await sync(rb.body.repository.id, "?force=true");
    expect(lost.body.sync.result.agents).toEqual([]);
    expect(lost.body.repository.problems[0].message).toContain("already exposed by root repository 'twin-a'");
    expect(await card("Twin")).toBe("Twin from twin-a");
    for (const r of [ra, rb]) expect((await orgFetch(ORG, `/repositories/${r.body.repository.id}`, { method: "DELETE" })).status).toBe(204);
  });

  it("making a repository root through the API re-imports it, so a taken name shows as a problem at once", async () => {
    const a = await admin("repos", { name: "gitsync/promote-a", files: { "Promoted/prompt.md": agentFile("Promoted from holder") } });
    const b = await admin("repos", { name: "gitsync/promote-b", files: { "Promoted/prompt.md": agentFile("Promoted from later") } });
    const holder = await register("promote-holder", a.url, { isRoot: true });
    const later = await register("promote-later", b.url, { isRoot: false });
    expect(later.body.repository.problems).toEqual([]);
    const patched = await orgFetch(ORG, `/repositories/${later.body.repository.id}`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ isRoot: true }) });
    expect(patched.status).toBe(200);
    // the head did not move: only a forced re-import (queued by the PATCH) can find the conflict
    const after = await eventually(
      async () => ((await (await orgFetch(ORG, `/repositories/${later.body.repository.id}`)).json()) as any).repository,
      (r) => r.problems.length > 0,
    );
    expect(after.problems[0]).toMatchObject({ path: "Promoted/prompt.md", severity: "error", message: expect.stringContaining("already exposed by root repository 'promote-holder'") });
    expect(await card("Promoted")).toBe("Promoted from holder");
    for (const r of [holder, later]) expect((await orgFetch(ORG, `/repositories/${r.body.repository.id}`, { method: "DELETE" })).status).toBe(204);
  });
});

describe("bad input", () => {
  it("refuses bad URLs, names, branches, duplicates and unknown credentials with clear problems", async () => {
    const created = await admin("repos", { name: "gitsync/bad", files: { "A/prompt.md": agentFile("a") } });
    const cases: [Record<string, unknown>, number, RegExp][] = [
      [{ name: "x1", gitUrl: "ftp://example.com/repo.git" }, 400, /gitUrl/],
      [{ name: "x2", gitUrl: "https://user:secret@example.com/repo.git" }, 400, /secret/],
      [{ name: "x3", gitUrl: "not a url" }, 400, /gitUrl/],
      [{ name: "bad/name", gitUrl: created.url }, 400, /name/],
      [{ name: "x4", gitUrl: created.url, branch: "bad..branch" }, 400, /branch/],
      [{ name: "x5", gitUrl: created.url, credentialSecret: "NOPE" }, 422, /NOPE/],
      [{ name: "x6", gitUrl: created.url, surprise: true }, 400, /surprise|Unrecognized/i],
    ];
    for (const [body, status, detail] of cases) {
      const res = await post("/repositories", body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(((await res.json()) as any).detail).toMatch(detail);
    }
    expect((await register("bad", created.url, { sync: false })).status).toBe(201);
    const dup = await register("bad", created.url, { sync: false });
    expect(dup.status).toBe(409);
    const sameUrl = await register("bad-again", created.url, { sync: false });
    expect(sameUrl.status).toBe(409);
    // The same URL on another branch is another repository.
    expect((await register("bad-other-branch", created.url, { sync: false, branch: "develop" })).status).toBe(201);
  });

  it("in production, plain http and private-network remotes are refused before any request", async () => {
    const { createApp } = await import("../workers/gateway");
    const { keyOf } = await import("./helpers");
    const prod = { ...env, SHAMAN_ENV: "production" } as Env;
    const app = createApp();
    for (const remote of [`${gitUrl()}/gitsync/x.git`, "https://127.0.0.1/x.git", "https://10.1.2.3/x.git", "https://git.internal/x.git", "https://[::1]/x.git"]) {
      const res = await app.request(
        `http://${ORG}.localhost/repositories`,
        { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${keyOf(ORG)}` }, body: JSON.stringify({ name: "prod-x", gitUrl: remote, sync: false }) },
        prod,
      );
      expect(res.status, remote).toBe(400);
      expect(((await res.json()) as any).detail).toMatch(/^gitUrl: /);
    }
  });

  it("records what is wrong with the remote: not git, missing repository, missing branch, connection refused", async () => {
    const created = await admin("repos", { name: "gitsync/branches", files: { "A/prompt.md": agentFile("a") } });
    const cases: [string, string, string][] = [
      ["notgit", `${gitUrl()}/not-git/repo.git`, "not_git"],
      ["nosuchrepo", `${gitUrl()}/gitsync/nothing-here.git`, "not_found"],
      ["refused", "http://127.0.0.1:9/x.git", "unreachable"],
    ];
    for (const [name, repoUrl, code] of cases) {
      const { body } = await register(name, repoUrl);
      expect(body.sync.error.code, name).toBe(code);
      expect(body.repository.syncStatus).toBe("error");
    }
    const { body } = await register("nobranch", created.url, { branch: "release" });
    expect(body.sync.error).toMatchObject({ code: "branch_not_found", message: expect.stringContaining("release") });
  });
});
