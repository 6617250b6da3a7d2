/**
 * Internal tokens: short-lived JWTs that Shaman signs for its own jobs and agent calls
 * (issue 9, item 7), verified before anything runs.
 *
 * - Keys: the secret `SHAMAN_JWKS`, a JWK set (Ed25519 `EdDSA` preferred, P-256 `ES256`
 *   accepted), each key with a `kid`. The first key signs and must be private; every key
 *   verifies, so two keys are live during a rotation (docs/deployment.md). Keys after the
 *   first may be public halves only (verify-only): `npm run jwks -- --add` keeps the old key
 *   that way, so a rotation needs only the public JWKS, never the old private key.
 * - Local development without `SHAMAN_JWKS` uses INSECURE_DEV_JWKS (public, in this file);
 *   production refuses to sign or verify without a real set, and refuses that key.
 * - Claims: `iss` = the platform (`SHAMAN_DOMAIN`, e.g. `shaman.example.com`: a name, not a
 *   URL; the public keys are at `https://<org>.<domain>/.well-known/jwks.json`), `aud` =
 *   the target (`agentAudience()` for a Shaman agent, the URL of an external agent),
 *   `org_id`, `run_id`, `step_id`, `depth`, optional `sub` (the original user), a random
 *   `jti`, `iat`, `exp` = `iat` + 5 minutes; header `alg`, `kid`, `typ: "JWT"`.
 * - Verification refuses, with an InternalTokenError naming the reason: a token that is not
 *   a compact JWS (`malformed`), `none` or any algorithm other than its key's (`alg`), an
 *   unknown or missing kid (`kid`), a bad signature (`signature`), expiry or an `iat` older
 *   than 5 minutes (`expired`, 30 s clock tolerance), another audience (`audience`) or
 *   issuer (`issuer`), claims not matching the expected org/run/step or missing
 *   (`claims`), and a `jti` the caller's `seen` ledger already holds (`replayed`).
 */
import { decodeProtectedHeader, importJWK, jwtVerify, SignJWT, type JWK } from "jose";
import { config } from "../config";
import { AppError } from "../errors";

/** Lifetime of an internal token. */
export const INTERNAL_TOKEN_TTL_SECONDS = 5 * 60;
/** Allowed clock skew between the signer and the verifier. */
export const INTERNAL_TOKEN_CLOCK_TOLERANCE_SECONDS = 30;

/**
 * INSECURE, local development only: the key set used when `SHAMAN_JWKS` is unset and
 * `SHAMAN_ENV` is not production, so `wrangler dev` and the tests work without setup.
 * Its private half is public (it is in this file): anyone can forge tokens signed by it.
 */
export const INSECURE_DEV_JWKS = JSON.stringify({
  keys: [
    {
      kty: "OKP",
      crv: "Ed25519",
      x: "fvIvNDB_QEQBkpF2DwuFy3WioLkzyWfq4GDP-BFqJGw",
      d: "iugRGnHbNXKmYy1beEGv_LM8DWSRtKV_ZLh7cfldELg",
      kid: "shaman-insecure-dev-key",
      alg: "EdDSA",
    },
  ],
});
const INSECURE_DEV_X = "fvIvNDB_QEQBkpF2DwuFy3WioLkzyWfq4GDP-BFqJGw";

export type InternalTokenAlg = "EdDSA" | "ES256";
const ALGS: readonly string[] = ["EdDSA", "ES256"];

export type InternalTokenReason =
  | "malformed"
  | "alg"
  | "kid"
  | "signature"
  | "expired"
  | "audience"
  | "issuer"
  | "claims"
  | "replayed";

/**
 * A refused internal token. An AppError (401) so a route that lets it escape answers in its
 * own form; `reason` is for the caller's audit row. Never carries the token itself.
 */
export class InternalTokenError extends AppError {
  readonly reason: InternalTokenReason;
  constructor(reason: InternalTokenReason, message: string) {
    super("UNAUTHORIZED", `internal token refused (${reason}): ${message}`, { reason });
    this.name = "InternalTokenError";
    this.reason = reason;
  }
}

