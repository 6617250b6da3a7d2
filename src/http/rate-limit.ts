/**
 * Rate limiting per principal and per org, with the org's own limits (`settings.rateLimits`,
 * read with the org scope, so no extra query). Runs after the org resolver and after
 * authentication. One RPC to the org's `RateLimiter` object checks and counts both limits.
 *
 * Every response carries `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and
 * `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers) for the binding limit, the one
 * closer to exhaustion; `RateLimit-Policy` lists it first, then the other one.
 */
import type { Context, MiddlewareHandler } from "hono";
import type { RateDecision, RateLimiter, RateLimits } from "../../durable-objects/rate-limiter";
import type { OrgSettings } from "../db/schema";
import { AppError, problemResponse } from "../errors";
import type { AppEnv } from "./app-env";

export type { RateDecision, RateLimits };

export const DEFAULT_RATE_LIMITS: Readonly<RateLimits> = Object.freeze({
  perPrincipal: 600,
  perOrg: 6000,
  windowSeconds: 60,
});

const MAX_WINDOW_SECONDS = 86_400;

export interface RateLimitOptions {
  /** Limits for orgs whose settings leave a field unset (each field separately). */
  defaults?: Partial<RateLimits>;
  /** Units a request costs; default 1. */
  cost?: number | ((c: Context<AppEnv>) => number);
}

/**
 * The effective limits of an org: each valid setting, else the default. Settings are JSON
 * written by admins, so anything that is not a positive number falls back rather than
 * blocking the org (or throwing on every request).
 */
export function limitsFor(settings: OrgSettings | undefined, defaults: RateLimits = DEFAULT_RATE_LIMITS): RateLimits {
  const s = settings?.rateLimits;
  return {
    perPrincipal: positiveInt(s?.perPrincipal) ?? defaults.perPrincipal,
    perOrg: positiveInt(s?.perOrg) ?? defaults.perOrg,
    windowSeconds: Math.min(positiveInt(s?.windowSeconds) ?? defaults.windowSeconds, MAX_WINDOW_SECONDS),
  };
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v >= 1 ? Math.floor(v) : undefined;
}

/** The key of the caller's own bucket: the principal, or the client address when anonymous. */
export function principalKey(c: Context<AppEnv>): string {
  return c.get("principal") ?? `anon:${c.req.header("cf-connecting-ip") ?? "local"}`;
}

export function rateLimitHeaders(d: RateDecision, limits: RateLimits): Record<string, string> {
  const other = d.scope === "org" ? limits.perPrincipal : limits.perOrg;
  const w = limits.windowSeconds;
  return {
    "RateLimit-Limit": String(d.limit),
    "RateLimit-Remaining": String(d.remaining),
    "RateLimit-Reset": String(d.resetSeconds),
    "RateLimit-Policy": other === d.limit ? `${d.limit};w=${w}` : `${d.limit};w=${w}, ${other};w=${w}`,
  };
}

/**
 * Local budgets: instead of one Durable Object RPC per request, an isolate leases a few
 * hits at once for a (org, principal, limits) key and spends them locally for up to
 * LEASE_TTL_MS; unspent hits go back with the next lease. The lease size follows the
 * key's request rate in this isolate (about LEASE_TTL_MS of traffic), capped at
 * LEASE_SHARE of the smaller limit, so a quiet caller or a small limit still gets exact,
 * one-RPC-per-request accounting, and a busy one makes an RPC every few hundred requests.
 * Headers stay exact for one isolate: remaining = what the object had left after the
 * grant plus what is still unspent here.
 */
const LEASE_TTL_MS = 1_000;
const LEASE_SHARE = 0.05;
const MAX_LEASES = 10_000;

interface Lease {
  tokens: number;
  expires: number;
  decision: RateDecision;
}
interface Demand {
  second: number;
  count: number;
  previous: number;
}
const leases = new Map<string, Lease>();
const demand = new Map<string, Demand>();

function leaseSize(key: string, limits: RateLimits, now: number): number {
  const second = Math.floor(now / 1000);
  let d = demand.get(key);
  if (!d) {
    if (demand.size >= MAX_LEASES) demand.clear();
    d = { second, count: 0, previous: 0 };
    demand.set(key, d);
  }
  if (d.second !== second) {
    d.previous = d.second === second - 1 ? d.count : 0;
    d.second = second;
    d.count = 0;
  }
  d.count++;
  const cap = Math.max(1, Math.floor(Math.min(limits.perPrincipal, limits.perOrg) * LEASE_SHARE));
  return Math.max(1, Math.min(cap, Math.ceil((Math.max(d.previous, d.count) * LEASE_TTL_MS) / 1000)));
}

