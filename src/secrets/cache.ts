/**
 * Isolate cache of decrypted org secrets for internal readers (executor, sync), so a warm
 * executor does not query D1 and decrypt on every step. Entries live at most TTL_MS: a
 * secret replaced or deleted through the API takes effect elsewhere within that time (in
 * this isolate at once, see `forgetSecret`). Absence is cached too, for the same time.
 *
 * A read that started before a put or delete in this isolate never puts its (stale) value
 * back: every key has a generation, bumped by `forgetSecret` (called before and after each
 * write), and a read only fills the cache if the generation it started under still holds.
 * Readers that arrive after a write never join a read that started before it.
 */
import type { Db } from "../db/client";
import { readCredential, type Credential } from "./store";

const TTL_MS = 60_000;
const MAX_ENTRIES = 5_000;
const cache = new Map<string, { value: Credential | null; expires: number }>();
const inflight = new Map<string, { generation: number; pending: Promise<Credential | null> }>();
const generations = new Map<string, number>();
/** Bumped when the generation map itself is dropped: reads from before it never fill the cache. */
let epoch = 0;

const keyOf = (orgId: string, name: string) => `${orgId}\u0000${name}`;

/** The secret's value and allowed hosts (see `readCredential`), cached. */
export async function cachedCredential(db: Db, env: Env, orgId: string, name: string): Promise<Credential | null> {
  const key = keyOf(orgId, name);
  const now = Date.now();
  const hit = cache.get(key);
  if (hit && hit.expires > now) return hit.value;
  const generation = generations.get(key) ?? 0;
  const startEpoch = epoch;
  let read = inflight.get(key);
  if (!read || read.generation !== generation) {
    // One D1 read per secret however many steps of a batch ask at once.
    const pending = readCredential(db, env, orgId, name);
    const entry = { generation, pending };
    read = entry;
    inflight.set(key, entry);
    void pending.finally(() => {
      if (inflight.get(key) === entry) inflight.delete(key);
    }).catch(() => undefined);
  }
  const value = await read.pending;
  if (epoch === startEpoch && (generations.get(key) ?? 0) === read.generation) {
    if (cache.size >= MAX_ENTRIES) cache.clear();
    cache.set(key, { value, expires: now + TTL_MS });
  }
  return value;
}

/** The secret's value only, cached. */
export async function cachedSecret(db: Db, env: Env, orgId: string, name: string): Promise<string | null> {
  return (await cachedCredential(db, env, orgId, name))?.value ?? null;
}

/** Drops the cached value and makes reads already in flight unable to put theirs back. */
export function forgetSecret(orgId: string, name: string): void {
  const key = keyOf(orgId, name);
  cache.delete(key);
  inflight.delete(key);
  if (generations.size >= MAX_ENTRIES) clearSecretCache();
  generations.set(key, (generations.get(key) ?? 0) + 1);
}

export function clearSecretCache(): void {
  epoch++;
  cache.clear();
  inflight.clear();
  generations.clear();
}
