/**
 * `agents.json` at a repository's root: names that callers in that repository use for other
 * agents. An alias points either to an external A2A agent (URL, optionally with the name of
 * an org secret holding its bearer token) or to an agent of the repository (or of another
 * repository of the org, as `repo-name/Agent`).
 *
 *   {
 *     "agents": {
 *       "Translator": { "url": "https://translate.example.com/a2a", "secret": "TRANSLATE_TOKEN" },
 *       "Check": { "path": "tools/ValidateData/prompt.md", "description": "validates a record" },
 *       "Summary": "Summarize",                       // shorthand: path
 *       "Weather": "https://weather.example.com/a2a"  // shorthand: external
 *     }
 *   }
 *
 * The bare map (the object under "agents" at the top level) is accepted too. The wrapped form
 * is chosen when the top level has an "agents" key whose value is an object that is not itself
 * a target (has neither "url" nor "path"); so in the bare form an alias may be called "agents"
 * only if its target is written as an object.
 *
 * Parsing never throws: errors (the alias is not loaded) go to `problems`, harmless oddities
 * (unknown fields, which are ignored) to `warnings`. Both carry the line where known.
 */
import { z } from "zod";
import { agentNameFromPath, type FileProblem } from "./format";
import { outboundUrlProblem, type UrlPolicy } from "../net/url-policy";

export interface AliasEntry {
  alias: string;
  kind: "external" | "path";
  /** external: the A2A endpoint (or agent card) URL. */
  url?: string;
  /** external: name of the org secret holding the bearer token. */
  credentialSecret?: string;
  /**
   * path: one of `dir/Agent/prompt.md` (an agent file of the same repository), `Agent` (an
   * agent of the same repository) or `repo-name/Agent` (an agent of another repository).
   */
  target?: string;
  description: string;
}

export interface AgentsJsonResult {
  aliases: AliasEntry[];
  /** Entries (or the whole file) that could not be loaded. */
  problems: FileProblem[];
  /** Ignored oddities: unknown fields. Everything else still loaded. */
  warnings: FileProblem[];
}

export const ALIAS_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,127}$/;
export const SECRET_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
const AGENT_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,127}$/;
const REPO_NAME = /^[A-Za-z0-9._-]{1,100}$/;
export const MAX_ALIASES = 500;

/** True for an absolute http: or https: URL with a host. */
export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === "https:" || url.protocol === "http:") && url.hostname !== "";
  } catch {
    return false;
  }
}

const httpUrl = z.string().max(2048, "must be at most 2048 characters").refine(isHttpUrl, "must be an http(s) URL");

const description = z.string().max(2000, "must be at most 2000 characters").default("");

const ExternalTarget = z.object({
  url: httpUrl,
  secret: z.string().regex(SECRET_NAME, "must be a secret name (letters, digits, '_', '.', '-'; at most 128)").optional(),
  description,
});

/** Normalises a path target; returns an error message if it names no agent. */
function normalisePathTarget(raw: string): { target: string } | { error: string } {
  const target = raw.trim().replace(/^\.?\/+/, "");
  if (target.endsWith(".md")) {
    return agentNameFromPath(target)
      ? { target }
      : { error: `path '${raw}' is not an agent file (expected …/Agent/prompt.md, …/Agent/agent.md or …/Agent.md)` };
  }
  const parts = target.split("/");
  if (parts.length === 1 && AGENT_NAME.test(target)) return { target };
  if (parts.length === 2 && REPO_NAME.test(parts[0] ?? "") && AGENT_NAME.test(parts[1] ?? "")) return { target };
  return { error: `path '${raw}' must be an agent file path (…/Agent/prompt.md), 'Agent' or 'repo-name/Agent'` };
}

const PathTarget = z.object({
  path: z.string().min(1).max(500),
  description,
});

const KNOWN_FIELDS = new Set(["url", "secret", "description", "path"]);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function looksLikeTarget(value: Record<string, unknown>): boolean {
  return typeof value.url === "string" || typeof value.path === "string";
}

/** Line (1-based) of the character at `offset`. */
function lineAt(source: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < source.length; i++) if (source.charCodeAt(i) === 10) line++;
  return line;
}

/** The line of a JSON.parse error, from V8's "(line N column M)" or "at position N". */
function syntaxErrorLine(source: string, message: string): number | undefined {
  const lc = /\(line (\d+) column \d+\)/.exec(message);
  if (lc) return Number(lc[1]);
  const pos = /at position (\d+)/.exec(message);
  if (pos) return lineAt(source, Number(pos[1]));
  return undefined;
}

/**
 * The line of every object key of a (valid) JSON text, by key path (`["agents","Foo","url"]`
 * joined with NUL). A later duplicate key wins, as with JSON.parse.
 */
function keyLines(source: string): Map<string, number> {
  const lines = new Map<string, number>();
  const stack: { object: boolean; path: string[]; expectKey: boolean; lastKey: string | null }[] = [];
  let line = 1;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === "\n") line++;
    else if (c === '"') {
      const start = i;
      for (i++; i < source.length && source[i] !== '"'; i++) if (source[i] === "\\") i++;
      const top = stack[stack.length - 1];
      if (top?.object && top.expectKey) {
        const key = JSON.parse(source.slice(start, i + 1)) as string;
        lines.set([...top.path, key].join("\u0000"), line);
        top.lastKey = key;
        top.expectKey = false;
      }
    } else if (c === "{" || c === "[") {
      const parent = stack[stack.length - 1];
      const path = parent ? [...parent.path, parent.object ? (parent.lastKey ?? "") : "[]"] : [];
      stack.push({ object: c === "{", path, expectKey: c === "{", lastKey: null });
    } else if (c === "}" || c === "]") stack.pop();
    else if (c === ",") {
      const top = stack[stack.length - 1];
      if (top?.object) top.expectKey = true;
    }
  }
  return lines;
}

