// MCP servers for `npm run bench` (bench/run.mjs), on 127.0.0.1:
//   startEverything()  `@modelcontextprotocol/server-everything` over Streamable HTTP (the
//                      reference server; 2025-11-25 sessions only), spawned on a free port,
//                      reached directly (no proxy): `<url>` is its `/mcp`;
//   startStateless()   a stateless 2026-07-28 server built with the SDK's v2 server
//                      (`createMcpHandler(..., { legacy: "reject" })`, a fresh McpServer per
//                      request, as test/servers/mcp-stateless.ts), serving `/mcp`:
//                        echo      { message } → "stateless echo: <message>"
//                        tool01 … tool20  { message } → "toolNN: <message>" (the tool-call cost
//                                  benchmark's agents name them in backticks; the offline
//                                  model calls each named tool once)
//                      every tool is annotated read-only; the server counts tool executions
//                      and the JSON-RPC methods it was sent (`GET /__calls` → { calls, methods }).
import { createServer } from "node:http";
import { toNodeHandler } from "@modelcontextprotocol/node";
import { createMcpHandler, McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";
import { freePort } from "../scripts/local.mjs";

export const BENCH_TOOLS = Array.from({ length: 20 }, (_, i) => `tool${String(i + 1).padStart(2, "0")}`);

// The same server-everything the demo starts (held to 127.0.0.1), one implementation.
export { startMcpEverything as startEverything } from "../scripts/partners.mjs";

export async function startStateless() {
  let calls = 0;
  const methods = {};
  const factory = () => {
    const server = new McpServer({ name: "shaman-bench-stateless", version: "1.0.0" });
    const readOnly = { readOnlyHint: true };
    server.registerTool("echo", { description: "Echoes the message back", inputSchema: z.object({ message: z.string() }), annotations: readOnly }, async ({ message }) => {
      calls++;
      return { content: [{ type: "text", text: `stateless echo: ${message}` }] };
    });
    for (const name of BENCH_TOOLS) {
      server.registerTool(name, { description: `Bench tool ${name}: answers at once`, inputSchema: z.object({ message: z.string() }), annotations: readOnly }, async ({ message }) => {
        calls++;
        return { content: [{ type: "text", text: `${name}: ${message.slice(0, 80)}` }] };
      });
    }
    return server;
  };
  const handle = toNodeHandler(createMcpHandler(factory, { legacy: "reject" }));
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://mcp");
    if (url.pathname === "/__calls") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ calls, methods }));
      return;
    }
    if (url.pathname !== "/mcp") {
      req.resume();
      res.writeHead(404).end();
      return;
    }
    const method = req.headers["mcp-method"];
    if (typeof method === "string") methods[method] = (methods[method] ?? 0) + 1;
    Promise.resolve(handle(req, res)).catch((err) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(err));
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    calls: async () => calls,
    methods: () => ({ ...methods }),
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
