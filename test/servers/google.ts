/**
 * A local server that follows the Gemini API's generateContent (POST
 * /v1beta/models/{model}:generateContent, and :streamGenerateContent?alt=sse) closely enough
 * for `@ai-sdk/google` to be tested end to end:
 *
 * - the key in the `x-goog-api-key` header (or `?key=`): missing → 403 PERMISSION_DENIED
 *   ("Method doesn't allow unregistered callers…"); one starting with `bad-` → 400
 *   INVALID_ARGUMENT "API key not valid…", as Google answers;
 * - body: `contents` (`role` user/model, `parts`: text, functionCall {name, args},
 *   functionResponse {name, response}), `systemInstruction`, `tools`
 *   (`[{ functionDeclarations: [{ name, description, parameters }] }]`), `toolConfig`,
 *   `generationConfig`;
 * - answer: `{ candidates: [{ content: { role: "model", parts }, finishReason: "STOP",
 *   index: 0 }], usageMetadata: { promptTokenCount, candidatesTokenCount, totalTokenCount,
 *   cachedContentTokenCount?, thoughtsTokenCount? }, modelVersion, responseId }`;
 * - errors: `{ error: { code, message, status } }` (400 INVALID_ARGUMENT, 403
 *   PERMISSION_DENIED, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 500 INTERNAL).
 *
 * Scripts: `POST /__scripts { key, turns }`; a request whose contents contain
 * `SCRIPT:<key>` is answered by turn N = the number of `model` turns in it. A turn is
 * `{ functionCalls?: [{ name, args }], text?, status?, usage? }` (usage overrides the
 * usageMetadata fields). `GET /__requests` lists what was received; DELETE clears it.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface GoogleTurn {
  functionCalls?: Array<{ name: string; args: Record<string, unknown> }>;
  text?: string;
  status?: number;
  usage?: Record<string, number>;
}

type Part = { text?: string; functionCall?: { name: string; args?: unknown }; functionResponse?: { name: string; response: unknown }; thought?: boolean };
interface Content {
  role?: "user" | "model";
  parts: Part[];
}

const STATUS: Record<number, string> = { 400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE" };

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function startGoogle(): Promise<{ url: string; close(): Promise<void> }> {
  const requests: unknown[] = [];
  const scripts = new Map<string, GoogleTurn[]>();
  let seq = 0;
  const send = (res: ServerResponse, status: number, value: unknown) => res.writeHead(status, { "content-type": "application/json; charset=UTF-8" }).end(JSON.stringify(value));
  const error = (res: ServerResponse, code: number, message: string) => send(res, code, { error: { code, message, status: STATUS[code] ?? "UNKNOWN" } });

  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/__requests") {
        if (req.method === "DELETE") requests.length = 0;
        send(res, 200, requests);
        return;
      }
      if (url.pathname === "/__scripts" && req.method === "POST") {
        const script = JSON.parse(await readBody(req)) as { key: string; turns: GoogleTurn[] };
        scripts.set(script.key, script.turns);
        res.writeHead(204).end();
        return;
      }
      const route = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)$/.exec(url.pathname);
      if (!route || req.method !== "POST") {
        error(res, 404, `Requested entity was not found: ${req.method} ${url.pathname}`);
        return;
      }
      const [, model, method] = route as unknown as [string, string, string];
      const raw = await readBody(req);
      const key = (req.headers["x-goog-api-key"] as string | undefined) ?? url.searchParams.get("key") ?? undefined;
      requests.push({ path: url.pathname, headers: { "x-goog-api-key": req.headers["x-goog-api-key"] ?? null, authorization: req.headers.authorization ?? null }, body: JSON.parse(raw || "null") });
      if (!key) {
        error(res, 403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.");
        return;
      }
      if (key.startsWith("bad-")) {
        error(res, 400, "API key not valid. Please pass a valid API key.");
        return;
      }
      const body = JSON.parse(raw) as { contents?: Content[]; systemInstruction?: Content; tools?: unknown[] };
      if (!Array.isArray(body.contents) || body.contents.length === 0) return error(res, 400, "* GenerateContentRequest.contents: contents is not specified");
      if (model.startsWith("missing-")) return error(res, 404, `models/${model} is not found for API version v1beta, or is not supported for generateContent.`);
      // A function call turn must be followed by as many function responses, as the API requires.
      for (let i = 0; i < body.contents.length; i++) {
        const calls = body.contents[i]!.parts.filter((p) => p.functionCall).length;
        if (calls === 0) continue;
        const responses = body.contents[i + 1]?.parts.filter((p) => p.functionResponse).length ?? 0;
        if (responses !== calls) {
          return error(res, 400, "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.");
        }
      }
      const all = JSON.stringify(body.contents);
      const lastUser = [...body.contents].reverse().find((c) => c.role !== "model");
      let parts: Part[] = [{ text: `gemini ${model} says: ${(lastUser?.parts ?? []).map((p) => p.text ?? "").join("").toUpperCase()}` }];
      let usageOverride: Record<string, number> = {};
      const scripted = /SCRIPT:([A-Za-z0-9_-]+)/.exec(all);
      if (scripted?.[1]) {
        const turns = scripts.get(scripted[1]);
        const n = body.contents.filter((c) => c.role === "model").length;
        const turn = turns?.[n];
        if (!turn) return error(res, 400, turns ? `script '${scripted[1]}' has no turn ${n}` : `no script '${scripted[1]}'`);
        if (turn.status) return error(res, turn.status, `scripted HTTP ${turn.status}`);
        parts = [...(turn.text ? [{ text: turn.text }] : []), ...(turn.functionCalls ?? []).map((c) => ({ functionCall: { name: c.name, args: c.args } }))];
        usageOverride = turn.usage ?? {};
      }
      const promptTokenCount = raw.length;
      const candidatesTokenCount = JSON.stringify(parts).length;
      const usageMetadata: Record<string, number> = { promptTokenCount, candidatesTokenCount, totalTokenCount: promptTokenCount + candidatesTokenCount, ...usageOverride };
      usageMetadata.totalTokenCount = (usageMetadata.promptTokenCount ?? 0) + (usageMetadata.candidatesTokenCount ?? 0) + (usageMetadata.thoughtsTokenCount ?? 0);
      const answer = {
        candidates: [{ content: { role: "model", parts }, finishReason: "STOP", index: 0 }],
        usageMetadata,
        modelVersion: model,
        responseId: `resp-${++seq}`,
      };
      if (method === "generateContent") {
        send(res, 200, answer);
        return;
      }
      if (url.searchParams.get("alt") !== "sse") return error(res, 400, "streamGenerateContent: this test server answers alt=sse only");
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`data: ${JSON.stringify(answer)}\r\n\r\n`);
    } catch (err) {
      error(res, 400, `Invalid JSON payload received. ${String(err)}`);
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}