/** Parses a repository's `agents.json`. Never throws. */
/**
 * `policy`: the URL policy external aliases must obey (src/net/url-policy.ts); the default
 * is production's (https, public hosts), so only local development passes a looser one.
 */
export function parseAgentsJson(path: string, source: string, policy: UrlPolicy = { allowPrivateNetwork: false }): AgentsJsonResult {
  const aliases: AliasEntry[] = [];
  const problems: FileProblem[] = [];
  const warnings: FileProblem[] = [];
  const text = source.startsWith("\uFEFF") ? source.slice(1) : source;

  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const line = syntaxErrorLine(text, message);
    // V8 quotes the whole input in some messages: keep only the first clause.
    const short = message.split(/, "|\n/)[0] ?? message;
    problems.push({ path, message: `invalid JSON: ${short}`, ...(line ? { line } : {}) });
    return { aliases, problems, warnings };
  }
  if (!isPlainObject(raw)) {
    problems.push({ path, message: "agents.json must be a JSON object mapping alias names to targets", line: 1 });
    return { aliases, problems, warnings };
  }

  const lines = keyLines(text);
  const lineOf = (...keys: string[]) => lines.get(keys.join("\u0000"));
  const at = (line: number | undefined) => (line ? { line } : {});

  let map: Record<string, unknown>;
  let prefix: string[];
  const wrapped = raw.agents;
  if (isPlainObject(wrapped) && !looksLikeTarget(wrapped)) {
    map = wrapped;
    prefix = ["agents"];
    for (const key of Object.keys(raw)) {
      if (key !== "agents" && key !== "$schema") {
        warnings.push({ path, message: `unknown top-level field '${key}' (ignored)`, ...at(lineOf(key)) });
      }
    }
  } else if ("agents" in raw && !isPlainObject(wrapped) && typeof wrapped !== "string") {
    problems.push({ path, message: "'agents' must be an object mapping alias names to targets", ...at(lineOf("agents")) });
    return { aliases, problems, warnings };
  } else {
    map = raw;
    prefix = [];
    delete map.$schema;
  }

  for (const [alias, value] of Object.entries(map)) {
    const aliasLine = lineOf(...prefix, alias);
    const fail = (message: string, line = aliasLine) => problems.push({ path, message: `alias '${alias}': ${message}`, ...at(line) });
    if (!ALIAS_NAME.test(alias)) {
      fail("invalid alias name (a letter, then letters, digits, '_' or '-'; at most 128)");
      continue;
    }
    if (aliases.length >= MAX_ALIASES) {
      fail(`too many aliases (at most ${MAX_ALIASES}); ignored`);
      continue;
    }

    let entry: Record<string, unknown>;
    if (typeof value === "string") {
      entry = /^https?:\/\//i.test(value) ? { url: value } : { path: value };
    } else if (isPlainObject(value)) {
      entry = value;
    } else {
      fail("target must be a URL string, a path string or an object with 'url' or 'path'");
      continue;
    }

    const hasUrl = entry.url !== undefined;
    const hasPath = entry.path !== undefined;
    if (hasUrl && hasPath) {
      fail("has both 'url' and 'path'; an alias is either an external agent (url) or an agent of a repository (path)");
      continue;
    }
    if (!hasUrl && !hasPath) {
      fail("needs 'url' (an external A2A agent) or 'path' (an agent of a repository)");
      continue;
    }
    const fieldError = (issue: z.core.$ZodIssue | undefined) => {
      const field = issue?.path[0];
      const where = field !== undefined ? `'${String(field)}' ` : "";
      fail(`${where}${issue?.message ?? "invalid"}`, typeof field === "string" ? (lineOf(...prefix, alias, field) ?? aliasLine) : aliasLine);
    };

    if (hasUrl) {
      const parsed = ExternalTarget.safeParse(entry);
      if (!parsed.success) {
        fieldError(parsed.error.issues[0]);
        continue;
      }
      const urlProblem = outboundUrlProblem(parsed.data.url, policy);
      if (urlProblem) {
        fail(`'url' ${urlProblem}`, lineOf(...prefix, alias, "url") ?? aliasLine);
        continue;
      }
      aliases.push({
        alias,
        kind: "external",
        url: parsed.data.url,
        ...(parsed.data.secret ? { credentialSecret: parsed.data.secret } : {}),
        description: parsed.data.description,
      });
    } else {
      if ("secret" in entry) {
        fail("'secret' belongs to external (url) aliases only", lineOf(...prefix, alias, "secret") ?? aliasLine);
        continue;
      }
      const parsed = PathTarget.safeParse(entry);
      if (!parsed.success) {
        fieldError(parsed.error.issues[0]);
        continue;
      }
      const normalised = normalisePathTarget(parsed.data.path);
      if ("error" in normalised) {
        fail(normalised.error, lineOf(...prefix, alias, "path") ?? aliasLine);
        continue;
      }
      aliases.push({ alias, kind: "path", target: normalised.target, description: parsed.data.description });
    }
    if (isPlainObject(value)) {
      for (const key of Object.keys(value)) {
        if (!KNOWN_FIELDS.has(key)) {
          warnings.push({ path, message: `alias '${alias}': unknown field '${key}' (ignored)`, ...at(lineOf(...prefix, alias, key) ?? aliasLine) });
        }
      }
    }
  }
  return { aliases, problems, warnings };
}
