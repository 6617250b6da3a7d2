/**
 * Picks the authorisation adapter from configuration: `AUTHZ_PROVIDER=permiso` asks
 * Permiso; unset or `builtin` uses the D1 engine; any other value refuses every check.
 */
import { db } from "../db/client";
import { AppError } from "../errors";
import { BuiltinPolicy } from "./builtin";
import { PermisoPolicy } from "./permiso";
import type { PolicyPort } from "./port";

export type { PolicyPort } from "./port";
export type { Action, Grant } from "./match";

type AuthzEnv = Pick<Env, "DB" | "AUTHZ_PROVIDER" | "PERMISO_URL" | "PERMISO_API_KEY">;

// Adapters hold no per-request state; one per env object for the isolate's life.
const adapters = new WeakMap<AuthzEnv, PolicyPort>();

export function policyFor(env: AuthzEnv): PolicyPort {
  let adapter = adapters.get(env);
  if (adapter) return adapter;
  const provider = env.AUTHZ_PROVIDER || "builtin";
  if (provider === "permiso") {
    if (!env.PERMISO_URL) {
      throw new AppError("UNAVAILABLE", "authorization service unavailable: AUTHZ_PROVIDER is permiso but PERMISO_URL is not set");
    }
    adapter = new PermisoPolicy(env.PERMISO_URL, env.PERMISO_API_KEY);
  } else if (provider === "builtin") {
    adapter = new BuiltinPolicy(db(env));
  } else {
    // A misspelt provider must not silently switch engines: refuse every request instead.
    throw new AppError("UNAVAILABLE", `authorization service unavailable: unknown AUTHZ_PROVIDER ${JSON.stringify(provider)}`);
  }
  adapters.set(env, adapter);
  return adapter;
}
