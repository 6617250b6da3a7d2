/**
 * Rate limiting, with the org's own limits (`settings.rateLimits`, read with the org scope,
 * so no extra query):
 * - `clientRateLimit()` runs BEFORE authentication, per client address (`perClient`), in a
 *   limiter object of its own (`clients:<org>`), so a flood of bad credentials or unsigned
 *   webhooks is refused before it reaches Kratos, D1 or an HMAC, and never spends the org's
 *   budget;
 * - `rateLimit()` runs after authentication, per principal and per org. One RPC to the
 *   org's `RateLimiter` object checks and counts both limits;
 * - `chargeOrg()` counts a request that proved itself another way (a verified webhook)
 *   against the org's budget.
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

/** Requests per window from one client address before authentication (several callers may share one). */
export const DEFAULT_PER_CLIENT = 3000;

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

/** The client's address (Cloudflare sets `CF-Connecting-IP`; a client cannot); "local" in local runs. */
export function clientAddress(c: Context<AppEnv>): string {
  return c.req.header("cf-connecting-ip") ?? "local";
}

/** The key of the caller's own bucket: the principal, or the client address when anonymous. */
export function principalKey(c: Context<AppEnv>): string {
  return c.get("principal") ?? `anon:${clientAddress(c)}`;
}

/** The per-client limits of an org: `perClient` per window, in the clients' own object. */
export function clientLimitsFor(settings: OrgSettings | undefined): RateLimits {
  const org = limitsFor(settings);
  const perClient = positiveInt(settings?.rateLimits?.perClient) ?? DEFAULT_PER_CLIENT;
  // The object's org-wide bucket is not a limit here: it only bounds all clients together, far above one.
  return { perPrincipal: perClient, perOrg: perClient * 1000, windowSeconds: org.windowSeconds };
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

/** `object`: the limiter object's name, the org id (org budgets) or `clients:<org id>` (per-client). */
async function decide(ns: DurableObjectNamespace<RateLimiter>, object: string, principal: string, limits: RateLimits, cost: number): Promise<RateDecision> {
  const stub = ns.get(ns.idFromName(object));
  if (cost !== 1) return stub.hit(principal, limits, cost);
  const key = `${object}\u0000${principal}\u0000${limits.perPrincipal}/${limits.perOrg}/${limits.windowSeconds}`;
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

/**
 * One limiter decision, failing open: the limiter protects capacity, it is not an access
 * control, so its outage must not become an outage of the API (logged at most once a minute).
 */
async function decideOrAllow(c: Context<AppEnv>, object: string, principal: string, limits: RateLimits, cost: number): Promise<RateDecision | null> {
  try {
    return await decide(c.env.RATE_LIMITER, object, principal, limits, cost);
  } catch (err) {
    const now = Date.now();
    if (now - lastFailLog >= FAIL_LOG_INTERVAL_MS) {
      lastFailLog = now;
      console.error("rate limiter unavailable, allowing requests:", err instanceof Error ? err.message : String(err));
    }
    return null;
  }
}

function refusal(c: Context<AppEnv>, decision: RateDecision, limits: RateLimits, scopeName: string): Response {
  const headers = rateLimitHeaders(decision, limits);
  const err = new AppError("RATE_LIMITED", `Rate limit exceeded for ${scopeName}; retry in ${decision.retryAfterSeconds} s`, {
    scope: decision.scope,
    retryAfterSeconds: decision.retryAfterSeconds,
  });
  return problemResponse(err, c.get("requestId") ?? "", { ...headers, "Retry-After": String(decision.retryAfterSeconds) });
}

function setHeaders(c: Context<AppEnv>, headers: Record<string, string>): void {
  // A WebSocket handshake answer cannot be rebuilt with new headers, and nobody reads them.
  if (c.res.status === 101) return;
  try {
    for (const [k, v] of Object.entries(headers)) c.res.headers.set(k, v);
  } catch {
    // Immutable headers (a response passed through from fetch): c.header copies it first.
    for (const [k, v] of Object.entries(headers)) c.header(k, v);
  }
}

export function rateLimit(options: RateLimitOptions = {}): MiddlewareHandler<AppEnv> {
  const defaults: RateLimits = { ...DEFAULT_RATE_LIMITS, ...options.defaults };
  const cost = options.cost ?? 1;
  return async function rateLimiter(c, next) {
    const org = c.get("org");
    const limits = limitsFor(org.settings, defaults);
    const decision = await decideOrAllow(c, org.orgId, principalKey(c), limits, typeof cost === "number" ? cost : cost(c));
    if (!decision) return next();
    const headers = rateLimitHeaders(decision, limits);
    if (!decision.allowed) return refusal(c, decision, limits, decision.scope === "org" ? "this organization" : "this client");
    await next();
    setHeaders(c, headers);
  };
}

/**
 * The per-client limit before authentication: `bucket` names the kind of traffic (`client`
 * for API calls, `webhook` for unverified deliveries, each with a bucket of its own per
 * client address). Counted in the org's clients object, never in the org's own budget.
 * Its headers are not sent: the authenticated limit's headers describe the caller.
 */
export function clientRateLimit(bucket = "client"): MiddlewareHandler<AppEnv> {
  return async function clientRateLimiter(c, next) {
    const org = c.get("org");
    const limits = clientLimitsFor(org.settings);
    const decision = await decideOrAllow(c, `clients:${org.orgId}`, `${bucket}:${clientAddress(c)}`, limits, 1);
    if (decision && !decision.allowed) return refusal(c, decision, limits, "this client address");
    await next();
  };
}

/**
 * Counts a request that proved itself without a principal (a verified webhook delivery)
 * against the org's budget, as `principal`. Returns the 429 answer when over, else null.
 */
export async function chargeOrg(c: Context<AppEnv>, principal: string): Promise<Response | null> {
  const org = c.get("org");
  const limits = limitsFor(org.settings);
  const decision = await decideOrAllow(c, org.orgId, principal, limits, 1);
  if (!decision) return null;
  if (!decision.allowed) return refusal(c, decision, limits, decision.scope === "org" ? "this organization" : "this sender");
  for (const [k, v] of Object.entries(rateLimitHeaders(decision, limits))) c.header(k, v);
  return null;
}

/** Test hook: forget that the outage was logged. */
export function resetRateLimitLog(): void {
  lastFailLog = Number.NEGATIVE_INFINITY;
}
