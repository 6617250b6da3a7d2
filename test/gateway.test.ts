/** Subdomain routing and the gateway's answers to bad input. */
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import type { Config } from "../src/config";
import { createApp } from "../workers/gateway";
import { orgLabelOf, orgSlugFor } from "../src/http/org";
import { keyOf, orgFetch, rpc, seedOrg, sendMessage, worker } from "./helpers";

const seeded = seedOrg("routing");

function expectProblem(body: any, status: number) {
  expect(body).toMatchObject({ status, code: expect.any(String), detail: expect.any(String), requestId: expect.any(String) });
  expect(JSON.stringify(body)).not.toMatch(/at .*\.(ts|js):\d+/); // no stack trace
}

describe("subdomain routing", () => {
  it("selects the org from <slug>.<domain>", async () => {
    await seeded;
    const res = await orgFetch("routing", "/a2a/agents");
    expect(res.status).toBe(200);
    // org routes are rate limited per caller and per org (src/http/rate-limit.ts)
    expect(res.headers.get("ratelimit-limit")).toBe("600");
    expect(Number(res.headers.get("ratelimit-remaining"))).toBeLessThan(600);
    const body = (await res.json()) as any;
    expect(body.agents.map((a: any) => a.name)).toEqual(["ProcessInvoice", "Summarize"]);
    expect(body.agents[0].url).toBe("http://routing.localhost/a2a/agents/ProcessInvoice");
  });

  it("answers an unknown org with a 404 problem body", async () => {
    const res = await orgFetch("no-such-org", "/a2a/agents");
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toContain("application/problem+json");
    const body = await res.json();
    expectProblem(body, 404);
    expect(body).toMatchObject({ detail: "Organization not found" });
  });

  it("gives the apex domain no org", async () => {
    const res = await worker.fetch("http://localhost/a2a/agents");
    expect(res.status).toBe(404);
  });

  it("accepts the local fallbacks (header and path prefix) in development", async () => {
    await seeded;
    const auth = { authorization: `Bearer ${keyOf("routing")}` };
    const viaHeader = await worker.fetch("http://localhost/a2a/agents", { headers: { "x-shaman-org": "routing", ...auth } });
    expect(viaHeader.status).toBe(200);
    const viaPath = await worker.fetch("http://localhost/_org/routing/a2a/agents", { headers: auth });
    expect(viaPath.status).toBe(200);
    const body = (await viaPath.json()) as any;
    expect(body.agents[0].url).toBe("http://localhost/_org/routing/a2a/agents/ProcessInvoice");
    // a fallback that disagrees with the subdomain is refused
    const mixed = await orgFetch("routing", "/a2a/agents", { headers: { "x-shaman-org": "other" } });
    expect(mixed.status).toBe(404);
  });

  it("ignores the fallbacks under production configuration", () => {
    const prod: Config = { domain: "shaman.example.com", production: true, devRouting: false, devSeed: false, runWaitTimeoutMs: 1, runTimeoutMs: 1, turnLeaseMs: 1, jobResendAfterMs: 1 };
    const req = new Request("https://shaman.example.com/a2a/agents", { headers: { "x-shaman-org": "acme" } });
    expect(orgSlugFor(req, new URL(req.url), prod, undefined)).toBeNull();
    expect(orgSlugFor(req, new URL(req.url), prod, "acme")).toBeNull();
    const sub = new Request("https://acme.shaman.example.com/a2a/agents");
    expect(orgSlugFor(sub, new URL(sub.url), prod, undefined)).toBe("acme");
    expect(orgLabelOf("a.b.shaman.example.com", "shaman.example.com")).toBeNull();
    expect(orgLabelOf("acme.evil.com", "shaman.example.com")).toBeNull();
  });

  it("refuses the dev seed route when it is disabled", async () => {
    const app = createApp();
    const prodEnv = { ...env, SHAMAN_ENV: "production", SHAMAN_DEV_SEED: "true" } as unknown as Env;
    const seed = await app.request("http://localhost/_dev/seed", { method: "POST", body: "{}" }, prodEnv);
    expect(seed.status).toBe(404);
    const fallback = await app.request("http://localhost/_org/routing/a2a/agents", {}, prodEnv);
    expect(fallback.status).toBe(404);
  });

  it("answers unknown paths and malformed run ids with 404 problem bodies", async () => {
    await seeded;
    const res = await orgFetch("routing", "/nope");
    expect(res.status).toBe(404);
    expectProblem(await res.json(), 404);
    const run = await orgFetch("routing", "/runs/not-a-uuid");
    expect(run.status).toBe(404);
    const missing = await orgFetch("routing", `/runs/${crypto.randomUUID()}`);
    expect(missing.status).toBe(404);
    expectProblem(await missing.json(), 404);
  });
});

