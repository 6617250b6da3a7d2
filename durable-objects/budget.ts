/**
 * The budget of one org for one calendar month (one object per org and month,
 * `idFromName("<orgId>:<YYYY-MM>")`, see src/usage/budget.ts). Every model call of a
 * budgeted org reserves its maximum here before it starts (`reserve`) and settles with what
 * it really used after (`settle`), so calls running at once in parallel branches cannot
 * together overshoot: a reservation is admitted only if what is used, plus what is reserved
 * by calls in flight, plus this call's maximum stays within the limits.
 *
 * The limits are not stored here: each call passes the org's current ones, so a changed
 * budget applies from the next call. State is SQLite (it must outlive eviction: it is
 * money). Each RPC is one synchronous stretch of SQL, so it is atomic with respect to the
 * others. Both calls are idempotent by call id: a reserve repeated returns the first answer's
 * effect, a settle repeated adds nothing. A reservation lives for a lease (10 min by
 * default): an executor that died mid-call does not hold the budget forever.
 */
import { DurableObject } from "cloudflare:workers";

export interface BudgetLimits {
  maxTokens?: number | undefined;
  maxUsd?: number | undefined;
}

export interface BudgetAmount {
  tokens: number;
  usd: number;
}

export interface BudgetState {
  usedTokens: number;
  usedUsd: number;
  reservedTokens: number;
  reservedUsd: number;
  /** Reservations in flight (unexpired). */
  reservations: number;
  /** The smallest call refused this month (what it needed), or null. */
  smallestRefused: BudgetAmount | null;
}

export type ReserveResult =
  | { ok: true; state: BudgetState; repeated?: "reserved" | "settled" }
  | { ok: false; state: BudgetState; limit: "tokens" | "usd" };

