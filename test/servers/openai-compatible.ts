/**
 * A small OpenAI-compatible server (POST /v1/chat/completions, streaming and not) for
 * tests and the benchmark. Answers are a pure function of the request, so tests can
 * assert them; every request is recorded (GET /__requests) so tests can check what the
 * platform sent. A user message containing `FAIL_ONCE:<key>` gets one HTTP 500 for that
 * key: a failure injected at a chosen moment.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

interface ChatMessage {
  role: string;
  content: string | Array<{ type: string; text?: string }> | null;
}

export function answerFor(model: string, messages: ChatMessage[]): string {
  const text = (m: ChatMessage | undefined) =>
    typeof m?.content === "string" ? m.content : (m?.content ?? []).map((p) => p.text ?? "").join("");
  const user = text([...messages].reverse().find((m) => m.role === "user"));
  const system = text(messages.find((m) => m.role === "system"));
  return `compat-model ${model} answers: ${user.toUpperCase()} (system prompt: ${system.length} chars)`;
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

export async function startOpenAICompatible(port = 0): Promise<RunningServer> {
  const requests: unknown[] = [];
  const failed = new Set<string>();
  const server: Server = createServer(async (req, res) => {
    try {
      if (req.method === "GET" && req.url === "/__requests") {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(requests));
        return;
      }
      if (req.method === "DELETE" && req.url === "/__requests") {
        requests.length = 0;
        res.writeHead(204).end();
        return;
      }
      if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
        res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "not found" } }));
        return;
      }
      const payload = JSON.parse(await body(req)) as { model: string; messages: ChatMessage[]; stream?: boolean };
      requests.push({ authorization: req.headers.authorization ?? null, ...payload });
      const all = JSON.stringify(payload.messages);
      const inject = /FAIL_ONCE:([A-Za-z0-9_-]+)/.exec(all);
      if (inject?.[1] && !failed.has(inject[1])) {
        failed.add(inject[1]);
        res.writeHead(500, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "injected failure", type: "server_error" } }));
        return;
      }
      const content = answerFor(payload.model, payload.messages);
      const id = `chatcmpl-${requests.length}`;
      const created = Math.floor(Date.now() / 1000);
      const usage = { prompt_tokens: all.length, completion_tokens: content.length, total_tokens: all.length + content.length };
      if (payload.stream) {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
        const chunk = (delta: object, finish: string | null, extra: object = {}) =>
          `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: payload.model, choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;
        res.write(chunk({ role: "assistant", content: "" }, null));
        for (const piece of content.match(/.{1,16}/gs) ?? []) res.write(chunk({ content: piece }, null));
        res.write(chunk({}, "stop", { usage }));
        res.end("data: [DONE]\n\n");
        return;
      }
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({
          id,
          object: "chat.completion",
          created,
          model: payload.model,
          choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
          usage,
        }),
      );
    } catch (err) {
      res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: String(err) } }));
    }
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const { port: actual } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${actual}/v1`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