/** What a token says, beyond the standard claims. */
export interface InternalTokenClaims {
  /** The target: `agentAudience(orgId, name)` for a Shaman agent, the URL of an external agent. */
  aud: string;
  orgId: string;
  runId: string;
  stepId: string;
  /** Call depth of the step the token is for (the root step is 0). */
  depth: number;
  /** The original user (principal id) the work is done for, if any. */
  sub?: string;
  /** The token's id, when the issuer records it (the run object: the current job of a step); random otherwise. */
  jti?: string;
}

export interface VerifiedInternalToken extends InternalTokenClaims {
  iss: string;
  jti: string;
  /** Seconds since the epoch. */
  iat: number;
  exp: number;
  kid: string;
  alg: InternalTokenAlg;
}

export interface ExpectedInternalToken {
  aud: string;
  orgId: string;
  runId?: string;
  stepId?: string;
}

export interface VerifyInternalTokenOptions {
  /**
   * The replay ledger (the caller keeps it, e.g. the run object): records `jti` and answers
   * true when it was already there. Called only for a token that passed every other check,
   * so a refused token never spends a jti. `exp` (seconds) says how long to remember it.
   */
  seen?: (jti: string, exp: number) => Promise<boolean> | boolean;
  /** The verifier's clock (tests). */
  now?: Date;
}

/** The audience of a call to a Shaman agent: `agent:<orgId>/<qualified name>`. */
export function agentAudience(orgId: string, qualifiedName: string): string {
  return `agent:${orgId}/${qualifiedName}`;
}

/** The `iss` of every internal token: the platform's domain (SHAMAN_DOMAIN). */
export function internalIssuer(env: Env): string {
  return config(env).domain;
}

interface LoadedKey {
  kid: string;
  alg: InternalTokenAlg;
  publicJwk: JWK;
  /** Only the first key of the set needs one (it signs); later keys may verify only. */
  privateKey: CryptoKey | null;
  publicKey: CryptoKey;
}

interface LoadedKeySet {
  /** The first signs. */
  keys: LoadedKey[];
  byKid: Map<string, LoadedKey>;
  usesDevKey: boolean;
}

// Importing keys (and the self-test) costs far more than a signature: once per isolate
// and per secret value, so a rotated secret never reuses the old set.
const MAX_CACHED_SETS = 4;
const loadedSets = new Map<string, Promise<LoadedKeySet>>();

function keySetMaterial(env: Env): string {
  const raw = env.SHAMAN_JWKS?.trim();
  if (raw) return raw;
  if (config(env).production) {
    throw new AppError("UNAVAILABLE", "internal tokens are not configured (SHAMAN_JWKS); create a key set with `npm run jwks`");
  }
  return INSECURE_DEV_JWKS;
}

async function keySet(env: Env): Promise<LoadedKeySet> {
  const material = keySetMaterial(env);
  let set = loadedSets.get(material);
  if (!set) {
    set = loadKeySet(material);
    if (loadedSets.size >= MAX_CACHED_SETS) {
      const oldest = loadedSets.keys().next();
      if (!oldest.done) loadedSets.delete(oldest.value);
    }
    loadedSets.set(material, set);
    // A bad set must not stay cached as a rejected promise.
    set.catch(() => loadedSets.delete(material));
  }
  const loaded = await set;
  if (loaded.usesDevKey && config(env).production) {
    throw new AppError("UNAVAILABLE", "SHAMAN_JWKS holds the built-in insecure development key; production refuses it");
  }
  return loaded;
}

function invalidSet(message: string): AppError {
  // Never echo the secret: only which key and what is wrong.
  return new AppError("UNAVAILABLE", `SHAMAN_JWKS is not a valid key set: ${message}`);
}

