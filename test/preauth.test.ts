/**
 * Before authentication (issue 8, items 3, 4, 5 and the webhook part of 12): a per-client
 * limit in a bucket that is not the org's; anonymous refusals audited in aggregate; webhook
 * floods that cannot starve an org; body limits that hold for chunked bodies; a webhook for
 * a missing repository that does the same work as for a real one.
 */
import { beforeAll, describe, expect, inject, it } from "vitest";
import { clearRateLimitLeases } from "../src/http/rate-limit";
import { bootstrapOrg, eventually, orgFetch, worker } from "./helpers";

const json = (body: unknown, method = "POST", headers: Record<string, string> = {}) => ({
  method,
  headers: { "content-type": "application/json", ...headers },
  body: JSON.stringify(body),
});

async function bootstrapWith(slug: string, rateLimits: Record<string, number>): Promise<string> {
  const res = await worker.fetch("http://localhost/_admin/bootstrap", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer test-bootstrap-token" },
    body: JSON.stringify({ org: { slug, name: slug }, owner: { email: `owner@${slug}.test`, identityProvider: "dev" }, apiKey: { name: "tests" }, rateLimits }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as any).apiKey.key;
}

const forged = (i: number) => `shk_AAAAAAAAAAAA_${String(i).padStart(40, "B")}`;

async function hmacHex(secret: string, body: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return [...new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)))].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A body streamed in 64 KiB chunks without Content-Length; counts what the reader pulled. */
function endlessBody(totalBytes: number) {
  const chunk = new Uint8Array(64 * 1024).fill(0x20);
  const state = { pulled: 0 };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (state.pulled >= totalBytes) return controller.close();
      state.pulled += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  return { stream, state };
}

beforeAll(() => {
  clearRateLimitLeases();
});

describe("per-client limit before authentication", () => {
  it("refuses a client's flood of bad credentials before they are checked, in a bucket that is not the org's", async () => {
    const key = await bootstrapWith("preauth-a", { perPrincipal: 1000, perOrg: 1000, perClient: 5, windowSeconds: 3600 });
    const from = (ip: string, auth: string) => orgFetch("preauth-a", "/a2a/agents", { headers: { authorization: auth, "cf-connecting-ip": ip } });
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await from("198.51.100.1", `Bearer ${forged(i)}`)).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429, 429, 429]);
    // the limit is the client's, whatever it presents: a valid key from that address waits too
    const blocked = await from("198.51.100.1", `Bearer ${key}`);
    expect(blocked.status).toBe(429);
    expect(blocked.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(((await blocked.json()) as any).detail).toMatch(/this client address/);
    // another client, and the org's own budget, are untouched
    const other = await from("198.51.100.2", `Bearer ${key}`);
    expect(other.status).toBe(200);
    expect(other.headers.get("ratelimit-limit")).toBe("1000");
    expect(Number(other.headers.get("ratelimit-remaining"))).toBeGreaterThanOrEqual(998);
  });

  it("keeps a flood of bad Kratos tokens away from Kratos", async () => {
    await bootstrapWith("preauth-k", { perPrincipal: 1000, perOrg: 1000, perClient: 3, windowSeconds: 3600 });
    const kratos = inject("kratosUrl");
    const calls = async (token: string) => ((await (await fetch(`${kratos}/__stats?token=${token}`)).json()) as any).tokenCalls as number;
    const tokens = Array.from({ length: 6 }, (_, i) => `preauth-bad-${i}-${crypto.randomUUID()}`);
    const statuses = [];
    for (const t of tokens) statuses.push((await orgFetch("preauth-k", "/a2a/agents", { headers: { authorization: `Bearer ${t}`, "cf-connecting-ip": "198.51.100.9" } })).status);
    expect(statuses).toEqual([401, 401, 401, 429, 429, 429]);
    const perToken = await Promise.all(tokens.map(calls));
    expect(perToken).toEqual([1, 1, 1, 0, 0, 0]);
  });
});

