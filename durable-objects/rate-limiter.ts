/**
 * Rate-limit state of one org (one object per org, `idFromName(orgId)`). A single RPC,
 * `hit`, checks and counts both the org-wide budget and the caller's own budget, so the
 * gateway pays for one Durable Object hop per request at most.
 *
 * Algorithm: a leaky bucket used as a meter (the token bucket seen from the other side).
 * Each bucket holds a level in requests that drains continuously at `limit / window`; a
 * hit of `cost` is allowed if `level + cost <= limit`. So a caller may burst up to
 * `limit` requests, and afterwards gets `limit` per window, spread evenly. Compared with
 * fixed windows there is no double burst at a window edge, and a bucket is one number
 * and a timestamp, whatever the limit. The level is counted in requests, not time, so a
 * changed limit or window applies from the next hit without resetting anyone.
 *
 * State is in memory only. Persisting every hit would put a storage write on the hot path
 * of every API call; the price is that an eviction (the object idles out, or moves) resets
 * every bucket of the org to empty, i.e. callers get a fresh budget. That errs on the side
 * of letting requests through, which is the right side for a limiter that protects
 * capacity rather than billing.
 */
import { DurableObject } from "cloudflare:workers";

export interface RateLimits {
  /** Requests per window for one principal (user, API key, or anonymous client). */
  perPrincipal: number;
  /** Requests per window for the whole org, all principals together. */
  perOrg: number;
  windowSeconds: number;
}

export interface RateDecision {
  allowed: boolean;
  /** Limit of the binding scope: the one closer to exhaustion (the one that denied). */
  limit: number;
  /** Requests still allowed right now in the binding scope (after this hit). */
  remaining: number;
  /** Seconds until the binding scope's budget is fully restored. */
  resetSeconds: number;
  /** Seconds until this hit would be allowed; 0 when allowed. */
  retryAfterSeconds: number;
  scope: "principal" | "org";
}

interface Bucket {
  level: number;
  at: number;
}

/** Principals tracked at once per org; beyond this the least recently seen are dropped. */
export const MAX_PRINCIPALS = 10_000;
const LOW_WATER = Math.floor(MAX_PRINCIPALS * 0.9);
// Drained buckets are equivalent to absent ones; sweeping them now and then keeps memory
// proportional to the callers active in the last window, not to every caller ever seen.
const SWEEP_INTERVAL_MS = 60_000;

interface Evaluation {
  level: number;
  allowed: boolean;
  remaining: number;
  resetSeconds: number;
  retryAfterSeconds: number;
}

export class RateLimiter extends DurableObject<Env> {
  // Map order is recency order (a hit re-inserts its key), so the front is the least recent.
  private readonly principals = new Map<string, Bucket>();
  private org: Bucket = { level: 0, at: 0 };
  private lastSweep = 0;

  /**
   * Checks and, if both budgets allow it, counts a hit of `cost` for `principal` and for
   * the org. A denied hit counts nowhere. `now` is injectable for tests only. Synchronous
   * on purpose: with no await inside, concurrent hits cannot interleave (callers still get
   * a promise over RPC).
   */
  hit(principal: string, limits: RateLimits, cost = 1, now = Date.now()): RateDecision {
    // The gateway sanitises org settings; this guards the arithmetic (no division by zero,
    // no negative cost that would refill a bucket).
    const finite = [limits.perPrincipal, limits.perOrg, limits.windowSeconds, cost].every(Number.isFinite);
    if (!finite || limits.perPrincipal < 1 || limits.perOrg < 1 || limits.windowSeconds <= 0 || cost < 0) {
      throw new RangeError("invalid rate limits or cost");
    }
    const windowMs = limits.windowSeconds * 1000;
    const mine = this.principals.get(principal) ?? { level: 0, at: now };
    const p = evaluate(mine, limits.perPrincipal, windowMs, cost, now);
    const o = evaluate(this.org, limits.perOrg, windowMs, cost, now);
    const allowed = p.allowed && o.allowed;
    if (allowed) {
      // `at` never moves back, so a caller's earlier clock cannot replay drain time.
      this.org = { level: o.level + cost, at: Math.max(now, this.org.at) };
      this.principals.delete(principal);
      this.principals.set(principal, { level: p.level + cost, at: Math.max(now, mine.at) });
      this.trim(limits, windowMs, now);
    }

    const orgBinds = allowed
      ? o.remaining < p.remaining
      : !o.allowed && (p.allowed || o.retryAfterSeconds > p.retryAfterSeconds);
    const b = orgBinds ? o : p;
    return {
      allowed,
      limit: orgBinds ? limits.perOrg : limits.perPrincipal,
      remaining: b.remaining,
      resetSeconds: b.resetSeconds,
      retryAfterSeconds: allowed ? 0 : b.retryAfterSeconds,
      scope: orgBinds ? "org" : "principal",
    };
  }

