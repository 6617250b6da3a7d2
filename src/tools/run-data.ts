/**
 * Run data: a small key-value store shared by the steps of one run (`run_data_write`,
 * `run_data_read`, `run_data_query`, `run_data_list`, `run_data_delete`), kept in the run
 * object's synchronous KV next to the run record, so a write is part of the turn that made
 * it (atomic with it, never applied twice). Keys and tags are strings; values any JSON.
 */
import type { Json } from "../runs/types";

export const RUN_DATA_TOOLS: ReadonlySet<string> = new Set(["run_data_write", "run_data_read", "run_data_query", "run_data_list", "run_data_delete"]);

export const MAX_KEY_CHARS = 256;
export const MAX_VALUE_BYTES = 64 * 1024;
export const MAX_RUN_DATA_BYTES = 1024 * 1024;
export const MAX_ENTRIES = 1_000;
const PREFIX = "data:";
const TOTAL = "meta:runDataBytes";

interface Entry {
  value: Json;
  tags: string[];
  size: number;
  updatedAt: number;
}

type Outcome = { result: Json } | { error: string };

const KEY = /^[\w.:/-]{1,256}$/;

export function runDataTool(kv: SyncKvStorage, name: string, args: Json): Outcome {
  const a = (args && typeof args === "object" && !Array.isArray(args) ? args : {}) as Record<string, Json>;
  const key = typeof a.key === "string" ? a.key : null;
  const badKey = () => ({ error: `'key' must be 1 to ${MAX_KEY_CHARS} letters, digits or _ . : / -` });
  switch (name) {
    case "run_data_write": {
      if (!key || !KEY.test(key)) return badKey();
      if (a.value === undefined) return { error: "'value' is required" };
      const tags = Array.isArray(a.tags) ? a.tags.filter((t): t is string => typeof t === "string").slice(0, 20) : [];
      const size = new TextEncoder().encode(JSON.stringify(a.value)).byteLength;
      if (size > MAX_VALUE_BYTES) return { error: `value is ${size} bytes; at most ${MAX_VALUE_BYTES} per key` };
      const before = kv.get<Entry>(PREFIX + key);
      const total = (kv.get<number>(TOTAL) ?? 0) - (before?.size ?? 0) + size;
      if (total > MAX_RUN_DATA_BYTES) return { error: `run data would hold ${total} bytes; at most ${MAX_RUN_DATA_BYTES} per run` };
      if (!before && countEntries(kv) >= MAX_ENTRIES) return { error: `at most ${MAX_ENTRIES} keys per run` };
      kv.put<Entry>(PREFIX + key, { value: a.value, tags, size, updatedAt: Date.now() });
      kv.put(TOTAL, total);
      return { result: { key, written: true, size } };
    }
    case "run_data_read": {
      if (!key || !KEY.test(key)) return badKey();
      const e = kv.get<Entry>(PREFIX + key);
      return { result: e ? { key, found: true, value: e.value, tags: e.tags } : { key, found: false } };
    }
    case "run_data_delete": {
      if (!key || !KEY.test(key)) return badKey();
      const e = kv.get<Entry>(PREFIX + key);
      if (e) {
        kv.delete(PREFIX + key);
        kv.put(TOTAL, Math.max(0, (kv.get<number>(TOTAL) ?? 0) - e.size));
      }
      return { result: { key, deleted: Boolean(e) } };
    }
    case "run_data_list": {
      const keys: Json[] = [];
      for (const [k, e] of kv.list<Entry>({ prefix: PREFIX })) keys.push({ key: k.slice(PREFIX.length), tags: e.tags, size: e.size });
      return { result: { keys } };
    }
    case "run_data_query": {
      const tag = typeof a.tag === "string" ? a.tag : null;
      const prefix = typeof a.prefix === "string" ? a.prefix : "";
      const matches: Json[] = [];
      for (const [k, e] of kv.list<Entry>({ prefix: PREFIX + prefix })) {
        if (tag && !e.tags.includes(tag)) continue;
        matches.push({ key: k.slice(PREFIX.length), value: e.value, tags: e.tags });
        if (matches.length >= 100) break;
      }
      return { result: { matches } };
    }
    default:
      return { error: `unknown tool '${name}'` };
  }
}

function countEntries(kv: SyncKvStorage): number {
  let n = 0;
  for (const _ of kv.list({ prefix: PREFIX })) n++;
  return n;
}