async function loadKeySet(material: string): Promise<LoadedKeySet> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(material);
  } catch {
    throw invalidSet("not JSON (expected {\"keys\": [...]}, as printed by `npm run jwks`)");
  }
  const list = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list) || list.length === 0) throw invalidSet('expected {"keys": [...]} with at least one key');
  const keys: LoadedKey[] = [];
  const byKid = new Map<string, LoadedKey>();
  let usesDevKey = false;
  for (const [i, entry] of list.entries()) {
    const jwk = entry as JWK;
    const kid = typeof jwk?.kid === "string" && jwk.kid.length > 0 ? jwk.kid : null;
    if (!kid) throw invalidSet(`key #${i} has no kid`);
    if (byKid.has(kid)) throw invalidSet(`kid ${kid} appears twice`);
    let alg: InternalTokenAlg;
    if (jwk.kty === "OKP" && jwk.crv === "Ed25519" && (jwk.alg === undefined || jwk.alg === "EdDSA")) alg = "EdDSA";
    else if (jwk.kty === "EC" && jwk.crv === "P-256" && (jwk.alg === undefined || jwk.alg === "ES256")) alg = "ES256";
    else throw invalidSet(`key ${kid} must be Ed25519 (kty OKP, alg EdDSA) or P-256 (kty EC, alg ES256)`);
    if (jwk.use !== undefined && jwk.use !== "sig") throw invalidSet(`key ${kid} has use ${String(jwk.use)}, expected sig`);
    if (i === 0 && typeof jwk.d !== "string") throw invalidSet(`the first key (${kid}) signs and needs its private part (d)`);
    if (jwk.d !== undefined && typeof jwk.d !== "string") throw invalidSet(`key ${kid} has an invalid d`);
    // Only the public members, picked one by one: nothing private can leak into the JWKS.
    const publicJwk: JWK =
      alg === "EdDSA"
        ? { kty: "OKP", crv: "Ed25519", x: jwk.x, kid, alg, use: "sig" }
        : { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y, kid, alg, use: "sig" };
    let privateKey: CryptoKey | null = null;
    let publicKey: CryptoKey;
    try {
      publicKey = (await importJWK(publicJwk, alg)) as CryptoKey;
      if (typeof jwk.d === "string") {
        privateKey = (await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d }, alg)) as CryptoKey;
        // The halves must belong together, or the set would sign tokens nobody can verify.
        const probe = new TextEncoder().encode(`shaman-jwks-self-test:${kid}`);
        const params = alg === "EdDSA" ? { name: "Ed25519" } : { name: "ECDSA", hash: "SHA-256" };
        const sig = await crypto.subtle.sign(params, privateKey, probe);
        if (!(await crypto.subtle.verify(params, publicKey, sig, probe))) throw new Error("mismatch");
      }
    } catch {
      throw invalidSet(`key ${kid} could not be imported, or its public part does not match its private part`);
    }
    if (alg === "EdDSA" && jwk.x === INSECURE_DEV_X) usesDevKey = true;
    const key = { kid, alg, publicJwk, privateKey, publicKey };
    keys.push(key);
    byKid.set(kid, key);
  }
  return { keys, byKid, usesDevKey };
}

/** The public halves of every key in the set (no `d`), for `/.well-known/jwks.json`. */
export async function publicJwks(env: Env): Promise<{ keys: JWK[] }> {
  const set = await keySet(env);
  return { keys: set.keys.map((k) => ({ ...k.publicJwk })) };
}

