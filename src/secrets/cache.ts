/**
 * Isolate cache of decrypted org secrets for internal readers (executor, sync), so a warm
 * executor does not query D1 and decrypt on every step. Entries live at most TTL_MS: a
 * secret replaced or deleted through the API takes effect elsewhere within that time (in
 * this isolate at once, see `forgetSecret`). Absence is cached too, for the same time.
 */
import type { Db } from "../db/client";
import { readSecret } from "./store";

const TTL_MS = 60_000;
const MAX_ENTRIES = 5_000;
const cache = new Map<string, { value: string | null; expires: number }>();
const inflight = new Map<string, Promise<string | null>>();

export async function cachedSecret(db: Db, env: Env, orgId: string, name: string): Promise<string | null> {
  const key = `${orgId}\u0000${name}`;
  const now = Date.now();
  const hit = cache.get(key);
  if (hit && hit.expires > now) return hit.value;
  let pending = inflight.get(key);
  if (!pending) {
    // One D1 read per secret however many steps of a batch ask at once.
    pending = readSecret(db, env, orgId, name).finally(() => inflight.delete(key));
    inflight.set(key, pending);
  }
  const value = await pending;
  if (cache.size >= MAX_ENTRIES) cache.clear();
  cache.set(key, { value, expires: now + TTL_MS });
  return value;
}

export function forgetSecret(orgId: string, name: string): void {
  cache.delete(`${orgId}\u0000${name}`);
}

export function clearSecretCache(): void {
  cache.clear();
}
