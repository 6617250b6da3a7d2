/**
 * Redaction for what the audit trail stores. Audit summaries outlive the requests they
 * describe and are readable by org admins, so anything that could be a credential is
 * masked before it is written, and the copy is bounded so one large payload cannot bloat
 * D1 rows. The patterns are a best effort: callers should still avoid passing secrets.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export const REDACTED = "[REDACTED]";

const MAX_STRING = 1_000;
const MAX_DEPTH = 8;
const MAX_ARRAY = 50;
const MAX_KEYS = 100;
const MAX_KEY_LENGTH = 200;
/** Rough budget (characters of strings plus one per node) for the whole copy. */
const MAX_TOTAL = 16_000;

// Compared against the key lowercased with `_`/`-` removed, so `api_key`, `apiKey`,
// `X-Api-Key` and `private-key` all match.
const SECRET_KEY = /password|passwd|passphrase|secret|token|authorization|cookie|apikey|credential|privatekey|session/;
// Token counts from model usage (`inputTokens`, `max_tokens`) are numbers, not secrets.
const COUNT_KEY = /tokens$|tokencount$/;
// A commit or content hash is pure hex but not a credential; keeping it makes sync and
// snapshot entries useful. Only exact SHA-1/SHA-256 lengths under these keys are kept.
const HASH_KEY = /^(commit|commitsha|sha|blobsha|treesha|head|parent|etag|digest|contenthash|hash)$/;
const HASH_VALUE = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/i;

interface Rule {
  re: RegExp;
  replace: string | ((match: string, ...groups: string[]) => string);
}

// Order matters: prefixed and structured forms first, so the generic blob rule never has
// to decide about them, and `key=value` pairs before bare values.
const RULES: Rule[] = [
  // Credentials in URLs: https://user:token@host
  { re: /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+:[^\s/@]+@/gi, replace: `$1${REDACTED}@` },
  // HTTP auth schemes. `Basic` also starts ordinary prose ("Basic setup"), so its value
  // must look like base64 of `user:password`.
  { re: /\bBearer\s+[A-Za-z0-9._~+/=-]{4,}/gi, replace: `Bearer ${REDACTED}` },
  {
    re: /\bBasic\s+([A-Za-z0-9+/]{8,}={0,2})/g,
    replace: (m, value: string) => (/[0-9+/=]/.test(value) || /[a-z].*[A-Z]/.test(value) ? `Basic ${REDACTED}` : m),
  },
  // `password=…`, `"api_key": "…"`, `token: …` in text, query strings and serialised JSON.
  {
    re: /((?:password|passwd|secret|token|api[_-]?key|access[_-]?key|authorization|auth|credential|private[_-]?key|session(?:[_-]?id)?|cookie)["']?\s*[:=]\s*["']?)[^\s"'&,;}]+/gi,
    replace: `$1${REDACTED}`,
  },
  // PEM private keys.
  { re: /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g, replace: REDACTED },
  // JWTs (the header is base64url JSON, so it starts with `eyJ`) and other three-part tokens.
  { re: /\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g, replace: REDACTED },
  { re: /\b[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}/g, replace: REDACTED },
  // Vendor and Shaman key formats.
  { re: /\bshk_[A-Za-z0-9_-]{4,}/g, replace: REDACTED },
  { re: /\bsk[-_][A-Za-z0-9_-]{8,}/g, replace: REDACTED },
  { re: /\b(?:gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,})/g, replace: REDACTED },
  { re: /\bglpat-[A-Za-z0-9_-]{10,}/g, replace: REDACTED },
  { re: /\bxox[abprs]-[A-Za-z0-9-]{10,}/g, replace: REDACTED },
  { re: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, replace: REDACTED },
  { re: /\bAIza[0-9A-Za-z_-]{30,}/g, replace: REDACTED },
  // Long hex or base64 blobs: random key material. Ordinary words, paths and identifiers
  // rarely mix upper case, lower case and digits over 32+ characters without a dot.
  {
    re: /[A-Za-z0-9+/_-]{32,}={0,2}/g,
    replace: (m) => (looksRandom(m) ? REDACTED : m),
  },
];

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

function looksRandom(s: string): boolean {
  // Run, user and org ids are UUIDs; an audit entry is useless without them. Only what is
  // left around them is judged.
  const body = s.replace(/=+$/, "").replace(UUID, "");
  if (body.length < 32) return false;
  // A path ("/repos/acme/agents/Name2/…") is made of short words; random base64 rarely has
  // more than a slash or two, so a many-segment string counts only if a segment is random.
  const segments = body.split("/").filter((p) => p.length > 0);
  if (segments.length > 3) return segments.some((p) => p.length >= 16 && looksRandomWord(p));
  return looksRandomWord(body);
}

function looksRandomWord(body: string): boolean {
  if (/^[0-9a-fA-F]+$/.test(body)) return true;
  const upper = /[A-Z]/.test(body);
  const lower = /[a-z]/.test(body);
  const digits = body.replace(/[^0-9]/g, "").length;
  if (upper && lower && digits > 0) return true;
  // Lower-case (or upper-case) alphanumeric tokens: random ones are digit-dense.
  return (upper || lower) && digits / body.length >= 0.2 && !body.includes("/");
}

