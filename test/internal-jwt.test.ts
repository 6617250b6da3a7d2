/**
 * Internal tokens (issue 9, item 7): signing, every refusal with its reason, the replay
 * ledger, rotation with two live keys, the public JWKS route, and production's refusals.
 */
import { env } from "cloudflare:workers";
import { base64url, createLocalJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import {
  agentAudience,
  INSECURE_DEV_JWKS,
  InternalTokenError,
  publicJwks,
  signInternalToken,
  verifyInternalToken,
  type InternalTokenClaims,
  type InternalTokenReason,
} from "../src/auth/internal-jwt";
import { AppError } from "../src/errors";
import { createApp } from "../workers/gateway";
import { worker } from "./helpers";

const ORG = "org-1";
const AUD = agentAudience(ORG, "demo/ValidateData");
const CLAIMS: InternalTokenClaims = { aud: AUD, orgId: ORG, runId: "run-1", stepId: "step-1", depth: 2, sub: "user:u1" };
const EXPECTED = { aud: AUD, orgId: ORG, runId: "run-1", stepId: "step-1" };
const DEV_KID = (JSON.parse(INSECURE_DEV_JWKS) as { keys: JWK[] }).keys[0]!.kid!;

// The tests run as local development without SHAMAN_JWKS: the built-in development key.
const devEnv = { ...env, SHAMAN_ENV: "development", SHAMAN_JWKS: undefined } as Env;
const withKeys = (keys: JWK[], extra: Partial<Env> = {}) => ({ ...devEnv, SHAMAN_JWKS: JSON.stringify({ keys }), ...extra }) as Env;

async function newKey(kid: string, alg: "EdDSA" | "ES256" = "EdDSA"): Promise<JWK> {
  const { privateKey } = alg === "EdDSA" ? await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true }) : await generateKeyPair("ES256", { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg };
}
const publicHalf = ({ d: _d, ...rest }: JWK): JWK => rest;

/** The reason a verification is refused with (fails the test if it is accepted). */
async function refusal(p: Promise<unknown>): Promise<InternalTokenReason> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(InternalTokenError);
    expect((err as AppError).code).toBe("UNAUTHORIZED");
    return (err as InternalTokenError).reason;
  }
  throw new Error("token was accepted");
}

async function appError(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    expect(err).not.toBeInstanceOf(InternalTokenError);
    return err as AppError;
  }
  throw new Error("no error");
}

/** A token with the expected claims, signed by whatever key and header the test chooses. */
function forged(claims: Record<string, unknown> = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ org_id: ORG, run_id: "run-1", step_id: "step-1", depth: 0, ...claims })
    .setIssuer("localhost")
    .setAudience(AUD)
    .setJti(crypto.randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(now + 300);
}

const b64json = (v: unknown) => base64url.encode(JSON.stringify(v));

