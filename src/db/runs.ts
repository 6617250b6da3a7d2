import { and, eq, sql } from "drizzle-orm";
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
  });
  const row = terminal
    ? insert.onConflictDoUpdate({
        target: runs.id,
        set: { status: run.status, error: run.error, updatedAt: run.updatedAt, completedAt: run.completedAt },
        // Never another org's row (ids are random UUIDs; this only makes it explicit).
        setWhere: sql`${runs.orgId} = ${run.orgId}`,
      })
    : insert.onConflictDoNothing();
  if (audit) await db.batch([row, auditStatement(db, run.orgId, audit).onConflictDoNothing()]);
  else await row;
}

export async function getRun(db: Db, scope: OrgScope, runId: string): Promise<RunRow | null> {
  const row = await db.query.runs.findFirst({ where: and(eq(runs.orgId, scope.orgId), eq(runs.id, runId)) });
  return row ?? null;
}
