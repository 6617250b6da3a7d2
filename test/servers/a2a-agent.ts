/**
 * External A2A agents for tests of the A2A client (src/a2a-client): a real `@a2a-js/sdk`
 * server (`DefaultRequestHandler` + `JsonRpcTransportHandler`, the v0.3 one from the SDK's
 * compat layer for the 0.3 agent) behind a plain `node:http` handler on 127.0.0.1.
 *
 * Agents, one path each (any leading segments are allowed, so a test can use a path of
 * its own: `/t123/echo` is the echo agent with its own card URL):
 *   {p}/echo      completes with the input: an artifact with a text part (the input) and a
 *                 data part `{ echo: input, length }`
 *   {p}/fail      fails with the reason `cannot do that: <input>` (status message)
 *   {p}/ask       input-required with the question "What is your name?"; a message with
 *                 the same taskId completes it with "Hello, <answer>!"
 *   {p}/slow      working for ~2 s (SLOW_MS), then completes with "slow: <input>"
 *   {p}/nostream  as slow, but its card says `streaming: false`
 *   {p}/v03       served as protocol 0.3 (a v0.3 card, v0.3 JSON-RPC): completes after
 *                 ~0.5 s with "v03: <input>"; streaming
 *   {p}/elsewhere a card whose JSON-RPC interface is `elsewhereUrl` + `/a2a-elsewhere`
 *                 (another origin: the capture server)
 *   {p}/garbage   a good card; the endpoint answers 200 with HTML
 *   {p}/down      a good card; the endpoint answers 503
 *   {p}/hang      a good card; the endpoint never answers
 *   {p}/leaky     a good card; the endpoint answers a JSON-RPC error quoting the request's
 *                 Authorization and X-Shaman-Caller headers (a remote that echoes secrets)
 * Cards: GET {p}/{agent}/.well-known/agent-card.json (the interface URL is {p}/{agent}).
 *
 * Every request is recorded (GET /__log): path, JSON-RPC method, headers, the send
 * configuration, so tests can assert what the client sent and what it did not.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { AgentCard as AgentCardCodec, formatSSEErrorEvent, formatSSEEvent, Role, SSE_HEADERS, TaskState, type AgentCard, type Message, type Part, type Task } from "@a2a-js/sdk";
import { LegacyJsonRpcTransportHandler } from "@a2a-js/sdk/compat/v0_3/server";
import {
  AgentEvent,
  DefaultRequestHandler,
  defaultServerCallContextBuilder,
  InMemoryTaskStore,
  JsonRpcTransportHandler,
  UnauthenticatedUser,
  type AgentExecutor,
  type ExecutionEventBus,
  type RequestContext,
} from "@a2a-js/sdk/server";

export const SLOW_MS = 2_000;

export interface A2ALogEntry {
  method: string;
  path: string;
  /** The JSON-RPC method, for POSTs. */
  rpc?: string;
  headers: Record<string, string | string[] | undefined>;
  /** SendMessage's configuration as received (v1.0 `returnImmediately`, v0.3 `blocking`). */
  configuration?: unknown;
}

const AGENTS = ["echo", "fail", "ask", "slow", "nostream", "v03", "elsewhere", "garbage", "down", "hang", "leaky"] as const;
type AgentName = (typeof AGENTS)[number];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => new Date().toISOString();

function textPart(text: string): Part {
  return { content: { $case: "text", value: text }, metadata: undefined, filename: "", mediaType: "text/plain" };
}
function dataPart(value: unknown): Part {
  return { content: { $case: "data", value }, metadata: undefined, filename: "", mediaType: "application/json" };
}
function agentMessage(rc: RequestContext, text: string): Message {
  return { messageId: crypto.randomUUID(), contextId: rc.contextId, taskId: rc.taskId, role: Role.ROLE_AGENT, parts: [textPart(text)], metadata: undefined, extensions: [], referenceTaskIds: [] };
}
function textOf(m: Message | undefined): string {
  return (m?.parts ?? []).map((p) => (p.content?.$case === "text" ? p.content.value : "")).join("");
}