describe("signing and verifying", () => {
  it("round trip: the claims come back, with kid, alg, issuer, a random jti and a 5-minute lifetime", async () => {
    const token = await signInternalToken(devEnv, CLAIMS);
    const other = await signInternalToken(devEnv, CLAIMS);
    const header = decodeProtectedHeader(token);
    expect(header).toEqual({ alg: "EdDSA", kid: DEV_KID, typ: "JWT" });
    const v = await verifyInternalToken(devEnv, token, EXPECTED);
    expect(v).toMatchObject({ ...CLAIMS, iss: "localhost", kid: DEV_KID, alg: "EdDSA" });
    expect(v.exp - v.iat).toBe(300);
    expect(Math.abs(v.iat - Date.now() / 1000)).toBeLessThan(60);
    expect((await verifyInternalToken(devEnv, other, EXPECTED)).jti).not.toBe(v.jti);
    // Run and step are optional in the expectation; org and audience are not.
    expect((await verifyInternalToken(devEnv, token, { aud: AUD, orgId: ORG })).stepId).toBe("step-1");
  });

  it("signs with ES256 keys too", async () => {
    const e = withKeys([await newKey("ec-1", "ES256")]);
    const token = await signInternalToken(e, CLAIMS);
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: "ES256", kid: "ec-1" });
    expect((await verifyInternalToken(e, token, EXPECTED)).alg).toBe("ES256");
  });

  it("refuses the `none` algorithm, HMAC with the public key, and an algorithm other than the key's", async () => {
    const payload = {
      iss: "localhost",
      aud: AUD,
      org_id: ORG,
      run_id: "run-1",
      step_id: "step-1",
      depth: 0,
      jti: crypto.randomUUID(),
      iat: Math.floor(Date.now() / 1000),
      exp: Math.floor(Date.now() / 1000) + 300,
    };
    for (const alg of ["none", "None", "NONE"]) {
      const unsigned = `${b64json({ alg, kid: DEV_KID, typ: "JWT" })}.${b64json(payload)}.`;
      expect(await refusal(verifyInternalToken(devEnv, unsigned, EXPECTED)), alg).toBe("alg");
    }
    expect(await refusal(verifyInternalToken(devEnv, `${b64json({ kid: DEV_KID })}.${b64json(payload)}.`, EXPECTED))).toBe("alg");

    // Algorithm confusion: HS256 keyed with the published public key.
    const x = (await publicJwks(devEnv)).keys[0]!.x!;
    const hmac = await new SignJWT(payload).setProtectedHeader({ alg: "HS256", kid: DEV_KID }).sign(new TextEncoder().encode(x));
    expect(await refusal(verifyInternalToken(devEnv, hmac, EXPECTED))).toBe("alg");

    // A real ES256 signature presented under the Ed25519 key's kid.
    const ec = await newKey("ec", "ES256");
    const es = await forged().setProtectedHeader({ alg: "ES256", kid: DEV_KID }).sign(await importJWK(ec, "ES256"));
    expect(await refusal(verifyInternalToken(devEnv, es, EXPECTED))).toBe("alg");
  });

  it("refuses a token signed by another key under the same kid", async () => {
    const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const token = await forged().setProtectedHeader({ alg: "EdDSA", kid: DEV_KID }).sign(privateKey);
    expect(await refusal(verifyInternalToken(devEnv, token, EXPECTED))).toBe("signature");
    // A genuine token with its payload swapped keeps its signature and still fails.
    const real = await signInternalToken(devEnv, CLAIMS);
    const [h, , s] = real.split(".");
    const p = b64json({ ...(JSON.parse(new TextDecoder().decode(base64url.decode(real.split(".")[1]!))) as object), org_id: "org-2" });
    expect(await refusal(verifyInternalToken(devEnv, `${h}.${p}.${s}`, { ...EXPECTED, orgId: "org-2" }))).toBe("signature");
  });

  it("refuses an unknown or missing kid", async () => {
    const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const unknown = await forged().setProtectedHeader({ alg: "EdDSA", kid: "no-such-key" }).sign(privateKey);
    expect(await refusal(verifyInternalToken(devEnv, unknown, EXPECTED))).toBe("kid");
    const none = await forged().setProtectedHeader({ alg: "EdDSA" }).sign(privateKey);
    expect(await refusal(verifyInternalToken(devEnv, none, EXPECTED))).toBe("kid");
  });

  it("refuses an expired token, with a small clock tolerance", async () => {
    const now = Date.now();
    const old = await signInternalToken(devEnv, CLAIMS, { now: new Date(now - 10 * 60_000) });
    expect(await refusal(verifyInternalToken(devEnv, old, EXPECTED))).toBe("expired");
    const fresh = await signInternalToken(devEnv, CLAIMS, { now: new Date(now) });
    // 10 s past `exp` is within the tolerance; 6 minutes after issue is not.
    await expect(verifyInternalToken(devEnv, fresh, EXPECTED, { now: new Date(now + 310_000) })).resolves.toBeTruthy();
    expect(await refusal(verifyInternalToken(devEnv, fresh, EXPECTED, { now: new Date(now + 6 * 60_000) }))).toBe("expired");
    // A token issued in the future is refused too.
    const future = await signInternalToken(devEnv, CLAIMS, { now: new Date(now + 5 * 60_000) });
    expect(await refusal(verifyInternalToken(devEnv, future, EXPECTED, { now: new Date(now) }))).toBe("claims");
  });

  it("refuses a token for another audience or from another issuer", async () => {
    const token = await signInternalToken(devEnv, CLAIMS);
    expect(await refusal(verifyInternalToken(devEnv, token, { ...EXPECTED, aud: agentAudience(ORG, "demo/Other") }))).toBe("audience");
    expect(await refusal(verifyInternalToken(devEnv, token, { ...EXPECTED, aud: agentAudience("org-2", "demo/ValidateData") }))).toBe("audience");
    const otherDeployment = { ...devEnv, SHAMAN_DOMAIN: "staging.example.com" } as Env;
    expect(await refusal(verifyInternalToken(otherDeployment, token, EXPECTED))).toBe("issuer");
  });

  it("refuses claims that do not match the expected org, run or step, or are missing", async () => {
    const token = await signInternalToken(devEnv, CLAIMS);
    expect(await refusal(verifyInternalToken(devEnv, token, { ...EXPECTED, orgId: "org-2" }))).toBe("claims");
    expect(await refusal(verifyInternalToken(devEnv, token, { ...EXPECTED, runId: "run-2" }))).toBe("claims");
    expect(await refusal(verifyInternalToken(devEnv, token, { ...EXPECTED, stepId: "step-2" }))).toBe("claims");
    // Correctly signed (the development key is public) but missing or bad claims.
    const devKey = await importJWK((JSON.parse(INSECURE_DEV_JWKS) as { keys: JWK[] }).keys[0]!, "EdDSA");
    const sign = (claims: Record<string, unknown>) => forged(claims).setProtectedHeader({ alg: "EdDSA", kid: DEV_KID }).sign(devKey);
    await expect(verifyInternalToken(devEnv, await sign({}), EXPECTED)).resolves.toBeTruthy();
    for (const bad of [{ org_id: undefined }, { step_id: undefined }, { depth: -1 }, { depth: 1.5 }, { depth: "1" }, { run_id: 7 }]) {
      expect(await refusal(verifyInternalToken(devEnv, await sign(bad), EXPECTED)), JSON.stringify(bad)).toBe("claims");
    }
    const longLived = await forged().setExpirationTime(Math.floor(Date.now() / 1000) + 3600).setProtectedHeader({ alg: "EdDSA", kid: DEV_KID }).sign(devKey);
    expect(await refusal(verifyInternalToken(devEnv, longLived, EXPECTED))).toBe("claims");
  });

  it("refuses a jti the ledger has seen, and a refused token spends no jti", async () => {
    const ledger = new Map<string, number>();
    const seen = (jti: string, exp: number) => {
      const had = ledger.has(jti);
      ledger.set(jti, exp);
      return had;
    };
    const token = await signInternalToken(devEnv, CLAIMS);
    expect(await refusal(verifyInternalToken(devEnv, token, { ...EXPECTED, aud: "agent:org-1/demo/Other" }, { seen }))).toBe("audience");
    expect(ledger.size).toBe(0);
    const first = await verifyInternalToken(devEnv, token, EXPECTED, { seen });
    expect(ledger.get(first.jti)).toBe(first.exp);
    expect(await refusal(verifyInternalToken(devEnv, token, EXPECTED, { seen }))).toBe("replayed");
    expect(await refusal(verifyInternalToken(devEnv, token, EXPECTED, { seen: async () => true }))).toBe("replayed");
    // A fresh token for the same step has its own jti.
    await expect(verifyInternalToken(devEnv, await signInternalToken(devEnv, CLAIMS), EXPECTED, { seen })).resolves.toBeTruthy();
  });

  it("refuses malformed tokens", async () => {
    const header = b64json({ alg: "EdDSA", kid: DEV_KID });
    const cases: [string, InternalTokenReason][] = [
      ["", "malformed"],
      ["abc", "malformed"],
      ["a.b", "malformed"],
      ["a.b.c", "malformed"],
      ["....", "malformed"],
      [`${header}.!!!.c2ln`, "malformed"],
      [`${header}.${b64json({ org_id: ORG })}.c2ln`, "signature"],
    ];
    for (const [token, reason] of cases) expect(await refusal(verifyInternalToken(devEnv, token, EXPECTED)), token).toBe(reason);
  });
});

