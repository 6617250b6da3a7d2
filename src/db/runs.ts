import { and, asc, desc, eq, gte, inArray, lt, ne, notInArray, or, sql, type SQL } from "drizzle-orm";
import { auditStatement, type AuditEntry } from "../audit/log";
import type { Db } from "./client";
import { runs, type RunRow, type RunStatus } from "./schema";
import type { OrgScope } from "./scope";

/** What the run's Durable Object knows of its D1 summary row. */
export interface RunSummary {
  id: string;
  orgId: string;
  contextId: string;
  agentName: string;
  repositoryId: string;
  commitSha: string;
  initiatedBy: string | null;
  status: RunStatus;
  error: string | null;
  createdAt: number;
  updatedAt: number;
  /** Set for a terminal status. */
  completedAt: number | null;
  /** The text of the run's message (a context's earlier turns, src/a2a/conversation.ts). */
  inputText?: string | null;
  /** The text of the run's final answer, once it has one. */
  outputText?: string | null;
}

/**
 * Writes a run's D1 summary row as the run's Durable Object knows it, and the run's
 * `agent.call` audit row with it (one batch: both land or neither). Only the run object
 * calls this, with the org id of the run it was created for (never from a caller).
 *
 * Idempotent, so the object can retry it until it succeeds: the row is inserted or, if it
 * exists, brought to a terminal status (a non-terminal write never overwrites anything,
 * so a late "submitted" write cannot undo a settle), and the audit row carries an id made
 * once by the object (insert-or-ignore), so a retried settle never adds a second one.
 */
export async function writeRunSummary(db: Db, run: RunSummary, audit?: AuditEntry & { id: string }): Promise<void> {
  const terminal = run.status === "completed" || run.status === "failed" || run.status === "canceled";
  const insert = db.insert(runs).values({
    id: run.id,
    orgId: run.orgId,
    contextId: run.contextId,
    agentName: run.agentName,
    repositoryId: run.repositoryId,
    commitSha: run.commitSha,
    initiatedBy: run.initiatedBy,
    status: run.status,
    error: run.error,
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
    completedAt: run.completedAt,
    ...(run.inputText !== undefined ? { inputText: run.inputText } : {}),
    ...(run.outputText !== undefined ? { outputText: run.outputText } : {}),
  });
  const row = terminal
    ? insert.onConflictDoUpdate({
        target: runs.id,
        set: {
          status: run.status,
          error: run.error,
          updatedAt: run.updatedAt,
          completedAt: run.completedAt,
          ...(run.outputText !== undefined ? { outputText: run.outputText } : {}),
        },
        // Never another org's row (ids are random UUIDs; this only makes it explicit).
        setWhere: sql`${runs.orgId} = ${run.orgId}`,
      })
    : // A non-terminal write (a status change while running) updates only a row that is not
      // settled and not newer, so a late write can never undo a settle or a later change.
      insert.onConflictDoUpdate({
        target: runs.id,
        set: { status: run.status, updatedAt: run.updatedAt },
        setWhere: sql`${runs.orgId} = ${run.orgId} AND ${runs.status} NOT IN ('completed', 'failed', 'canceled') AND ${runs.updatedAt} <= ${run.updatedAt}`,
      });
  if (audit) await db.batch([row, auditStatement(db, run.orgId, audit).onConflictDoNothing()]);
  else await row;
}

export async function getRun(db: Db, scope: OrgScope, runId: string): Promise<RunRow | null> {
  const row = await db.query.runs.findFirst({ where: and(eq(runs.orgId, scope.orgId), eq(runs.id, runId)) });
  return row ?? null;
}

const TERMINAL: RunStatus[] = ["completed", "failed", "canceled"];

/** An agent's runs, as ListTasks filters them (src/a2a/methods.ts). */
export interface RunListQuery {
  repositoryId: string;
  agentName: string;
  contextId?: string;
  status?: RunStatus;
  /** Only runs whose status changed at or after this time (ms). */
  updatedAfter?: number;
  /** Only runs this principal started (a caller who may not read every run). */
  initiatedBy?: string;
  /** Keyset cursor: the last row of the previous page (most recently updated first). */
  after?: { updatedAt: number; id: string };
  limit: number;
}

