/**
 * A push notification receiver on 127.0.0.1 for tests (binding TEST_PUSH_URL). It records
 * every POST (path, headers, body) and answers 200, unless told otherwise. Tests share it,
 * so each uses its own path prefix (`/r/<unique>/…`) and reads back only that prefix.
 *   POST /__control { prefix, fail?: n, status?: 503, hang?: n }
 *        the next n requests under prefix answer `status` (default 503), or hang
 *        (never answered; the connection is closed when the server stops)
 *   GET  /__received?prefix=/r/x   the recorded requests under prefix, in arrival order
 *   ANY  /__redirect?to=<url>       answers 307 to <url> (recorded)
 * A request that was failed or hung is recorded too, with `answered` saying how.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  answered: number | "hang";
}

interface Rule {
  fail: number;
  status: number;
  hang: number;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

export async function startPushReceiver(): Promise<{ url: string; close(): Promise<void> }> {
  const seen: Received[] = [];
  const rules = new Map<string, Rule>();
  const hanging = new Set<ServerResponse>();
  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://receiver");
    const body = await readBody(req).catch(() => "");
    if (url.pathname === "/__received") {
      const prefix = url.searchParams.get("prefix") ?? "/";
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(seen.filter((r) => r.path.startsWith(prefix))));
      return;
    }
    if (url.pathname === "/__control" && req.method === "POST") {
      const c = JSON.parse(body || "{}") as { prefix: string; fail?: number; status?: number; hang?: number };
      rules.set(c.prefix, { fail: c.fail ?? 0, status: c.status ?? 503, hang: c.hang ?? 0 });
      res.writeHead(204);
      res.end();
      return;
    }
    const record: Received = { method: req.method ?? "GET", path: url.pathname + url.search, headers: req.headers, body, answered: 200 };
    seen.push(record);
    if (seen.length > 10_000) seen.splice(0, 5_000);
    if (url.pathname === "/__redirect" && url.searchParams.get("to")) {
      record.answered = 307;
      res.writeHead(307, { location: url.searchParams.get("to")! });
      res.end();
      return;
    }
    const rule = [...rules.entries()].find(([prefix]) => url.pathname.startsWith(prefix))?.[1];
    if (rule && rule.hang > 0) {
      rule.hang -= 1;
      record.answered = "hang";
      hanging.add(res);
      res.on("close", () => hanging.delete(res));
      return;
    }
    if (rule && rule.fail > 0) {
      rule.fail -= 1;
      record.answered = rule.status;
      res.writeHead(rule.status, { "content-type": "text/plain" });
      res.end("failing on purpose\n");
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok\n");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections?.();
        server.close(() => r());
      }),
  };
}