describe("anonymous refusals are audited in aggregate", () => {
  it("writes one auth.denied row per client and minute, with the count", async () => {
    const key = await bootstrapWith("preauth-audit", { perPrincipal: 1000, perOrg: 1000, perClient: 1000, windowSeconds: 60 });
    const ip = "203.0.113.10";
    const n = 25;
    const statuses = await Promise.all(
      Array.from({ length: n }, (_, i) => orgFetch("preauth-audit", i % 2 ? "/a2a/agents" : "/secrets", { headers: { authorization: `Bearer ${forged(i)}`, "cf-connecting-ip": ip } }).then((r) => r.status)),
    );
    expect(statuses.every((s) => s === 401)).toBe(true);
    const rows = async () => {
      const res = await orgFetch("preauth-audit", "/audit?action=auth.denied", { headers: { authorization: `Bearer ${key}` } });
      return (((await res.json()) as any).entries as any[]).filter((e) => e.summary?.input?.client === ip);
    };
    // the first refusal is written at once, the rest within the flush interval (5 s)
    const got = await eventually(rows, (r) => r.reduce((sum, e) => sum + e.summary.output.count, 0) >= n, 15_000);
    const windows = new Set(got.map((e) => e.summary.input.window));
    expect(got.length).toBe(windows.size); // one row per minute window (a run may straddle two)
    expect(got.length).toBeLessThanOrEqual(2);
    expect(got.reduce((sum, e) => sum + e.summary.output.count, 0)).toBe(n);
    for (const row of got) {
      expect(row).toMatchObject({ actor: "anonymous", action: "auth.denied", outcome: "denied" });
      expect(JSON.stringify(row)).not.toContain("BBBBBBBBBB");
    }
  }, 30_000);
});

describe("webhook floods cannot starve an org", () => {
  it("counts unverified deliveries only per client, and verified ones against the org", async () => {
    const key = await bootstrapWith("preauth-hook", { perPrincipal: 1000, perOrg: 6, perClient: 4, windowSeconds: 3600 });
    const owner = { authorization: `Bearer ${key}`, "cf-connecting-ip": "192.0.2.200" };
    const created = await orgFetch("preauth-hook", "/repositories", json({ name: "hooked", gitUrl: "https://git.example.com/x.git", sync: false }, "POST", owner));
    expect(created.status).toBe(201);
    const { repository, webhook } = (await created.json()) as any;
    const deliver = (ip: string, signature: string, payload = JSON.stringify({ ref: "refs/heads/other" })) =>
      orgFetch("preauth-hook", `/webhooks/git/${repository.id}`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-hub-signature-256": signature, "cf-connecting-ip": ip, "x-github-event": "push" },
        body: payload,
      });
    // a flood of bad signatures from many addresses: each address is cut at its own 4
    const flood = [];
    for (const ip of ["192.0.2.1", "192.0.2.2", "192.0.2.3"]) for (let i = 0; i < 6; i++) flood.push((await deliver(ip, "sha256=00")).status);
    expect(flood.filter((s) => s === 401)).toHaveLength(12);
    expect(flood.filter((s) => s === 429)).toHaveLength(6);
    // 18 deliveries later the org's budget (6) is whole: the owner is served
    const list = await orgFetch("preauth-hook", "/repositories", { headers: owner });
    expect(list.status).toBe(200);
    expect(list.headers.get("ratelimit-remaining")).toBe("4"); // the create and this list
    // verified deliveries are the org's traffic: they spend its budget
    const body = JSON.stringify({ ref: "refs/heads/other" });
    const good = `sha256=${await hmacHex(webhook.secret, body)}`;
    const verified = [];
    for (let i = 0; i < 5; i++) verified.push((await deliver(`192.0.2.${50 + i}`, good, body)).status);
    expect(verified).toEqual([202, 202, 202, 202, 429]);
    expect((await orgFetch("preauth-hook", "/repositories", { headers: owner })).status).toBe(429);
  });

  it("does the same work for a missing repository as for a real one", async () => {
    const key = await bootstrapWith("preauth-same", { perPrincipal: 1000, perOrg: 1000, perClient: 1000, windowSeconds: 60 });
    const created = await orgFetch("preauth-same", "/repositories", json({ name: "real", gitUrl: "https://git.example.com/y.git", sync: false }, "POST", { authorization: `Bearer ${key}` }));
    const { repository } = (await created.json()) as any;
    const subtle = crypto.subtle as unknown as Record<string, (...a: unknown[]) => unknown>;
    const counted = ["decrypt", "sign", "digest", "importKey"];
    const originals = Object.fromEntries(counted.map((m) => [m, subtle[m]!]));
    const attempt = async (id: string) => {
      const calls: Record<string, number> = Object.fromEntries(counted.map((m) => [m, 0]));
      for (const m of counted) subtle[m] = (...a: unknown[]) => (calls[m]!++, originals[m]!.apply(crypto.subtle, a));
      try {
        const res = await orgFetch("preauth-same", `/webhooks/git/${id}`, { method: "POST", headers: { "x-hub-signature-256": "sha256=00", "cf-connecting-ip": "192.0.2.99" }, body: "{}" });
        const { requestId: _r, ...problem } = (await res.json()) as any;
        return { status: res.status, problem, calls };
      } finally {
        for (const m of counted) subtle[m] = originals[m]!;
      }
    };
    await attempt("00000000-0000-4000-8000-000000000000"); // warm the isolate's stand-in secret
    const real = await attempt(repository.id);
    const missing = await attempt("00000000-0000-4000-8000-000000000001");
    expect(real.status).toBe(401);
    expect(missing).toEqual(real);
    expect(real.calls.decrypt).toBeGreaterThanOrEqual(1);
    expect(real.calls.sign).toBeGreaterThanOrEqual(1);
  });
});

