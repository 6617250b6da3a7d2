/** Reading an org's audit trail: filtered, newest first, with opaque cursors. */
import { and, desc, eq, gte, lt, type SQL } from "drizzle-orm";
import type { Db } from "../db/client";
import { auditLog, type AuditRow } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { AppError } from "../errors";
import { AUDIT_ID, auditIdFloor, type AuditOutcome } from "./log";

export interface AuditFilter {
  action?: string;
  /** Actions starting with this, e.g. `secret.` or `auth.`. */
  actionPrefix?: string;
  actor?: string;
  userId?: string;
  runId?: string;
  resource?: string;
  outcome?: AuditOutcome;
  /** Epoch ms, inclusive. */
  from?: number;
  /** Epoch ms, exclusive. */
  to?: number;
}

export interface AuditPage {
  /** 1..200, default 50. */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

export interface AuditView extends Omit<AuditRow, "at" | "summary"> {
  /** ISO 8601. */
  at: string;
  summary: Record<string, unknown> | null;
}

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 200;
const OUTCOMES: readonly string[] = ["success", "denied", "error"] satisfies AuditOutcome[];
// Prefix matching uses a range on the (org_id, action, id) index instead of LIKE, whose
// `_` and `%` would need escaping; restricting prefixes to printable ASCII keeps the
// range's upper bound trivially correct under SQLite's binary collation.
const ACTION_PREFIX = /^[\x20-\x7e]{1,128}$/;

function badRequest(message: string): AppError {
  return new AppError("BAD_REQUEST", message);
}

export function encodeCursor(id: string): string {
  return btoa(id).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The id inside a cursor; anything that does not decode to an audit id is a 400. */
export function decodeCursor(cursor: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cursor)) throw badRequest("invalid cursor");
  let id: string;
  try {
    id = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {
    throw badRequest("invalid cursor");
  }
  if (!AUDIT_ID.test(id)) throw badRequest("invalid cursor");
  return id;
}

function time(value: number | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < 0) throw badRequest(`${name} must be a time in epoch milliseconds`);
  return value;
}

/**
 * One page of the org's audit entries, newest first. Always scoped to `scope.orgId`; time
 * bounds and the cursor are ranges on the time-ordered id, so every query walks one of the
 * `(org_id, …, id)` indexes instead of sorting the org's whole trail.
 */
export async function queryAudit(
  db: Db,
  scope: OrgScope,
  filter: AuditFilter = {},
  page: AuditPage = {},
): Promise<{ entries: AuditView[]; nextCursor: string | null }> {
  const limit = page.limit ?? DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw badRequest(`limit must be an integer from 1 to ${MAX_LIMIT}`);
  }
  const where: SQL[] = [eq(auditLog.orgId, scope.orgId)];
  if (filter.action !== undefined) where.push(eq(auditLog.action, filter.action));
  if (filter.actionPrefix !== undefined) {
    const prefix = filter.actionPrefix;
    if (!ACTION_PREFIX.test(prefix)) throw badRequest("actionPrefix must be 1 to 128 printable ASCII characters");
    const upper = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    where.push(gte(auditLog.action, prefix), lt(auditLog.action, upper));
  }
  if (filter.actor !== undefined) where.push(eq(auditLog.actor, filter.actor));
  if (filter.userId !== undefined) where.push(eq(auditLog.userId, filter.userId));
  if (filter.runId !== undefined) where.push(eq(auditLog.runId, filter.runId));
  if (filter.resource !== undefined) where.push(eq(auditLog.resource, filter.resource));
  if (filter.outcome !== undefined) {
    if (!OUTCOMES.includes(filter.outcome)) throw badRequest("outcome must be success, denied or error");
    where.push(eq(auditLog.outcome, filter.outcome));
  }
  const from = time(filter.from, "from");
  const to = time(filter.to, "to");
  if (from !== undefined) where.push(gte(auditLog.id, auditIdFloor(from)));
  if (to !== undefined) where.push(lt(auditLog.id, auditIdFloor(to)));
  if (page.cursor !== undefined) where.push(lt(auditLog.id, decodeCursor(page.cursor)));

  // One extra row tells whether another page exists without a count query.
  const rows = await db
    .select()
    .from(auditLog)
    .where(and(...where))
    .orderBy(desc(auditLog.id))
    .limit(limit + 1);
  const more = rows.length > limit;
  const entries = rows.slice(0, limit).map(toView);
  const last = entries[entries.length - 1];
  return { entries, nextCursor: more && last ? encodeCursor(last.id) : null };
}

function toView(row: AuditRow): AuditView {
  return { ...row, at: new Date(row.at).toISOString(), summary: row.summary ?? null };
}
