/**
 * A capturing HTTP server on 127.0.0.1: it records every request (method, path, headers)
 * and answers 404, so tests can prove what an outbound call did or did not carry. Tests
 * share it, so each one uses its own path prefix and reads back only that prefix.
 *   GET    /__captured?prefix=/p   the requests whose path starts with /p (JSON)
 *   ANY    /__redirect/<status>?to=<url>   answers <status> with Location: <url> (recorded too)
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface Captured {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
}

export async function startCapture(): Promise<{ url: string; close(): Promise<void> }> {
  const seen: Captured[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://capture");
    if (url.pathname === "/__captured") {
      const prefix = url.searchParams.get("prefix") ?? "/";
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(seen.filter((r) => r.path.startsWith(prefix))));
      return;
    }
    req.resume();
    seen.push({ method: req.method ?? "GET", path: url.pathname + url.search, headers: req.headers });
    if (seen.length > 10_000) seen.splice(0, 5_000);
    const redirect = /^\/__redirect\/(30[12378])$/.exec(url.pathname);
    if (redirect && url.searchParams.get("to")) {
      res.writeHead(Number(redirect[1]), { location: url.searchParams.get("to")! });
      res.end();
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("captured\n");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
