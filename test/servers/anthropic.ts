/**
 * A local server that follows Anthropic's Messages API (POST /v1/messages) closely enough
 * for `@ai-sdk/anthropic` to be tested end to end:
 *
 * - headers: `x-api-key` (any non-empty key is accepted unless it starts with `bad-`, which
 *   gets 401 `authentication_error`), `anthropic-version` (required: 400 without it),
 *   `content-type: application/json`;
 * - body: `model`, `max_tokens` (required), `messages` (user/assistant turns whose content is
 *   a string or blocks: text, tool_use, tool_result), `system`, `tools`
 *   (`{name, description, input_schema}`), `tool_choice`, `stream` (answered as SSE);
 * - answer: `{ id: "msg_…", type: "message", role: "assistant", model, content: [text |
 *   tool_use {id: "toolu_…", name, input}], stop_reason: "end_turn" | "tool_use",
 *   stop_sequence: null, usage: { input_tokens, output_tokens,
 *   cache_creation_input_tokens, cache_read_input_tokens } }` with a `request-id` header;
 * - errors: `{ type: "error", error: { type, message } }` with Anthropic's statuses
 *   (400 invalid_request_error, 401 authentication_error, 404 not_found_error,
 *   429 rate_limit_error, 500 api_error, 529 overloaded_error).
 *
 * Scripts (for tests): `POST /__scripts { key, turns }`; a request whose messages contain
 * `SCRIPT:<key>` is answered by turn N = the number of assistant messages in it. A turn is
 * `{ toolCalls?: [{ id?, name, input }], text?, status?, usage? }` where usage overrides
 * `{ input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens }`.
 * Without a script the answer is text: `claude <model> says: <LAST USER TEXT UPPERCASED>`.
 * `GET /__requests` lists what was received (headers and body), `DELETE /__requests` clears it.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface AnthropicTurn {
  toolCalls?: Array<{ id?: string; name: string; input: Record<string, unknown> }>;
  text?: string;
  status?: number;
  usage?: Partial<AnthropicUsage>;
}

interface AnthropicUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

type Block =
  | { type: "text"; text: string }
  | { type: "tool_use"; id: string; name: string; input: unknown }
  | { type: "tool_result"; tool_use_id: string; content: unknown; is_error?: boolean }
  | { type: string; [k: string]: unknown };

interface Message {
  role: "user" | "assistant";
  content: string | Block[];
}

const ERROR_TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  500: "api_error",
  529: "overloaded_error",
};

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function textOf(m: Message | undefined): string {
  if (!m) return "";
  if (typeof m.content === "string") return m.content;
  return m.content.map((b) => (b.type === "text" ? String((b as { text: string }).text) : "")).join("");
}

export async function startAnthropic(): Promise<{ url: string; close(): Promise<void> }> {
  const requests: unknown[] = [];
  const scripts = new Map<string, AnthropicTurn[]>();
  let seq = 0;
  const send = (res: ServerResponse, status: number, value: unknown) =>
    res.writeHead(status, { "content-type": "application/json", "request-id": `req_${++seq}` }).end(JSON.stringify(value));
  const error = (res: ServerResponse, status: number, message: string) =>
    send(res, status, { type: "error", error: { type: ERROR_TYPES[status] ?? "api_error", message } });

  const server = createServer(async (req, res) => {
    try {
      const path = new URL(req.url ?? "/", "http://x").pathname;
      if (path === "/__requests") {
        if (req.method === "DELETE") requests.length = 0;
        send(res, 200, requests);
        return;
      }
      if (path === "/__scripts" && req.method === "POST") {
        const script = JSON.parse(await readBody(req)) as { key: string; turns: AnthropicTurn[] };
        scripts.set(script.key, script.turns);
        res.writeHead(204).end();
        return;
      }
      if (path !== "/v1/messages") {
        error(res, 404, `Not found: ${req.method} ${path}`);
        return;
      }
      if (req.method !== "POST") {
        error(res, 405 as number, "Method not allowed");
        return;
      }
      const raw = await readBody(req);
      const apiKey = req.headers["x-api-key"];
      requests.push({
        path,
        headers: { "x-api-key": apiKey ?? null, "anthropic-version": req.headers["anthropic-version"] ?? null, authorization: req.headers.authorization ?? null },
        body: JSON.parse(raw || "null"),
      });
      if (typeof apiKey !== "string" || apiKey === "") {
        error(res, 401, "x-api-key header is required");
        return;
      }
      if (apiKey.startsWith("bad-")) {
        error(res, 401, "invalid x-api-key");
        return;
      }
      if (!req.headers["anthropic-version"]) {
        error(res, 400, "anthropic-version: header is required");
        return;
      }
      const body = JSON.parse(raw) as { model?: string; max_tokens?: number; messages?: Message[]; system?: unknown; tools?: unknown[]; stream?: boolean };
      if (typeof body.model !== "string") return error(res, 400, "model: Field required");
      if (typeof body.max_tokens !== "number") return error(res, 400, "max_tokens: Field required");
      if (!Array.isArray(body.messages) || body.messages.length === 0) return error(res, 400, "messages: at least one message is required");
      if (body.messages[0]!.role !== "user") return error(res, 400, "messages: first message must use the \"user\" role");
      // Every tool_use must be answered by a tool_result in the next user message, as the API requires.
      for (let i = 0; i < body.messages.length; i++) {
        const m = body.messages[i]!;
        if (m.role !== "assistant" || typeof m.content === "string") continue;
        const uses = m.content.filter((b) => b.type === "tool_use").map((b) => (b as { id: string }).id);
        if (uses.length === 0) continue;
        const next = body.messages[i + 1];
        const results = next && typeof next.content !== "string" ? next.content.filter((b) => b.type === "tool_result").map((b) => (b as { tool_use_id: string }).tool_use_id) : [];
        const missing = uses.filter((id) => !results.includes(id));
        if (missing.length) return error(res, 400, `messages.${i + 1}: tool_use ids were found without tool_result blocks immediately after: ${missing.join(", ")}`);
      }
      if (body.model.startsWith("missing-")) return error(res, 404, `model: ${body.model}`);

      const all = JSON.stringify(body.messages);
      let content: Block[] = [{ type: "text", text: `claude ${body.model} says: ${textOf([...body.messages].reverse().find((m) => m.role === "user")).toUpperCase()}` }];
      let usageOverride: Partial<AnthropicUsage> = {};
      const scripted = /SCRIPT:([A-Za-z0-9_-]+)/.exec(all);
      if (scripted?.[1]) {
        const turns = scripts.get(scripted[1]);
        const n = body.messages.filter((m) => m.role === "assistant").length;
        const turn = turns?.[n];
        if (!turn) return error(res, 400, turns ? `script '${scripted[1]}' has no turn ${n}` : `no script '${scripted[1]}'`);
        if (turn.status) return error(res, turn.status, `scripted HTTP ${turn.status}`);
        content = [
          ...(turn.text ? [{ type: "text" as const, text: turn.text }] : []),
          ...(turn.toolCalls ?? []).map((c, i) => ({ type: "tool_use" as const, id: c.id ?? `toolu_${scripted[1]}_${n}_${i}`, name: c.name, input: c.input })),
        ];
        usageOverride = turn.usage ?? {};
      }
      const toolUse = content.some((b) => b.type === "tool_use");
      const usage: AnthropicUsage = {
        input_tokens: raw.length,
        output_tokens: JSON.stringify(content).length,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        ...usageOverride,
      };
      const id = `msg_${String(++seq).padStart(6, "0")}`;
      const message = { id, type: "message", role: "assistant", model: body.model, content, stop_reason: toolUse ? "tool_use" : "end_turn", stop_sequence: null, usage };
      if (!body.stream) {
        send(res, 200, message);
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", "request-id": `req_${seq}` });
      const event = (type: string, data: object) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
      event("message_start", { message: { ...message, content: [], stop_reason: null, usage: { ...usage, output_tokens: 1 } } });
      content.forEach((block, index) => {
        if (block.type === "text") {
          event("content_block_start", { index, content_block: { type: "text", text: "" } });
          event("content_block_delta", { index, delta: { type: "text_delta", text: (block as { text: string }).text } });
        } else {
          const b = block as { id: string; name: string; input: unknown };
          event("content_block_start", { index, content_block: { type: "tool_use", id: b.id, name: b.name, input: {} } });
          event("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: JSON.stringify(b.input) } });
        }
        event("content_block_stop", { index });
      });
      event("message_delta", { delta: { stop_reason: message.stop_reason, stop_sequence: null }, usage: { output_tokens: usage.output_tokens } });
      event("message_stop", {});
      res.end();
    } catch (err) {
      error(res, 400, `invalid request: ${String(err)}`);
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}
