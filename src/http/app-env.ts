import type { Principal } from "../auth/principal";
import type { OrgScope } from "../db/scope";

/** The Hono environment shared by every route. */
export type AppEnv = {
  Bindings: Env;
  Variables: {
    requestId: string;
    /** Set by the org resolver on every org-scoped route. */
    org: OrgScope;
    /** The authenticated principal's id (`user:<id>` / `key:<id>`); null on public routes. */
    principal: string | null;
    /** The authenticated principal, set by `authenticate()`. */
    auth: Principal;
  };
};