/** Publishes the task first (as the SDK requires on every call), then the given steps. */
function startTask(rc: RequestContext, bus: ExecutionEventBus): void {
  const task: Task = rc.task ?? {
    id: rc.taskId,
    contextId: rc.contextId,
    status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: now() },
    artifacts: [],
    history: [rc.userMessage],
    metadata: undefined,
  };
  bus.publish(AgentEvent.task(task));
}
function status(rc: RequestContext, bus: ExecutionEventBus, state: TaskState, text?: string): void {
  bus.publish(AgentEvent.statusUpdate({ taskId: rc.taskId, contextId: rc.contextId, status: { state, message: text === undefined ? undefined : agentMessage(rc, text), timestamp: now() }, metadata: undefined }));
}
function artifact(rc: RequestContext, bus: ExecutionEventBus, parts: Part[]): void {
  bus.publish(
    AgentEvent.artifactUpdate({
      taskId: rc.taskId,
      contextId: rc.contextId,
      artifact: { artifactId: "result", name: "result", description: "", parts, metadata: undefined, extensions: [] },
      append: false,
      lastChunk: true,
      metadata: undefined,
    }),
  );
}

const canceled = new Set<string>();

function executor(run: (rc: RequestContext, bus: ExecutionEventBus) => Promise<void>): AgentExecutor {
  return {
    execute: async (rc, bus) => {
      await run(rc, bus);
      bus.finished();
    },
    cancelTask: async (taskId, bus) => {
      canceled.add(taskId);
      bus.publish(AgentEvent.statusUpdate({ taskId, contextId: "", status: { state: TaskState.TASK_STATE_CANCELED, message: undefined, timestamp: now() }, metadata: undefined }));
      bus.finished();
    },
  };
}

async function slowly(rc: RequestContext, bus: ExecutionEventBus, ms: number, answer: string): Promise<void> {
  startTask(rc, bus);
  status(rc, bus, TaskState.TASK_STATE_WORKING, "working on it");
  await sleep(ms);
  if (canceled.has(rc.taskId)) return;
  artifact(rc, bus, [textPart(answer)]);
  status(rc, bus, TaskState.TASK_STATE_COMPLETED);
}

const BEHAVIOUR: Partial<Record<AgentName, (rc: RequestContext, bus: ExecutionEventBus) => Promise<void>>> = {
  echo: async (rc, bus) => {
    const input = textOf(rc.userMessage);
    startTask(rc, bus);
    artifact(rc, bus, [textPart(input), dataPart({ echo: input, length: input.length })]);
    status(rc, bus, TaskState.TASK_STATE_COMPLETED);
  },
  fail: async (rc, bus) => {
    startTask(rc, bus);
    status(rc, bus, TaskState.TASK_STATE_FAILED, `cannot do that: ${textOf(rc.userMessage)}`);
  },
  ask: async (rc, bus) => {
    startTask(rc, bus);
    if (!rc.task) {
      status(rc, bus, TaskState.TASK_STATE_INPUT_REQUIRED, "What is your name?");
      return;
    }
    status(rc, bus, TaskState.TASK_STATE_WORKING);
    artifact(rc, bus, [textPart(`Hello, ${textOf(rc.userMessage)}!`)]);
    status(rc, bus, TaskState.TASK_STATE_COMPLETED);
  },
  slow: (rc, bus) => slowly(rc, bus, SLOW_MS, `slow: ${textOf(rc.userMessage)}`),
  nostream: (rc, bus) => slowly(rc, bus, SLOW_MS, `nostream: ${textOf(rc.userMessage)}`),
  v03: (rc, bus) => slowly(rc, bus, 500, `v03: ${textOf(rc.userMessage)}`),
};

function v1Card(name: string, url: string, streaming: boolean, protocolVersion = "1.0"): AgentCard {
  return {
    name,
    description: `test agent ${name}`,
    supportedInterfaces: [{ url, protocolBinding: "JSONRPC", tenant: "", protocolVersion }],
    provider: undefined,
    version: "1.0.0",
    capabilities: { streaming, pushNotifications: false, extensions: [], extendedAgentCard: false },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ["text/plain"],
    defaultOutputModes: ["text/plain", "application/json"],
    skills: [],
    signatures: [],
  };
}

/** A card as a v0.3 server serves it (no `supportedInterfaces`). */
function v03Card(url: string): Record<string, unknown> {
  return {
    protocolVersion: "0.3.0",
    name: "v03",
    description: "test agent served as A2A 0.3",
    url,
    preferredTransport: "JSONRPC",
    version: "1.0.0",
    capabilities: { streaming: true, pushNotifications: false },
    defaultInputModes: ["text/plain"],
    defaultOutputModes: ["text/plain"],
    skills: [],
  };
}

