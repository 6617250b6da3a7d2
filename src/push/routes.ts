/**
 * A task's push deliveries, for the org's users (mounted under /runs):
 *   GET /runs/{id}/push-deliveries[?configId=…&limit=…&after=…]
 * every attempt the task's push object made to POST an update to a config's URL, oldest
 * first: config id, the run event (seq) the push came from, the push's number within its
 * config (`n`: attempts of one push share it), attempt, time, HTTP status, error (never a
 * token, credential or URL query), outcome (`delivered`, `retrying`, `gave_up`, `dropped`)
 * and when a retry is due. Pages: `limit` 1–500 (default 100); `next` is the `after` of the
 * next page (null on the last one). Kept for the retention period after the task's pushes
 * are over, at most the newest 1,000 per config (src/push/limits.ts).
 *
 * Needs `read` on `/runs/{id}`, like `GET /runs/{id}`. Another org's run, or a malformed
 * id, answers exactly like a missing run; the org's D1 row is checked before the push
 * object is addressed. A run that never had pushes (or whose records are deleted) has none.
 */
import { Hono } from "hono";
import { authorize } from "../auth/authorize";
import { db } from "../db/client";
import { getRun } from "../db/runs";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { RUN_ID } from "../runs/stub";
import { CONFIG_ID } from "./config";
import { pushStub, type DeliveryRecord } from "./index";

export const pushDeliveryRoutes = new Hono<AppEnv>();

export const DEFAULT_DELIVERIES_PAGE = 100;
export const MAX_DELIVERIES_PAGE = 500;

const runNotFound = () => new AppError("NOT_FOUND", "Run not found");

function intParam(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined || value === "") return undefined;
  if (!/^\d{1,15}$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new AppError("BAD_REQUEST", `'${name}' must be an integer from ${min} to ${max}`);
  }
  return Number(value);
}

/** A record as the API shows it (times as ISO 8601). */
export interface DeliveryView {
  id: number;
  configId: string;
  seq: number;
  n: number;
  attempt: number;
  at: string;
  status: number | null;
  error: string | null;
  outcome: DeliveryRecord["outcome"];
  retryAt: string | null;
}

function view(r: DeliveryRecord): DeliveryView {
  return {
    id: r.id,
    configId: r.configId,
    seq: r.seq,
    n: r.n,
    attempt: r.attempt,
    at: new Date(r.at).toISOString(),
    status: r.status,
    error: r.error,
    outcome: r.outcome,
    retryAt: r.retryAt === null ? null : new Date(r.retryAt).toISOString(),
  };
}

pushDeliveryRoutes.get("/:runId/push-deliveries", async (c) => {
  const runId = c.req.param("runId");
  if (!RUN_ID.test(runId)) throw runNotFound();
  const configId = c.req.query("configId");
  if (configId !== undefined && !CONFIG_ID.test(configId)) throw new AppError("BAD_REQUEST", "'configId' is not a push config id");
  const limit = intParam("limit", c.req.query("limit"), 1, MAX_DELIVERIES_PAGE) ?? DEFAULT_DELIVERIES_PAGE;
  const after = intParam("after", c.req.query("after"), 0, Number.MAX_SAFE_INTEGER) ?? 0;
  await authorize(c, `/runs/${runId}`, "read");
  const org = c.get("org");
  if (!(await getRun(db(c.env), org, runId))) throw runNotFound();
  const records = (await pushStub(c.env, runId).deliveries(org.orgId, { ...(configId !== undefined ? { configId } : {}), after, limit: limit + 1 })) ?? [];
  const page = records.slice(0, limit);
  return c.json({ deliveries: page.map(view), next: records.length > limit ? page[page.length - 1]!.id : null }, 200, { "cache-control": "no-store" });
});
