/**
 * The agent file format: YAML frontmatter (validated by zod) followed by the system prompt.
 *
 *   ---
 *   description: Extracts fields from an invoice
 *   exposed: true
 *   model: openai:gpt-4o-mini
 *   ---
 *   You are ...
 */
import { isMap, LineCounter, parseDocument } from "yaml";
import { z } from "zod";

// ---- MCP servers (see docs/agents.md, "MCP servers") -------------------------------------

/** An MCP server's name: the prefix of its tools' names (`<server>__<tool>`). */
export const MCP_SERVER_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
/** An HTTP header name (RFC 9110 token). */
export const MCP_HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$/;
/** An org secret's name (src/secrets/store.ts). */
const MCP_SECRET_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
/** Headers the MCP transport owns; a server entry may not set them. */
export const MCP_RESERVED_HEADERS = new Set([
  "accept",
  "content-type",
  "content-length",
  "host",
  "mcp-session-id",
  "mcp-protocol-version",
  "mcp-method",
  "mcp-name",
  "last-event-id",
  "traceparent",
  "tracestate",
]);
export const MCP_MAX_TIMEOUT_MS = 120_000;

/** What an agent file or the org registry may say about one MCP server. */
export const McpServerOptions = z
  .object({
    /** The server's Streamable HTTP endpoint. Absent: the org's registered server of that name. */
    url: z.string().url().max(2048).optional(),
    /** Request headers whose values are org secrets: `{ "X-Api-Key": "SECRET_NAME" }`. */
    headers: z
      .record(z.string(), z.string().regex(MCP_SECRET_NAME, "the value must be an org secret's name"))
      .superRefine((h, ctx) => {
        const names = Object.keys(h);
        if (names.length > 16) ctx.addIssue({ code: "custom", message: "at most 16 headers" });
        for (const name of names) {
          if (!MCP_HEADER_NAME.test(name)) ctx.addIssue({ code: "custom", message: `'${name}' is not a header name`, path: [name] });
          else if (MCP_RESERVED_HEADERS.has(name.toLowerCase())) ctx.addIssue({ code: "custom", message: `'${name}' is set by the MCP transport itself`, path: [name] });
        }
      })
      .optional(),
    /** An org secret sent as `Authorization: Bearer <value>`. */
    bearerSecret: z.string().regex(MCP_SECRET_NAME, "an org secret's name").optional(),
    /** Old spelling of `bearerSecret`. */
    secret: z.string().regex(MCP_SECRET_NAME, "an org secret's name").optional(),
    /** The server's tools the agent may use (absent: all of them). */
    tools: z.array(z.string().min(1).max(128)).max(200).optional(),
    /** Tools of this server that run only after a person approves the call (`"*"`: all). */
    requireApproval: z.array(z.string().min(1).max(128)).max(200).optional(),
    /** Bound on one tool call (default 30 s). */
    timeoutMs: z.number().int().min(100).max(MCP_MAX_TIMEOUT_MS).optional(),
  })
  .strict();

/**
 * One MCP server an agent names, normalised from any of the accepted forms:
 *   mcpServers: [github, { name: local, url: ..., tools: [...] }]      (list)
 *   mcpServers: { github: registered, local: { url: ..., headers: {...} } }   (map)
 * `registered`: no URL of its own, the org's registry entry of that name is used (the
 * agent's `tools`, `requireApproval` and `timeoutMs` narrow it).
 */
export interface McpServerEntry {
  name: string;
  registered: boolean;
  url?: string;
  headers?: Record<string, string>;
  bearerSecret?: string;
  tools?: string[];
  requireApproval?: string[];
  timeoutMs?: number;
}

function mcpEntry(name: string, options: z.infer<typeof McpServerOptions> | null): McpServerEntry {
  if (!options) return { name, registered: true };
  const { secret, bearerSecret, url, ...rest } = options;
  const bearer = bearerSecret ?? secret;
  return { name, registered: url === undefined, ...(url !== undefined ? { url } : {}), ...rest, ...(bearer !== undefined ? { bearerSecret: bearer } : {}) };
}

