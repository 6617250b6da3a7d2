/**
 * Audit from request handlers: the row is written after the response, through
 * `waitUntil`, so auditing costs the caller no latency; a failed write is logged (without
 * the entry's summary), never turned into a failed request.
 */
import type { Context } from "hono";
import { db } from "../db/client";
import type { AppEnv } from "../http/app-env";
import { writeAudit, type AuditEntry } from "./log";

/** The actor and original user of the request's principal (`system` when anonymous). */
export function actorOf(c: Context<AppEnv>): { actor: string; userId: string | null } {
  const p = c.get("auth") as AppEnv["Variables"]["auth"] | undefined;
  if (!p) return { actor: c.get("principal") ?? "anonymous", userId: null };
  return p.kind === "user" ? { actor: p.id, userId: p.userId } : { actor: p.id, userId: p.createdBy };
}

export function auditRequest(c: Context<AppEnv>, entry: Omit<AuditEntry, "actor" | "requestId"> & { actor?: string }): void {
  const org = c.get("org") as AppEnv["Variables"]["org"] | undefined;
  if (!org) return;
  const who = actorOf(c);
  const row: AuditEntry = { ...entry, actor: entry.actor ?? who.actor, userId: entry.userId ?? who.userId, requestId: c.get("requestId") };
  const write = writeAudit(db(c.env), org.orgId, row).catch((err: unknown) => {
    console.error(`audit ${entry.action} ${org.slug}: write failed: ${err instanceof Error ? err.message : String(err)}`);
  });
  try {
    c.executionCtx.waitUntil(write);
  } catch {
    // No execution context (unit use): the promise still runs.
  }
}
