/**
 * A run's live state and event stream, for the org that owns it:
 *   GET /runs/{id}                  the run: status, steps, output
 *   GET /runs/{id}/events?after=N   the event log after sequence N (JSON)
 *   GET /runs/{id}/ws?after=N       WebSocket: replay after N, then live events (every event:
 *                                   steps, model text as it streams, tool calls, input, the run);
 *                                   `&batch=1`: every message a JSON array of events in order
 *   POST /runs/{id}/ws-ticket       a single-use ticket for the WebSocket, for browsers
 *                                   (`?ticket=` or subprotocol `shaman.ticket.<ticket>`;
 *                                   src/runs/ws-ticket.ts)
 *   POST /runs/{id}/input/{request} answer a pending request for input { answer, comment? }
 *   POST /runs/{id}/cancel          cancel the run and every unfinished step
 * Another org's run, or a malformed id, answers exactly like a missing run. The org's D1 row
 * is checked before the run's Durable Object is addressed, so an id that was never issued
 * costs the same one query as another org's and never creates an object.
 */
import { Hono, type Context } from "hono";
import { ORG_HEADER, TICKET_HEADER, TICKET_PROTOCOL_HEADER } from "../../durable-objects/run-object";
import { authorize } from "../auth/authorize";
import { db } from "../db/client";
import { getRun } from "../db/runs";
import { AppError } from "../errors";
import { auditRequest } from "../audit/http";
import { jsonBody } from "../http/body";
import { z } from "zod";
import type { AppEnv } from "../http/app-env";
import { RUN_ID, runStub } from "./stub";
import { TICKET_PROTOCOL_PREFIX, WS_TICKET_TTL_MS } from "./ws-ticket";

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
  headers.delete(TICKET_HEADER);
  headers.delete(TICKET_PROTOCOL_HEADER);
  return runStub(c.env, runId).fetch(new Request(c.req.raw.url, { method: "GET", headers }));
});

/**
 * POST /runs/{id}/ws-ticket: a ticket for `GET /runs/{id}/ws?ticket=…` (or the subprotocol
 * `shaman.ticket.<ticket>`), for callers that cannot send a credential on a WebSocket
 * (browsers). Needs read on the run; single use; valid 60 s; this run only.
 */
runRoutes.post("/:runId/ws-ticket", async (c) => {
  const runId = c.req.param("runId");
  if (!RUN_ID.test(runId)) throw runNotFound();
  await authorize(c, `/runs/${runId}`, "read");
  await requireRunRow(c, runId);
  const issued = await runStub(c.env, runId).issueWsTicket(c.get("org").orgId, WS_TICKET_TTL_MS);
  if (!issued) throw runNotFound();
  const url = new URL(c.req.url);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.pathname = url.pathname.replace(/\/ws-ticket$/, "/ws");
  url.search = `?ticket=${issued.ticket}`;
  return c.json(
    { ticket: issued.ticket, expiresAt: new Date(issued.expiresAt).toISOString(), url: url.toString(), protocol: `${TICKET_PROTOCOL_PREFIX}${issued.ticket}` },
    200,
    { "cache-control": "no-store" },
  );
});

const InputAnswer = z
  .object({
    /** The answer: free text, one of the choices, or for an approval "approved" / "rejected". */
    answer: z.string().min(1).max(64 * 1024),
    /** An optional comment (approvals, choices). */
    comment: z.string().max(4_000).optional(),
  })
  .strict();

/**
 * POST /runs/{id}/input/{requestId}: answers one pending `request_user_input` of the run.
 * Other pending requests (parallel branches) keep waiting. 404 for a request the run does
 * not wait on (answered already, canceled, or never asked), like a missing run.
 */
runRoutes.post("/:runId/input/:requestId", async (c) => {
  const runId = c.req.param("runId");
  const requestId = c.req.param("requestId");
  if (!RUN_ID.test(runId)) throw runNotFound();
  await authorize(c, `/runs/${runId}`, "write");
  await requireRunRow(c, runId);
  const body = await jsonBody(c, InputAnswer);
  if (!RUN_ID.test(requestId)) throw new AppError("NOT_FOUND", "Input request not found");
  const stub = runStub(c.env, runId);
  const answered = await stub.answerInput(c.get("org").orgId, requestId, { answer: body.answer, ...(body.comment ? { comment: body.comment } : {}) });
  if (answered === null) throw runNotFound();
  if (!answered) throw new AppError("NOT_FOUND", "Input request not found (answered already, canceled, or never asked)");
  auditRequest(c, { action: "run.input", resource: `/runs/${runId}`, outcome: "success", input: { requestId, answer: body.answer } });
  const snapshot = await stub.snapshot(c.get("org").orgId);
  return c.json({ answered: requestId, status: snapshot?.status ?? null, inputs: snapshot?.inputs ?? [] });
});

/** POST /runs/{id}/cancel: cancels every unfinished step (descendants too) and the run. Idempotent. */
runRoutes.post("/:runId/cancel", async (c) => {
  const runId = c.req.param("runId");
  if (!RUN_ID.test(runId)) throw runNotFound();
  await authorize(c, `/runs/${runId}`, "write");
  await requireRunRow(c, runId);
  const stub = runStub(c.env, runId);
  const canceled = await stub.cancel(c.get("org").orgId, `canceled by ${c.get("principal") ?? "a caller"}`);
  if (canceled === null) throw runNotFound();
  if (canceled) auditRequest(c, { action: "run.cancel", resource: `/runs/${runId}`, outcome: "success" });
  const snapshot = await stub.snapshot(c.get("org").orgId);
  return c.json({ canceled, status: snapshot?.status ?? null });
});
