/**
 * MCP tools for agents (issue 10): which servers an agent may use, the tools they offer the
 * model, and one bounded tool call. See docs/agents.md, "MCP servers".
 *
 *   agentMcpServers  the agent's `mcpServers` resolved against the org registry
 *   mcpToolset       the servers' tools (lists cached per server), namespaced, filtered
 *   mcpToolsForModel the tools as the AI SDK offers them (no execute: the run carries them out)
 *   callMcpTool      one call, bounded by its timeout; every failure is a result, never a throw
 *
 * Nothing here waits on a person: approvals (`requiresApproval`) are the caller's.
 */
import { jsonSchema, type ToolSet } from "ai";
import type { CallToolResult, Tool } from "@modelcontextprotocol/client";
import type { AgentFrontmatter, McpServerEntry } from "../agents/format";
import { config } from "../config";
import { db } from "../db/client";
import type { OrgScope } from "../db/scope";
import { outboundUrlProblem } from "../net/url-policy";
import type { CredentialScope } from "../net/outbound";
import { cachedCredential } from "../secrets/cache";
import { clearMcpConnections, connection, describeMcpError, refusedBeforeRunning, withConnection, type McpEra, type McpTarget } from "./client";
import { namespaceTools } from "./naming";
import { getMcpServersByName, secretsOf, type RegisteredMcpServer } from "./registry";

export interface McpServerSpec {
  name: string;
  url: string;
  /** `{ "Header-Name": "ORG_SECRET_NAME" }` */
  headers?: Record<string, string>;
  /** An org secret sent as `Authorization: Bearer <value>`. */
  bearerSecret?: string;
  /** The tools that may be used; absent: all. */
  tools?: string[];
  /** Tools that need a person's approval: raw tool names, namespaced names, or "*". */
  requireApproval?: string[];
  timeoutMs?: number;
}

export type JSONSchema = Record<string, unknown>;
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface McpTool {
  /** Namespaced, model-safe, unique: `<server>__<tool>`. */
  name: string;
  server: string;
  tool: string;
  description: string;
  inputSchema: JSONSchema;
  /** The server marks it `destructiveHint: true` (and not read-only). */
  destructive: boolean;
  requiresApproval: boolean;
  /** Annotated read-only or idempotent: safe to call again when the executor running it was lost. */
  rerunnable: boolean;
}

export type McpCallResult = { ok: true; result: Json } | { ok: false; error: string; transient: boolean; maybeExecuted?: boolean };

export const DEFAULT_MCP_TIMEOUT_MS = 30_000;
/** A tool list without a server-given `ttlMs` is kept this long. */
export const DEFAULT_TOOL_LIST_TTL_MS = 60_000;
const MAX_TOOL_LIST_TTL_MS = 24 * 3_600_000;
/** Listing is part of a turn: bounded tighter than a call. */
const MAX_LIST_TIMEOUT_MS = 15_000;
const MAX_RESULT_TEXT = 100_000;
const MAX_STRUCTURED_JSON = 100_000;
const MAX_DESCRIPTION = 2_000;
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

// ---- the agent's servers -------------------------------------------------------------------

const REGISTRY_TTL_MS = 10_000;
const registryCache = new Map<string, { rows: Promise<Map<string, RegisteredMcpServer>>; expires: number }>();

/** Forget cached registry reads (the registry routes call it after each write). */
export function forgetMcpRegistry(orgId?: string): void {
  if (orgId === undefined) registryCache.clear();
  else for (const key of registryCache.keys()) if (key.startsWith(`${orgId}\u0000`)) registryCache.delete(key);
}

function registered(env: Env, scope: OrgScope, names: string[]): Promise<Map<string, RegisteredMcpServer>> {
  const key = `${scope.orgId}\u0000${[...names].sort().join("\u0000")}`;
  const now = Date.now();
  const hit = registryCache.get(key);
  if (hit && hit.expires > now) return hit.rows;
  const rows = getMcpServersByName(db(env), scope, names);
  if (registryCache.size > 1_000) registryCache.clear();
  const entry = { rows, expires: now + REGISTRY_TTL_MS };
  registryCache.set(key, entry);
  rows.catch(() => {
    if (registryCache.get(key) === entry) registryCache.delete(key);
  });
  return rows;
}