function maskString(s: string): string {
  let out = s;
  for (const rule of RULES) {
    out = typeof rule.replace === "string" ? out.replace(rule.re, rule.replace) : out.replace(rule.re, rule.replace);
  }
  return out;
}

/**
 * Masks credentials in free text (error messages, log lines) and bounds its length.
 * Text is masked before it is truncated so that a cut never leaves half a token behind.
 */
export function redactText(s: string, max = MAX_STRING): string {
  let input = s;
  let cut = false;
  // Regexes over megabytes of text cost CPU for nothing we would keep; pre-cut generously
  // and drop the last (possibly partial) word so a split token cannot slip past a pattern.
  const scanLimit = max * 4;
  if (input.length > scanLimit) {
    input = input.slice(0, scanLimit).replace(/\S*$/, "");
    cut = true;
  }
  let out = maskString(input);
  if (out.length > max) {
    out = out.slice(0, max);
    cut = true;
  }
  return cut ? `${out}…[truncated ${s.length} chars]` : out;
}

function normaliseKey(key: string): string {
  return key.toLowerCase().replace(/[-_\s]/g, "");
}

function isSecretKey(key: string, value: unknown): boolean {
  const k = normaliseKey(key);
  if (!SECRET_KEY.test(k)) return false;
  return !(COUNT_KEY.test(k) && typeof value === "number");
}

interface State {
  budget: number;
  ancestors: WeakSet<object>;
}

/**
 * A deep, size-bounded, JSON-safe copy of `value` with credentials masked: values under
 * secret-ish keys become "[REDACTED]", credential-looking strings are masked anywhere,
 * long strings, deep nesting, long arrays and wide objects are cut with a marker.
 * Never throws: unreadable values become markers.
 */
export function redact(value: unknown): Json {
  return walk(value, 0, { budget: MAX_TOTAL, ancestors: new WeakSet() }, undefined);
}

function walk(value: unknown, depth: number, st: State, key: string | undefined): Json {
  if (st.budget <= 0) return "[truncated]";
  st.budget -= 1;
  switch (typeof value) {
    case "string": {
      if (key !== undefined && HASH_KEY.test(normaliseKey(key)) && HASH_VALUE.test(value)) {
        st.budget -= value.length;
        return value;
      }
      const out = redactText(value, Math.min(MAX_STRING, Math.max(st.budget, 16)));
      st.budget -= out.length;
      return out;
    }
    case "number":
      return Number.isFinite(value) ? value : null;
    case "boolean":
      return value;
    case "bigint":
      return value.toString();
    case "undefined":
    case "function":
    case "symbol":
      return null;
    case "object":
      break;
  }
  if (value === null) return null;
  const obj = value as object;
  if (st.ancestors.has(obj)) return "[circular]";
  if (depth >= MAX_DEPTH) return "[max depth]";
  try {
    st.ancestors.add(obj);
    return walkObject(obj, depth, st);
  } catch {
    return "[unreadable]";
  } finally {
    st.ancestors.delete(obj);
  }
}

function walkObject(obj: object, depth: number, st: State): Json {
  if (obj instanceof Date) return Number.isFinite(obj.getTime()) ? obj.toISOString() : null;
  if (obj instanceof ArrayBuffer || ArrayBuffer.isView(obj)) return `[binary ${obj.byteLength} bytes]`;
  if (obj instanceof Error) return walkError(obj, depth, st);
  if (obj instanceof Headers) return walkEntries(obj.entries(), depth, st);
  if (obj instanceof Map) return walkEntries(obj.entries(), depth, st);
  if (obj instanceof Set) return walkArray([...obj], depth, st);
  if (Array.isArray(obj)) return walkArray(obj, depth, st);
  return walkEntries(Object.entries(obj), depth, st);
}

function walkArray(arr: readonly unknown[], depth: number, st: State): Json[] {
  const out: Json[] = [];
  const n = Math.min(arr.length, MAX_ARRAY);
  for (let i = 0; i < n; i++) {
    if (st.budget <= 0) break;
    out.push(walk(arr[i], depth + 1, st, undefined));
  }
  if (out.length < arr.length) out.push(`[${arr.length - out.length} more items]`);
  return out;
}

function walkEntries(entries: Iterable<[unknown, unknown]>, depth: number, st: State): { [key: string]: Json } {
  const out: { [key: string]: Json } = {};
  let count = 0;
  let skipped = 0;
  for (const [rawKey, v] of entries) {
    if (count >= MAX_KEYS || st.budget <= 0) {
      skipped++;
      continue;
    }
    if (v === undefined || typeof v === "function" || typeof v === "symbol") continue;
    const key = String(rawKey).slice(0, MAX_KEY_LENGTH);
    st.budget -= key.length;
    out[key] = isSecretKey(key, v) && v !== null ? REDACTED : walk(v, depth + 1, st, key);
    count++;
  }
  if (skipped > 0) out["[truncated]"] = `${skipped} more keys`;
  return out;
}

function walkError(err: Error, depth: number, st: State): { [key: string]: Json } {
  const out: { [key: string]: Json } = { name: err.name, message: walk(err.message, depth + 1, st, "message") };
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" || typeof code === "number") out.code = code;
  if (err.cause !== undefined) out.cause = walk(err.cause, depth + 1, st, "cause");
  return out;
}
