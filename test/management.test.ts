/**
 * The org management routes of the tenancy layer (API keys, secrets, audit) and the audit
 * rows written by the gateway, the executor and auth decisions.
 */
import { createExecutionContext, createMessageBatch, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import type { RunObject } from "../durable-objects/run-object";
import { runStub } from "../src/runs/stub";
import type { Job, RunInit } from "../src/runs/types";
import worker from "../workers/index";
import { runStep } from "../workers/executor";
import { eventually, orgFetch, rpc, seedOrg, sendMessage, type SeedResult } from "./helpers";

let seed: SeedResult;
beforeAll(async () => {
  seed = await seedOrg("mgmt");
});

const json = (body: unknown, method = "POST") => ({ method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const dev = (email: string) => ({ authorization: `Bearer dev:${email}` });

async function auditRows(query: string, slug = "mgmt"): Promise<any[]> {
  const res = await orgFetch(slug, `/audit?${query}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as any).entries;
}

describe("API keys", () => {
  it("creates a key shown once, lists it without secret material, and revokes it", async () => {
    const created = await orgFetch("mgmt", "/api-keys", json({ name: "ci", permissions: [{ resource: "/agents/*", action: "execute" }], expiresInDays: 30 }));
    expect(created.status).toBe(201);
    const { apiKey } = (await created.json()) as any;
    expect(apiKey.key).toMatch(/^shk_[A-Za-z0-9]{12}_[A-Za-z0-9]{40}$/);
    expect(apiKey.expiresAt).toBeGreaterThan(Date.now());

    const list = (await (await orgFetch("mgmt", "/api-keys")).json()) as any;
    const listed = list.apiKeys.find((k: any) => k.id === apiKey.id);
    expect(listed).toMatchObject({ name: "ci", prefix: apiKey.prefix });
    expect(JSON.stringify(list)).not.toContain(apiKey.key.split("_")[2]);
    expect(listed.hash).toBeUndefined();

    // The key works for what it grants and nothing else.
    const call = await rpc("mgmt", "ProcessInvoice", sendMessage("Invoice 1"), { "A2A-Version": "1.0", authorization: `Bearer ${apiKey.key}` });
    expect(call.status).toBe(200);
    const audit = await orgFetch("mgmt", "/audit", { headers: { authorization: `Bearer ${apiKey.key}` } });
    expect(audit.status).toBe(403);

    const revoked = await orgFetch("mgmt", `/api-keys/${apiKey.id}`, { method: "DELETE" });
    expect(revoked.status).toBe(204);
    const after = await rpc("mgmt", "ProcessInvoice", sendMessage("Invoice 2"), { "A2A-Version": "1.0", authorization: `Bearer ${apiKey.key}` });
    expect(after.status).toBe(401);
    expect((await orgFetch("mgmt", `/api-keys/${apiKey.id}`, { method: "DELETE" })).status).toBe(404);

    const rows = await eventually(
      () => auditRows("actionPrefix=apikey."),
      (r) => r.some((e) => e.action === "apikey.revoke" && e.resource === `/api-keys/${apiKey.id}`),
    );
    const create = rows.find((e) => e.action === "apikey.create" && e.resource === `/api-keys/${apiKey.id}`);
    expect(create).toMatchObject({ outcome: "success", actor: expect.stringMatching(/^key:/) });
    expect(JSON.stringify(rows)).not.toContain(apiKey.key);
    expect(rows.some((e) => e.action === "apikey.revoke" && e.outcome === "success")).toBe(true);
  });

  it("refuses to mint a key with grants the caller does not hold", async () => {
    const limited = await orgFetch("mgmt", "/api-keys", json({ name: "keys-only", permissions: [{ resource: "/api-keys/*", action: "admin" }] }));
    const { apiKey } = (await limited.json()) as any;
    const escalate = await orgFetch("mgmt", "/api-keys", {
      ...json({ name: "everything", permissions: [{ resource: "/*", action: "*" }] }),
      headers: { "content-type": "application/json", authorization: `Bearer ${apiKey.key}` },
    });
    expect(escalate.status).toBe(403);
    expect(((await escalate.json()) as any).detail).toContain("does not hold");
  });

  it("flags keys that never expire in the list, with a warning naming the active ones", async () => {
    const make = async (name: string, expiresInDays?: number) => {
      const res = await orgFetch("mgmt", "/api-keys", json({ name, permissions: [{ resource: "/agents/*", action: "read" }], ...(expiresInDays ? { expiresInDays } : {}) }));
      expect(res.status).toBe(201);
      return ((await res.json()) as any).apiKey as { id: string; createdBy: string };
    };
    const forever = await make("forever");
    const monthly = await make("monthly", 30);
    const retired = await make("retired");
    expect((await orgFetch("mgmt", `/api-keys/${retired.id}`, { method: "DELETE" })).status).toBe(204);
    // A key minted by a key is made by the person behind that key (the org owner here).
    expect(forever.createdBy).toBe(seed.ownerId);

    const list = (await (await orgFetch("mgmt", "/api-keys")).json()) as any;
    const byId = new Map<string, any>(list.apiKeys.map((k: any) => [k.id, k]));
    expect(byId.get(forever.id)).toMatchObject({ neverExpires: true, expiresAt: null });
    expect(byId.get(monthly.id)).toMatchObject({ neverExpires: false });
    expect(byId.get(retired.id)).toMatchObject({ neverExpires: true });
    const warning = list.warnings.find((w: any) => w.code === "API_KEYS_NEVER_EXPIRE");
    expect(warning.message).toContain("never expire");
    expect(warning.keyIds).toContain(forever.id);
    expect(warning.keyIds).not.toContain(monthly.id);
    expect(warning.keyIds).not.toContain(retired.id); // revoked keys are no risk
    for (const k of list.apiKeys) expect(warning.keyIds.includes(k.id)).toBe(k.neverExpires && k.revokedAt === null);
  });

  it("rejects malformed bodies with a problem naming the field", async () => {
    const bad = await orgFetch("mgmt", "/api-keys", json({ name: "x", permissions: [{ resource: "agents", action: "execute" }] }));
    expect(bad.status).toBe(400);
    const body = (await bad.json()) as any;
    expect(bad.headers.get("content-type")).toContain("application/problem+json");
    expect(body.detail).toContain("permissions.0.resource");
    const notJson = await orgFetch("mgmt", "/api-keys", { method: "POST", headers: { "content-type": "text/plain" }, body: "hi" });
    expect(notJson.status).toBe(415);
  });
});

describe("secrets", () => {
  it("are write-only: put, list names, replace, delete; the value never comes back", async () => {
    const value = "sk-live-abcdefghijklmnop1234567890";
    const put = await orgFetch("mgmt", "/secrets/PARTNER_TOKEN", json({ value }, "PUT"));
    expect(put.status).toBe(200);
    expect(JSON.stringify(await put.json())).not.toContain(value);
    const list = await orgFetch("mgmt", "/secrets");
    const text = await list.text();
    expect(JSON.parse(text).secrets.map((s: any) => s.name)).toContain("PARTNER_TOKEN");
    expect(text).not.toContain(value);
    expect((await orgFetch("mgmt", "/secrets/PARTNER_TOKEN", json({ value: "second" }, "PUT"))).status).toBe(200);
    expect((await orgFetch("mgmt", "/secrets/PARTNER_TOKEN", { method: "DELETE" })).status).toBe(204);
    expect((await orgFetch("mgmt", "/secrets/PARTNER_TOKEN", { method: "DELETE" })).status).toBe(404);
    expect((await orgFetch("mgmt", "/secrets/bad name!", json({ value: "x" }, "PUT"))).status).toBe(400);

    const rows = await eventually(() => auditRows("actionPrefix=secret."), (r) => r.filter((e) => e.resource === "/secrets/PARTNER_TOKEN").length >= 3);
    expect(rows.filter((e) => e.resource === "/secrets/PARTNER_TOKEN").map((e) => e.action)).toEqual(["secret.delete", "secret.put", "secret.put"]);
    expect(JSON.stringify(rows)).not.toContain(value);
  });

  it("a viewer can list secret names but not write them", async () => {
    // Make a viewer through the built-in engine.
    const { mirrorUser, addMember } = await import("../src/auth/users");
    const { assignUserRole } = await import("../src/authz/builtin");
    const { db } = await import("../src/db/client");
    const { orgBySlug } = await import("../src/db/orgs");
    const d = db(env);
    const org = (await orgBySlug(d, "mgmt"))!;
    const viewer = await mirrorUser(d, "dev", "viewer@mgmt.test", "viewer@mgmt.test");
    await addMember(d, org, viewer.id);
    await assignUserRole(d, org, viewer.id, "viewer");
    expect((await orgFetch("mgmt", "/secrets", { headers: dev("viewer@mgmt.test") })).status).toBe(200);
    const denied = await orgFetch("mgmt", "/secrets/X", { ...json({ value: "v" }, "PUT"), headers: { "content-type": "application/json", ...dev("viewer@mgmt.test") } });
    expect(denied.status).toBe(403);
    const rows = await eventually(() => auditRows("action=auth.denied"), (r) => r.some((e) => e.resource === "/secrets/X"));
    expect(rows.find((e) => e.resource === "/secrets/X")).toMatchObject({ outcome: "denied", actor: `user:${viewer.id}`, userId: viewer.id });
  });
});

describe("audit trail", () => {
  it("records refused credentials of a known org, without the credential", async () => {
    const forged = "shk_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    const res = await orgFetch("mgmt", "/a2a/agents", { headers: { authorization: `Bearer ${forged}`, "cf-connecting-ip": "203.0.113.77" } });
    expect(res.status).toBe(401);
    // anonymous refusals are aggregated per client address and minute (test/preauth.test.ts)
    const rows = await eventually(() => auditRows("action=auth.denied&outcome=denied"), (r) => r.some((e) => e.summary?.input?.client === "203.0.113.77"));
    const row = rows.find((e) => e.summary?.input?.client === "203.0.113.77");
    expect(row).toMatchObject({ resource: "/a2a/agents", actor: "anonymous", summary: { output: { count: 1 } } });
    expect(row.summary.error).toContain("invalid");
    expect(JSON.stringify(rows)).not.toContain("BBBBBBBBBBBBBBBB");
  });

  it("records an agent call, its step and its model call under the calling user", async () => {
    const call = await rpc("mgmt", "ProcessInvoice", sendMessage("Invoice 77 from Umbrella, total 5 EUR"), { "A2A-Version": "1.0", ...dev("owner@mgmt.test") });
    expect(call.status).toBe(200);
    const runId = call.body.result.task.id;
    // ProcessInvoice calls ValidateData and VendorCheck in one turn, then completes (5 EUR
    // needs no approval): 3 steps, 4 model turns, 3 tool calls, 3 agent calls
    const rows = await eventually(() => auditRows(`runId=${runId}`), (r) => r.length >= 14);
    const actions = rows.map((e) => e.action).sort();
    expect(actions).toEqual([
      ...Array(3).fill("agent.call"),
      ...Array(4).fill("model.call"),
      ...Array(4).fill("step.run"),
      ...Array(3).fill("tool.execute"),
    ]);
    const owner = rows.find((e) => e.action === "agent.call" && e.resource === "/agents/ProcessInvoice");
    expect(owner).toMatchObject({ resource: "/agents/ProcessInvoice", outcome: "success", actor: `user:${seed.ownerId}`, userId: seed.ownerId });
    expect(owner.summary.input.message[0].text).toContain("Invoice 77");
    // Internal work (model calls, steps, tool calls, the internal agent call) is attributed to the user who started the run.
    for (const row of rows.filter((e) => e !== owner)) {
      expect(row, row.action).toMatchObject({ userId: seed.ownerId, actor: `user:${seed.ownerId}`, runId, outcome: "success" });
    }
    const internal = rows.filter((e) => e.action === "agent.call" && e !== owner).sort((a, b) => a.resource.localeCompare(b.resource));
    expect(internal).toMatchObject([
      { resource: "/agents/ValidateData", summary: { input: { caller: "ProcessInvoice", internal: true } } },
      { resource: "/agents/VendorCheck", summary: { input: { caller: "ProcessInvoice", internal: true } } },
    ]);
    expect(rows.filter((e) => e.action === "tool.execute").map((e) => e.resource).sort()).toEqual(["/tools/call_agent", "/tools/call_agent", "/tools/complete_agent_execution"]);
    expect(rows.find((e) => e.action === "model.call").resource).toMatch(/^\/models\//);
    expect(rows.find((e) => e.action === "model.call").durationMs).toBeGreaterThanOrEqual(0);
  });

  it("pages with a cursor and rejects bad filters", async () => {
    const first = (await (await orgFetch("mgmt", "/audit?limit=2")).json()) as any;
    expect(first.entries).toHaveLength(2);
    expect(first.nextCursor).toBeTruthy();
    const second = (await (await orgFetch("mgmt", `/audit?limit=2&cursor=${first.nextCursor}`)).json()) as any;
    expect(second.entries[0].id < first.entries[1].id).toBe(true);
    expect((await orgFetch("mgmt", "/audit?limit=0")).status).toBe(400);
    expect((await orgFetch("mgmt", "/audit?cursor=!!")).status).toBe(400);
    expect((await orgFetch("mgmt", "/audit?from=yesterday")).status).toBe(400);
  });
});

describe("external agent registry", () => {
  it("registers, lists, replaces and removes external agents; resolution finds them last", async () => {
    expect((await orgFetch("mgmt", "/external-agents/Payments", json({ url: "https://pay.example.com/a2a/agents/Pay", credentialSecret: "PAY_TOKEN" }, "PUT"))).status).toBe(422);
    expect((await orgFetch("mgmt", "/secrets/PAY_TOKEN", json({ value: "pay-token", allowedHosts: ["pay.example.com"] }, "PUT"))).status).toBe(200);
    const put = await orgFetch("mgmt", "/external-agents/Payments", json({ url: "https://pay.example.com/a2a/agents/Pay", credentialSecret: "PAY_TOKEN", description: "partner" }, "PUT"));
    expect(put.status).toBe(200);
    expect(((await put.json()) as any).externalAgent).toMatchObject({ name: "Payments", url: "https://pay.example.com/a2a/agents/Pay", credentialSecret: "PAY_TOKEN" });
    const listed = ((await (await orgFetch("mgmt", "/external-agents")).json()) as any).externalAgents;
    expect(listed.map((a: any) => a.name)).toContain("Payments");

    const { resolveAgentCall } = await import("../src/agents/resolve");
    const { db } = await import("../src/db/client");
    const { orgBySlug } = await import("../src/db/orgs");
    const scope = (await orgBySlug(db(env), "mgmt"))!;
    const resolved = await resolveAgentCall(db(env), scope, { repositoryId: seed.repository.id, name: "ProcessInvoice", allowedAgents: "*" }, "Payments");
    expect(resolved).toMatchObject({ kind: "external", via: "registry", url: "https://pay.example.com/a2a/agents/Pay", credentialSecret: "PAY_TOKEN" });

    expect((await orgFetch("mgmt", "/external-agents/Payments", json({ url: "https://pay2.example.com/a2a" }, "PUT"))).status).toBe(200);
    expect(((await (await orgFetch("mgmt", "/external-agents/Payments")).json()) as any).externalAgent.url).toBe("https://pay2.example.com/a2a");
    expect((await orgFetch("mgmt", "/external-agents/Payments", { method: "DELETE" })).status).toBe(204);
    expect((await orgFetch("mgmt", "/external-agents/Payments")).status).toBe(404);
    await expect(resolveAgentCall(db(env), scope, { repositoryId: seed.repository.id, name: "ProcessInvoice", allowedAgents: "*" }, "Payments")).rejects.toMatchObject({ code: "NOT_FOUND" });

    expect((await orgFetch("mgmt", "/external-agents/Bad", json({ url: "ftp://x" }, "PUT"))).status).toBe(400);
    expect((await orgFetch("mgmt", "/external-agents/Bad", json({ url: "https://u:p@x.example.com" }, "PUT"))).status).toBe(400);
    expect((await orgFetch("mgmt", "/external-agents/9bad", json({ url: "https://x.example.com" }, "PUT"))).status).toBe(422);
    const rows = await eventually(() => auditRows("actionPrefix=external_agent."), (r) => r.length >= 3);
    expect(rows.map((e) => e.action)).toEqual(["external_agent.delete", "external_agent.put", "external_agent.put"]);
  });
});

describe("executor and org secrets", () => {
  it("uses the org's own provider key from its secrets instead of the platform's", async () => {
    const orgKey = "sk-org-mgmt-0123456789abcdef";
    expect((await orgFetch("mgmt", "/secrets/OPENAI_API_KEY", json({ value: orgKey, allowedHosts: ["127.0.0.1"] }, "PUT"))).status).toBe(200);
    const base = env.TEST_OPENAI_URL.replace(/\/v1$/, "");
    await fetch(`${base}/__requests`, { method: "DELETE" });
    const run: RunInit = {
      runId: crypto.randomUUID(),
      orgId: seed.org.id,
      contextId: "ctx",
      agent: { name: "ProcessInvoice", repositoryId: seed.repository.id, commit: seed.commit, path: "ProcessInvoice/prompt.md" },
      initiatedBy: null,
      message: { messageId: crypto.randomUUID(), role: "user", parts: [{ kind: "text", text: "Invoice 9 FAIL_ONCE:mgmt-org-key" }] },
    };
    const sent: Job[] = [];
    await runInDurableObject(env.RUNS.get(env.RUNS.idFromName(run.runId)), async (obj: RunObject) => {
      Object.defineProperty(obj, "env", { value: { ...env, JOBS: { send: async (job: Job) => void sent.push(job) } }, configurable: true });
      await obj.start(run, 0);
    });
    const testEnv = { ...env, OPENAI_BASE_URL: env.TEST_OPENAI_URL, OPENAI_API_KEY: "sk-platform-key-000000" } as Env;
    const deliver = async () => {
      const batch = createMessageBatch<Job>("shaman-jobs", [{ id: crypto.randomUUID(), attempts: 1, timestamp: new Date(), body: sent[0] as Job }]);
      await worker.queue(batch, testEnv, createExecutionContext());
    };
    await deliver(); // the injected failure
    await deliver();
    const requests = (await (await fetch(`${base}/__requests`)).json()) as any[];
    expect(requests.length).toBeGreaterThanOrEqual(2);
    for (const r of requests) expect(r.authorization).toBe(`Bearer ${orgKey}`);
    const snap = await runStub(env, run.runId).wait(run.orgId, 5_000);
    expect(snap?.status).toBe("completed");
    expect((await orgFetch("mgmt", "/secrets/OPENAI_API_KEY", { method: "DELETE" })).status).toBe(204);
  });

  it("never sends the org's provider key to a model endpoint off the secret's host list", async () => {
    const orgKey = "sk-org-mgmt-offlist-0123456789";
    expect((await orgFetch("mgmt", "/secrets/OPENAI_API_KEY", json({ value: orgKey, allowedHosts: ["api.openai.com"] }, "PUT"))).status).toBe(200);
    const base = env.TEST_OPENAI_URL.replace(/\/v1$/, "");
    await fetch(`${base}/__requests`, { method: "DELETE" });
    const testEnv = { ...env, OPENAI_BASE_URL: env.TEST_OPENAI_URL, OPENAI_API_KEY: "sk-platform-key-000000" } as Env;
    const ctx = {
      runId: crypto.randomUUID(),
      stepId: "s1",
      orgId: seed.org.id,
      agent: { name: "ProcessInvoice", repositoryId: seed.repository.id, commit: seed.commit, path: "ProcessInvoice/prompt.md" },
      depth: 0,
      attempt: 1,
      initiatedBy: null,
      userId: null,
      input: { messageId: "m", role: "user" as const, parts: [{ kind: "text" as const, text: "Invoice 10" }] },
    };
    const err = await runStep(ctx as any, testEnv).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "UNPROCESSABLE" });
    expect((err as Error).message).toMatch(/OPENAI_API_KEY' may not be sent to the model endpoint 127\.0\.0\.1:\d+ \(allowed hosts: api\.openai\.com\)/);
    // nothing reached the model server: neither the org's key nor, in its place, the platform's
    expect((await (await fetch(`${base}/__requests`)).json()) as any[]).toEqual([]);
    // the list widened to the model server: the org's key is used
    expect((await orgFetch("mgmt", "/secrets/OPENAI_API_KEY", json({ allowedHosts: ["127.0.0.1"] }, "PATCH"))).status).toBe(200);
    const { clearSecretCache } = await import("../src/secrets/cache");
    clearSecretCache();
    await runStep(ctx as any, testEnv);
    const requests = (await (await fetch(`${base}/__requests`)).json()) as any[];
    expect(requests.map((r) => r.authorization)).toEqual([`Bearer ${orgKey}`]);
    expect((await orgFetch("mgmt", "/secrets/OPENAI_API_KEY", { method: "DELETE" })).status).toBe(204);
  });

  it("masks credentials in step errors before they reach events", async () => {
    const runId = crypto.randomUUID();
    const init: RunInit = {
      runId,
      orgId: seed.org.id,
      contextId: "ctx",
      agent: { name: "ProcessInvoice", repositoryId: seed.repository.id, commit: seed.commit, path: "ProcessInvoice/prompt.md" },
      initiatedBy: null,
      message: { messageId: "m", role: "user", parts: [{ kind: "text", text: "x" }] },
    };
    await runInDurableObject(env.RUNS.get(env.RUNS.idFromName(runId)), async (obj: RunObject) => {
      Object.defineProperty(obj, "env", { value: { ...env, JOBS: { send: async () => {} } }, configurable: true });
      await obj.start(init, 0);
      await obj.claimStep(seed.org.id, "s1");
      await obj.failStep(seed.org.id, "s1", "upstream said: invalid api key Bearer sk-live-abcdefghijklmnopqrstuvwxyz", false);
    });
    const events = await runStub(env, runId).events(seed.org.id);
    const failed = events?.find((e) => e.type === "step.failed");
    expect(String(failed?.data.error)).toContain("[REDACTED]");
    expect(JSON.stringify(events)).not.toContain("abcdefghijklmnopqrstuvwxyz");
  });
});
