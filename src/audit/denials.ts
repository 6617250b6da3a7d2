/**
 * Anonymous refusals (a missing, forged, expired or revoked credential; an unsigned or
 * badly signed webhook) are audited in aggregate: one `auth.denied` row per org, client
 * address and minute (its resource is the first path refused in that minute), whose
 * `output.count` counts the refusals, so a flood of bad
 * credentials cannot flood the audit trail or D1. An isolate writes a row's first refusal
 * at once and then adds what it has counted at most every FLUSH_MS (an upsert on the row's
 * deterministic id), within the request's `waitUntil`.
 * Refusals of a known principal (403) are still audited one by one (src/audit/http.ts).
 */
import type { Context } from "hono";
import { sha256Hex } from "../util/bytes";
import type { AppEnv } from "../http/app-env";
import { auditIdFloor } from "./log";

export const DENIAL_WINDOW_MS = 60_000;
const FLUSH_MS = 5_000;
const MAX_KEYS = 10_000;

interface Pending {
  orgId: string;
  client: string;
  window: number;
  resource: string;
  reason: string;
  count: number;
  scheduled: boolean;
}

const pending = new Map<string, Pending>();

/** The row id of (org, client, window): the window's time prefix and a digest of the rest. */
async function rowId(orgId: string, client: string, window: number): Promise<string> {
  const digest = await sha256Hex(`${orgId}\u0000${client}\u0000${window}`);
  const n = BigInt(`0x${digest.slice(0, 16)}`) % 36n ** 10n;
  return auditIdFloor(window).slice(0, 12) + n.toString(36).padStart(10, "0");
}

async function flush(db: D1Database, key: string): Promise<void> {
  const p = pending.get(key);
  if (!p) return;
  p.scheduled = false;
  const count = p.count;
  if (count === 0) return;
  p.count = 0;
  const id = await rowId(p.orgId, p.client, p.window);
  const summary = JSON.stringify({
    input: { client: p.client, window: new Date(p.window).toISOString(), windowSeconds: DENIAL_WINDOW_MS / 1000, aggregated: true },
    output: { count },
    error: p.reason,
  });
  try {
    await db
      .prepare(
        `INSERT INTO audit_log (id, org_id, at, actor, action, resource, outcome, summary)
         VALUES (?1, ?2, ?3, 'anonymous', 'auth.denied', ?4, 'denied', ?5)
         ON CONFLICT(id) DO UPDATE SET summary = json_set(summary, '$.output.count', json_extract(summary, '$.output.count') + ?6)`,
      )
      .bind(id, p.orgId, p.window, p.resource, summary, count)
      .run();
  } catch (err) {
    p.count += count; // try again with the next refusal
    console.error(`audit auth.denied (aggregated) failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (p.count === 0 && p.window + DENIAL_WINDOW_MS < Date.now()) pending.delete(key);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Counts one anonymous refusal of the request's org from its client address. */
export function recordAnonymousDenial(c: Context<AppEnv>, resource: string, reason: string): void {
  const org = c.get("org") as AppEnv["Variables"]["org"] | undefined;
  if (!org) return;
  const client = c.req.header("cf-connecting-ip") ?? "local";
  const now = Date.now();
  const window = now - (now % DENIAL_WINDOW_MS);
  const key = `${org.orgId}\u0000${client}\u0000${window}`;
  let p = pending.get(key);
  const first = !p;
  if (!p) {
    if (pending.size >= MAX_KEYS) {
      for (const [k, v] of pending) if (!v.scheduled && v.count === 0) pending.delete(k);
    }
    p = { orgId: org.orgId, client, window, resource, reason, count: 0, scheduled: false };
    pending.set(key, p);
  }
  p.count++;
  if (p.scheduled) return;
  p.scheduled = true;
  const db = c.env.DB;
  // The window's first refusal is written at once; later ones are summed for FLUSH_MS.
  const work = (first ? Promise.resolve() : sleep(FLUSH_MS)).then(() => flush(db, key));
  try {
    c.executionCtx.waitUntil(work);
  } catch {
    // No execution context (unit use): the promise still runs.
  }
}

/** Test hook: forget what this isolate has counted. */
export function clearDenialCounts(): void {
  pending.clear();
}

