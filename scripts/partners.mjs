// The demo org's partners, on 127.0.0.1, for `npm run demo` (and the bench):
//   - an MCP server: `@modelcontextprotocol/server-everything` (the reference server) over
//     Streamable HTTP, `node <pkg>/dist/index.js streamableHttp` on a free `PORT`, held to
//     the loopback interface (the package listens on every interface; a one-line preload
//     gives its `listen` the host 127.0.0.1);
//   - an external agent on a "partner platform": SanctionsScreen, served by a real
//     `@a2a-js/sdk` server (`DefaultRequestHandler` + `JsonRpcTransportHandler`, A2A v1.0
//     JSON-RPC, card at `<url>/.well-known/agent-card.json`) in plain node:http. It screens
//     the company names and IBANs it is sent against a small, fictional sanctions list and
//     answers at once: a text part (one sentence) and a data part.
// `registerPartners` registers both in an org: `PUT /mcp-servers/{name}` and
// `PUT /external-agents/{name}`.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { AgentCard as AgentCardCodec, formatSSEErrorEvent, formatSSEEvent, Role, SSE_HEADERS, TaskState } from "@a2a-js/sdk";
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore, JsonRpcTransportHandler, UnauthenticatedUser, defaultServerCallContextBuilder } from "@a2a-js/sdk/server";
import { freePort, http } from "./local.mjs";

/** The registered names the demo agents use (examples/agents: ValidateData, VendorCheck). */
export const PARTNER_NAMES = Object.freeze({ mcpServer: "everything", externalAgent: "SanctionsScreen" });

// ---- the MCP server ----------------------------------------------------------------------

// Makes a `listen(port[, callback])` without a host listen on 127.0.0.1 only.
const LOOPBACK_PRELOAD = `data:text/javascript,${encodeURIComponent(`
import net from "node:net";
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if ((typeof args[0] === "number" || typeof args[0] === "string") && typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  return listen.apply(this, args);
};`)}`;

/**
 * Starts server-everything over Streamable HTTP on 127.0.0.1. Resolves once it listens;
 * `url` is its MCP endpoint (`/mcp`), `close()` stops it.
 */
