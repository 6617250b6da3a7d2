/**
 * Permission matching with Permiso's semantics, shared by both adapters (and the fake
 * Permiso used in tests), so a grant means the same thing whichever engine decides.
 *
 * - Resources are paths: `/agents/ProcessInvoice`, `/runs/{id}`, `/audit`, `/org`, …
 * - A grant resource ending in `*` covers every resource that starts with what precedes
 *   the `*`: `/agents/*` covers `/agents/X` and `/agents/X/Y` but not `/agents` itself;
 *   `/*` and `*` cover everything. Any other grant resource matches exactly.
 * - Action `*` covers every action. Permiso has no action hierarchy (`admin` does not
 *   imply `read`), so neither do we: a role that needs both is granted both.
 */

import { z } from "zod";

/**
 * `use` on `/secrets/{name}`: name the secret as an outbound credential (of a repository,
 * an external agent), or move something that carries it to another URL.
 */
export const ACTIONS = ["execute", "read", "write", "admin", "use"] as const;
export type Action = (typeof ACTIONS)[number];

/** A stored grant: `action` may be `*`, `resource` may end in `*`. */
export interface Grant {
  resource: string;
  action: Action | "*";
}

export function resourceCovers(pattern: string, resource: string): boolean {
  if (pattern.endsWith("*")) return resource.startsWith(pattern.slice(0, -1));
  return pattern === resource;
}

export function actionCovers(pattern: string, action: string): boolean {
  return pattern === "*" || pattern === action;
}

/**
 * `grant` takes plain strings rather than `Grant` because grants read from storage or
 * from another service are not narrowed; an unknown action simply never matches.
 */
export function grantCovers(grant: { resource: string; action: string }, resource: string, action: string): boolean {
  // An empty request must not be satisfied by an empty (malformed) grant.
  if (resource === "" || action === "") return false;
  return actionCovers(grant.action, action) && resourceCovers(grant.resource, resource);
}

/**
 * A well-formed grant: a path (or `*`) with at most one `*`, only at the end, and a known
 * action or `*`. Grants are checked with it before they are written (they come from the
 * management API), so stored data stays within the semantics above.
 */
export const grantSchema = z.object({
  resource: z
    .string()
    .max(512)
    .refine((r) => r === "*" || (r.startsWith("/") && !r.slice(0, -1).includes("*")), {
      message: "resource must be a path such as /agents/Name or /agents/*",
    }),
  action: z.enum([...ACTIONS, "*"]),
});