/** One page of an agent's runs, most recently updated first (ties by id), and how many match in all. */
export async function listRuns(db: Db, scope: OrgScope, q: RunListQuery): Promise<{ rows: RunRow[]; total: number }> {
  const filters: SQL[] = [eq(runs.orgId, scope.orgId), eq(runs.repositoryId, q.repositoryId), eq(runs.agentName, q.agentName)];
  if (q.contextId !== undefined) filters.push(eq(runs.contextId, q.contextId));
  if (q.status !== undefined) filters.push(eq(runs.status, q.status));
  if (q.updatedAfter !== undefined) filters.push(gte(runs.updatedAt, q.updatedAfter));
  if (q.initiatedBy !== undefined) filters.push(eq(runs.initiatedBy, q.initiatedBy));
  const where = and(...filters)!;
  const page = q.after
    ? and(where, or(lt(runs.updatedAt, q.after.updatedAt), and(eq(runs.updatedAt, q.after.updatedAt), lt(runs.id, q.after.id))))!
    : where;
  const [rows, count] = await db.batch([
    db.select().from(runs).where(page).orderBy(desc(runs.updatedAt), desc(runs.id)).limit(q.limit),
    db.select({ n: sql<number>`count(*)` }).from(runs).where(where),
  ]);
  return { rows, total: Number(count[0]?.n ?? 0) };
}

/** The latest runs of an agent in a context (newest first), for the context's earlier turns. */
export async function contextRuns(db: Db, scope: OrgScope, agent: { repositoryId: string; name: string }, contextId: string, limit: number, exceptId?: string): Promise<RunRow[]> {
  const filters: SQL[] = [eq(runs.orgId, scope.orgId), eq(runs.contextId, contextId), eq(runs.repositoryId, agent.repositoryId), eq(runs.agentName, agent.name)];
  if (exceptId) filters.push(ne(runs.id, exceptId));
  return db.select().from(runs).where(and(...filters)).orderBy(desc(runs.createdAt), desc(runs.id)).limit(limit);
}

/** Runs of an agent in a context that have not settled (the agent's `concurrency` policy). */
export async function unsettledContextRuns(db: Db, scope: OrgScope, agent: { repositoryId: string; name: string }, contextId: string, exceptId?: string): Promise<RunRow[]> {
  const filters: SQL[] = [
    eq(runs.orgId, scope.orgId),
    eq(runs.contextId, contextId),
    eq(runs.repositoryId, agent.repositoryId),
    eq(runs.agentName, agent.name),
    notInArray(runs.status, TERMINAL),
  ];
  if (exceptId) filters.push(ne(runs.id, exceptId));
  return db.select().from(runs).where(and(...filters)).limit(20);
}

/** Several runs of the org by id (the org's own only). */
export async function getRuns(db: Db, scope: OrgScope, ids: string[]): Promise<RunRow[]> {
  if (ids.length === 0) return [];
  return db.select().from(runs).where(and(eq(runs.orgId, scope.orgId), inArray(runs.id, ids)));
}

/**
 * Runs of the same context and agent that may be waiting their turn (`concurrency:
 * enqueue`): still `submitted`, made at or after `since`, oldest first. A run that is only
 * submitted (not deferred) is among them too; releasing it does nothing.
 */
export async function waitingContextRuns(db: Db, orgId: string, run: { contextId: string; repositoryId: string; agentName: string; id: string }, since: number): Promise<string[]> {
  const rows = await db
    .select({ id: runs.id })
    .from(runs)
    .where(
      and(
        eq(runs.orgId, orgId),
        eq(runs.contextId, run.contextId),
        eq(runs.repositoryId, run.repositoryId),
        eq(runs.agentName, run.agentName),
        eq(runs.status, "submitted"),
        ne(runs.id, run.id),
        gte(runs.createdAt, since),
      ),
    )
    .orderBy(asc(runs.createdAt), asc(runs.id))
    .limit(10);
  return rows.map((r) => r.id);
}