describe("body limits hold for chunked bodies", () => {
  let key = "";
  beforeAll(async () => {
    key = await bootstrapWith("preauth-body", { perPrincipal: 1000, perOrg: 1000, perClient: 1000, windowSeconds: 60 });
  });
  const post = (path: string, body: ReadableStream, headers: Record<string, string> = {}) =>
    orgFetch("preauth-body", path, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers }, body });

  it("A2A stops reading at 1 MiB and answers 413 with a JSON-RPC error", async () => {
    const { stream, state } = endlessBody(64 * 1024 * 1024);
    const res = await post("/a2a/agents/Anything", stream, { "A2A-Version": "1.0" });
    expect(res.status).toBe(413);
    const body = (await res.json()) as any;
    expect(body).toMatchObject({ jsonrpc: "2.0", id: null, error: { code: -32600 } });
    expect(body.error.message).toMatch(/1 MiB/);
    expect(state.pulled).toBeLessThanOrEqual(1024 * 1024 + 4 * 64 * 1024);
  });

  it("the org API stops at 256 KiB with a 413 problem", async () => {
    const { stream, state } = endlessBody(64 * 1024 * 1024);
    const res = await orgFetch("preauth-body", "/secrets/BIG", { method: "PUT", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: stream });
    expect(res.status).toBe(413);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(((await res.json()) as any).code).toBe("PAYLOAD_TOO_LARGE");
    expect(state.pulled).toBeLessThanOrEqual(256 * 1024 + 4 * 64 * 1024);
  });

  it("webhooks stop at 5 MiB with a 413 problem, and refuse unsigned deliveries before reading", async () => {
    const created = await orgFetch("preauth-body", "/repositories", json({ name: "big", gitUrl: "https://git.example.com/z.git", sync: false }, "POST", { authorization: `Bearer ${key}` }));
    const { repository } = (await created.json()) as any;
    const big = endlessBody(64 * 1024 * 1024);
    const res = await post(`/webhooks/git/${repository.id}`, big.stream, { "x-hub-signature-256": "sha256=00" });
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).code).toBe("PAYLOAD_TOO_LARGE");
    expect(big.state.pulled).toBeLessThanOrEqual(5 * 1024 * 1024 + 4 * 64 * 1024);
    const unsigned = endlessBody(64 * 1024 * 1024);
    const refused = await post(`/webhooks/git/${repository.id}`, unsigned.stream);
    expect(refused.status).toBe(401);
    expect(unsigned.state.pulled).toBeLessThanOrEqual(2 * 64 * 1024);
  });
});
