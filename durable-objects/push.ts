/**
 * One Durable Object per A2A task (named by the run id): the task's push notifications.
 *
 * Woken by `notifyPush` (src/push/index.ts) when the task has an event that may become a
 * push, and when a config is created. Its alarm does the work, never a waiting worker:
 *   1. reads the task's configs from D1 (a config no longer there is dropped with its
 *      queue: deleting a config stops its pushes),
 *   2. reads the task's events it has not turned into pushes yet from the run object
 *      (the log is the source of truth: a missed wake only delays a push, never loses one)
 *      and queues each event's `StreamResponse`s per config, in order,
 *   3. POSTs each config's queue head to its URL, one at a time per config (in order),
 *      with the config's token (`X-A2A-Notification-Token`) and authentication
 *      (`Authorization`); a failure is retried with exponential backoff and full jitter
 *      (the alarm is set for the earliest retry), and given up after MAX_ATTEMPTS attempts
 *      or MAX_AGE_MS, after which the next push of that config goes,
 *   4. records every attempt (status, time, error; never a token, credential or URL query),
 *      keeping the newest MAX_RECORDS_PER_CONFIG per config.
 * What it pushes for an event is exactly what an SSE subscriber gets for it, without the
 * model's text (src/push/updates.ts).
 * It stops when the task has ended and every config's final update was delivered or given
 * up, or when the task has no config left. While the task runs it also looks at the log
 * every POLL_MS in case a wake was lost. Once stopped it keeps its records for the retention
 * period (src/push/limits.ts), then deletes all its storage and the finished task's configs;
 * a wake in between (a new config of a running task) starts it again.
 */
import { DurableObject } from "cloudflare:workers";
import { config as appConfig } from "../src/config";
import { db } from "../src/db/client";
import { credentialFetch } from "../src/net/outbound";
import { outboundUrlProblem } from "../src/net/url-policy";
import { deliveryTargets, removeTaskConfigs, type DeliveryTarget } from "../src/push/config";
import type { DeliveryQuery, DeliveryRecord, PushRpc, PushStatus } from "../src/push/index";
import { MAX_RECORDS_PER_CONFIG, pushRetentionMs } from "../src/push/limits";
import { isTerminalEvent, pushBodiesFor } from "../src/push/updates";
import { runStub } from "../src/runs/stub";
import { TERMINAL_RUN_STATUSES, type RunEvent } from "../src/runs/types";
import { readCredential } from "../src/secrets/store";
import type { Dialect } from "../src/a2a/wire";

