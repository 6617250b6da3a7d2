import { and, eq } from "drizzle-orm";
import { auditStatement, type AuditEntry } from "../audit/log";
import type { Db } from "./client";
import { runs, type RunRow, type RunStatus } from "./schema";
import type { OrgScope } from "./scope";

export type NewRun = Pick<RunRow, "id" | "contextId" | "agentName" | "repositoryId" | "commitSha" | "initiatedBy">;

export async function insertRun(db: Db, scope: OrgScope, run: NewRun): Promise<void> {
  await db.insert(runs).values({ ...run, orgId: scope.orgId, status: "submitted" });
}

/**
 * Records a run's status. Called by the run's Durable Object, which knows its org id from
 * the run it was created for (never from a caller).
 */
export async function setRunStatus(db: Db, orgId: string, runId: string, status: RunStatus, error?: string | null, audit?: AuditEntry): Promise<void> {
  const now = Date.now();
  const terminal = status === "completed" || status === "failed" || status === "canceled";
  const update = db
    .update(runs)
    .set({ status, updatedAt: now, ...(error !== undefined ? { error } : {}), ...(terminal ? { completedAt: now } : {}) })
    .where(and(eq(runs.orgId, orgId), eq(runs.id, runId)));
  // The audit row of the call rides in the same round trip as the status it records.
  if (audit) await db.batch([update, auditStatement(db, orgId, audit)]);
  else await update;
}

export async function getRun(db: Db, scope: OrgScope, runId: string): Promise<RunRow | null> {
  const row = await db.query.runs.findFirst({ where: and(eq(runs.orgId, scope.orgId), eq(runs.id, runId)) });
  return row ?? null;
}
