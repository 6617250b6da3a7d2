/** Rate limits: the per-org limiter object, and the middleware in front of routes. */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Hono } from "hono";
import { afterEach, describe, expect, it, vi } from "vitest";
import { MAX_PRINCIPALS, type RateLimiter, type RateLimits } from "../durable-objects/rate-limiter";
import { db } from "../src/db/client";
import { ensureOrg, orgBySlug, setOrgRateLimits } from "../src/db/orgs";
import type { OrgSettings } from "../src/db/schema";
import { scopeOf } from "../src/db/scope";
import { AppError, problemResponse } from "../src/errors";
import type { AppEnv } from "../src/http/app-env";
import { resolveOrg } from "../src/http/org";
import { DEFAULT_RATE_LIMITS, limitsFor, rateLimit, resetRateLimitLog } from "../src/http/rate-limit";

const T0 = 1_700_000_000_000;

function limiter(orgId: string = crypto.randomUUID()) {
  return env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(orgId));
}

const limits = (perPrincipal: number, perOrg: number, windowSeconds = 60): RateLimits => ({ perPrincipal, perOrg, windowSeconds });

describe("RateLimiter object", () => {
  it("counts down and denies at the limit with a retry-after", async () => {
    const rl = limiter();
    const l = limits(3, 100);
    const seen = [];
    for (let i = 0; i < 3; i++) seen.push(await rl.hit("user:a", l, 1, T0));
    expect(seen.map((d) => [d.allowed, d.remaining, d.limit, d.scope])).toEqual([
      [true, 2, 3, "principal"],
      [true, 1, 3, "principal"],
      [true, 0, 3, "principal"],
    ]);
    expect(seen[2]?.retryAfterSeconds).toBe(0);
    expect(seen[2]?.resetSeconds).toBe(60); // a full bucket drains in one window
    const denied = await rl.hit("user:a", l, 1, T0);
    expect(denied).toMatchObject({ allowed: false, remaining: 0, limit: 3, scope: "principal" });
    // 3 per 60 s drains one request every 20 s
    expect(denied.retryAfterSeconds).toBe(20);
  });

  it("keeps each principal's limit and the org-wide limit independent", async () => {
    const orgId = crypto.randomUUID();
    const rl = limiter(orgId);
    const l = limits(3, 5);
    for (let i = 0; i < 3; i++) expect((await rl.hit("a", l, 1, T0)).allowed).toBe(true);
    expect(await rl.hit("a", l, 1, T0)).toMatchObject({ allowed: false, scope: "principal" });
    // b has its own budget, but only two org units are left
    expect(await rl.hit("b", l, 1, T0)).toMatchObject({ allowed: true, remaining: 1, scope: "org", limit: 5 });
    expect(await rl.hit("b", l, 1, T0)).toMatchObject({ allowed: true, remaining: 0, scope: "org" });
    const denied = await rl.hit("b", l, 1, T0);
    expect(denied).toMatchObject({ allowed: false, scope: "org", limit: 5, remaining: 0 });
    expect(denied.retryAfterSeconds).toBeGreaterThan(0);
    expect(await rl.hit("c", l, 1, T0)).toMatchObject({ allowed: false, scope: "org" });
    // another org is another object with its own budget
    expect(await limiter().hit("c", l, 1, T0)).toMatchObject({ allowed: true, remaining: 2 });
  });

  it("names the limit closer to exhaustion", async () => {
    const rl = limiter();
    expect(await rl.hit("a", limits(10, 4), 1, T0)).toMatchObject({ scope: "org", limit: 4, remaining: 3 });
    expect(await rl.hit("b", limits(2, 4), 1, T0)).toMatchObject({ scope: "principal", limit: 2, remaining: 1 });
  });

  it("does not count denied hits, for the principal or for the org", async () => {
    const rl = limiter();
    const l = limits(2, 3, 10); // principal: one request back every 5 s
    await rl.hit("a", l, 1, T0);
    await rl.hit("a", l, 1, T0);
    for (let i = 0; i < 5; i++) expect((await rl.hit("a", l, 1, T0)).allowed).toBe(false);
    // the org spent 2 of 3: b still gets the last one
    expect((await rl.hit("b", l, 1, T0)).allowed).toBe(true);
    expect((await rl.hit("b", l, 1, T0)).allowed).toBe(false);
    // and a gets exactly one request back after 5 s, as if the denied hits never happened
    // (the org bucket has also drained a unit by then: 3 per 10 s)
    expect(await rl.hit("a", l, 1, T0 + 5_000)).toMatchObject({ allowed: true, remaining: 0 });
    expect((await rl.hit("a", l, 1, T0 + 5_000)).allowed).toBe(false);
  });

  it("gives the budget back as the window rolls over", async () => {
    const rl = limiter();
    const l = limits(2, 100, 2); // one request back per second
    await rl.hit("a", l, 1, T0);
    await rl.hit("a", l, 1, T0);
    expect(await rl.hit("a", l, 1, T0 + 999)).toMatchObject({ allowed: false, retryAfterSeconds: 1 });
    expect(await rl.hit("a", l, 1, T0 + 1_000)).toMatchObject({ allowed: true, remaining: 0 });
    // a whole window later the full budget is back
    expect(await rl.hit("a", l, 1, T0 + 3_000)).toMatchObject({ allowed: true, remaining: 1, resetSeconds: 1 });
    // a clock that steps back refills nothing
    expect((await rl.hit("a", l, 1, T0 + 3_000 - 500)).allowed).toBe(true);
    expect((await rl.hit("a", l, 1, T0 + 3_000 - 500)).allowed).toBe(false);
  });

  it("charges the cost of a hit and applies a changed limit at once", async () => {
    const rl = limiter();
    expect(await rl.hit("a", limits(10, 100), 4, T0)).toMatchObject({ allowed: true, remaining: 6 });
    expect(await rl.hit("a", limits(10, 100), 7, T0)).toMatchObject({ allowed: false, remaining: 6 });
    // the level is kept in requests, so a lower limit counts what was already spent
    expect(await rl.hit("a", limits(5, 100), 1, T0)).toMatchObject({ allowed: true, remaining: 0, limit: 5 });
  });

  it("refuses limits it cannot compute with", async () => {
    // called in the object, not over RPC: an RPC error is also reported as unhandled there
    await runInDurableObject(limiter(), (o: RateLimiter) => {
      expect(() => o.hit("a", limits(0, 10), 1, T0)).toThrow(/invalid rate limits/);
      expect(() => o.hit("a", limits(1, 10, Number.POSITIVE_INFINITY), 1, T0)).toThrow(/invalid rate limits/);
      expect(() => o.hit("a", limits(1, 10), -1, T0)).toThrow(/invalid rate limits/);
    });
  });

  it("forgets idle principals and bounds how many it tracks", async () => {
    const stub = limiter();
    const size = (o: RateLimiter) => (o as unknown as { principals: Map<string, unknown> }).principals.size;
    await runInDurableObject(stub, async (o: RateLimiter) => {
      const l = limits(10, 1_000_000, 1);
      for (let i = 0; i < 100; i++) await o.hit(`p${i}`, l, 1, T0);
      expect(size(o)).toBe(100);
      // a minute later all of them have drained: the next hit sweeps them
      await o.hit("late", l, 1, T0 + 61_000);
      expect(size(o)).toBe(1);
      for (let i = 0; i < MAX_PRINCIPALS + 50; i++) await o.hit(`q${i}`, l, 1, T0 + 62_000);
      expect(size(o)).toBeLessThanOrEqual(MAX_PRINCIPALS);
      expect(size(o)).toBeGreaterThan(MAX_PRINCIPALS * 0.8);
      // the least recently seen went first (a fresh budget); the newest keep their counts
      expect((await o.hit("q0", l, 1, T0 + 62_000)).remaining).toBe(9);
      expect((await o.hit(`q${MAX_PRINCIPALS + 49}`, l, 1, T0 + 62_000)).remaining).toBe(8);
    });
  });
});

