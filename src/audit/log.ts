/**
 * The audit trail: one append-only row per security-relevant event, written to D1.
 *
 * Actions are `<noun>.<verb>`, lower case, so that a prefix (`auth.`, `secret.`) selects a
 * family:
 *   auth.login, auth.denied              sign-in and refused requests
 *   apikey.create, apikey.revoke         API key lifecycle
 *   secret.put, secret.delete            org secrets (names only; values never appear)
 *   permission.grant, permission.revoke  authorisation changes
 *   repository.create, repository.sync   repositories and their snapshots
 *   agent.call                           an A2A call to an agent (the run's entry)
 *   step.run, tool.execute, model.call   internal work done for a run
 * `actor` is `user:<id>`, `key:<id>` or `system`; for internal steps `userId` names the
 * person the run was started for, so their work stays attributable.
 */
import type { Db } from "../db/client";
import { auditLog } from "../db/schema";
import { redact, redactText, type Json } from "./redact";

export type AuditOutcome = "success" | "denied" | "error";

export interface AuditEntry {
  actor: string;
  userId?: string | null;
  runId?: string | null;
  stepId?: string | null;
  action: string;
  resource: string;
  outcome: AuditOutcome;
  durationMs?: number | null;
  requestId?: string | null;
  input?: unknown;
  output?: unknown;
  error?: unknown;
  /** Epoch ms; defaults to now. The id encodes it, so time filters can use the id index. */
  at?: number;
  /**
   * A row id made in advance with `auditId(at)`, for writers that may retry a write which
   * could already have landed (the run object's settle, the executor's audit jobs): with a
   * fixed id and insert-or-ignore, a retry cannot add a second row.
   */
  id?: string;
}

const TIME_DIGITS = 12;
const RANDOM_DIGITS = 10;
const RANDOM_SPACE = 36 ** RANDOM_DIGITS;
export const AUDIT_ID = /^[0-9a-z]{22}$/;

// Ids made in the same millisecond by this isolate continue from the previous suffix, so a
// batch keeps its order and "newest first" is exact for it. Across isolates, the random
// suffix only has to keep ids unique.
let lastMs = -1;
let lastRandom = 0;

/**
 * A time-ordered id: 12 base36 digits of epoch ms (zero padded, so string order is time
 * order until the year 5188) and 10 base36 digits of randomness.
 */
export function auditId(at: number = Date.now()): string {
  const ms = Math.max(0, Math.floor(at));
  let random: number;
  if (ms === lastMs && lastRandom + 1 < RANDOM_SPACE) {
    random = lastRandom + 1;
  } else {
    const [hi = 0, lo = 0] = crypto.getRandomValues(new Uint32Array(2));
    // Start in the lower half so increments within the millisecond cannot overflow.
    random = ((hi % 2 ** 20) * 2 ** 32 + lo) % Math.floor(RANDOM_SPACE / 2);
  }
  lastMs = ms;
  lastRandom = random;
  return ms.toString(36).padStart(TIME_DIGITS, "0") + random.toString(36).padStart(RANDOM_DIGITS, "0");
}

/** Lowest possible id at `at` ms: ids at or after `at` sort at or after it. */
export function auditIdFloor(at: number): string {
  return Math.max(0, Math.floor(at)).toString(36).padStart(TIME_DIGITS, "0") + "0".repeat(RANDOM_DIGITS);
}

const MAX_FIELD = 512;

function field(value: string): string {
  return value.length > MAX_FIELD ? value.slice(0, MAX_FIELD) : value;
}

function optionalField(value: string | null | undefined): string | null {
  return value === undefined || value === null ? null : field(value);
}

type AuditInsert = typeof auditLog.$inferInsert;

function toRow(orgId: string, entry: AuditEntry): AuditInsert {
  const at = entry.at ?? Date.now();
  const summary: { [key: string]: Json } = {};
  // Absent keys stay absent: "no output" and "output was null" read differently.
  if (entry.input !== undefined) summary.input = redact(entry.input);
  if (entry.output !== undefined) summary.output = redact(entry.output);
  if (entry.error !== undefined) summary.error = redact(entry.error);
  return {
    id: entry.id ?? auditId(at),
    orgId,
    at: Math.floor(at),
    actor: field(entry.actor),
    userId: optionalField(entry.userId),
    runId: optionalField(entry.runId),
    stepId: optionalField(entry.stepId),
    action: field(entry.action),
    // Resources are paths, but one built from a URL could carry a token.
    resource: field(redactText(entry.resource, MAX_FIELD)),
    outcome: entry.outcome,
    durationMs: entry.durationMs === undefined || entry.durationMs === null ? null : Math.max(0, Math.round(entry.durationMs)),
    requestId: optionalField(entry.requestId),
    summary: Object.keys(summary).length > 0 ? summary : null,
  };
}

/**
 * Appends one audit entry. `orgId` is a plain string, not an `OrgScope`, because internal
 * writers (the run Durable Object, the executor) know the org from the run they work on,
 * never from a caller; request handlers pass `scope.orgId`. Errors propagate: a caller that
 * must not fail because of auditing decides that itself (e.g. catch inside `waitUntil`).
 */
export async function writeAudit(db: Db, orgId: string, entry: AuditEntry): Promise<void> {
  await auditStatement(db, orgId, entry);
}

/** The insert of one entry as a statement, to put in a `db.batch` with the write it records. */
export function auditStatement(db: Db, orgId: string, entry: AuditEntry) {
  return db.insert(auditLog).values(toRow(orgId, entry));
}

// D1 binds at most 100 parameters per statement; an audit row has 13 columns.
const COLUMNS = 13;
const ROWS_PER_STATEMENT = Math.floor(100 / COLUMNS);
// Keeps one batch well inside D1's per-invocation query limits.
const STATEMENTS_PER_BATCH = 50;

/** Appends several entries for one org in one D1 batch (several for very long lists). */
export async function writeAuditMany(db: Db, orgId: string, entries: readonly AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const rows = entries.map((e) => toRow(orgId, e));
  const statements = [];
  for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
    // Insert-or-ignore: entries with ids made in advance may be written again by a retry.
    statements.push(db.insert(auditLog).values(rows.slice(i, i + ROWS_PER_STATEMENT)).onConflictDoNothing());
  }
  for (let i = 0; i < statements.length; i += STATEMENTS_PER_BATCH) {
    const [first, ...rest] = statements.slice(i, i + STATEMENTS_PER_BATCH);
    if (first) await db.batch([first, ...rest]);
  }
}
