/**
 * A stateless MCP server of the 2026-07-28 revision (`server/discover`, no sessions) on
 * 127.0.0.1, built with the SDK's v2 server (`createMcpHandler(..., { legacy: "reject" })`,
 * so a 2025-only client is refused) and `toNodeHandler`. Every MCP path serves the same
 * tools, each with its own counters, so tests that share the server use their own path:
 *
 *   POST /mcp/<anything>          MCP (tools/list answers with ttlMs 300000)
 *   POST /fresh/<anything>        MCP without a cache hint (ttlMs 0: "immediately stale")
 *   POST /garbage-calls/<any>     MCP, except that tools/call answers a body that is not JSON-RPC
 *   POST /garbage/<anything>      not MCP at all: 200 with an HTML page
 *   GET  /__stats?path=/mcp/x     { methods: { "tools/list": n, … }, calls: [{ tool, args, traceparent, headers }] }
 *   GET  /__counter?key=k         { count }: how many times the `counter` tool ran for `key`
 *   GET  /__down?path=/mcp/x&down=1   from now on, requests to that path lose their connection (down=0: served again)
 *
 * Tools: `echo` (text), `weather` (structuredContent + outputSchema), `delete_everything`
 * (destructiveHint: true), `slow` (sleeps `ms`, 5 s by default), `broken` (isError),
 * `counter` (counts executions per `key`, readable at /__counter).
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";

interface SeenCall {
  tool: string;
  args: unknown;
  traceparent: string | null;
  headers: Record<string, string | string[] | undefined>;
}

interface PathStats {
  methods: Record<string, number>;
  calls: SeenCall[];
}

export async function startMcpStateless(): Promise<{ url: string; close(): Promise<void> }> {
  const stats = new Map<string, PathStats>();
  const counters = new Map<string, number>();
  const down = new Set<string>();
  const statsOf = (path: string): PathStats => {
    let s = stats.get(path);
    if (!s) stats.set(path, (s = { methods: {}, calls: [] }));
    return s;
  };

  const factory = (path: string, headers: IncomingMessage["headers"], ttlMs: number | null) => () => {
    const server = new McpServer(
      { name: "shaman-test-stateless", version: "1.0.0" },
      ttlMs === null ? {} : { cacheHints: { "tools/list": { ttlMs, cacheScope: "private" } } },
    );
    const record = (tool: string, args: unknown, meta: Record<string, unknown> | undefined) => {
      statsOf(path).calls.push({ tool, args, traceparent: typeof meta?.traceparent === "string" ? meta.traceparent : null, headers });
    };
    server.registerTool(
      "echo",
      { description: "Echoes the message back", inputSchema: z.object({ message: z.string() }), annotations: { readOnlyHint: true } },
      async ({ message }, ctx) => {
        record("echo", { message }, ctx.mcpReq?._meta as Record<string, unknown> | undefined);
        return { content: [{ type: "text", text: `stateless echo: ${message}` }] };
      },
    );
    server.registerTool(
      "weather",
      {
        description: "The weather in a city, as structured content",
        inputSchema: z.object({ city: z.string() }),
        outputSchema: z.object({ city: z.string(), temperature: z.number(), conditions: z.string() }),
        annotations: { readOnlyHint: true },
      },
      async ({ city }, ctx) => {
        record("weather", { city }, ctx.mcpReq?._meta as Record<string, unknown> | undefined);
        const out = { city, temperature: 21.5, conditions: "Sunny" };
        return { content: [{ type: "text", text: JSON.stringify(out) }], structuredContent: out };
      },
    );
    server.registerTool(
      "delete_everything",
      { description: "Deletes everything (destructive)", inputSchema: z.object({ confirm: z.boolean().optional() }), annotations: { destructiveHint: true, readOnlyHint: false } },
      async (args, ctx) => {
        record("delete_everything", args, ctx.mcpReq?._meta as Record<string, unknown> | undefined);
        return { content: [{ type: "text", text: "deleted" }] };
      },
    );
    server.registerTool(
      "slow",
      { description: "Sleeps, then answers", inputSchema: z.object({ ms: z.number().optional() }) },
      async ({ ms }, ctx) => {
        record("slow", { ms }, ctx.mcpReq?._meta as Record<string, unknown> | undefined);
        await new Promise((r) => setTimeout(r, ms ?? 5_000));
        return { content: [{ type: "text", text: "finally" }] };
      },
    );
    server.registerTool("broken", { description: "Always fails", inputSchema: z.object({}) }, async (_args, ctx) => {
      record("broken", {}, ctx.mcpReq?._meta as Record<string, unknown> | undefined);
      return { isError: true, content: [{ type: "text", text: "the broken tool failed on purpose" }] };
    });
    server.registerTool(
      "counter",
      { description: "Counts its executions per key", inputSchema: z.object({ key: z.string() }) },
      async ({ key }, ctx) => {
        record("counter", { key }, ctx.mcpReq?._meta as Record<string, unknown> | undefined);
        const count = (counters.get(key) ?? 0) + 1;
        counters.set(key, count);
        return { content: [{ type: "text", text: `count ${count}` }], structuredContent: { key, count } };
      },
    );
    return server;
  };

  const readBody = async (req: IncomingMessage): Promise<unknown> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  };

  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? "/", "http://mcp");
      if (url.pathname === "/__stats") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(stats.get(url.searchParams.get("path") ?? "") ?? { methods: {}, calls: [] }));
        return;
      }
      if (url.pathname === "/__counter") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ count: counters.get(url.searchParams.get("key") ?? "") ?? 0 }));
        return;
      }
      if (url.pathname === "/__down") {
        const path = url.searchParams.get("path") ?? "";
        if (url.searchParams.get("down") === "1") down.add(path);
        else down.delete(path);
        res.writeHead(204).end();
        return;
      }
      if (down.has(url.pathname)) {
        req.socket.destroy();
        return;
      }
      const kind = url.pathname.split("/")[1] ?? "";
      if (kind === "garbage") {
        req.resume();
        res.writeHead(200, { "content-type": "text/html" });
        res.end("<html><body>this is not an MCP server</body></html>");
        return;
      }
      if (kind !== "mcp" && kind !== "fresh" && kind !== "garbage-calls") {
        req.resume();
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found\n");
        return;
      }
      const body = req.method === "POST" ? await readBody(req) : undefined;
      const messages = Array.isArray(body) ? body : body ? [body] : [];
      for (const m of messages as { method?: unknown }[]) {
        if (typeof m?.method === "string") {
          const s = statsOf(url.pathname);
          s.methods[m.method] = (s.methods[m.method] ?? 0) + 1;
        }
      }
      if (kind === "garbage-calls" && messages.some((m) => (m as { method?: unknown }).method === "tools/call")) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ hello: "this is not JSON-RPC" }));
        return;
      }
      const handler = createMcpHandler(factory(url.pathname, req.headers, kind === "fresh" ? null : 300_000), { legacy: "reject" });
      await toNodeHandler(handler)(req, res, body);
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(err));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