const McpServers = z.unknown().optional().transform((raw, ctx): McpServerEntry[] => {
  const issue = (message: string, path: (string | number)[] = []) => {
    ctx.addIssue({ code: "custom", message, path });
    return z.NEVER;
  };
  const options = (value: unknown, path: (string | number)[]) => {
    const parsed = McpServerOptions.safeParse(value);
    if (parsed.success) return parsed.data;
    const first = parsed.error.issues[0];
    return issue(first?.message ?? "invalid", [...path, ...(first?.path ?? [])].map((p) => (typeof p === "symbol" ? String(p) : p)));
  };
  const checkName = (name: unknown, path: (string | number)[]): string =>
    typeof name === "string" && MCP_SERVER_NAME.test(name) ? name : issue("an MCP server name starts with a letter and holds up to 64 letters, digits, '_' or '-'", path);
  const entries: McpServerEntry[] = [];
  if (raw === undefined || raw === null) return entries;
  if (Array.isArray(raw)) {
    raw.forEach((item, i) => {
      if (typeof item === "string") entries.push(mcpEntry(checkName(item, [i]), null));
      else if (item && typeof item === "object" && !Array.isArray(item)) {
        const { name, ...rest } = item as Record<string, unknown>;
        entries.push(mcpEntry(checkName(name, [i, "name"]), options(rest, [i])));
      } else issue("expected a server name or { name, url, headers, tools, requireApproval, timeoutMs }", [i]);
    });
  } else if (typeof raw === "object") {
    for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
      checkName(name, [name]);
      if (value === null || value === "registered") entries.push(mcpEntry(name, null));
      else if (typeof value === "object" && !Array.isArray(value)) entries.push(mcpEntry(name, options(value, [name])));
      else issue("expected \"registered\" or { url, headers, tools, requireApproval, timeoutMs }", [name]);
    }
  } else {
    return issue("expected a list of MCP servers or a map of name to server");
  }
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.name)) issue(`the MCP server '${e.name}' is named twice`);
    seen.add(e.name);
  }
  return entries;
});

export const AgentFrontmatter = z.object({
  name: z.string().min(1).optional(),
  description: z.string().default(""),
  version: z.union([z.string(), z.number()]).transform(String).optional(),
  model: z.string().min(1).optional(),
  temperature: z.number().min(0).max(2).optional(),
  maxTokens: z.number().int().positive().optional(),
  exposed: z.boolean().default(false),
  tools: z.array(z.string()).default([]),
  mcpServers: McpServers,
  /** Tools that run only after a person approves the call: `server__tool`, `server/tool`, `server/*` or a bare tool name. */
  requireApproval: z.array(z.string().min(1).max(200)).max(200).default([]),
  allowedAgents: z.union([z.literal("*"), z.array(z.string())]).default([]),
  tags: z.array(z.string()).default([]),
  maxIterations: z.number().int().positive().max(100).default(10),
  contextScope: z.string().optional(),
  /**
   * What a message to a context that already has a running task of this agent does (A2A):
   * `parallel` starts another task beside it; `reject` refuses the message; `interrupt`
   * cancels the running task(s), then starts; `enqueue` records the task and starts it when
   * the tasks before it in the context have settled (src/a2a/methods.ts; no worker waits).
   */
  concurrency: z.enum(["parallel", "reject", "interrupt", "enqueue"]).default("parallel"),
  agentcard: z.record(z.string(), z.unknown()).optional(),
});

export type AgentFrontmatter = z.infer<typeof AgentFrontmatter>;

const KNOWN_KEYS = new Set(Object.keys(AgentFrontmatter.shape));

export interface AgentDefinition {
  /** The agent's name, from its path (`Name/prompt.md`, `Name/agent.md` or `Name.md`). */
  name: string;
  path: string;
  frontmatter: AgentFrontmatter;
  /** The markdown body: the agent's system prompt. */
  systemPrompt: string;
}

