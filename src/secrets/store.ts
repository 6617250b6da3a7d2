/**
 * Org secrets in D1, encrypted (see ./crypto.ts). Values are write-only through every API:
 * routes can put, delete and list names, and only internal code (`readSecret`) decrypts.
 */
import { and, asc, eq } from "drizzle-orm";
import type { Db } from "../db/client";
import { orgSecrets } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { AppError } from "../errors";
import { normaliseHostList, type CredentialScope } from "../net/outbound";
import { forgetSecret } from "./cache";
import { decryptSecret, encryptSecret, KEY_VERSION, secretsKeyMaterial } from "./crypto";

export const SECRET_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
export const MAX_SECRET_BYTES = 64 * 1024;

export interface SecretInfo {
  name: string;
  /** Hosts the secret may be sent to as an outbound credential; empty: nowhere. */
  allowedHosts: string[];
  createdAt: number;
  updatedAt: number;
}

/** A secret's value with the hosts it may be sent to: what outbound callers get. */
export interface Credential extends CredentialScope {
  value: string;
}

/** Validates and normalises a host list given through the API (400 naming the bad entry). */
export function checkAllowedHosts(hosts: readonly string[]): string[] {
  try {
    return normaliseHostList(hosts);
  } catch (err) {
    throw new AppError("BAD_REQUEST", `allowedHosts: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function checkName(name: string): void {
  if (!SECRET_NAME.test(name)) {
    throw new AppError(
      "BAD_REQUEST",
      "secret names start with a letter and contain up to 128 letters, digits, '_', '.' or '-'",
    );
  }
}

/**
 * Creates or replaces a secret. The plaintext exists only in this call's memory.
 * `allowedHosts`: the hosts it may be sent to; omitted keeps an existing secret's list
 * (a new secret gets none: usable only inside the platform, e.g. webhook secrets).
 */
export async function putSecret(db: Db, env: Env, scope: OrgScope, name: string, value: string, allowedHosts?: readonly string[]): Promise<SecretInfo> {
  checkName(name);
  if (typeof value !== "string") throw new AppError("BAD_REQUEST", "secret value must be a string");
  if (new TextEncoder().encode(value).length > MAX_SECRET_BYTES) {
    throw new AppError("PAYLOAD_TOO_LARGE", `secret value exceeds ${MAX_SECRET_BYTES / 1024} KiB`);
  }
  const hosts = allowedHosts === undefined ? undefined : checkAllowedHosts(allowedHosts);
  const ciphertext = await encryptSecret(secretsKeyMaterial(env), scope.orgId, name, value);
  const now = Date.now();
  forgetSecret(scope.orgId, name);
  const [row] = await db
    .insert(orgSecrets)
    .values({ orgId: scope.orgId, name, ciphertext, keyVersion: KEY_VERSION, allowedHosts: hosts ?? [], createdAt: now, updatedAt: now })
    .onConflictDoUpdate({
      target: [orgSecrets.orgId, orgSecrets.name],
      set: { ciphertext, keyVersion: KEY_VERSION, updatedAt: now, ...(hosts !== undefined ? { allowedHosts: hosts } : {}) },
    })
    .returning(infoColumns);
  forgetSecret(scope.orgId, name);
  return row ? toInfo(row) : { name, allowedHosts: hosts ?? [], createdAt: now, updatedAt: now };
}

/** Replaces the hosts a secret may be sent to; null if the org has no such secret. */
export async function setSecretHosts(db: Db, scope: OrgScope, name: string, allowedHosts: readonly string[]): Promise<SecretInfo | null> {
  if (!SECRET_NAME.test(name)) return null;
  const hosts = checkAllowedHosts(allowedHosts);
  forgetSecret(scope.orgId, name);
  const [row] = await db
    .update(orgSecrets)
    .set({ allowedHosts: hosts, updatedAt: Date.now() })
    .where(and(eq(orgSecrets.orgId, scope.orgId), eq(orgSecrets.name, name)))
    .returning(infoColumns);
  forgetSecret(scope.orgId, name);
  return row ? toInfo(row) : null;
}

const infoColumns = { name: orgSecrets.name, allowedHosts: orgSecrets.allowedHosts, createdAt: orgSecrets.createdAt, updatedAt: orgSecrets.updatedAt };

function toInfo(row: { name: string; allowedHosts: string[] | null; createdAt: number; updatedAt: number }): SecretInfo {
  return { ...row, allowedHosts: row.allowedHosts ?? [] };
}

/** Deletes a secret; false if the org has none by that name. */
export async function deleteSecret(db: Db, scope: OrgScope, name: string): Promise<boolean> {
  if (!SECRET_NAME.test(name)) return false;
  forgetSecret(scope.orgId, name);
  const deleted = await db
    .delete(orgSecrets)
    .where(and(eq(orgSecrets.orgId, scope.orgId), eq(orgSecrets.name, name)))
    .returning({ name: orgSecrets.name });
  forgetSecret(scope.orgId, name);
  return deleted.length > 0;
}

/** The org's secret names and times, by name. Never values. */
export async function listSecrets(db: Db, scope: OrgScope): Promise<SecretInfo[]> {
  const rows = await db.select(infoColumns).from(orgSecrets).where(eq(orgSecrets.orgId, scope.orgId)).orderBy(asc(orgSecrets.name));
  return rows.map(toInfo);
}

/** Whether the org has a secret by that name (no decryption). */
export async function secretExists(db: Db, scope: OrgScope, name: string): Promise<boolean> {
  if (!SECRET_NAME.test(name)) return false;
  const row = await db.query.orgSecrets.findFirst({ columns: { name: true }, where: and(eq(orgSecrets.orgId, scope.orgId), eq(orgSecrets.name, name)) });
  return row !== undefined;
}

/**
 * The plaintext of a secret, or null if the org has none by that name. For the executor
 * and repository sync only, which take the org id from the run or repository they work on
 * (hence a plain string, not an `OrgScope`); never expose the result through an API.
 *
 * A row that does not decrypt (copied from another org or name, altered, or encrypted with
 * another master key) throws AppError INTERNAL rather than returning null, so a broken or
 * tampered secret is never mistaken for an absent one.
 */
export async function readSecret(db: Db, env: Env, orgId: string, name: string): Promise<string | null> {
  return (await readCredential(db, env, orgId, name))?.value ?? null;
}

/**
 * A secret's value and the hosts it may be sent to, or null. For code that sends it
 * somewhere: pass the result to `credentialFetch` (src/net/outbound.ts), which refuses any
 * host not on the list. Same rules as `readSecret`.
 */
export async function readCredential(db: Db, env: Env, orgId: string, name: string): Promise<Credential | null> {
  if (!SECRET_NAME.test(name)) return null;
  const material = secretsKeyMaterial(env);
  const row = await db.query.orgSecrets.findFirst({
    columns: { ciphertext: true, keyVersion: true, allowedHosts: true },
    where: and(eq(orgSecrets.orgId, orgId), eq(orgSecrets.name, name)),
  });
  if (!row) return null;
  if (row.keyVersion !== KEY_VERSION) {
    throw new AppError("INTERNAL", `org secret ${name} uses unknown key version ${row.keyVersion}`);
  }
  return { secret: name, value: await decryptSecret(material, orgId, name, row.ciphertext), allowedHosts: row.allowedHosts ?? [] };
}
