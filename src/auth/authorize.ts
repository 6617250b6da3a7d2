/**
 * Authorisation at the gateway: `action` on a path-like `resource`. Users are asked of the
 * policy port (built-in D1 engine or Permiso), which fails closed (503) when it cannot
 * answer. An API key is allowed what its own grants cover AND its creator is allowed now
 * (the policy port is asked for the creator): a key loses whatever its creator loses.
 */
import type { Context } from "hono";
import { policyFor } from "../authz";
import { grantCovers, type Action } from "../authz/match";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";

export async function isAllowed(c: Context<AppEnv>, resource: string, action: Action): Promise<boolean> {
  const p = c.get("auth");
  if (p.kind === "apiKey") {
    if (!p.grants.some((g) => grantCovers(g, resource, action))) return false;
    return policyFor(c.env).hasPermission(c.get("org"), p.createdBy, resource, action);
  }
  return policyFor(c.env).hasPermission(c.get("org"), p.userId, resource, action);
}

export async function authorize(c: Context<AppEnv>, resource: string, action: Action): Promise<void> {
  if (!(await isAllowed(c, resource, action))) throw new AppError("FORBIDDEN", `not allowed: ${action} on ${resource}`);
}