describe("rotation", () => {
  it("a token of the old key verifies while both keys are in the set, not after the old one is removed", async () => {
    const oldKey = await newKey("key-old");
    const newer = await newKey("key-new");
    const before = withKeys([oldKey]);
    const during = withKeys([newer, publicHalf(oldKey)]); // what `npm run jwks -- --add` makes
    const after = withKeys([newer]);

    const oldToken = await signInternalToken(before, CLAIMS);
    expect(decodeProtectedHeader(oldToken).kid).toBe("key-old");
    expect((await verifyInternalToken(during, oldToken, EXPECTED)).kid).toBe("key-old");
    const newToken = await signInternalToken(during, CLAIMS);
    expect(decodeProtectedHeader(newToken).kid).toBe("key-new");
    expect((await verifyInternalToken(during, newToken, EXPECTED)).kid).toBe("key-new");
    // Both public keys are published during the rotation.
    expect((await publicJwks(during)).keys.map((k) => k.kid)).toEqual(["key-new", "key-old"]);

    expect(await refusal(verifyInternalToken(after, oldToken, EXPECTED))).toBe("kid");
    expect((await verifyInternalToken(after, newToken, EXPECTED)).kid).toBe("key-new");
    // A token of the new key is unknown to a verifier still on the old set.
    expect(await refusal(verifyInternalToken(before, newToken, EXPECTED))).toBe("kid");
  });

  it("refuses key sets that are not usable, without echoing key material", async () => {
    const good = await newKey("good");
    const other = await newKey("other");
    const cases: [string, string][] = [
      ["not json", "{keys:"],
      ["no keys", JSON.stringify({ keys: [] })],
      ["a bare key", JSON.stringify(good)],
      ["no kid", JSON.stringify({ keys: [{ ...good, kid: undefined }] })],
      ["duplicate kid", JSON.stringify({ keys: [good, { ...other, kid: "good" }] })],
      ["public first key", JSON.stringify({ keys: [publicHalf(good)] })],
      ["symmetric key", JSON.stringify({ keys: [{ kty: "oct", k: "c2VjcmV0LXNlY3JldC1zZWNyZXQ", kid: "hs", alg: "HS256" }] })],
      ["wrong alg for the curve", JSON.stringify({ keys: [{ ...good, alg: "ES256" }] })],
      ["encryption key", JSON.stringify({ keys: [{ ...good, use: "enc" }] })],
      ["halves that do not match", JSON.stringify({ keys: [{ ...good, x: other.x }] })],
    ];
    for (const [label, secret] of cases) {
      const e = { ...devEnv, SHAMAN_JWKS: secret } as Env;
      const err = await appError(signInternalToken(e, CLAIMS));
      expect(err.code, label).toBe("UNAVAILABLE");
      expect(err.message, label).toMatch(/^SHAMAN_JWKS is not a valid key set/);
      expect(err.message, label).not.toContain(good.d!);
      expect((await appError(verifyInternalToken(e, "a.b.c", EXPECTED))).code, label).toBe("UNAVAILABLE");
    }
  });
});

