/**
 * `@modelcontextprotocol/server-everything` (the reference server, 2025 session protocol
 * only) over Streamable HTTP: `node dist/index.js streamableHttp` serves `/mcp` on the
 * port in `PORT` (default 3001). It is spawned on a free port and reached through a small
 * counting proxy on 127.0.0.1, so tests that share it keep their own counters:
 *
 *   ANY  /p/<name>                 forwarded to the server's /mcp
 *   GET  /__stats?name=<name>      { methods: { "initialize": n, "tools/list": n, … }, requests: n, headers: [...] }
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";

interface Stats {
  methods: Record<string, number>;
  requests: number;
  headers: Record<string, string | string[] | undefined>[];
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}

async function spawnEverything(port: number): Promise<ChildProcess> {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve("@modelcontextprotocol/server-everything/package.json");
  const child = spawn(process.execPath, [join(dirname(pkg), "dist/index.js"), "streamableHttp"], {
    env: { ...process.env, PORT: String(port) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  await new Promise<void>((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => reject(new Error(`server-everything did not start: ${err}`)), 20_000);
    child.stderr!.on("data", (chunk: Buffer) => {
      err += chunk.toString();
      if (err.includes("listening on port")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server-everything exited (${code}): ${err}`));
    });
  });
  child.stderr!.resume();
  child.removeAllListeners("exit");
  return child;
}

export async function startMcpEverything(): Promise<{ url: string; close(): Promise<void> }> {
  const port = await freePort();
  const child = await spawnEverything(port);
  const stats = new Map<string, Stats>();

  const proxy: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://proxy");
    if (url.pathname === "/__stats") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(stats.get(url.searchParams.get("name") ?? "") ?? { methods: {}, requests: 0, headers: [] }));
      return;
    }
    const m = /^\/p\/([^/]+)$/.exec(url.pathname);
    if (!m) {
      req.resume();
      res.writeHead(404).end();
      return;
    }
    const name = m[1]!;
    let s = stats.get(name);
    if (!s) stats.set(name, (s = { methods: {}, requests: 0, headers: [] }));
    s.requests++;
    s.headers.push(req.headers);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      try {
        const parsed = JSON.parse(body.toString("utf8")) as unknown;
        for (const msg of Array.isArray(parsed) ? parsed : [parsed]) {
          const method = (msg as { method?: unknown })?.method;
          if (typeof method === "string") s!.methods[method] = (s!.methods[method] ?? 0) + 1;
        }
      } catch {}
      const headers = { ...req.headers, host: `127.0.0.1:${port}` };
      const upstream = request({ host: "127.0.0.1", port, method: req.method, path: "/mcp", headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on("error", (err) => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end(String(err));
      });
      res.on("close", () => upstream.destroy());
      upstream.end(body);
    });
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  const { port: proxyPort } = proxy.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${proxyPort}`,
    close: async () => {
      proxy.closeAllConnections();
      await new Promise<void>((r) => proxy.close(() => r()));
      child.kill("SIGTERM");
    },
  };
}