describe("leases: local budgets spent without an RPC per request", () => {
  it("the object grants up to the smaller remaining budget, takes unspent hits back, and denies at zero", async () => {
    await runInDurableObject(limiter(), async (o: RateLimiter) => {
      const l = limits(10, 100, 3600);
      expect(o.lease("a", l, 4, 0, T0)).toMatchObject({ allowed: true, granted: 4, remaining: 6 });
      expect(o.lease("a", l, 50, 0, T0)).toMatchObject({ allowed: true, granted: 6, remaining: 0 });
      expect(o.lease("a", l, 5, 0, T0)).toMatchObject({ allowed: false, granted: 0, scope: "principal" });
      // three unspent hits come back with the next lease
      expect(o.lease("a", l, 2, 3, T0)).toMatchObject({ allowed: true, granted: 2, remaining: 1 });
      // the org budget caps a lease too
      expect(o.lease("b", limits(1000, 14, 3600), 100, 0, T0)).toMatchObject({ allowed: true, granted: 5, remaining: 0, scope: "org" });
    });
  });

  it("a busy caller makes few RPCs, and the limit and headers stay exact", async () => {
    const { clearRateLimitLeases } = await import("../src/http/rate-limit");
    clearRateLimitLeases();
    let rpcs = 0;
    const counting = {
      idFromName: (n: string) => env.RATE_LIMITER.idFromName(n),
      get: (id: DurableObjectId) => {
        const stub = env.RATE_LIMITER.get(id);
        return {
          hit: (...a: Parameters<RateLimiter["hit"]>) => (rpcs++, stub.hit(...a)),
          lease: (...a: Parameters<RateLimiter["lease"]>) => (rpcs++, stub.lease(...a)),
        };
      },
    };
    // Time advances 2 ms per request, so the caller's rate is ~500 requests a second.
    let clock = Date.now();
    vi.spyOn(Date, "now").mockImplementation(() => (clock += 2));
    const org = scopeOf({ id: crypto.randomUUID(), slug: "rl", name: "RL", settings: { rateLimits: { perPrincipal: 1200, perOrg: 100_000, windowSeconds: 86_400 } } });
    const app = new Hono<AppEnv>();
    app.use(async (c, next) => {
      c.set("requestId", "r");
      c.set("org", org);
      c.set("principal", "key:busy");
      await next();
    });
    app.use(rateLimit());
    app.get("/ping", (c) => c.text("ok"));
    const bindings = { ...env, RATE_LIMITER: counting } as unknown as Env;
    const remaining: number[] = [];
    let allowed = 0;
    for (let i = 0; i < 1300; i++) {
      const res = await app.request("http://rl.localhost/ping", {}, bindings);
      if (res.status === 200) {
        allowed++;
        remaining.push(Number(res.headers.get("RateLimit-Remaining")));
      } else expect(res.status).toBe(429);
    }
    expect(allowed).toBe(1200);
    expect(remaining).toEqual(Array.from({ length: 1200 }, (_, i) => 1199 - i));
    // 100 denials ask the object each time; the 1,200 allowed took far fewer than 1,200 RPCs.
    expect(rpcs - 100).toBeLessThan(120);
    clearRateLimitLeases();
  });
});

