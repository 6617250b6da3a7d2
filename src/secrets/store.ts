/**
 * Org secrets in D1, encrypted (see ./crypto.ts). Values are write-only through every API:
 * routes can put, delete and list names, and only internal code (`readSecret`) decrypts.
 */
import { and, asc, eq } from "drizzle-orm";
import type { Db } from "../db/client";
import { orgSecrets } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { AppError } from "../errors";
import { forgetSecret } from "./cache";
import { decryptSecret, encryptSecret, KEY_VERSION, secretsKeyMaterial } from "./crypto";

export const SECRET_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
export const MAX_SECRET_BYTES = 64 * 1024;

export interface SecretInfo {
  name: string;
  createdAt: number;
  updatedAt: number;
}

function checkName(name: string): void {
  if (!SECRET_NAME.test(name)) {
    throw new AppError(
      "BAD_REQUEST",
      "secret names start with a letter and contain up to 128 letters, digits, '_', '.' or '-'",
    );
  }
}

/** Creates or replaces a secret. The plaintext exists only in this call's memory. */
export async function putSecret(db: Db, env: Env, scope: OrgScope, name: string, value: string): Promise<SecretInfo> {
  checkName(name);
  if (typeof value !== "string") throw new AppError("BAD_REQUEST", "secret value must be a string");
  if (new TextEncoder().encode(value).length > MAX_SECRET_BYTES) {
    throw new AppError("PAYLOAD_TOO_LARGE", `secret value exceeds ${MAX_SECRET_BYTES / 1024} KiB`);
  }
  const ciphertext = await encryptSecret(secretsKeyMaterial(env), scope.orgId, name, value);
  const now = Date.now();
  const [row] = await db
    .insert(orgSecrets)
    .values({ orgId: scope.orgId, name, ciphertext, keyVersion: KEY_VERSION, createdAt: now, updatedAt: now })
    .onConflictDoUpdate({
      target: [orgSecrets.orgId, orgSecrets.name],
      set: { ciphertext, keyVersion: KEY_VERSION, updatedAt: now },
    })
    .returning({ name: orgSecrets.name, createdAt: orgSecrets.createdAt, updatedAt: orgSecrets.updatedAt });
  forgetSecret(scope.orgId, name);
  return row ?? { name, createdAt: now, updatedAt: now };
}

/** Deletes a secret; false if the org has none by that name. */
export async function deleteSecret(db: Db, scope: OrgScope, name: string): Promise<boolean> {
  if (!SECRET_NAME.test(name)) return false;
  const deleted = await db
    .delete(orgSecrets)
    .where(and(eq(orgSecrets.orgId, scope.orgId), eq(orgSecrets.name, name)))
    .returning({ name: orgSecrets.name });
  forgetSecret(scope.orgId, name);
  return deleted.length > 0;
}

/** The org's secret names and times, by name. Never values. */
export async function listSecrets(db: Db, scope: OrgScope): Promise<SecretInfo[]> {
  return db
    .select({ name: orgSecrets.name, createdAt: orgSecrets.createdAt, updatedAt: orgSecrets.updatedAt })
    .from(orgSecrets)
    .where(eq(orgSecrets.orgId, scope.orgId))
    .orderBy(asc(orgSecrets.name));
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
  if (!SECRET_NAME.test(name)) return null;
  const material = secretsKeyMaterial(env);
  const row = await db.query.orgSecrets.findFirst({
    columns: { ciphertext: true, keyVersion: true },
    where: and(eq(orgSecrets.orgId, orgId), eq(orgSecrets.name, name)),
  });
  if (!row) return null;
  if (row.keyVersion !== KEY_VERSION) {
    throw new AppError("INTERNAL", `org secret ${name} uses unknown key version ${row.keyVersion}`);
  }
  return decryptSecret(material, orgId, name, row.ciphertext);
}
