/**
 * Authentication at the gateway. Credentials, in order:
 *   Authorization: Bearer shk_…        an API key of this org
 *   Authorization: Bearer dev:<email>  the local development identity (only when enabled)
 *   Authorization: Bearer <token>      a Kratos session token
 *   X-Session-Token: <token>           a Kratos session token
 *   Cookie: ory_kratos_session=…       a Kratos browser session
 * The credential stops here: nothing behind the gateway sees it.
 *
 * Every answer that passes through `authenticate()` (refusals included) depends on the
 * credential, so it is marked for private caches only and varies on the credential
 * headers; a route may choose a stricter Cache-Control (`no-store`), never a public one.
 */
import type { Context, MiddlewareHandler } from "hono";
import { config } from "../config";
import { db } from "../db/client";
import { AppError, problemResponse } from "../errors";
import type { AppEnv } from "../http/app-env";
import { looksLikeApiKey, verifyApiKey } from "./api-keys";
import { kratosIdentity, type KratosCredential } from "./kratos";
import { principalId, type Principal } from "./principal";
import { isMember, mirrorUser } from "./users";

const DEV_PREFIX = "dev:";
const KRATOS_COOKIE = /(?:^|;\s*)ory_(?:kratos_)?session[^=]*=/;

export function devIdentityEnabled(env: Env): boolean {
  return !config(env).production && env.SHAMAN_DEV_IDENTITY === "true";
}

function unauthorized(message: string): AppError {
  return new AppError("UNAUTHORIZED", message);
}

/** Resolves the caller or throws 401/403/503. Exported for routes that authenticate differently (WebSocket). */
export async function authenticateRequest(c: Context<AppEnv>): Promise<Principal> {
  const env = c.env;
  const org = c.get("org");
  const d = db(env);
  const auth = c.req.header("authorization");
  let bearer: string | null = null;
  if (auth !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (!m?.[1]) throw unauthorized("malformed Authorization header (expected: Bearer <token>)");
    bearer = m[1];
  }

  if (bearer && looksLikeApiKey(bearer)) {
    const key = await verifyApiKey(d, org, bearer, (p) => c.executionCtx.waitUntil(p.catch(() => undefined)));
    if (!key) throw unauthorized("invalid, expired or revoked API key");
    return { kind: "apiKey", id: `key:${key.id}`, keyId: key.id, name: key.name, grants: key.permissions, createdBy: key.createdBy };
  }

  if (bearer?.startsWith(DEV_PREFIX)) {
    if (!devIdentityEnabled(env)) throw unauthorized("invalid credentials");
    const email = bearer.slice(DEV_PREFIX.length).toLowerCase();
    if (!/^[^@\s]+@[^@\s]+$/.test(email)) throw unauthorized("malformed development identity (expected dev:<email>)");
    const user = await mirrorUser(d, "dev", email, email);
    if (!(await isMember(d, org, user.id))) throw new AppError("NOT_FOUND", "Organization not found");
    return { kind: "user", id: `user:${user.id}`, userId: user.id, email, via: "dev" };
  }

  let cred: KratosCredential | null = null;
  const sessionToken = bearer ?? c.req.header("x-session-token") ?? null;
  if (sessionToken) cred = { sessionToken };
  else {
    const cookie = c.req.header("cookie");
    if (cookie && KRATOS_COOKIE.test(cookie)) cred = { cookie };
  }
  if (!cred) throw unauthorized("authentication required");
  const identity = await kratosIdentity(env.KRATOS_URL, cred);
  if (!identity) throw unauthorized("invalid or expired session");
  const user = await mirrorUser(d, "kratos", identity.identityId, identity.email, identity.name);
  // Not a member: the org answers as if it did not exist.
  if (!(await isMember(d, org, user.id))) throw new AppError("NOT_FOUND", "Organization not found");
  return { kind: "user", id: `user:${user.id}`, userId: user.id, email: identity.email, via: "kratos" };
}

const CREDENTIAL_HEADERS = ["Authorization", "Cookie", "X-Session-Token"];

/**
 * Cache-Control and Vary for an answer that depends on the caller. No Cache-Control
 * becomes `private, no-store`; `private` and `no-store` are kept as the route set them;
 * anything else (`public, max-age=30`) loses `public`/`s-maxage` and gains `private`.
 */
export function privateCacheHeaders(headers: Headers): void {
  const cc = headers.get("cache-control");
  const directives = (cc ?? "")
    .split(",")
    .map((d) => d.trim())
    .filter(Boolean);
  const lower = directives.map((d) => d.toLowerCase());
  if (directives.length === 0) headers.set("cache-control", "private, no-store");
  else if (!lower.includes("private") && !lower.includes("no-store")) {
    const kept = directives.filter((d) => !/^(public|s-maxage\s*=.*|proxy-revalidate)$/i.test(d));
    headers.set("cache-control", ["private", ...kept].join(", "));
  }
  const vary = (headers.get("vary") ?? "")
    .split(",")
    .map((v) => v.trim())
    .filter(Boolean);
  if (vary.includes("*")) return;
  const have = new Set(vary.map((v) => v.toLowerCase()));
  for (const h of CREDENTIAL_HEADERS) if (!have.has(h.toLowerCase())) vary.push(h);
  headers.set("vary", vary.join(", "));
}

function markPrivate(c: Context<AppEnv>): void {
  const res = c.res;
  // A WebSocket upgrade (101) carries no cacheable body and cannot be re-wrapped.
  if (res.status === 101 || (res as Response & { webSocket?: unknown }).webSocket) return;
  const headers = new Headers(res.headers);
  privateCacheHeaders(headers);
  // c.header copies a finalized (possibly immutable) response before changing it.
  for (const name of ["cache-control", "vary"]) c.header(name, headers.get(name) ?? undefined);
}

export function authenticate(): MiddlewareHandler<AppEnv> {
  return async function authenticator(c, next) {
    let principal: Principal;
    try {
      principal = await authenticateRequest(c);
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      // Answered here (not by the app's error handler) so the refusal is marked private
      // too; `c.error` keeps it visible to the middleware that audits refusals.
      c.error = err;
      const headers = new Headers();
      privateCacheHeaders(headers);
      return problemResponse(err, c.get("requestId") ?? "", headers);
    }
    c.set("auth", principal);
    c.set("principal", principalId(principal));
    await next();
    markPrivate(c);
  };
}
