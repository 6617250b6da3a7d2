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

const McpServerRef = z.union([
  z.string().min(1),
  z
    .object({
      name: z.string().min(1),
      url: z.string().url().optional(),
      /** Name of the org secret holding the server's bearer token. */
      secret: z.string().optional(),
      tools: z.array(z.string()).optional(),
    })
    .loose(),
]);

export const AgentFrontmatter = z.object({
  name: z.string().min(1).optional(),
  description: z.string().default(""),
  version: z.union([z.string(), z.number()]).transform(String).optional(),
  model: z.string().min(1).optional(),
  temperature: z.number().min(0).max(2).optional(),
  maxTokens: z.number().int().positive().optional(),
  exposed: z.boolean().default(false),
  tools: z.array(z.string()).default([]),
  mcpServers: z.array(McpServerRef).default([]),
  allowedAgents: z.union([z.literal("*"), z.array(z.string())]).default([]),
  tags: z.array(z.string()).default([]),
  maxIterations: z.number().int().positive().max(100).default(10),
  contextScope: z.string().optional(),
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
