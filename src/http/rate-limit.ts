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
import type { RateDecision, RateLimits } from "../../durable-objects/rate-limiter";
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
      const ns = c.env.RATE_LIMITER;
      decision = await ns.get(ns.idFromName(org.orgId)).hit(principalKey(c), limits, typeof cost === "number" ? cost : cost(c));
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
