/**
 * Encryption of org secrets (AES-256-GCM, WebCrypto).
 *
 * - One master key per deployment (`SHAMAN_SECRETS_KEY`, base64 of 32 bytes).
 * - Each org gets its own key, derived with HKDF-SHA-256 (info names the org), so a
 *   ciphertext copied into another org's row cannot be decrypted there.
 * - The AAD binds a ciphertext to `${orgId}\0${name}`, so it cannot be moved to another
 *   secret name either; GCM's tag makes any tampering fail to decrypt.
 * - Stored form: base64(iv ‖ ciphertext ‖ tag) with a random 12-byte IV.
 */
import { config } from "../config";
import { AppError } from "../errors";

/** Stored in `org_secrets.key_version`; a rotation scheme would add version 2. */
export const KEY_VERSION = 1;

/**
 * INSECURE, local development only: used when `SHAMAN_SECRETS_KEY` is unset and
 * `SHAMAN_ENV` is not production, so `wrangler dev` and the tests work without setup.
 * It is public (it is in this file), so anything encrypted with it is effectively plain.
 */
export const INSECURE_DEV_SECRETS_KEY = btoa("shaman-dev-only-insecure-key-000");

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
// A fixed salt is fine for HKDF when the input key is already uniformly random; it only
// separates Shaman's derivations from any other use of the same master key.
const HKDF_SALT = new TextEncoder().encode("shaman-secrets-hkdf-salt:v1");
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The master key (base64) to use, refusing to run production without a real one. */
export function secretsKeyMaterial(env: Env): string {
  const key = env.SHAMAN_SECRETS_KEY?.trim();
  if (key) {
    masterKeyBytes(key);
    return key;
  }
  if (config(env).production) {
    throw new AppError("UNAVAILABLE", "org secrets are not configured (SHAMAN_SECRETS_KEY)");
  }
  return INSECURE_DEV_SECRETS_KEY;
}

function masterKeyBytes(material: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = fromBase64(material);
  } catch {
    throw new AppError("UNAVAILABLE", "SHAMAN_SECRETS_KEY is not valid base64 (expected base64 of 32 random bytes)");
  }
  if (bytes.length !== KEY_BYTES) {
    throw new AppError(
      "UNAVAILABLE",
      `SHAMAN_SECRETS_KEY must be base64 of ${KEY_BYTES} bytes, got ${bytes.length} bytes (generate with: openssl rand -base64 32)`,
    );
  }
  return bytes;
}

// HKDF plus an AES key import cost far more than the AES-GCM operation itself, and the
// executor reads the same org's secrets on every step, so derived keys are kept for the
// isolate's life. Bounded (oldest first out) so many orgs cannot grow it without limit.
// Keyed by the master material too, so a rotated or test-overridden key never reuses an
// old derivation.
const MAX_CACHED_KEYS = 1_000;
const orgKeys = new Map<string, Promise<CryptoKey>>();

/** The org's AES-GCM key (non-extractable), derived from the master key material. */
export function deriveOrgKey(material: string, orgId: string): Promise<CryptoKey> {
  const cacheKey = `${material}\u0000${orgId}`;
  const hit = orgKeys.get(cacheKey);
  if (hit) return hit;
  const derived = derive(material, orgId);
  if (orgKeys.size >= MAX_CACHED_KEYS) {
    const oldest = orgKeys.keys().next();
    if (!oldest.done) orgKeys.delete(oldest.value);
  }
  orgKeys.set(cacheKey, derived);
  // A failed derivation (bad key) must not stay cached as a rejected promise.
  derived.catch(() => orgKeys.delete(cacheKey));
  return derived;
}

async function derive(material: string, orgId: string): Promise<CryptoKey> {
  const master = await crypto.subtle.importKey("raw", masterKeyBytes(material), "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: HKDF_SALT, info: encoder.encode(`shaman-org-secret:v1:${orgId}`) },
    master,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

export function secretAad(orgId: string, name: string): Uint8Array {
  return encoder.encode(`${orgId}\u0000${name}`);
}

export async function encryptSecret(material: string, orgId: string, name: string, plaintext: string): Promise<string> {
  const key = await deriveOrgKey(material, orgId);
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: secretAad(orgId, name) }, key, encoder.encode(plaintext)),
  );
  const out = new Uint8Array(IV_BYTES + sealed.length);
  out.set(iv, 0);
  out.set(sealed, IV_BYTES);
  return toBase64(out);
}

/**
 * Decrypts a stored secret. Throws if it was not encrypted for this org and name with this
 * master key, or was altered: callers must not treat that like an absent secret.
 */
export async function decryptSecret(material: string, orgId: string, name: string, stored: string): Promise<string> {
  const key = await deriveOrgKey(material, orgId);
  let bytes: Uint8Array;
  try {
    bytes = fromBase64(stored);
  } catch {
    throw undecryptable(name);
  }
  if (bytes.length < IV_BYTES + TAG_BYTES) throw undecryptable(name);
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: bytes.subarray(0, IV_BYTES), additionalData: secretAad(orgId, name) },
      key,
      bytes.subarray(IV_BYTES),
    );
    return decoder.decode(plain);
  } catch {
    throw undecryptable(name);
  }
}

// INTERNAL: the problem body never shows the message, and a caller cannot fix this.
function undecryptable(name: string): AppError {
  return new AppError("INTERNAL", `org secret ${name} could not be decrypted (wrong key, or copied or altered)`);
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  // Chunks keep String.fromCharCode's argument list short for 64 KiB values.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