export const DEFAULT_LEASE_MS = 10 * 60_000;
/** Settled call ids are remembered this long (for idempotent settles), then forgotten. */
const SETTLED_KEEP_MS = 24 * 3_600_000;
const PRUNE_EVERY_MS = 3_600_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS totals (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  used_tokens INTEGER NOT NULL DEFAULT 0,
  used_usd REAL NOT NULL DEFAULT 0,
  refused_tokens INTEGER,
  refused_usd REAL,
  pruned_at INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO totals (id) VALUES (1);
CREATE TABLE IF NOT EXISTS reservations (
  call_id TEXT PRIMARY KEY,
  tokens INTEGER NOT NULL,
  usd REAL NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_expiry ON reservations (expires_at);
CREATE TABLE IF NOT EXISTS settled (
  call_id TEXT PRIMARY KEY,
  reserved_tokens INTEGER NOT NULL,
  reserved_usd REAL NOT NULL,
  tokens INTEGER NOT NULL,
  usd REAL NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS settled_at ON settled (at);
`;

interface Totals {
  used_tokens: number;
  used_usd: number;
  refused_tokens: number | null;
  refused_usd: number | null;
  pruned_at: number;
}

const nonNegative = (n: unknown) => (typeof n === "number" && Number.isFinite(n) && n > 0 ? n : 0);
/** Money is compared with a tolerance far below a cent, so float sums do not refuse a call that fits exactly. */
const EPSILON_USD = 1e-9;

export class BudgetObject extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(SCHEMA);
  }

  private totals(): Totals {
    return this.sql.exec<Totals & Record<string, SqlStorageValue>>("SELECT used_tokens, used_usd, refused_tokens, refused_usd, pruned_at FROM totals WHERE id = 1").one();
  }

  /** Drops expired reservations (their calls died: nothing was settled for them). */
  private expire(now: number): void {
    this.sql.exec("DELETE FROM reservations WHERE expires_at <= ?", now);
  }

  private stateOf(t: Totals): BudgetState {
    const r = this.sql.exec<{ n: number; tokens: number | null; usd: number | null }>("SELECT count(*) AS n, sum(tokens) AS tokens, sum(usd) AS usd FROM reservations").one();
    return {
      usedTokens: t.used_tokens,
      usedUsd: t.used_usd,
      reservedTokens: r.tokens ?? 0,
      reservedUsd: r.usd ?? 0,
      reservations: r.n,
      smallestRefused: t.refused_tokens === null ? null : { tokens: t.refused_tokens, usd: t.refused_usd ?? 0 },
    };
  }

  /**
   * Reserves a call's maximum (`need`) against `limits`, atomically against what is used and
   * reserved. Refused: nothing is reserved, and the need is remembered (the smallest one of
   * the month) so new runs can be refused while a call like it could not run.
   */
  reserve(callId: string, need: BudgetAmount, limits: BudgetLimits, leaseMs: number = DEFAULT_LEASE_MS): ReserveResult {
    const now = Date.now();
    this.expire(now);
    const tokens = Math.ceil(nonNegative(need.tokens));
    const usd = nonNegative(need.usd);
    const t = this.totals();
    if (this.sql.exec("SELECT 1 FROM settled WHERE call_id = ?", callId).toArray().length > 0) return { ok: true, state: this.stateOf(t), repeated: "settled" };
    const held = this.sql.exec<{ tokens: number }>("SELECT tokens FROM reservations WHERE call_id = ?", callId).toArray();
    if (held.length > 0) {
      this.sql.exec("UPDATE reservations SET expires_at = ? WHERE call_id = ?", now + leaseMs, callId);
      return { ok: true, state: this.stateOf(t), repeated: "reserved" };
    }
    const state = this.stateOf(t);
    const maxTokens = limits.maxTokens;
    const maxUsd = limits.maxUsd;
    let over: "tokens" | "usd" | null = null;
    if (maxTokens !== undefined && state.usedTokens + state.reservedTokens + tokens > maxTokens) over = "tokens";
    else if (maxUsd !== undefined && state.usedUsd + state.reservedUsd + usd > maxUsd + EPSILON_USD) over = "usd";
    if (over) {
      const smaller = t.refused_tokens === null || (over === "tokens" ? tokens < t.refused_tokens : usd < (t.refused_usd ?? 0));
      if (smaller) this.sql.exec("UPDATE totals SET refused_tokens = ?, refused_usd = ? WHERE id = 1", tokens, usd);
      return { ok: false, state: this.stateOf(this.totals()), limit: over };
    }
    this.sql.exec("INSERT INTO reservations (call_id, tokens, usd, expires_at) VALUES (?, ?, ?, ?)", callId, tokens, usd, now + leaseMs);
    return { ok: true, state: this.stateOf(t) };
  }

  /**
   * Ends a call: its reservation is released and what it really used is added (`actual`
   * zero for a call that failed before using anything). Repeated: nothing more is added.
   * A settle whose reservation expired (or never was) still counts: the tokens were used.
   */
  settle(callId: string, actual: BudgetAmount): BudgetState {
    const now = Date.now();
    const done = this.sql.exec("SELECT 1 FROM settled WHERE call_id = ?", callId).toArray();
    if (done.length === 0) {
      const held = this.sql.exec<{ tokens: number; usd: number }>("SELECT tokens, usd FROM reservations WHERE call_id = ?", callId).toArray()[0];
      const tokens = Math.ceil(nonNegative(actual.tokens));
      const usd = nonNegative(actual.usd);
      this.sql.exec("DELETE FROM reservations WHERE call_id = ?", callId);
      this.sql.exec(
        "INSERT INTO settled (call_id, reserved_tokens, reserved_usd, tokens, usd, at) VALUES (?, ?, ?, ?, ?, ?)",
        callId,
        held?.tokens ?? 0,
        held?.usd ?? 0,
        tokens,
        usd,
        now,
      );
      this.sql.exec("UPDATE totals SET used_tokens = used_tokens + ?, used_usd = used_usd + ? WHERE id = 1", tokens, usd);
    }
    const t = this.totals();
    if (now - t.pruned_at > PRUNE_EVERY_MS) {
      this.sql.exec("DELETE FROM settled WHERE at < ?", now - SETTLED_KEEP_MS);
      this.sql.exec("UPDATE totals SET pruned_at = ? WHERE id = 1", now);
    }
    this.expire(now);
    return this.stateOf(t);
  }

  /** What is used and reserved now. */
  state(): BudgetState {
    this.expire(Date.now());
    return this.stateOf(this.totals());
  }

  /**
   * Raises what is used to at least `used` (never lowers it): when a budget is set, the
   * month's usage so far (from the usage rows, counted while no budget was set) is taken in.
   */
  baseline(used: BudgetAmount): BudgetState {
    this.sql.exec(
      "UPDATE totals SET used_tokens = max(used_tokens, ?), used_usd = max(used_usd, ?) WHERE id = 1",
      Math.ceil(nonNegative(used.tokens)),
      nonNegative(used.usd),
    );
    return this.state();
  }
}
