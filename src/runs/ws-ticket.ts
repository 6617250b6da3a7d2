/**
 * WebSocket authentication for browsers, which cannot set an `Authorization` header on a
 * WebSocket: an authenticated caller asks `POST /runs/{id}/ws-ticket` (src/runs/routes.ts)
 * for a ticket, then opens
 *   GET /runs/{id}/ws?ticket=<ticket>[&after=N][&batch=1]
 * or sends it as a subprotocol: `Sec-WebSocket-Protocol: shaman.ticket.<ticket>` (the
 * server answers with that protocol). A ticket is random, valid for `WS_TICKET_TTL_MS`,
 * usable once, and only for the run (and so the org) it was issued for; the run's object
 * keeps its hash and deletes it on use. A missing, expired, used or foreign ticket answers
 * exactly like a missing run.
 *
 * These routes are mounted before `authenticate()` and take only requests that carry a
 * ticket; anything else falls through to the authenticated routes.
 */
import { Hono, type Context } from "hono";
import { ORG_HEADER, TICKET_HEADER, TICKET_PROTOCOL_HEADER } from "../../durable-objects/run-object";
import { db } from "../db/client";
import { getRun } from "../db/runs";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { RUN_ID, runStub } from "./stub";

export const WS_TICKET_TTL_MS = 60_000;
export const TICKET_PROTOCOL_PREFIX = "shaman.ticket.";
const TICKET = /^[A-Za-z0-9_-]{20,100}$/;

/** The ticket a request carries (query `ticket`, or a `shaman.ticket.*` subprotocol), and the protocol to echo. */
export function ticketOf(c: Context<AppEnv>): { ticket: string; protocol: string | null } | null {
  const query = c.req.query("ticket");
  if (query !== undefined) return { ticket: query, protocol: null };
  const offered = (c.req.header("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
  const protocol = offered.find((p) => p.startsWith(TICKET_PROTOCOL_PREFIX));
  return protocol ? { ticket: protocol.slice(TICKET_PROTOCOL_PREFIX.length), protocol } : null;
}

export const wsTicketRoutes = new Hono<AppEnv>();

wsTicketRoutes.get("/:runId/ws", async (c, next) => {
  const carried = ticketOf(c);
  if (!carried) return next(); // no ticket: the authenticated route decides
  const runId = c.req.param("runId");
  const notFound = () => new AppError("NOT_FOUND", "Run not found");
  if (!RUN_ID.test(runId) || !TICKET.test(carried.ticket)) throw notFound();
  const after = c.req.query("after") ?? "0";
  if (!/^\d{1,15}$/.test(after)) throw new AppError("BAD_REQUEST", "'after' must be a non-negative integer sequence number");
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
    throw new AppError("BAD_REQUEST", "expected a WebSocket upgrade (Upgrade: websocket)");
  }
  // The org's D1 row first: another org's run (or an id never issued) never reaches an object.
  if (!(await getRun(db(c.env), c.get("org"), runId))) throw notFound();
  const headers = new Headers({ upgrade: "websocket", [ORG_HEADER]: c.get("org").orgId, [TICKET_HEADER]: carried.ticket, "x-request-id": c.get("requestId") });
  if (carried.protocol) headers.set(TICKET_PROTOCOL_HEADER, carried.protocol);
  const url = new URL(`https://run.internal/runs/${runId}/ws`);
  url.searchParams.set("after", after);
  const batch = c.req.query("batch");
  if (batch !== undefined) url.searchParams.set("batch", batch);
  return runStub(c.env, runId).fetch(new Request(url, { method: "GET", headers }));
});