async function decide(ns: DurableObjectNamespace<RateLimiter>, orgId: string, principal: string, limits: RateLimits, cost: number): Promise<RateDecision> {
  const stub = ns.get(ns.idFromName(orgId));
  if (cost !== 1) return stub.hit(principal, limits, cost);
  const key = `${orgId}\u0000${principal}\u0000${limits.perPrincipal}/${limits.perOrg}/${limits.windowSeconds}`;
  const now = Date.now();
  const lease = leases.get(key);
  if (lease && lease.expires > now && lease.tokens > 0) {
    lease.tokens--;
    return { ...lease.decision, remaining: lease.decision.remaining + lease.tokens };
  }
  const giveBack = lease && lease.expires <= now ? lease.tokens : 0;
  if (lease && giveBack > 0) lease.tokens = 0;
  const want = leaseSize(key, limits, now);
  const got = await stub.lease(principal, limits, want, giveBack);
  const { granted, ...decision } = got;
  if (granted > 1) {
    const current = leases.get(key);
    if (current && current.expires > Date.now()) {
      // Concurrent leases of this isolate: pool them.
      current.tokens += granted - 1;
      current.decision = decision;
    } else {
      if (leases.size >= MAX_LEASES) leases.clear();
      leases.set(key, { tokens: granted - 1, expires: Date.now() + LEASE_TTL_MS, decision });
    }
    return { ...decision, remaining: decision.remaining + (leases.get(key)?.tokens ?? 0) };
  }
  return decision;
}

/** Test hook: forget local leases (e.g. between tests that reuse an org). */
export function clearRateLimitLeases(): void {
  leases.clear();
  demand.clear();
}

// At most one log line per isolate per minute while the limiter is down: an outage would
// otherwise log on every request.
const FAIL_LOG_INTERVAL_MS = 60_000;
let lastFailLog = Number.NEGATIVE_INFINITY;

export function rateLimit(options: RateLimitOptions = {}): MiddlewareHandler<AppEnv> {
  const defaults: RateLimits = { ...DEFAULT_RATE_LIMITS, ...options.defaults };
  const cost = options.cost ?? 1;
  return async function rateLimiter(c, next) {
    const org = c.get("org");
    const limits = limitsFor(org.settings, defaults);
    let decision: RateDecision;
    try {
      decision = await decide(c.env.RATE_LIMITER, org.orgId, principalKey(c), limits, typeof cost === "number" ? cost : cost(c));
    } catch (err) {
      // Fail open: the limiter protects capacity, it is not an access control (authentication
      // and permissions have already run), so its outage must not become an outage of the API.
      const now = Date.now();
      if (now - lastFailLog >= FAIL_LOG_INTERVAL_MS) {
        lastFailLog = now;
        console.error("rate limiter unavailable, allowing requests:", err instanceof Error ? err.message : String(err));
      }
      await next();
      return;
    }

    const headers = rateLimitHeaders(decision, limits);
    if (!decision.allowed) {
      const scope = decision.scope === "org" ? "this organization" : "this client";
      const err = new AppError("RATE_LIMITED", `Rate limit exceeded for ${scope}; retry in ${decision.retryAfterSeconds} s`, {
        scope: decision.scope,
        retryAfterSeconds: decision.retryAfterSeconds,
      });
      return problemResponse(err, c.get("requestId") ?? "", { ...headers, "Retry-After": String(decision.retryAfterSeconds) });
    }

    await next();
    // A WebSocket handshake answer cannot be rebuilt with new headers, and nobody reads them.
    if (c.res.status === 101) return;
    try {
      for (const [k, v] of Object.entries(headers)) c.res.headers.set(k, v);
    } catch {
      // Immutable headers (a response passed through from fetch): c.header copies it first.
      for (const [k, v] of Object.entries(headers)) c.header(k, v);
    }
  };
}

/** Test hook: forget that the outage was logged. */
export function resetRateLimitLog(): void {
  lastFailLog = Number.NEGATIVE_INFINITY;
}