/**
 * The agent-level `requireApproval` entries that concern `server`, as that server's entries:
 * `server/tool`, `server/*`, `server__tool` (the model's name), or a bare tool name (any
 * server's tool of that name). An entry with `/` or `__` names one server.
 */
function agentApprovalsFor(server: string, entries: readonly string[]): string[] {
  const out: string[] = [];
  for (const e of entries) {
    if (e === `${server}/*` || e === `${server}__*`) out.push("*");
    else if (e.startsWith(`${server}/`)) out.push(e.slice(server.length + 1));
    else if (e.startsWith(`${server}__`)) out.push(e, e.slice(server.length + 2));
    else if (!e.includes("/") && !e.includes("__")) out.push(e);
  }
  return out;
}

const union = (...lists: (readonly string[] | null | undefined)[]) => [...new Set(lists.flatMap((l) => l ?? []))];

/**
 * The MCP servers an agent may use: its inline servers and the org's registered servers it
 * names. A name the org has not registered, or a URL the outbound policy refuses, becomes
 * a problem (the server's tools are not offered; the caller tells the model).
 */
export async function agentMcpServers(
  env: Env,
  scope: OrgScope,
  frontmatter: Pick<AgentFrontmatter, "mcpServers"> & { requireApproval?: string[] },
): Promise<{ servers: McpServerSpec[]; problems: string[] }> {
  const entries: McpServerEntry[] = frontmatter.mcpServers ?? [];
  const approvals = frontmatter.requireApproval ?? [];
  const problems: string[] = [];
  const servers: McpServerSpec[] = [];
  const wanted = entries.filter((e) => e.registered).map((e) => e.name);
  let rows = new Map<string, RegisteredMcpServer>();
  let registryDown = false;
  if (wanted.length > 0) {
    try {
      rows = await registered(env, scope, wanted);
    } catch (err) {
      console.error(`mcp: reading the registry of ${scope.slug} failed: ${err instanceof Error ? err.message : String(err)}`);
      problems.push(`the org's MCP server registry could not be read; the servers ${wanted.map((n) => `'${n}'`).join(", ")} are unavailable this turn`);
      registryDown = true;
    }
  }
  const policy = { allowPrivateNetwork: !config(env).production };
  for (const entry of entries) {
    let spec: McpServerSpec;
    if (entry.registered) {
      const row = rows.get(entry.name);
      if (!row) {
        if (!registryDown) problems.push(`MCP server '${entry.name}' is not registered in this org (an admin registers it with PUT /mcp-servers/${entry.name}); its tools are not available`);
        continue;
      }
      const tools = row.tools && entry.tools ? entry.tools.filter((t) => row.tools!.includes(t)) : (entry.tools ?? row.tools ?? undefined);
      spec = {
        name: entry.name,
        url: row.url,
        ...(Object.keys(row.headers).length ? { headers: row.headers } : {}),
        ...(row.bearerSecret ? { bearerSecret: row.bearerSecret } : {}),
        ...(tools ? { tools } : {}),
        requireApproval: union(row.requireApproval, entry.requireApproval, agentApprovalsFor(entry.name, approvals)),
        ...((entry.timeoutMs ?? row.timeoutMs) ? { timeoutMs: (entry.timeoutMs ?? row.timeoutMs)! } : {}),
      };
      if (entry.headers || entry.bearerSecret) problems.push(`MCP server '${entry.name}' is registered: the agent's own headers for it are ignored`);
    } else {
      spec = {
        name: entry.name,
        url: entry.url!,
        ...(entry.headers ? { headers: entry.headers } : {}),
        ...(entry.bearerSecret ? { bearerSecret: entry.bearerSecret } : {}),
        ...(entry.tools ? { tools: entry.tools } : {}),
        requireApproval: union(entry.requireApproval, agentApprovalsFor(entry.name, approvals)),
        ...(entry.timeoutMs ? { timeoutMs: entry.timeoutMs } : {}),
      };
    }
    const urlProblem = outboundUrlProblem(spec.url, policy);
    if (urlProblem) {
      problems.push(`MCP server '${entry.name}': its url ${urlProblem}; its tools are not available`);
      continue;
    }
    servers.push(spec);
  }
  return { servers, problems };
}