describe("rate-limit middleware", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** A tiny app: a fake org (with `settings`) and principal (`x-test-principal`), then the limiter. */
  function appFor(settings: OrgSettings = {}) {
    const org = scopeOf({ id: crypto.randomUUID(), slug: "rl", name: "RL", settings });
    const calls = { n: 0 };
    const app = new Hono<AppEnv>();
    app.use(async function fakeAuth(c, next) {
      c.set("requestId", "req-1");
      c.set("org", org);
      c.set("principal", c.req.header("x-test-principal") ?? null);
      await next();
    });
    app.use(rateLimit());
    app.onError((err, c) => problemResponse(err instanceof AppError ? err : new AppError("INTERNAL", "internal"), c.get("requestId")));
    app.get("/ping", (c) => {
      calls.n++;
      return c.json({ ok: true });
    });
    app.get("/boom", () => {
      calls.n++;
      throw new AppError("CONFLICT", "boom");
    });
    app.get("/redirect", () => Response.redirect("http://rl.localhost/ping", 302));
    const get = (path: string, headers: Record<string, string> = {}, bindings: Env = env) =>
      app.request(`http://rl.localhost${path}`, { headers }, bindings);
    return { get, calls };
  }

  it("sets the RateLimit headers on a 200 with the default policy", async () => {
    const { get } = appFor();
    const res = await get("/ping", { "x-test-principal": "user:1" });
    expect(res.status).toBe(200);
    expect(res.headers.get("RateLimit-Limit")).toBe(String(DEFAULT_RATE_LIMITS.perPrincipal));
    expect(res.headers.get("RateLimit-Remaining")).toBe(String(DEFAULT_RATE_LIMITS.perPrincipal - 1));
    expect(Number(res.headers.get("RateLimit-Reset"))).toBeGreaterThan(0);
    expect(res.headers.get("RateLimit-Policy")).toBe("600;w=60, 6000;w=60");
    expect(res.headers.get("Retry-After")).toBeNull();
    const again = await get("/ping", { "x-test-principal": "user:1" });
    expect(again.headers.get("RateLimit-Remaining")).toBe("598");
  });

  it("answers 429 with Retry-After and a problem body, without calling the route", async () => {
    const { get, calls } = appFor({ rateLimits: { perPrincipal: 2, windowSeconds: 30 } });
    for (let i = 0; i < 2; i++) expect((await get("/ping", { "x-test-principal": "key:k1" })).status).toBe(200);
    const res = await get("/ping", { "x-test-principal": "key:k1" });
    expect(res.status).toBe(429);
    expect(calls.n).toBe(2);
    expect(res.headers.get("content-type")).toContain("application/problem+json");
    expect(Number(res.headers.get("Retry-After"))).toBeGreaterThan(0);
    expect(res.headers.get("RateLimit-Limit")).toBe("2");
    expect(res.headers.get("RateLimit-Remaining")).toBe("0");
    expect(res.headers.get("RateLimit-Policy")).toBe("2;w=30, 6000;w=30");
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: 429, code: "RATE_LIMITED", title: "Too Many Requests", requestId: "req-1", scope: "principal" });
    expect(body.retryAfterSeconds).toBe(Number(res.headers.get("Retry-After")));
    // another principal of the same org is not affected
    expect((await get("/ping", { "x-test-principal": "key:k2" })).status).toBe(200);
  });

  it("honours the org-wide limit from the org's settings", async () => {
    const { get } = appFor({ rateLimits: { perOrg: 3 } });
    expect((await get("/ping", { "x-test-principal": "a" })).status).toBe(200);
    expect((await get("/ping", { "x-test-principal": "a" })).status).toBe(200);
    expect((await get("/ping", { "x-test-principal": "b" })).status).toBe(200);
    const res = await get("/ping", { "x-test-principal": "c" });
    expect(res.status).toBe(429);
    expect(res.headers.get("RateLimit-Limit")).toBe("3");
    expect(res.headers.get("RateLimit-Policy")).toBe("3;w=60, 600;w=60");
    expect(await res.json()).toMatchObject({ scope: "org" });
  });

  it("limits anonymous callers per client address", async () => {
    const { get } = appFor({ rateLimits: { perPrincipal: 1 } });
    expect((await get("/ping", { "cf-connecting-ip": "192.0.2.1" })).status).toBe(200);
    expect((await get("/ping", { "cf-connecting-ip": "192.0.2.1" })).status).toBe(429);
    expect((await get("/ping", { "cf-connecting-ip": "192.0.2.2" })).status).toBe(200);
    expect((await get("/ping")).status).toBe(200); // no address: one shared local bucket
    expect((await get("/ping")).status).toBe(429);
  });

  it("sets the headers on error answers and on responses with immutable headers", async () => {
    const { get } = appFor();
    const err = await get("/boom", { "x-test-principal": "u" });
    expect(err.status).toBe(409);
    expect(err.headers.get("RateLimit-Remaining")).toBe("599");
    const redirect = await get("/redirect", { "x-test-principal": "u" });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get("RateLimit-Remaining")).toBe("598");
  });

  it("fails open, logging once, when the limiter is unreachable", async () => {
    resetRateLimitLog();
    const log = vi.spyOn(console, "error").mockImplementation(() => {});
    const down = {
      idFromName: (name: string) => env.RATE_LIMITER.idFromName(name),
      get: () => ({ hit: () => Promise.reject(new Error("Durable Object is overloaded")) }),
    };
    const broken = { ...env, RATE_LIMITER: down as unknown as Env["RATE_LIMITER"] };
    const { get, calls } = appFor({ rateLimits: { perPrincipal: 1 } });
    for (let i = 0; i < 3; i++) {
      const res = await get("/ping", { "x-test-principal": "u" }, broken);
      expect(res.status).toBe(200);
      expect(res.headers.get("RateLimit-Limit")).toBeNull();
    }
    expect(calls.n).toBe(3);
    expect(log).toHaveBeenCalledTimes(1);
    expect(String(log.mock.calls[0]?.[0])).toContain("rate limiter unavailable");
  });

  it("reads the limits from the org row through the org resolver's cache", async () => {
    const database = db(env);
    const org = await ensureOrg(database, { slug: "rl-settings", name: "RL Settings" });
    expect(org.settings).toEqual({});
    await setOrgRateLimits(database, org, { perPrincipal: 1, windowSeconds: 120 });
    // the cached scope was dropped, so the new limits apply at once in this isolate
    expect((await orgBySlug(database, "rl-settings"))?.settings).toEqual({ rateLimits: { perPrincipal: 1, windowSeconds: 120 } });

    const app = new Hono<AppEnv>();
    app.use(resolveOrg());
    app.use(async function anonymous(c, next) {
      c.set("principal", null);
      await next();
    });
    app.use(rateLimit());
    app.get("/ping", (c) => c.text("pong"));
    const first = await app.request("http://rl-settings.localhost/ping", {}, env);
    expect(first.status).toBe(200);
    expect(first.headers.get("RateLimit-Policy")).toBe("1;w=120, 6000;w=120");
    expect((await app.request("http://rl-settings.localhost/ping", {}, env)).status).toBe(429);

    await setOrgRateLimits(database, org, null);
    expect((await orgBySlug(database, "rl-settings"))?.settings).toEqual({});
  });

  it("falls back to the defaults for unusable settings", () => {
    expect(limitsFor(undefined)).toEqual(DEFAULT_RATE_LIMITS);
    expect(limitsFor({ rateLimits: { perPrincipal: 0, perOrg: -5, windowSeconds: Number.NaN } })).toEqual(DEFAULT_RATE_LIMITS);
    expect(limitsFor({ rateLimits: { perPrincipal: 2.7, perOrg: 50, windowSeconds: 10 ** 9 } })).toEqual({
      perPrincipal: 2,
      perOrg: 50,
      windowSeconds: 86_400,
    });
  });
});
