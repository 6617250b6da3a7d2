/**
 * A run's live state and event stream, for the org that owns it:
 *   GET /runs/{id}                  the run: status, steps, output
 *   GET /runs/{id}/events?after=N   the event log after sequence N (JSON)
 *   GET /runs/{id}/ws?after=N       WebSocket: replay after N, then live events
 * Another org's run, or a malformed id, answers exactly like a missing run. The org's D1 row
 * is checked before the run's Durable Object is addressed, so an id that was never issued
 * costs the same one query as another org's and never creates an object.
 */
import { Hono, type Context } from "hono";
import { ORG_HEADER } from "../../durable-objects/run-object";
import { authorize } from "../auth/authorize";
import { db } from "../db/client";
import { getRun } from "../db/runs";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { RUN_ID, runStub } from "./stub";

export const runRoutes = new Hono<AppEnv>();

const runNotFound = () => new AppError("NOT_FOUND", "Run not found");

/** Throws "not found" unless the caller's org has this run (a missing row is not an error). */
async function requireRunRow(c: Context<AppEnv>, runId: string): Promise<void> {
  if (!(await getRun(db(c.env), c.get("org"), runId))) throw runNotFound();
}

function afterParam(value: string | undefined): number {
  if (value === undefined || value === "") return 0;
  if (!/^\d{1,15}$/.test(value)) throw new AppError("BAD_REQUEST", "'after' must be a non-negative integer sequence number");
  return Number(value);
}

runRoutes.get("/:runId", async (c) => {
  const runId = c.req.param("runId");
  if (!RUN_ID.test(runId)) throw runNotFound();
  await authorize(c, `/runs/${runId}`, "read");
  await requireRunRow(c, runId);
  const snapshot = await runStub(c.env, runId).snapshot(c.get("org").orgId);
  if (!snapshot) throw runNotFound();
  const { orgId: _orgId, ...run } = snapshot;
  return c.json(run);
});

runRoutes.get("/:runId/events", async (c) => {
  const runId = c.req.param("runId");
  if (!RUN_ID.test(runId)) throw runNotFound();
  const after = afterParam(c.req.query("after"));
  await authorize(c, `/runs/${runId}`, "read");
  await requireRunRow(c, runId);
  const limit = Math.min(500, Math.max(1, Number(c.req.query("limit") ?? "500") || 500));
  const events = await runStub(c.env, runId).events(c.get("org").orgId, after, limit);
  if (!events) throw runNotFound();
  return c.json({ events, next: events.length ? events[events.length - 1]?.seq : after });
});

runRoutes.get("/:runId/ws", async (c) => {
  const runId = c.req.param("runId");
  if (!RUN_ID.test(runId)) throw runNotFound();
  afterParam(c.req.query("after"));
  await authorize(c, `/runs/${runId}`, "read");
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
    throw new AppError("BAD_REQUEST", "expected a WebSocket upgrade (Upgrade: websocket)");
  }
  await requireRunRow(c, runId);
  // The object checks the org itself; a caller cannot set this header (it is overwritten).
  const headers = new Headers(c.req.raw.headers);
  headers.set(ORG_HEADER, c.get("org").orgId);
  headers.set("x-request-id", c.get("requestId"));
  return runStub(c.env, runId).fetch(new Request(c.req.raw.url, { method: "GET", headers }));
});
