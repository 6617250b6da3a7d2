/**
 * Local development only (the benchmark, bench/run.mjs): `POST /_dev/bench/mcp` makes MCP
 * tool calls from inside the Worker, so the bench can compare Shaman's MCP router with a
 * bare JSON-RPC `tools/call` from the same place. Refused (404, like a missing route)
 * unless SHAMAN_ENV is "development" and SHAMAN_DEV_BENCH is "true" (only the bench sets
 * it); it reads no org data and carries no credential.
 *
 * Body: `{ mode, url, tool, args, calls? }`, `calls` (1–50, default 1) calls in sequence:
 *   mode "router"  callMcpTool (src/mcp): the cached connection (session or discovery) and
 *                  the SDK client, exactly as a run's tool job calls a tool;
 *   mode "direct"  one `fetch` POST of a JSON-RPC `tools/call` per call, the minimal request
 *                  the server accepts: for a 2025 server, after an `initialize` once per
 *                  isolate (session id kept, like the router's); for a 2026-07-28 server the
 *                  stateless headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`);
 *                  an SSE answer is read to its result;
 *   mode "none"    answers at once (the route's own cost, for reference).
 * Answers `{ ok, calls, result }` (the last call's result) or 502 `{ ok: false, error }`.
 */
import { Hono } from "hono";
import { z } from "zod";
import { config } from "../config";
import { scopeOf } from "../db/scope";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { jsonOrNull } from "../http/body";
import { callMcpTool, type Json } from "../mcp";

const Body = z.object({
  mode: z.enum(["router", "direct", "none"]),
  url: z.string().url(),
  tool: z.string().min(1).max(200),
  args: z.record(z.string(), z.unknown()).default({}),
  calls: z.number().int().min(1).max(50).default(1),
});

const MODERN = "2026-07-28";
const LEGACY = "2025-11-25";
const CLIENT_INFO = { name: "shaman-bench-direct", version: "1.0.0" };
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

// A bench scope: no row behind it, which is fine as the servers here carry no secret.
const BENCH_SCOPE = scopeOf({ id: "_dev-bench", slug: "_dev-bench", name: "dev bench" });

interface DirectTarget {
  era: "modern" | "legacy";
  sessionId?: string;
}
/** The direct client's per-isolate state per URL: the era found once, and a 2025 session. */
const directTargets = new Map<string, Promise<DirectTarget>>();
let nextId = 1;

/** The JSON-RPC message answering `id` in a JSON or SSE body. */
async function rpcAnswer(res: Response, id: number | string): Promise<{ result?: unknown; error?: { message?: string } }> {
  const type = res.headers.get("content-type") ?? "";
  const text = await res.text();
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
  const messages: unknown[] = [];
  if (type.includes("text/event-stream")) {
    for (const event of text.split(/\r?\n\r?\n/)) {
      const data = event
        .split(/\r?\n/)
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      if (data) {
        try {
          messages.push(JSON.parse(data));
        } catch {}
      }
    }
  } else messages.push(JSON.parse(text));
  const hit = messages.flat().find((m) => (m as { id?: unknown })?.id === id);
  if (!hit) throw new Error(`no answer to request ${id}`);
  return hit as { result?: unknown; error?: { message?: string } };
}

const ACCEPT = "application/json, text/event-stream";

async function discover(url: string): Promise<DirectTarget> {
  const id = nextId++;
  const probe = await fetch(url, {
    method: "POST",
    headers: { accept: ACCEPT, "content-type": "application/json", "mcp-protocol-version": MODERN, "mcp-method": "server/discover" },
    body: JSON.stringify({ jsonrpc: "2.0", id, method: "server/discover", params: { _meta: modernMeta() } }),
  });
  if (probe.ok) {
    const answer = await rpcAnswer(probe, id);
    if (answer.result) return { era: "modern" };
  } else await probe.body?.cancel();
  // A 2025 server: initialize once, keep the session.
  const initId = nextId++;
  const init = await fetch(url, {
    method: "POST",
    headers: { accept: ACCEPT, "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: initId, method: "initialize", params: { protocolVersion: LEGACY, capabilities: {}, clientInfo: CLIENT_INFO } }),
  });
  const sessionId = init.headers.get("mcp-session-id") ?? undefined;
  const answer = await rpcAnswer(init, initId);
  if (!answer.result) throw new Error(`initialize failed: ${answer.error?.message ?? "no result"}`);
  const done = await fetch(url, {
    method: "POST",
    headers: { accept: ACCEPT, "content-type": "application/json", "mcp-protocol-version": LEGACY, ...(sessionId ? { "mcp-session-id": sessionId } : {}) },
    body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
  });
  await done.body?.cancel();
  return { era: "legacy", ...(sessionId ? { sessionId } : {}) };
}

const modernMeta = () => ({ "io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientInfo": CLIENT_INFO, "io.modelcontextprotocol/clientCapabilities": {} });

function directTarget(url: string): Promise<DirectTarget> {
  let t = directTargets.get(url);
  if (!t) {
    t = discover(url);
    directTargets.set(url, t);
    t.catch(() => directTargets.delete(url));
  }
  return t;
}

async function directCall(url: string, tool: string, args: Record<string, unknown>): Promise<unknown> {
  const target = await directTarget(url);
  const id = nextId++;
  const modern = target.era === "modern";
  const res = await fetch(url, {
    method: "POST",
    headers: {
      accept: ACCEPT,
      "content-type": "application/json",
      ...(modern
        ? { "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": tool }
        : { "mcp-protocol-version": LEGACY, ...(target.sessionId ? { "mcp-session-id": target.sessionId } : {}) }),
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id,
      method: "tools/call",
      params: { name: tool, arguments: args, _meta: { traceparent: TRACEPARENT, ...(modern ? modernMeta() : {}) } },
    }),
  });
  const answer = await rpcAnswer(res, id);
  if (answer.error || !answer.result) throw new Error(`tools/call failed: ${answer.error?.message ?? "no result"}`);
  return answer.result;
}

export const devBenchRoutes = new Hono<AppEnv>();

devBenchRoutes.post("/bench/mcp", async (c) => {
  if (config(c.env).production || (c.env as unknown as Record<string, unknown>).SHAMAN_DEV_BENCH !== "true") throw new AppError("NOT_FOUND", "Not found");
  const parsed = Body.safeParse(await jsonOrNull(c.req.raw, 64 * 1024));
  if (!parsed.success) throw new AppError("BAD_REQUEST", `invalid bench body: ${parsed.error.issues[0]?.message ?? "invalid"}`);
  const { mode, url, tool, args, calls } = parsed.data;
  if (mode === "none") return c.json({ ok: true, calls: 0, result: null });
  let result: unknown = null;
  for (let i = 0; i < calls; i++) {
    if (mode === "router") {
      const r = await callMcpTool(c.env, BENCH_SCOPE, { name: "bench", url }, tool, args as Json, { callId: `bench-${i}`, traceparent: TRACEPARENT });
      if (!r.ok) return c.json({ ok: false, error: r.error }, 502);
      result = r.result;
    } else {
      try {
        result = await directCall(url, tool, args);
      } catch (err) {
        directTargets.delete(url);
        return c.json({ ok: false, error: err instanceof Error ? err.message : String(err) }, 502);
      }
    }
  }
  return c.json({ ok: true, calls, result });
});
