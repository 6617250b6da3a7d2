/**
 * A small OpenAI-compatible server (POST /v1/chat/completions, streaming and not) for
 * tests and the benchmark. Answers are a pure function of the request, so tests can
 * assert them; every request is recorded (GET /__requests) so tests can check what the
 * platform sent. A user message containing `FAIL_ONCE:<key>` gets one HTTP 500 for that
 * key: a failure injected at a chosen moment.
 *
 * Scripts, for tests that need exact tool calls through the real provider path:
 * `POST /__scripts { key, turns }` registers (or replaces) a script; a chat request whose
 * messages contain `SCRIPT:<key>` is answered by turn number N = the number of assistant
 * messages already in the request (0 for the first call). A turn is
 * `{ toolCalls?: [{ id?, name, arguments }], text?, status?, times?, delayMs?, repeat? }`:
 * - `toolCalls`: answered as OpenAI `message.tool_calls` (`function.arguments` a JSON string,
 *   `finish_reason: "tool_calls"`); ids default to `call_<key>_<N>_<i>`; an argument
 *   `"{{tool.<field>}}"` is that field of the request's last tool result;
 * - `text`: the message content (with or without tool calls);
 * - `status`: answer that HTTP error with an OpenAI error body instead; with `times`, only
 *   the first `times` requests of this turn get it and later ones the turn's answer (a
 *   retried call sends the same messages, so it lands on the same turn);
 * - `delayMs`: wait before answering;
 * - `repeat: true`: this turn also answers every later turn;
 * - `usage`: the usage reported (`prompt_tokens`, `completion_tokens`, `cached_tokens`,
 *   `reasoning_tokens`) instead of the default (request and answer sizes in characters).
 * A turn the script does not have is answered with HTTP 400 naming the script. Streaming
 * (`stream: true`) works for text and tool calls. Usage is reported in every answer.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

interface ChatMessage {
  role: string;
  content: string | Array<{ type: string; text?: string }> | null;
}

export interface ScriptTurn {
  toolCalls?: Array<{ id?: string; name: string; arguments: Record<string, unknown> }>;
  text?: string;
  status?: number;
  /** With `status`: how many requests of this turn get the error (default: all). */
  times?: number;
  delayMs?: number;
  repeat?: boolean;
  /** The usage to report instead of the default (prompt = request chars, completion = answer chars). */
  usage?: { prompt_tokens: number; completion_tokens: number; cached_tokens?: number; reasoning_tokens?: number };
}

export interface Script {
  key: string;
  turns: ScriptTurn[];
}

/**
 * A scripted argument `"{{tool.<field>}}"` becomes that field of the last tool result in
 * the request (its content parsed as JSON): for values a script cannot know in advance,
 * such as the task id an external agent made.
 */
export function fillFromLastToolResult(args: Record<string, unknown>, messages: ChatMessage[]): Record<string, unknown> {
  const last = [...messages].reverse().find((m) => m.role === "tool");
  let result: Record<string, unknown> = {};
  try {
    result = JSON.parse(typeof last?.content === "string" ? last.content : "{}") as Record<string, unknown>;
  } catch {
    /* not JSON */
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args)) {
    const m = typeof v === "string" ? /^\{\{tool\.([A-Za-z0-9_]+)\}\}$/.exec(v) : null;
    out[k] = m ? result[m[1]!] : v;
  }
  return out;
}

/** The turn of a script that answers a request with `assistants` assistant messages. */
export function scriptTurn(turns: ScriptTurn[], assistants: number): { turn: ScriptTurn; index: number } | undefined {
  for (let i = 0; i < turns.length && i <= assistants; i++) {
    const turn = turns[i]!;
    if (i === assistants || turn.repeat) return { turn, index: i };
  }
  return undefined;
}

