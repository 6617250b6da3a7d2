import type { OrgScope } from "../db/scope";

/** The Hono environment shared by every route. */
export type AppEnv = {
  Bindings: Env;
  Variables: {
    requestId: string;
    /** Set by the org resolver on every org-scoped route. */
    org: OrgScope;
    /** The authenticated principal (user or API key id); null until authentication lands. */
    principal: string | null;
  };
};