// ---- credentials and targets ---------------------------------------------------------------

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The connection target of a server (its headers with the secrets' values), or why there is none. */
async function targetOf(env: Env, scope: OrgScope, spec: McpServerSpec): Promise<{ ok: true; target: McpTarget } | { ok: false; error: string }> {
  const urlProblem = outboundUrlProblem(spec.url, { allowPrivateNetwork: !config(env).production });
  if (urlProblem) return { ok: false, error: `MCP server '${spec.name}': its url ${urlProblem}` };
  const headers: Record<string, string> = {};
  const scopes: CredentialScope[] = [];
  const names = secretsOf(spec);
  const creds = await Promise.all(names.map((name) => cachedCredential(db(env), env, scope.orgId, name)));
  const byName = new Map(names.map((n, i) => [n, creds[i] ?? null]));
  for (const name of names) {
    const cred = byName.get(name);
    if (!cred) return { ok: false, error: `MCP server '${spec.name}' needs the org secret '${name}', which does not exist` };
    scopes.push({ secret: cred.secret, allowedHosts: cred.allowedHosts });
  }
  for (const [header, secret] of Object.entries(spec.headers ?? {})) headers[header] = byName.get(secret)!.value;
  if (spec.bearerSecret) headers.Authorization = `Bearer ${byName.get(spec.bearerSecret)!.value}`;
  const fingerprint = names.length ? await sha256Hex(JSON.stringify(Object.entries(headers).sort())) : "";
  return { ok: true, target: { key: `${scope.orgId}\u0000${spec.url}\u0000${fingerprint}`, url: spec.url, headers, scopes } };
}

// ---- tool lists ----------------------------------------------------------------------------

const MAX_TOOL_LISTS = 512;
const toolLists = new Map<string, { tools: Promise<Tool[]>; expires: number }>();

export function clearMcpCaches(): void {
  toolLists.clear();
  registryCache.clear();
  clearMcpConnections();
}

function listTools(target: McpTarget, timeoutMs: number): Promise<Tool[]> {
  const now = Date.now();
  const hit = toolLists.get(target.key);
  if (hit && hit.expires > now) return hit.tools;
  if (toolLists.size >= MAX_TOOL_LISTS) toolLists.clear();
  // Until it settles the pending list is shared; its own ttl applies once it has one.
  const entry = { tools: undefined as unknown as Promise<Tool[]>, expires: Number.POSITIVE_INFINITY };
  entry.tools = withConnection(target, timeoutMs, async (conn) => {
    // "refresh": this cache decides; the SDK's own copy only feeds its output validation.
    const result = await conn.client.listTools(undefined, { timeout: timeoutMs, cacheMode: "refresh" });
    const given = (result as { ttlMs?: unknown }).ttlMs;
    const ttl = typeof given === "number" && Number.isFinite(given) ? Math.min(Math.max(0, given), MAX_TOOL_LIST_TTL_MS) : DEFAULT_TOOL_LIST_TTL_MS;
    entry.expires = Date.now() + ttl;
    return result.tools;
  });
  toolLists.set(target.key, entry);
  entry.tools.catch(() => {
    if (toolLists.get(target.key) === entry) toolLists.delete(target.key);
  });
  return entry.tools;
}

function approvalMatches(list: readonly string[] | undefined, tool: string, name: string): boolean {
  return (list ?? []).some((e) => e === "*" || e === tool || e === name);
}

function modelSchema(schema: unknown): JSONSchema {
  const s = schema && typeof schema === "object" && !Array.isArray(schema) ? { ...(schema as JSONSchema) } : {};
  delete s.$schema;
  if (s.type !== "object") return { type: "object", properties: {} };
  if (!s.properties) s.properties = {};
  return s;
}

/**
 * The tools of `servers` the model may be offered. A server that is down, slow or answers
 * garbage is a problem (its tools are left out this turn), never a throw; so is an allowed
 * tool the server does not have.
 */
export async function mcpToolset(env: Env, scope: OrgScope, servers: McpServerSpec[]): Promise<{ tools: McpTool[]; problems: string[] }> {
  const problems: string[] = [];
  const listed = await Promise.all(
    servers.map(async (spec) => {
      const timeoutMs = Math.min(spec.timeoutMs ?? DEFAULT_MCP_TIMEOUT_MS, MAX_LIST_TIMEOUT_MS);
      try {
        const target = await targetOf(env, scope, spec);
        if (!target.ok) {
          problems.push(`${target.error}; its tools are not available`);
          return [];
        }
        const tools = await listTools(target.target, timeoutMs);
        let offered = tools;
        if (spec.tools) {
          const allowed = new Set(spec.tools);
          offered = tools.filter((t) => allowed.has(t.name));
          const have = new Set(tools.map((t) => t.name));
          const missing = spec.tools.filter((t) => !have.has(t));
          if (missing.length) problems.push(`MCP server '${spec.name}' has no tool ${missing.map((t) => `'${t}'`).join(", ")}`);
        }
        return offered.map((t) => ({ spec, tool: t }));
      } catch (err) {
        problems.push(`${describeMcpError(err, { server: spec.name, timeoutMs }).error}; its tools are not available this turn`);
        return [];
      }
    }),
  );
  const flat = listed.flat();
  const names = namespaceTools(flat.map(({ spec, tool }) => ({ server: spec.name, tool: tool.name })));
  const tools = flat.map(({ spec, tool }, i): McpTool => {
    const name = names[i]!;
    const annotations = tool.annotations ?? {};
    const destructive = annotations.destructiveHint === true && annotations.readOnlyHint !== true;
    const requiresApproval = destructive || approvalMatches(spec.requireApproval, tool.name, name);
    let description = (tool.description ?? tool.title ?? "").slice(0, MAX_DESCRIPTION);
    description = `${description}${description ? "\n\n" : ""}(Tool '${tool.name}' of the MCP server '${spec.name}'.${requiresApproval ? " A person must approve each call before it runs." : ""})`;
    const rerunnable = !destructive && (annotations.readOnlyHint === true || annotations.idempotentHint === true);
    return { name, server: spec.name, tool: tool.name, description, inputSchema: modelSchema(tool.inputSchema), destructive, requiresApproval, rerunnable };
  });
  return { tools, problems };
}

/** The tools as the AI SDK offers them to the model, without `execute`. */
export function mcpToolsForModel(tools: McpTool[]): ToolSet {
  const set: ToolSet = {};
  for (const t of tools) set[t.name] = { description: t.description, inputSchema: jsonSchema(t.inputSchema as Parameters<typeof jsonSchema>[0]) };
  return set;
}

// ---- one call ------------------------------------------------------------------------------

function clipText(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}… [truncated, ${text.length - max} more characters]` : text;
}

function contentText(content: CallToolResult["content"]): string[] {
  const out: string[] = [];
  for (const block of content ?? []) {
    const b = block as { type: string; text?: string; mimeType?: string; uri?: string; name?: string; resource?: { uri?: string; text?: string; mimeType?: string } };
    if (b.type === "text") out.push(b.text ?? "");
    else if (b.type === "image" || b.type === "audio") out.push(`[${b.type}${b.mimeType ? ` ${b.mimeType}` : ""}]`);
    else if (b.type === "resource_link") out.push(`[resource ${b.name ?? ""} ${b.uri ?? ""}]`.replace(/\s+/g, " "));
    else if (b.type === "resource") out.push(b.resource?.text ?? `[resource ${b.resource?.uri ?? ""}${b.resource?.mimeType ? ` ${b.resource.mimeType}` : ""}]`);
    else out.push(`[${String(b.type)}]`);
  }
  let total = 0;
  return out.map((t) => {
    const room = Math.max(0, MAX_RESULT_TEXT - total);
    total += t.length;
    return clipText(t, room);
  });
}

/** A tool result reduced to JSON the model reads: `{ content: [text…], structuredContent? }`. */
export function reduceToolResult(result: CallToolResult): Json {
  const out: { [key: string]: Json } = { content: contentText(result.content) };
  if (result.structuredContent !== undefined) {
    const json = JSON.stringify(result.structuredContent);
    if (json !== undefined && json.length <= MAX_STRUCTURED_JSON) out.structuredContent = JSON.parse(json) as Json;
    else out.structuredContentOmitted = `structured content of ${json?.length ?? 0} characters was too large`;
  }
  return out;
}

/**
 * Calls one tool once, bounded by `timeoutMs` (the server's, else 30 s), with
 * `_meta.traceparent`. A server that is down, slow or answers garbage, and a tool that
 * reports an error (`isError`), give `{ ok: false, error, transient }`; nothing throws.
 * `maybeExecuted`: the request may have reached the server (a timeout after sending).
 */
export async function callMcpTool(
  env: Env,
  scope: OrgScope,
  server: McpServerSpec,
  tool: string,
  args: Json,
  opts: { callId: string; traceparent: string; timeoutMs?: number },
): Promise<McpCallResult> {
  const timeoutMs = Math.max(1, Math.min(opts.timeoutMs ?? server.timeoutMs ?? DEFAULT_MCP_TIMEOUT_MS, 10 * 60_000));
  if (server.tools && !server.tools.includes(tool)) return { ok: false, error: `the tool '${tool}' of MCP server '${server.name}' is not allowed`, transient: false, maybeExecuted: false };
  if (args !== null && (typeof args !== "object" || Array.isArray(args))) return { ok: false, error: "tool arguments must be a JSON object", transient: false, maybeExecuted: false };
  let sent = false;
  try {
    const target = await targetOf(env, scope, server);
    if (!target.ok) return { ok: false, error: target.error, transient: false, maybeExecuted: false };
    const deadline = Date.now() + timeoutMs;
    const remaining = () => Math.max(1, deadline - Date.now());
    const result = await withConnection(target.target, timeoutMs, (conn) => {
      sent = true;
      return conn.client.callTool(
        { name: tool, arguments: (args ?? {}) as Record<string, unknown>, ...(TRACEPARENT.test(opts.traceparent) ? { _meta: { traceparent: opts.traceparent } } : {}) },
        { timeout: remaining() },
      ) as Promise<CallToolResult>;
    });
    if (result.isError) {
      const text = contentText(result.content).join("\n").trim();
      return { ok: false, error: `the tool '${tool}' of MCP server '${server.name}' failed: ${clipText(text || "(no message)", 4_000)}`, transient: false, maybeExecuted: true };
    }
    return { ok: true, result: reduceToolResult(result) };
  } catch (err) {
    const failure = describeMcpError(err, { server: server.name, timeoutMs });
    return { ok: false, ...failure, maybeExecuted: sent && !refusedBeforeRunning(err) };
  }
}

/** How the server was reached (era, protocol version, session): for tests and diagnostics. */
export async function mcpServerInfo(
  env: Env,
  scope: OrgScope,
  server: McpServerSpec,
): Promise<{ ok: true; era: McpEra; protocolVersion: string; sessionId: string | undefined } | { ok: false; error: string }> {
  const target = await targetOf(env, scope, server);
  if (!target.ok) return target;
  try {
    const conn = await connection(target.target, server.timeoutMs ?? DEFAULT_MCP_TIMEOUT_MS);
    return { ok: true, era: conn.era, protocolVersion: conn.protocolVersion, sessionId: conn.sessionId };
  } catch (err) {
    return { ok: false, error: describeMcpError(err, { server: server.name, timeoutMs: server.timeoutMs ?? DEFAULT_MCP_TIMEOUT_MS }).error };
  }
}
