/**
 * Browsers on other origins (an org's dashboard, a web A2A client) calling the org's API.
 *
 * The org lists the origins it trusts in `settings.cors.allowedOrigins` (`PUT /settings/cors`,
 * src/api/cors-settings.ts); by default none is listed and no answer carries CORS headers
 * (public discovery aside: src/a2a/cards.ts answers anonymous reads to any origin).
 * - A listed origin (`https://dash.example.com`) gets its own origin back with
 *   `Access-Control-Allow-Credentials: true`: its pages may call with a bearer key, an
 *   `X-Session-Token` or the Kratos session cookie.
 * - `"*"` lets any origin call without ambient credentials: the answer says
 *   `Access-Control-Allow-Origin: *` and never allows credentials, so a browser does not
 *   send the session cookie; a page must bring a bearer key or session token itself.
 * - Preflights (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin are
 *   answered here, before any credential is looked at (a browser sends none with them).
 * Every answer to an allowed origin, errors included, carries the headers, so a page can
 * read a 401 or a JSON-RPC error instead of an opaque network failure.
 */
import type { MiddlewareHandler } from "hono";
import { z } from "zod";
import type { OrgScope } from "../db/scope";
import type { AppEnv } from "./app-env";

/** `scheme://host[:port]`, lower case, no path: what a browser sends in `Origin`. */
const ORIGIN = /^https?:\/\/[a-z0-9.-]+(?::\d{1,5})?$/;

export const CorsSchema = z
  .object({
    allowedOrigins: z
      .array(
        z
          .string()
          .max(255)
          .refine((o) => o === "*" || ORIGIN.test(o), "expected an origin like https://dash.example.com (scheme and host, no path, lower case) or \"*\""),
      )
      .max(50)
      .default([]),
  })
  .strict();

export type CorsSettings = z.infer<typeof CorsSchema>;

export function corsSettingsFrom(raw: unknown): CorsSettings {
  const parsed = CorsSchema.safeParse(raw ?? {});
  return parsed.success ? parsed.data : { allowedOrigins: [] };
}

// Parsed once per settings object: the org cache keeps one per org, and a browser sends an
// Origin with every request.
const parsed = new WeakMap<object, CorsSettings>();

export function corsSettingsOf(scope: OrgScope): CorsSettings {
  const settings = scope.settings as { cors?: unknown };
  let value = parsed.get(settings);
  if (!value) parsed.set(settings, (value = corsSettingsFrom(settings.cors)));
  return value;
}

/** What headers a browser may send, and read, on the org API. */
const ALLOW_HEADERS = "Authorization, Content-Type, A2A-Version, A2A-Extensions, Last-Event-ID, X-Session-Token, If-None-Match, X-Request-Id, Idempotency-Key";
const EXPOSE_HEADERS = "ETag, X-Request-Id, A2A-Version, A2A-Extensions, Retry-After, Location, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset";
const ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE";

/** `*`, the listed origin itself (with credentials), or null when the org does not allow it. */
function allowedOrigin(scope: OrgScope, origin: string): { value: string; credentials: boolean } | null {
  const { allowedOrigins } = corsSettingsOf(scope);
  if (allowedOrigins.includes(origin)) return { value: origin, credentials: true };
  if (allowedOrigins.includes("*")) return { value: "*", credentials: false };
  return null;
}

/** CORS for the org's allowed origins; mount after the org is resolved, before authentication. */
export function orgCors(): MiddlewareHandler<AppEnv> {
  return async function orgCors(c, next) {
    const origin = c.req.header("origin");
    const allowed = origin ? allowedOrigin(c.get("org"), origin) : null;
    if (!allowed) return next();
    const base: Record<string, string> = { "access-control-allow-origin": allowed.value, vary: "Origin" };
    if (allowed.credentials) base["access-control-allow-credentials"] = "true";
    if (c.req.method === "OPTIONS" && c.req.header("access-control-request-method")) {
      return c.body(null, 204, { ...base, "access-control-allow-methods": ALLOW_METHODS, "access-control-allow-headers": ALLOW_HEADERS, "access-control-max-age": "600" });
    }
    await next();
    // A WebSocket upgrade's answer cannot take headers (and browsers do not apply CORS to it).
    if (c.res.status === 101) return;
    const headers = c.res.headers;
    for (const [k, v] of Object.entries(base)) headers.set(k, v);
    if (!allowed.credentials) headers.delete("access-control-allow-credentials");
    headers.set("access-control-expose-headers", EXPOSE_HEADERS);
  };
}