  /**
   * Hands out up to `want` hits at once for a gateway isolate to spend locally (see
   * src/http/rate-limit.ts), after taking back `giveBack` unspent hits of an expired lease.
   * Grants as many as both budgets allow, at least one or the hit is denied as by `hit`;
   * the decision's `remaining` is what is left after the whole grant.
   */
  lease(principal: string, limits: RateLimits, want: number, giveBack = 0, now = Date.now()): RateDecision & { granted: number } {
    if (giveBack > 0 && Number.isFinite(giveBack)) {
      const mine = this.principals.get(principal);
      if (mine) mine.level = Math.max(0, mine.level - giveBack);
      this.org.level = Math.max(0, this.org.level - giveBack);
    }
    const windowMs = limits.windowSeconds * 1000;
    const wanted = Math.max(1, Math.floor(Number.isFinite(want) ? want : 1));
    let grant = 1;
    if (wanted > 1 && limits.windowSeconds > 0) {
      const p = evaluate(this.principals.get(principal) ?? { level: 0, at: now }, limits.perPrincipal, windowMs, 0, now);
      const o = evaluate(this.org, limits.perOrg, windowMs, 0, now);
      grant = Math.max(1, Math.min(wanted, Math.floor(limits.perPrincipal - p.level + 1e-9), Math.floor(limits.perOrg - o.level + 1e-9)));
    }
    const decision = this.hit(principal, limits, grant, now);
    return { ...decision, granted: decision.allowed ? grant : 0 };
  }

  private trim(limits: RateLimits, windowMs: number, now: number): void {
    if (now - this.lastSweep < SWEEP_INTERVAL_MS && this.principals.size <= MAX_PRINCIPALS) return;
    this.lastSweep = now;
    const drainPerMs = limits.perPrincipal / windowMs;
    for (const [key, bucket] of this.principals) {
      if (bucket.level - (now - bucket.at) * drainPerMs <= 0) this.principals.delete(key);
    }
    // Still too many active callers: forgetting the least recent gives them a fresh budget,
    // which the org-wide bucket still bounds. Going down to a low-water mark makes the scan
    // above rare instead of once per hit while the org stays at the cap.
    if (this.principals.size <= MAX_PRINCIPALS) return;
    for (const key of this.principals.keys()) {
      if (this.principals.size <= LOW_WATER) break;
      this.principals.delete(key);
    }
  }
}

/** The bucket's state at `now` and what a hit of `cost` would do to it (without applying it). */
function evaluate(bucket: Bucket, limit: number, windowMs: number, cost: number, now: number): Evaluation {
  const drainPerMs = limit / windowMs;
  // A clock that steps back (tests, or another caller's `now`) must not refill the bucket.
  const level = Math.max(0, bucket.level - Math.max(0, now - bucket.at) * drainPerMs);
  const after = level + cost;
  // Tolerance for float drift, so exactly `limit` hits in one instant are all allowed.
  const allowed = after <= limit + 1e-9;
  const left = allowed ? limit - after : limit - level;
  return {
    level,
    allowed,
    remaining: Math.max(0, Math.floor(left + 1e-9)),
    resetSeconds: Math.ceil((allowed ? after : level) / drainPerMs / 1000),
    retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((after - limit) / drainPerMs / 1000)),
  };
}