function nonEmpty(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

/** A new token for one job or call, signed by the first key of the set; valid 5 minutes. */
export async function signInternalToken(env: Env, claims: InternalTokenClaims, opts: { now?: Date } = {}): Promise<string> {
  if (!nonEmpty(claims.aud) || !nonEmpty(claims.orgId) || !nonEmpty(claims.runId) || !nonEmpty(claims.stepId)) {
    throw new AppError("INTERNAL", "internal token: aud, orgId, runId and stepId are required");
  }
  if (!Number.isSafeInteger(claims.depth) || claims.depth < 0) {
    throw new AppError("INTERNAL", "internal token: depth must be a non-negative integer");
  }
  const set = await keySet(env);
  const key = set.keys[0]!;
  const signingKey = key.privateKey!; // checked at load: the first key is private
  const iat = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  const jwt = new SignJWT({ org_id: claims.orgId, run_id: claims.runId, step_id: claims.stepId, depth: claims.depth })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
    .setIssuer(internalIssuer(env))
    .setAudience(claims.aud)
    .setJti(claims.jti ?? crypto.randomUUID())
    .setIssuedAt(iat)
    .setExpirationTime(iat + INTERNAL_TOKEN_TTL_SECONDS);
  if (claims.sub !== undefined) jwt.setSubject(claims.sub);
  return jwt.sign(signingKey);
}

/**
 * Checks a token against the key set and what the caller expects; returns its claims or
 * throws InternalTokenError. Configuration problems (no key set in production, a bad set)
 * throw AppError UNAVAILABLE instead: they are not the token's fault.
 */
export async function verifyInternalToken(
  env: Env,
  token: string,
  expected: ExpectedInternalToken,
  opts: VerifyInternalTokenOptions = {},
): Promise<VerifiedInternalToken> {
  const set = await keySet(env);
  if (typeof token !== "string" || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token)) {
    throw new InternalTokenError("malformed", "not a compact JWS");
  }
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new InternalTokenError("malformed", "unreadable header");
  }
  // `none` (unsigned), HMAC (a public key used as a shared secret) and anything else not
  // ours are refused before any key is looked at.
  if (typeof header.alg !== "string" || !ALGS.includes(header.alg)) {
    throw new InternalTokenError("alg", `algorithm ${typeof header.alg === "string" ? header.alg : "(none)"} is not accepted`);
  }
  const key = typeof header.kid === "string" ? set.byKid.get(header.kid) : undefined;
  if (!key) throw new InternalTokenError("kid", "unknown key id");
  if (header.alg !== key.alg) throw new InternalTokenError("alg", `key ${key.kid} signs with ${key.alg}, not ${header.alg}`);

  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, key.publicKey, {
      algorithms: [key.alg],
      issuer: internalIssuer(env),
      audience: expected.aud,
      clockTolerance: INTERNAL_TOKEN_CLOCK_TOLERANCE_SECONDS,
      maxTokenAge: INTERNAL_TOKEN_TTL_SECONDS,
      requiredClaims: ["iat", "exp", "jti", "org_id", "run_id", "step_id", "depth"],
      ...(opts.now ? { currentDate: opts.now } : {}),
    }));
  } catch (err) {
    throw refusal(err);
  }

  const claims = (message: string) => new InternalTokenError("claims", message);
  if (!nonEmpty(payload.jti)) throw claims("jti must be a non-empty string");
  if (typeof payload.exp !== "number" || typeof payload.iat !== "number") throw claims("iat and exp must be numbers");
  if (payload.exp - payload.iat > INTERNAL_TOKEN_TTL_SECONDS) throw claims("lifetime longer than allowed");
  if (payload.org_id !== expected.orgId) throw claims("org_id does not match");
  if (!nonEmpty(payload.run_id) || (expected.runId !== undefined && payload.run_id !== expected.runId)) throw claims("run_id does not match");
  if (!nonEmpty(payload.step_id) || (expected.stepId !== undefined && payload.step_id !== expected.stepId)) {
    throw claims("step_id does not match");
  }
  if (typeof payload.depth !== "number" || !Number.isSafeInteger(payload.depth) || payload.depth < 0) throw claims("depth must be a non-negative integer");
  if (payload.sub !== undefined && typeof payload.sub !== "string") throw claims("sub must be a string");

  if (opts.seen && (await opts.seen(payload.jti, payload.exp))) {
    throw new InternalTokenError("replayed", "jti already used");
  }
  return {
    iss: payload.iss as string,
    aud: expected.aud,
    orgId: payload.org_id,
    runId: payload.run_id,
    stepId: payload.step_id,
    depth: payload.depth,
    ...(payload.sub !== undefined ? { sub: payload.sub } : {}),
    jti: payload.jti,
    iat: payload.iat,
    exp: payload.exp,
    kid: key.kid,
    alg: key.alg,
  };
}

/** jose's verification errors, as reasons. */
function refusal(err: unknown): InternalTokenError {
  const code = (err as { code?: unknown })?.code;
  const claim = (err as { claim?: unknown })?.claim;
  switch (code) {
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return new InternalTokenError("signature", "signature does not verify");
    case "ERR_JWT_EXPIRED":
      return new InternalTokenError("expired", "token expired");
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return new InternalTokenError("alg", "algorithm not accepted");
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      if (claim === "aud") return new InternalTokenError("audience", "token is for another audience");
      if (claim === "iss") return new InternalTokenError("issuer", "token is from another issuer");
      return new InternalTokenError("claims", `claim ${typeof claim === "string" ? claim : "?"} is invalid`);
    default:
      return new InternalTokenError("malformed", "not a valid JWT");
  }
}