const statusTypes: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  429: "rate_limit_error",
};

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
  const scripts = new Map<string, ScriptTurn[]>();
  /** Errors already answered per `<key>#<turn>`, for `times`. */
  const errorsSent = new Map<string, number>();
  const json = (res: ServerResponse, status: number, value: unknown) =>
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
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
      if (req.method === "POST" && req.url === "/__scripts") {
        const script = JSON.parse(await body(req)) as Script;
        if (typeof script.key !== "string" || !/^[A-Za-z0-9_-]+$/.test(script.key) || !Array.isArray(script.turns)) {
          json(res, 400, { error: { message: "a script is { key: [A-Za-z0-9_-]+, turns: [...] }" } });
          return;
        }
        scripts.set(script.key, script.turns);
        for (const k of [...errorsSent.keys()]) if (k.startsWith(`${script.key}#`)) errorsSent.delete(k);
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
      let content = answerFor(payload.model, payload.messages);
      let toolCalls: Array<{ id: string; type: "function"; function: { name: string; arguments: string } }> = [];
      let scriptedUsage: ScriptTurn["usage"];
      const scripted = /SCRIPT:([A-Za-z0-9_-]+)/.exec(all);
      if (scripted?.[1]) {
        const key = scripted[1];
        const turns = scripts.get(key);
        const assistants = payload.messages.filter((m) => m.role === "assistant").length;
        const found = turns ? scriptTurn(turns, assistants) : undefined;
        if (!found) {
          json(res, 400, {
            error: {
              message: turns ? `script '${key}' has no turn ${assistants} (it has ${turns.length})` : `no script '${key}' (POST /__scripts first)`,
              type: "invalid_request_error",
            },
          });
          return;
        }
        const { turn, index } = found;
        if (turn.delayMs) await new Promise((r) => setTimeout(r, turn.delayMs));
        if (turn.status) {
          const k = `${key}#${index}`;
          const sent = errorsSent.get(k) ?? 0;
          if (turn.times === undefined || sent < turn.times) {
            errorsSent.set(k, sent + 1);
            json(res, turn.status, {
              error: {
                message: `scripted HTTP ${turn.status} (script '${key}', turn ${index})`,
                type: statusTypes[turn.status] ?? "server_error",
                code: turn.status === 429 ? "rate_limit_exceeded" : null,
              },
            });
            return;
          }
        }
        content = turn.text ?? "";
        scriptedUsage = turn.usage;
        toolCalls = (turn.toolCalls ?? []).map((c, i) => ({
          id: c.id ?? `call_${key}_${assistants}_${i}`,
          type: "function" as const,
          function: { name: c.name, arguments: JSON.stringify(fillFromLastToolResult(c.arguments ?? {}, payload.messages)) },
        }));
      }
      const finish = toolCalls.length > 0 ? "tool_calls" : "stop";
      const id = `chatcmpl-${requests.length}`;
      const created = Math.floor(Date.now() / 1000);
      const outChars = content.length + toolCalls.reduce((n, c) => n + c.function.name.length + c.function.arguments.length, 0);
      const usage = scriptedUsage
        ? {
            prompt_tokens: scriptedUsage.prompt_tokens,
            completion_tokens: scriptedUsage.completion_tokens,
            total_tokens: scriptedUsage.prompt_tokens + scriptedUsage.completion_tokens,
            prompt_tokens_details: { cached_tokens: scriptedUsage.cached_tokens ?? 0 },
            completion_tokens_details: { reasoning_tokens: scriptedUsage.reasoning_tokens ?? 0 },
          }
        : { prompt_tokens: all.length, completion_tokens: outChars, total_tokens: all.length + outChars };
      if (payload.stream) {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
        const chunk = (delta: object, finish: string | null, extra: object = {}) =>
          `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model: payload.model, choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;
        res.write(chunk({ role: "assistant", content: "" }, null));
        for (const piece of content.match(/.{1,16}/gs) ?? []) res.write(chunk({ content: piece }, null));
        toolCalls.forEach((c, index) => {
          res.write(chunk({ tool_calls: [{ index, id: c.id, type: "function", function: { name: c.function.name, arguments: "" } }] }, null));
          for (const piece of c.function.arguments.match(/.{1,16}/gs) ?? []) res.write(chunk({ tool_calls: [{ index, function: { arguments: piece } }] }, null));
        });
        res.write(chunk({}, finish, { usage }));
        res.end("data: [DONE]\n\n");
        return;
      }
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({
          id,
          object: "chat.completion",
          created,
          model: payload.model,
          choices: [
            {
              index: 0,
              message: { role: "assistant", content: toolCalls.length > 0 && !content ? null : content, ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) },
              finish_reason: finish,
            },
          ],
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
