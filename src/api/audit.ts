/**
 * The org's audit trail, newest first:
 *   GET /audit?action=&actionPrefix=&actor=&userId=&runId=&resource=&outcome=&from=&to=&limit=&cursor=
 * `from`/`to` are epoch ms or ISO 8601 times; `cursor` is the previous page's `nextCursor`.
 */
import { Hono } from "hono";
import { authorize } from "../auth/authorize";
import { queryAudit, type AuditFilter } from "../audit/query";
import type { AuditOutcome } from "../audit/log";
import { db } from "../db/client";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";

export const auditRoutes = new Hono<AppEnv>();

function timeParam(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === "") return undefined;
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms)) throw new AppError("BAD_REQUEST", `${name} must be epoch milliseconds or an ISO 8601 time`);
  return ms;
}

auditRoutes.get("/", async (c) => {
  await authorize(c, "/audit", "read");
  const q = c.req.query();
  const filter: AuditFilter = {};
  for (const key of ["action", "actionPrefix", "actor", "userId", "runId", "resource"] as const) {
    const v = q[key];
    if (v !== undefined && v !== "") filter[key] = v;
  }
  if (q.outcome) filter.outcome = q.outcome as AuditOutcome;
  const from = timeParam(q.from, "from");
  const to = timeParam(q.to, "to");
  if (from !== undefined) filter.from = from;
  if (to !== undefined) filter.to = to;
  let limit: number | undefined;
  if (q.limit !== undefined) {
    if (!/^\d{1,4}$/.test(q.limit)) throw new AppError("BAD_REQUEST", "limit must be an integer from 1 to 200");
    limit = Number(q.limit);
  }
  const page = await queryAudit(db(c.env), c.get("org"), filter, { ...(limit !== undefined ? { limit } : {}), ...(q.cursor ? { cursor: q.cursor } : {}) });
  return c.json(page);
});
