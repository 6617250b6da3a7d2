/**
 * `GET /.well-known/jwks.json`: the public keys of Shaman's internal tokens
 * (src/auth/internal-jwt.ts), so an external agent can verify a call from Shaman. App-level:
 * no org, no credential, served on every host. Only public halves (no `d`) ever leave.
 */
import { Hono } from "hono";
import { publicJwks } from "../auth/internal-jwt";
import type { AppEnv } from "./app-env";

export const jwksRoutes = new Hono<AppEnv>();

jwksRoutes.get("/.well-known/jwks.json", async (c) => {
  // Verifiers cache it for 5 minutes: a new key must be in the set that long before it
  // signs (docs/deployment.md, "Internal tokens and key rotation").
  return c.json(await publicJwks(c.env), 200, { "cache-control": "public, max-age=300" });
});