function send(res: ServerResponse, status: number, body: unknown, type = "application/json"): void {
  res.writeHead(status, { "content-type": type });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function startA2AAgents(opts: { elsewhereUrl?: string } = {}): Promise<{ url: string; close(): Promise<void> }> {
  const log: A2ALogEntry[] = [];
  const handlers = new Map<AgentName, { v1: JsonRpcTransportHandler; legacy: LegacyJsonRpcTransportHandler }>();
  for (const name of Object.keys(BEHAVIOUR) as AgentName[]) {
    // The handler's own card decides streaming (resubscribe is refused without it) and the
    // versions it accepts; the card served on the wire carries the real URL.
    const card = v1Card(name, "http://127.0.0.1/", name !== "nostream", name === "v03" ? "0.3" : "1.0");
    const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), executor(BEHAVIOUR[name]!));
    handlers.set(name, { v1: new JsonRpcTransportHandler(handler), legacy: new LegacyJsonRpcTransportHandler(handler) });
  }
  const hanging = new Set<ServerResponse>();
  let base = "";

  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? "/", "http://agents");
      if (url.pathname === "/__log") return send(res, 200, log);
      const entry: A2ALogEntry = { method: req.method ?? "GET", path: url.pathname, headers: req.headers };
      log.push(entry);
      if (log.length > 10_000) log.splice(0, 5_000);

      const card = /^(.*\/)?([a-z0-9]+)\/\.well-known\/agent-card\.json$/.exec(url.pathname);
      if (card && req.method === "GET") {
        const name = card[2] as AgentName;
        if (!AGENTS.includes(name)) return send(res, 404, { error: "no such agent" });
        const rpcUrl = name === "elsewhere" ? `${opts.elsewhereUrl ?? base}/a2a-elsewhere` : `${base}${url.pathname.replace(/\/\.well-known\/agent-card\.json$/, "")}`;
        if (name === "v03") return send(res, 200, v03Card(rpcUrl));
        return send(res, 200, AgentCardCodec.toJSON(v1Card(name, rpcUrl, name !== "nostream")));
      }
      const name = url.pathname.split("/").pop() as AgentName;
      if (req.method !== "POST" || !AGENTS.includes(name)) return send(res, 404, { error: "not found" });
      const raw = await readBody(req);
      let body: { id?: unknown; method?: unknown; params?: { configuration?: unknown } };
      try {
        body = JSON.parse(raw);
      } catch {
        return send(res, 400, { jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } });
      }
      entry.rpc = typeof body.method === "string" ? body.method : undefined;
      entry.configuration = body.params?.configuration;
      if (name === "garbage") return send(res, 200, "<html><body>Welcome to nginx!</body></html>", "text/html");
      if (name === "down") return send(res, 503, "upstream unavailable", "text/plain");
      if (name === "leaky") {
        const quoted = `refused: authorization=${String(req.headers.authorization)} caller=${String(req.headers["x-shaman-caller"])}`;
        return send(res, 200, { jsonrpc: "2.0", id: body.id ?? null, error: { code: -32603, message: quoted } });
      }
      if (name === "hang") {
        hanging.add(res);
        res.on("close", () => hanging.delete(res));
        return;
      }
      const pair = handlers.get(name);
      if (!pair) return send(res, 404, { error: "not found" });
      const legacy = name === "v03";
      const context = defaultServerCallContextBuilder({
        extensions: undefined,
        user: new UnauthenticatedUser(),
        headers: req.headers,
        requestedVersion: legacy ? "0.3" : (req.headers["a2a-version"] as string | undefined) || "1.0",
      });
      const mapError = legacy ? LegacyJsonRpcTransportHandler.mapToLegacyJSONRPCError : JsonRpcTransportHandler.mapToJSONRPCError;
      const id = (body.id as string | number | null | undefined) ?? null;
      let result: unknown;
      try {
        result = legacy ? await pair.legacy.handle(body as Record<string, unknown>, context) : await pair.v1.handle(body as Record<string, unknown>, context);
      } catch (err) {
        return send(res, 200, { jsonrpc: "2.0", id, error: mapError(err) });
      }
      if (result && typeof (result as AsyncGenerator)[Symbol.asyncIterator] === "function") {
        res.writeHead(200, SSE_HEADERS);
        try {
          for await (const event of result as AsyncGenerator<unknown>) {
            if (res.destroyed) break;
            res.write(formatSSEEvent(event));
          }
        } catch (err) {
          if (!res.destroyed) res.write(formatSSEErrorEvent({ jsonrpc: "2.0", id, error: mapError(err) }));
        }
        res.end();
        return;
      }
      send(res, 200, result);
    })().catch((err) => {
      if (!res.headersSent) send(res, 500, { error: String(err) });
      else res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  base = `http://127.0.0.1:${port}`;
  return {
    url: base,
    close: () =>
      new Promise<void>((r) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