export interface FileProblem {
  path: string;
  message: string;
  line?: number;
}

export type ParseResult =
  | { ok: true; agent: AgentDefinition; warnings: FileProblem[] }
  | { ok: false; error: FileProblem };

const IGNORED_MD = new Set(["README", "CHANGELOG", "LICENSE", "CONTRIBUTING", "CODE_OF_CONDUCT", "SECURITY"]);
const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,127}$/;

/** The agent name a repository path stands for, or null if the path is not an agent file. */
export function agentNameFromPath(path: string): string | null {
  const parts = path.split("/");
  const file = parts[parts.length - 1] ?? "";
  if (file === "prompt.md" || file === "agent.md") {
    const folder = parts[parts.length - 2];
    return folder && NAME.test(folder) ? folder : null;
  }
  if (file.endsWith(".md")) {
    const base = file.slice(0, -3);
    if (/^[A-Z]/.test(base) && NAME.test(base) && !IGNORED_MD.has(base.toUpperCase())) return base;
  }
  return null;
}

const FRONTMATTER = /^---[ \t]*\r?\n([\s\S]*?)\r?\n---[ \t]*(?:\r?\n|$)/;

/** Parses one agent file. A bad file yields a per-file error with the line where known. */
export function parseAgentFile(path: string, source: string): ParseResult {
  const name = agentNameFromPath(path);
  if (!name) return { ok: false, error: { path, message: "not an agent file name" } };
  const text = source.startsWith("\uFEFF") ? source.slice(1) : source;
  const match = FRONTMATTER.exec(text);
  // `Name.md` files must declare themselves with frontmatter; folder layouts may omit it.
  const folderLayout = path.endsWith("/prompt.md") || path.endsWith("/agent.md") || path === "prompt.md" || path === "agent.md";
  if (!match && !folderLayout) {
    return { ok: false, error: { path, message: "missing YAML frontmatter (--- ... ---)", line: 1 } };
  }
  const yamlText = match?.[1] ?? "";
  const body = match ? text.slice(match[0].length) : text;

  const lineCounter = new LineCounter();
  const doc = parseDocument(yamlText, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const pos = e?.pos ? lineCounter.linePos(e.pos[0]) : undefined;
    return {
      ok: false,
      error: { path, message: `invalid YAML frontmatter: ${e?.message.split("\n")[0] ?? "parse error"}`, ...(pos ? { line: pos.line + 1 } : {}) },
    };
  }
  const raw: unknown = doc.toJS() ?? {};
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return { ok: false, error: { path, message: "frontmatter must be a YAML mapping", line: 2 } };
  }
  const lineOfKey = (key: string): number | undefined => {
    if (!isMap(doc.contents)) return undefined;
    const pair = doc.contents.items.find((p) => (p.key as { value?: unknown } | null)?.value === key);
    const range = (pair?.key as { range?: [number, number, number] } | null)?.range;
    return range ? lineCounter.linePos(range[0]).line + 1 : undefined;
  };
  const parsed = AgentFrontmatter.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = issue?.path[0];
    const line = typeof key === "string" ? lineOfKey(key) : undefined;
    const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
    return { ok: false, error: { path, message: `invalid frontmatter: ${where}${issue?.message ?? "invalid"}`, ...(line ? { line } : {}) } };
  }
  const warnings: FileProblem[] = [];
  for (const key of Object.keys(raw)) {
    if (!KNOWN_KEYS.has(key)) {
      const line = lineOfKey(key);
      warnings.push({ path, message: `unknown frontmatter field '${key}' (ignored)`, ...(line ? { line } : {}) });
    }
  }
  const systemPrompt = body.trim();
  if (!systemPrompt) return { ok: false, error: { path, message: "the agent has no prompt (empty body)" } };
  return { ok: true, agent: { name, path, frontmatter: parsed.data, systemPrompt }, warnings };
}