/** A push is tried at most this many times… */
export const MAX_ATTEMPTS = 8;
/** …and for at most this long after its first attempt. */
export const MAX_AGE_MS = 24 * 3_600_000;
/** Backoff: the n-th retry waits a random time in [0, min(CAP, BASE·2^(n-1))) (full jitter). */
export const BACKOFF_BASE_MS = 2_000;
export const BACKOFF_CAP_MS = 15 * 60_000;
/** While the task runs, the log is read at least this often (a lost wake costs at most this). */
export const POLL_MS = 60_000;
/** A config's POST is abandoned (and retried) after this long; `PUSH_TIMEOUT_MS` overrides. */
const DEFAULT_TIMEOUT_MS = 10_000;
/** Pushes per config per alarm run, and events read per page. */
const MAX_PER_RUN = 100;
const EVENT_PAGE = 500;
/** A task whose run never appears (started and refused, say) is given up on after this long. */
const NO_RUN_GIVE_UP_MS = 3_600_000;
const MAX_ERROR_CHARS = 300;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS cursors (config_id TEXT PRIMARY KEY, cursor INTEGER NOT NULL, next_n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS queue (
  config_id TEXT NOT NULL, n INTEGER NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, final INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, first_at INTEGER, next_at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (config_id, n)
);
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, config_id TEXT NOT NULL, seq INTEGER NOT NULL, n INTEGER NOT NULL,
  attempt INTEGER NOT NULL, at INTEGER NOT NULL, status INTEGER, error TEXT, outcome TEXT NOT NULL, retry_at INTEGER
);
CREATE INDEX IF NOT EXISTS attempts_by_config ON attempts (config_id, id);`;

interface State {
  orgId: string;
  runId: string;
  createdAt: number;
  /** The highest event sequence a wake named. */
  knownSeq: number;
  /** The task has ended (its terminal event is queued for every config). */
  ended: boolean;
  /** Ended and every final update delivered or given up: nothing more to do. */
  done: boolean;
  /** When the alarm was last set for (an alarm run early, as tests do, counts as that time). */
  alarmAt: number | null;
  /** Nothing more to do (done, or no config left): all storage is deleted at this time. */
  purgeAt?: number | null;
}

type QueueRow = { config_id: string; n: number; seq: number; body: string; final: number; attempts: number; first_at: number | null; next_at: number };

/** The wait before retry `attempt` (1-based) with full jitter; `random` in [0, 1). */
export function backoffDelay(attempt: number, random: number = Math.random()): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(30, Math.max(0, attempt - 1)));
  return Math.floor(random * ceiling);
}

export class PushObject extends DurableObject<Env> implements PushRpc {
  private readonly sql: SqlStorage;
  /** The stored state, one object shared by every call (a wake during the alarm's awaits is seen by it). */
  private st: State | null;
  /** Whether the tables exist: made by the first wake, not by a read (a read of a task without pushes writes nothing). */
  private schema = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.st = ctx.storage.kv.get<State>("state") ?? null;
    if (this.st) this.ensureSchema();
  }

  private ensureSchema(): void {
    if (this.schema) return;
    this.sql.exec(SCHEMA);
    this.schema = true;
  }

  private get state(): State | null {
    return this.st;
  }

  private save(state: State): void {
    this.st = state;
    this.ctx.storage.kv.put("state", state);
  }

  // ---- RPC ------------------------------------------------------------------------

  async wake(orgId: string, runId: string, seq: number): Promise<void> {
    let st = this.state;
    if (st && (st.orgId !== orgId || st.runId !== runId)) return;
    if (!st) st = { orgId, runId, createdAt: Date.now(), knownSeq: 0, ended: false, done: false, alarmAt: null, purgeAt: null };
    if (st.done) {
      // Kept for its retention period (an object done before retention existed arms it now).
      if (st.purgeAt == null) await this.armPurge(st);
      return;
    }
    this.ensureSchema();
    st.knownSeq = Math.max(st.knownSeq, seq);
    this.save(st);
    await this.armAt(st, Date.now());
  }

  async forget(orgId: string, configId: string): Promise<void> {
    const st = this.state;
    if (!st || st.orgId !== orgId) return;
    this.dropConfig(configId, "the config was deleted");
  }

  async deliveries(orgId: string, query: DeliveryQuery = {}): Promise<DeliveryRecord[] | null> {
    const st = this.state;
    if (!st || st.orgId !== orgId) return null;
    const where = ["id > ?"];
    const args: (string | number)[] = [Math.max(0, Math.floor(query.after ?? 0))];
    if (query.configId !== undefined) {
      where.push("config_id = ?");
      args.push(query.configId);
    }
    const limit = query.limit === undefined ? -1 : Math.max(1, Math.floor(query.limit));
    return this.sql
      .exec<{ id: number; config_id: string; seq: number; n: number; attempt: number; at: number; status: number | null; error: string | null; outcome: DeliveryRecord["outcome"]; retry_at: number | null }>(
        `SELECT id, config_id, seq, n, attempt, at, status, error, outcome, retry_at FROM attempts WHERE ${where.join(" AND ")} ORDER BY id LIMIT ?`,
        ...args,
        limit,
      )
      .toArray()
      .map((r) => ({ id: r.id, configId: r.config_id, seq: r.seq, n: r.n, attempt: r.attempt, at: r.at, status: r.status, error: r.error, outcome: r.outcome, retryAt: r.retry_at }));
  }

  async status(orgId: string): Promise<PushStatus | null> {
    const st = this.state;
    if (!st || st.orgId !== orgId) return null;
    const pending: Record<string, number> = {};
    for (const r of this.sql.exec<{ config_id: string; k: number }>("SELECT config_id, count(*) AS k FROM queue GROUP BY config_id")) pending[r.config_id] = r.k;
    return { ended: st.ended, done: st.done, pending, purgeAt: st.purgeAt ?? null };
  }

  // ---- the alarm ------------------------------------------------------------------

  override async alarm(): Promise<void> {
    const st = this.state;
    if (!st) return;
    this.ensureSchema();
    // What the alarm was set for is due, even when it runs early.
    const now = Math.max(Date.now(), st.alarmAt ?? 0);
    st.alarmAt = null;
    this.save(st);
    if (st.purgeAt != null && now >= st.purgeAt) {
      if (await this.purge(st)) return;
    }
    if (st.done) {
      await this.armPurge(st);
      return;
    }
    let targets: DeliveryTarget[] | null = null;
    try {
      targets = await deliveryTargets(this.env, st.orgId, st.runId);
      this.syncConfigs(targets);
      if (targets.length > 0) await this.readEvents(st, targets, now);
      await Promise.all(targets.map((t) => this.deliverDue(st, t, now)));
    } catch (err) {
      console.error(`push: task ${st.runId}: ${errorText(err)}`);
    }
    await this.rearm(st, targets);
  }

  /** New configs start at their `fromSeq`; configs gone from D1 are dropped with their queue. */
  private syncConfigs(targets: DeliveryTarget[]): void {
    const known = new Set(this.sql.exec<{ config_id: string }>("SELECT config_id FROM cursors").toArray().map((r) => r.config_id));
    const live = new Set(targets.map((t) => t.id));
    for (const t of targets) {
      if (!known.has(t.id)) this.sql.exec("INSERT INTO cursors (config_id, cursor, next_n) VALUES (?, ?, 1)", t.id, t.fromSeq);
    }
    for (const id of known) if (!live.has(id)) this.dropConfig(id, "the config was deleted");
  }

  private dropConfig(configId: string, why: string): void {
    const head = this.sql.exec<QueueRow>("SELECT * FROM queue WHERE config_id = ? ORDER BY n LIMIT 1", configId).toArray()[0];
    if (head) this.record(head, head.attempts, Date.now(), null, why, "dropped", null);
    this.sql.exec("DELETE FROM queue WHERE config_id = ?", configId);
    this.sql.exec("DELETE FROM cursors WHERE config_id = ?", configId);
  }

  /** Queues the pushes of the events each config has not seen yet. */
  private async readEvents(st: State, targets: DeliveryTarget[], now: number): Promise<void> {
    const cursors = new Map(this.sql.exec<{ config_id: string; cursor: number; next_n: number }>("SELECT * FROM cursors").toArray().map((r) => [r.config_id, r]));
    const run = runStub(this.env, st.runId);
    const snapshot = await run.snapshot(st.orgId);
    if (!snapshot) {
      // Not (yet) a run of this org: a config attached before its run started, or a run that never did.
      if (now - st.createdAt > NO_RUN_GIVE_UP_MS) {
        st.ended = true;
        for (const t of targets) this.dropConfig(t.id, "the task never started");
      }
      return;
    }
    let after = Math.min(...targets.map((t) => cursors.get(t.id)?.cursor ?? t.fromSeq));
    const bodies = new Map<Dialect, (e: RunEvent) => unknown[]>();
    const render = (dialect: Dialect) => {
      let f = bodies.get(dialect);
      if (!f) bodies.set(dialect, (f = (e) => pushBodiesFor(e, snapshot, dialect)));
      return f;
    };
    for (;;) {
      if (after >= snapshot.lastSeq && after >= st.knownSeq) break;
      const page = await run.events(st.orgId, after, EVENT_PAGE);
      if (!page || page.length === 0) break;
      for (const event of page) {
        const terminal = isTerminalEvent(event);
        for (const t of targets) {
          const c = cursors.get(t.id);
          if (!c || c.cursor >= event.seq) continue;
          const out = render(t.dialect)(event);
          out.forEach((body, i) => {
            const final = terminal && i === out.length - 1 ? 1 : 0;
            this.sql.exec("INSERT INTO queue (config_id, n, seq, body, final, next_at) VALUES (?, ?, ?, ?, ?, 0)", t.id, c.next_n++, event.seq, JSON.stringify(body), final);
          });
          c.cursor = event.seq;
          this.sql.exec("UPDATE cursors SET cursor = ?, next_n = ? WHERE config_id = ?", c.cursor, c.next_n, t.id);
        }
        if (terminal) st.ended = true;
      }
      after = page[page.length - 1]!.seq;
      if (page.length < EVENT_PAGE) break;
    }
    // A task that had already ended when its configs were made has nothing more to send.
    if (TERMINAL_RUN_STATUSES.has(snapshot.status) && [...cursors.values()].every((c) => c.cursor >= snapshot.lastSeq)) st.ended = true;
    this.save(st);
  }

  /** Sends one config's due pushes in order; stops at the first failure (it is retried later). */
  private async deliverDue(st: State, target: DeliveryTarget, now: number): Promise<void> {
    for (let i = 0; i < MAX_PER_RUN; i++) {
      const head = this.sql.exec<QueueRow>("SELECT * FROM queue WHERE config_id = ? ORDER BY n LIMIT 1", target.id).toArray()[0];
      if (!head || head.next_at > now) return;
      const attempt = head.attempts + 1;
      const at = Date.now();
      const result = await this.post(st, target, head.body);
      // The config may have been deleted while the POST was out.
      if (!this.sql.exec("SELECT 1 FROM queue WHERE config_id = ? AND n = ?", target.id, head.n).toArray().length) return;
      if (result.ok) {
        this.record(head, attempt, at, result.status, null, "delivered", null);
        this.sql.exec("DELETE FROM queue WHERE config_id = ? AND n = ?", target.id, head.n);
        continue;
      }
      const firstAt = head.first_at ?? at;
      if (attempt >= MAX_ATTEMPTS || Math.max(now, at) - firstAt >= MAX_AGE_MS) {
        this.record(head, attempt, at, result.status, result.error, "gave_up", null);
        this.sql.exec("DELETE FROM queue WHERE config_id = ? AND n = ?", target.id, head.n);
        continue;
      }
      const retryAt = Math.max(now, at) + backoffDelay(attempt);
      this.record(head, attempt, at, result.status, result.error, "retrying", retryAt);
      this.sql.exec("UPDATE queue SET attempts = ?, first_at = ?, next_at = ? WHERE config_id = ? AND n = ?", attempt, firstAt, retryAt, target.id, head.n);
      return;
    }
  }

  private record(head: QueueRow, attempt: number, at: number, status: number | null, error: string | null, outcome: DeliveryRecord["outcome"], retryAt: number | null): void {
    this.sql.exec(
      "INSERT INTO attempts (config_id, seq, n, attempt, at, status, error, outcome, retry_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      head.config_id,
      head.seq,
      head.n,
      attempt,
      at,
      status,
      error === null ? null : error.slice(0, MAX_ERROR_CHARS),
      outcome,
      retryAt,
    );
    // The newest MAX_RECORDS_PER_CONFIG of the config are kept.
    this.sql.exec(
      "DELETE FROM attempts WHERE config_id = ? AND id <= (SELECT id FROM attempts WHERE config_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
      head.config_id,
      head.config_id,
      MAX_RECORDS_PER_CONFIG,
    );
  }

  /** One POST. Errors name what failed, never the token or credentials. */
  private async post(st: State, target: DeliveryTarget, body: string): Promise<{ ok: boolean; status: number | null; error: string | null }> {
    const secrets: (string | null)[] = [target.token, target.credentials];
    const result = await this.send(st, target, body, secrets);
    return result.error === null ? result : { ...result, error: redactError(result.error, target.url, secrets) };
  }

  private async send(st: State, target: DeliveryTarget, body: string, secrets: (string | null)[]): Promise<{ ok: boolean; status: number | null; error: string | null }> {
    const problem = outboundUrlProblem(target.url, { allowPrivateNetwork: !appConfig(this.env).production });
    if (problem) return { ok: false, status: null, error: `url: ${problem}` };
    const headers = new Headers({
      "content-type": target.dialect === "1.0" ? "application/a2a+json" : "application/json",
      "a2a-version": target.dialect,
      "user-agent": "Shaman-Push/1",
    });
    if (target.token !== null) headers.set("x-a2a-notification-token", target.token);
    let send: typeof fetch = (input, init) => fetch(input, init);
    if (target.authScheme !== null) {
      if (target.secret !== null) {
        const credential = await readCredential(db(this.env), this.env, st.orgId, target.secret).catch(() => null);
        if (!credential) return { ok: false, status: null, error: `the org secret '${target.secret}' could not be read` };
        secrets.push(credential.value);
        headers.set("authorization", `${target.authScheme} ${credential.value}`);
        // Only to the secret's allowed hosts, redirects only within the same origin.
        send = credentialFetch(credential);
      } else if (target.credentials !== null) {
        headers.set("authorization", `${target.authScheme} ${target.credentials}`);
      }
    }
    const timeoutMs = Number(this.env.PUSH_TIMEOUT_MS) > 0 ? Number(this.env.PUSH_TIMEOUT_MS) : DEFAULT_TIMEOUT_MS;
    try {
      // Redirects are not followed with a token or credentials in the request (credentialFetch follows same-origin ones).
      const res = await send(target.url, { method: "POST", headers, body, redirect: "manual", signal: AbortSignal.timeout(timeoutMs) });
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status, error: null };
      return { ok: false, status: res.status, error: res.status >= 300 && res.status < 400 ? `HTTP ${res.status} (redirects are not followed)` : `HTTP ${res.status}` };
    } catch (err) {
      const name = err instanceof Error ? err.name : "";
      return { ok: false, status: null, error: name === "TimeoutError" || name === "AbortError" ? `no answer within ${timeoutMs} ms` : errorText(err) };
    }
  }

  /** The next alarm: the earliest due push, now if events wait, a poll while the task runs; none when done. */
  private async rearm(st: State, targets: DeliveryTarget[] | null): Promise<void> {
    // Each config waits on its queue head only (the pushes behind it wait their turn).
    const next = this.sql
      .exec<{ t: number | null }>(
        "SELECT min(q.next_at) AS t FROM queue q JOIN (SELECT config_id, min(n) AS n FROM queue GROUP BY config_id) h ON q.config_id = h.config_id AND q.n = h.n",
      )
      .one().t;
    const pendingEvents = (this.sql.exec<{ c: number | null }>("SELECT min(cursor) AS c FROM cursors").one().c ?? Infinity) < st.knownSeq;
    const due: number[] = [];
    if (next !== null) due.push(Math.max(next, Date.now()));
    if (pendingEvents) due.push(Date.now());
    if (!st.ended && (targets === null || targets.length > 0)) due.push(Date.now() + POLL_MS);
    if (st.ended && next === null) {
      // Every final update delivered or given up: kept for the retention period, then deleted.
      st.done = true;
      await this.armPurge(st);
      return;
    }
    if (due.length === 0) {
      // No config left (all deleted) and nothing queued: idle until a new config wakes it, or deleted.
      await this.armPurge(st);
      return;
    }
    st.purgeAt = null;
    await this.armAt(st, Math.min(...due), true);
  }

  /** Arms the alarm for the end of the retention period (counted from when the object first had nothing to do). */
  private async armPurge(st: State): Promise<void> {
    st.purgeAt ??= Date.now() + pushRetentionMs(this.env);
    await this.armAt(st, st.purgeAt, true);
  }

  /**
   * The retention period is over: deletes all storage (and, when the task has ended, its
   * configs in D1, which have nothing left to send). False when there is work again (a
   * config of a running task appeared): the alarm goes on as usual.
   */
  private async purge(st: State): Promise<boolean> {
    try {
      if (st.done) {
        await removeTaskConfigs(this.env, st.orgId, st.runId);
      } else if ((await deliveryTargets(this.env, st.orgId, st.runId)).length > 0) {
        st.purgeAt = null;
        this.save(st);
        return false;
      }
    } catch (err) {
      console.error(`push: task ${st.runId}: retention over, but D1 could not be read or written (tried again later): ${errorText(err)}`);
      await this.armAt(st, Date.now() + POLL_MS, true);
      return true;
    }
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    this.st = null;
    this.schema = false;
    return true;
  }

  /** Sets the alarm for `at` unless one is set earlier (`replace`: set it anyway). */
  private async armAt(st: State, at: number, replace = false): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (!replace && current !== null && current <= at) return;
    st.alarmAt = at;
    this.save(st);
    await this.ctx.storage.setAlarm(at);
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A delivery error as recorded: no token, credential or secret value, and the push URL
 * without its query or fragment (which may carry a key), whatever the error text holds.
 */
export function redactError(error: string, url: string, secrets: readonly (string | null)[]): string {
  let out = error;
  for (const s of secrets) if (s) out = out.split(s).join("[redacted]");
  try {
    const u = new URL(url);
    if (u.search || u.hash) {
      const bare = `${u.origin}${u.pathname}`;
      out = out.split(url).join(bare);
      if (u.search.length > 1) out = out.split(u.search.slice(1)).join("[redacted]");
      if (u.hash.length > 1) out = out.split(u.hash.slice(1)).join("[redacted]");
    }
  } catch {
    // not a URL: nothing of it to hide
  }
  return out;
}