describe("GET /.well-known/jwks.json", () => {
  it("serves the public keys only, cacheable, and a token verifies against it with createLocalJWKSet", async () => {
    for (const url of ["http://localhost/.well-known/jwks.json", "http://acme.localhost/.well-known/jwks.json"]) {
      const res = await worker.fetch(url);
      expect(res.status, url).toBe(200);
      expect(res.headers.get("cache-control")).toBe("public, max-age=300");
      expect(res.headers.get("content-type")).toContain("application/json");
      const jwks = (await res.json()) as { keys: JWK[] };
      expect(jwks.keys).toHaveLength(1);
      expect(jwks.keys[0]).toEqual({ kty: "OKP", crv: "Ed25519", x: expect.any(String), kid: DEV_KID, alg: "EdDSA", use: "sig" });
      const token = await signInternalToken(env, CLAIMS);
      const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: "localhost", audience: AUD });
      expect(payload.org_id).toBe(ORG);
      expect(protectedHeader.kid).toBe(DEV_KID);
    }
  });

  it("serves every key of a configured set, never a private member", async () => {
    const a = await newKey("a");
    const b = await newKey("b", "ES256");
    const e = withKeys([a, b], { SHAMAN_ENV: "production" });
    const res = await createApp().request("https://shaman.example.com/.well-known/jwks.json", {}, e);
    expect(res.status).toBe(200);
    const text = await res.text();
    for (const key of [a, b]) expect(text).not.toContain(key.d!);
    const jwks = JSON.parse(text) as { keys: JWK[] };
    expect(jwks.keys.map((k) => Object.keys(k).sort())).toEqual([
      ["alg", "crv", "kid", "kty", "use", "x"],
      ["alg", "crv", "kid", "kty", "use", "x", "y"],
    ]);
    const token = await signInternalToken(e, CLAIMS);
    await expect(jwtVerify(token, createLocalJWKSet(jwks), { issuer: "localhost", audience: AUD })).resolves.toBeTruthy();
  });
});

describe("production", () => {
  const prod = { ...env, SHAMAN_ENV: "production", SHAMAN_JWKS: undefined } as Env;

  it("without SHAMAN_JWKS refuses to sign, to verify and to serve keys", async () => {
    const err = await appError(signInternalToken(prod, CLAIMS));
    expect(err.code).toBe("UNAVAILABLE");
    expect(err.message).toMatch(/not configured \(SHAMAN_JWKS\)/);
    // A token made with the development key is not accepted either.
    const devToken = await signInternalToken(devEnv, CLAIMS);
    expect((await appError(verifyInternalToken(prod, devToken, EXPECTED))).code).toBe("UNAVAILABLE");
    const res = await createApp().request("https://shaman.example.com/.well-known/jwks.json", {}, prod);
    expect(res.status).toBe(503);
    expect(res.headers.get("content-type")).toContain("application/problem+json");
  });

  it("refuses the built-in development key even when it is put in SHAMAN_JWKS", async () => {
    const e = { ...prod, SHAMAN_JWKS: INSECURE_DEV_JWKS } as Env;
    expect((await appError(signInternalToken(e, CLAIMS))).code).toBe("UNAVAILABLE");
    expect((await appError(publicJwks(e))).message).toMatch(/insecure development key/);
  });

  it("signs and verifies with a configured set", async () => {
    const e = withKeys([await newKey("prod-1")], { SHAMAN_ENV: "production", SHAMAN_DOMAIN: "shaman.example.com" });
    const token = await signInternalToken(e, CLAIMS);
    expect((await verifyInternalToken(e, token, EXPECTED)).iss).toBe("shaman.example.com");
  });
});