describe("bad input on the A2A endpoint", () => {
  it("malformed JSON → -32700", async () => {
    await seeded;
    const r = await rpc("routing", "ProcessInvoice", "{not json");
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ jsonrpc: "2.0", id: null, error: { code: -32700, message: expect.stringContaining("Parse error") } });
  });

  it("not a JSON-RPC request → -32600", async () => {
    await seeded;
    const r = await rpc("routing", "ProcessInvoice", { hello: "world", id: 7 });
    expect(r.body.error.code).toBe(-32600);
    expect(r.body.id).toBe(7);
    const batch = await rpc("routing", "ProcessInvoice", [sendMessage("x")]);
    expect(batch.body.error.code).toBe(-32600);
  });

  it("unknown method → -32601; a served method without its params → -32602", async () => {
    await seeded;
    const r = await rpc("routing", "ProcessInvoice", { jsonrpc: "2.0", id: "a", method: "DoMagic", params: {} });
    expect(r.body).toMatchObject({ id: "a", error: { code: -32601 } });
    const s = await rpc("routing", "ProcessInvoice", { jsonrpc: "2.0", id: "b", method: "ListTaskPushNotificationConfigs", params: {} });
    expect(s.body).toMatchObject({ id: "b", error: { code: -32602 } });
  });

  it("invalid params → -32602 with the failing field", async () => {
    await seeded;
    const r = await rpc("routing", "ProcessInvoice", { jsonrpc: "2.0", id: 3, method: "SendMessage", params: { message: { role: "ROLE_USER", parts: [] } } });
    expect(r.body.error.code).toBe(-32602);
    expect(r.body.error.message).toContain("message.");
    const noParts = await rpc("routing", "ProcessInvoice", {
      jsonrpc: "2.0",
      id: 4,
      method: "SendMessage",
      params: { message: { messageId: "m", role: "ROLE_USER", parts: [{ text: "a", data: {} }] } },
    });
    expect(noParts.body.error.code).toBe(-32602);
  });

  it("unsupported A2A-Version → -32009", async () => {
    await seeded;
    const r = await rpc("routing", "ProcessInvoice", sendMessage("hi"), { "A2A-Version": "9.9" });
    expect(r.body.error.code).toBe(-32009);
  });

  it("unknown task → -32001", async () => {
    await seeded;
    const r = await rpc("routing", "ProcessInvoice", { jsonrpc: "2.0", id: 5, method: "GetTask", params: { id: crypto.randomUUID() } });
    expect(r.body.error.code).toBe(-32001);
  });

  it("unknown and private agents answer alike with 404", async () => {
    await seeded;
    const unknown = await rpc("routing", "NoSuchAgent", sendMessage("hi"));
    const priv = await rpc("routing", "ValidateData", sendMessage("hi"));
    expect(unknown.status).toBe(404);
    expect(priv.status).toBe(404);
    expect(unknown.body.error.code).toBe(priv.body.error.code);
    const card = await orgFetch("routing", "/a2a/agents/ValidateData/.well-known/agent-card.json");
    expect(card.status).toBe(404);
  });

  it("refuses an oversized body", async () => {
    await seeded;
    const r = await rpc("routing", "ProcessInvoice", sendMessage("x".repeat(1_100_000)));
    expect(r.status).toBe(413);
    expect(r.body.error.code).toBe(-32600);
  });
});

describe("agent card", () => {
  it("serves an A2A v1.0 card with the required fields", async () => {
    await seeded;
    const res = await orgFetch("routing", "/a2a/agents/ProcessInvoice/.well-known/agent-card.json");
    expect(res.status).toBe(200);
    const card = (await res.json()) as any;
    for (const field of ["name", "description", "version", "capabilities", "defaultInputModes", "defaultOutputModes", "skills", "supportedInterfaces"]) {
      expect(card).toHaveProperty(field);
    }
    expect(card.version).toBe("1.0.0");
    expect(card.documentationUrl).toBe("https://example.com/docs/process-invoice");
    expect(card.supportedInterfaces[0]).toEqual({
      url: "http://routing.localhost/a2a/agents/ProcessInvoice",
      protocolBinding: "JSONRPC",
      protocolVersion: "1.0",
    });
  });
});