export async function startMcpEverything() {
  const require = createRequire(import.meta.url);
  const pkg = require.resolve("@modelcontextprotocol/server-everything/package.json");
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", LOOPBACK_PRELOAD, join(dirname(pkg), "dist/index.js"), "streamableHttp"], {
    env: { ...process.env, PORT: String(port) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let exited = false;
  child.on("exit", () => (exited = true));
  await new Promise((resolve, reject) => {
    let err = "";
    const timer = setTimeout(() => reject(new Error(`server-everything did not start: ${err}`)), 20_000);
    const onData = (chunk) => {
      err += chunk.toString();
      if (err.includes("listening on port")) {
        clearTimeout(timer);
        child.stderr.off("data", onData);
        child.stderr.resume();
        resolve();
      }
    };
    child.stderr.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server-everything exited (${code}): ${err}`));
    });
  });
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    close: () =>
      new Promise((resolve) => {
        if (exited) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
        setTimeout(() => {
          if (!exited) child.kill("SIGKILL");
          resolve();
        }, 3_000).unref();
      }),
  };
}

// ---- the external A2A agent --------------------------------------------------------------

/** A small, fictional consolidated sanctions list (names, aliases and IBANs). */
export const SANCTIONS_LIST = Object.freeze({
  name: "Partner Compliance consolidated list",
  asOf: "2026-11-01",
  entries: [
    { name: "Vostok Freight LLC", aliases: ["Vostok Freight"], ibans: ["LV80 BANK 0000 4351 9500 1"] },
    { name: "Kessler Arms Trading FZE", aliases: ["Kessler Arms"], ibans: [] },
    { name: "Oceanic Shell Holdings Ltd", aliases: ["Oceanic Shell"], ibans: ["MT84 MALT 0110 0001 2345 MTLC AST0 01S"] },
  ],
});

const COMPANY = /\b([A-Z][A-Za-z0-9&'-]*(?:[ \t]+[A-Z][A-Za-z0-9&'-]*){0,4}[ \t]+(?:Corporation|Corp|GmbH|AG|Ltd|Limited|Inc|LLC|FZE|SA|SAS|BV|plc))\b\.?/g;
const IBAN = /\b([A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,3})?)\b/g;
const squash = (s) => s.replace(/\s+/g, "").toUpperCase();

/** Screens a text: the company names and IBANs in it, and which of them the list holds. */
export function screen(text) {
  const names = [...new Set([...text.matchAll(COMPANY)].map((m) => m[1].replace(/\s+/g, " ")))];
  const ibans = [...new Set([...text.matchAll(IBAN)].map((m) => m[1].trim()))];
  const lower = text.toLowerCase();
  const matches = [];
  for (const e of SANCTIONS_LIST.entries) {
    const byName = [e.name, ...e.aliases].find((n) => lower.includes(n.toLowerCase()));
    const byIban = e.ibans.find((i) => ibans.some((x) => squash(x) === squash(i)));
    if (byName || byIban) matches.push({ entry: e.name, on: byName ? "name" : "iban", value: byName ?? byIban });
  }
  return { listed: matches.length > 0, screened: { names, ibans }, matches, list: SANCTIONS_LIST.name, asOf: SANCTIONS_LIST.asOf };
}

function sentence(r) {
  const what = [...r.screened.names, ...r.screened.ibans.map((i) => `IBAN ${i}`)];
  const subject = what.length > 0 ? what.join(", ") : "the details given (no company name or IBAN recognised)";
  if (r.listed) return `MATCH: ${r.matches.map((m) => `${m.entry} (by ${m.on})`).join(", ")} is on the ${r.list} of ${r.asOf}; screened ${subject}. Do not pay.`;
  return `No match: ${subject} screened against the ${r.list} of ${r.asOf} (${SANCTIONS_LIST.entries.length} entries).`;
}

const now = () => new Date().toISOString();
const textPart = (text) => ({ content: { $case: "text", value: text }, metadata: undefined, filename: "", mediaType: "text/plain" });
const dataPart = (value) => ({ content: { $case: "data", value }, metadata: undefined, filename: "", mediaType: "application/json" });
const textOf = (m) => (m?.parts ?? []).map((p) => (p.content?.$case === "text" ? p.content.value : "")).join("");

function card(url) {
  return {
    name: PARTNER_NAMES.externalAgent,
    description: `Screens a vendor (company names, IBANs) against the ${SANCTIONS_LIST.name}; answers whether it is listed.`,
    supportedInterfaces: [{ url, protocolBinding: "JSONRPC", tenant: "", protocolVersion: "1.0" }],
    provider: { organization: "Partner Compliance (demo partner platform)", url: "https://partner.example" },
    version: "1.0.0",
    capabilities: { streaming: true, pushNotifications: false, extensions: [], extendedAgentCard: false },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ["text/plain"],
    defaultOutputModes: ["text/plain", "application/json"],
    skills: [{ id: "screen", name: "Sanctions screening", description: "Is this vendor on the sanctions list?", tags: ["compliance", "sanctions"], examples: [], inputModes: [], outputModes: [], securityRequirements: [] }],
    signatures: [],
  };
}

const sanctionsExecutor = {
  async execute(rc, bus) {
    const result = screen(textOf(rc.userMessage));
    bus.publish(
      AgentEvent.task(
        rc.task ?? { id: rc.taskId, contextId: rc.contextId, status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: now() }, artifacts: [], history: [rc.userMessage], metadata: undefined },
      ),
    );
    bus.publish(
      AgentEvent.artifactUpdate({
        taskId: rc.taskId,
        contextId: rc.contextId,
        artifact: { artifactId: "screening", name: "screening", description: "", parts: [textPart(sentence(result)), dataPart(result)], metadata: undefined, extensions: [] },
        append: false,
        lastChunk: true,
        metadata: undefined,
      }),
    );
    bus.publish(AgentEvent.statusUpdate({ taskId: rc.taskId, contextId: rc.contextId, status: { state: TaskState.TASK_STATE_COMPLETED, message: undefined, timestamp: now() }, metadata: undefined }));
    bus.finished();
  },
  async cancelTask(taskId, bus) {
    bus.publish(AgentEvent.statusUpdate({ taskId, contextId: "", status: { state: TaskState.TASK_STATE_CANCELED, message: undefined, timestamp: now() }, metadata: undefined }));
    bus.finished();
  },
};

function send(res, status, body, type = "application/json") {
  res.writeHead(status, { "content-type": type });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
}

/**
 * Starts SanctionsScreen on 127.0.0.1: its A2A endpoint is `url` (`/sanctions`), its card
 * `url + "/.well-known/agent-card.json"`. `requests` counts the JSON-RPC calls by method.
 */
export async function startSanctionsScreen() {
  const handler = new JsonRpcTransportHandler(new DefaultRequestHandler(card("http://127.0.0.1/sanctions"), new InMemoryTaskStore(), sanctionsExecutor));
  const requests = {};
  let base = "";
  const server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? "/", "http://partner").pathname;
      if (req.method === "GET" && path === "/sanctions/.well-known/agent-card.json") return send(res, 200, AgentCardCodec.toJSON(card(`${base}/sanctions`)));
      if (req.method !== "POST" || path !== "/sanctions") return send(res, 404, { error: "not found" });
      const chunks = [];
      for await (const c of req) chunks.push(c);
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return send(res, 400, { jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } });
      }
      if (typeof body?.method === "string") requests[body.method] = (requests[body.method] ?? 0) + 1;
      const id = body?.id ?? null;
      const context = defaultServerCallContextBuilder({ extensions: undefined, user: new UnauthenticatedUser(), headers: req.headers, requestedVersion: req.headers["a2a-version"] || "1.0" });
      let result;
      try {
        result = await handler.handle(body, context);
      } catch (err) {
        return send(res, 200, { jsonrpc: "2.0", id, error: JsonRpcTransportHandler.mapToJSONRPCError(err) });
      }
      if (result && typeof result[Symbol.asyncIterator] === "function") {
        res.writeHead(200, SSE_HEADERS);
        try {
          for await (const event of result) {
            if (res.destroyed) break;
            res.write(formatSSEEvent(event));
          }
        } catch (err) {
          if (!res.destroyed) res.write(formatSSEErrorEvent({ jsonrpc: "2.0", id, error: JsonRpcTransportHandler.mapToJSONRPCError(err) }));
        }
        return res.end();
      }
      send(res, 200, result);
    })().catch((err) => {
      if (!res.headersSent) send(res, 500, { error: String(err) });
      else res.end();
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${server.address().port}`;
  return {
    url: `${base}/sanctions`,
    requests,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

// ---- both, and their registration --------------------------------------------------------

/** Starts both partners; `close()` stops both. */
export async function startPartners() {
  const [mcp, sanctions] = await Promise.all([startMcpEverything(), startSanctionsScreen()]);
  return { mcp, sanctions, close: () => Promise.all([mcp.close(), sanctions.close()]).then(() => undefined) };
}

/**
 * Registers the partners in an org (`PUT /mcp-servers/everything`, only its `get-sum` tool
 * allowed; `PUT /external-agents/SanctionsScreen`). Returns both stored entries.
 */
export async function registerPartners(port, { slug, apiKey, mcpUrl, sanctionsUrl }) {
  const put = async (path, body) => {
    const r = await http({ port, host: `${slug}.localhost`, path, method: "PUT", headers: { authorization: `Bearer ${apiKey}` }, body });
    if (r.status !== 200) throw new Error(`PUT ${path} failed: ${r.status} ${r.text}`);
    return r.json;
  };
  const mcpServer = (
    await put(`/mcp-servers/${PARTNER_NAMES.mcpServer}`, {
      url: mcpUrl,
      tools: ["get-sum"],
      description: "The MCP reference server (@modelcontextprotocol/server-everything), local; only get-sum is offered",
    })
  ).mcpServer;
  const externalAgent = (
    await put(`/external-agents/${PARTNER_NAMES.externalAgent}`, {
      url: sanctionsUrl,
      description: "Screens a vendor (company names, IBANs) against a partner platform's sanctions list; answers whether it is listed (external A2A agent)",
    })
  ).externalAgent;
  return { mcpServer, externalAgent };
}
