/**
 * The authorisation port: one question, "may this user do `action` on `resource` in this
 * org?". Two adapters answer it: the built-in engine on D1 (`builtin.ts`, the default)
 * and Permiso's GraphQL service (`permiso.ts`); `policyFor` (`index.ts`) picks one from
 * configuration. Both use the matching rules in `match.ts`.
 *
 * Fail closed: when the policy cannot be evaluated (service unreachable, timeout, bad
 * answer, rejected credentials) `hasPermission` throws
 * `AppError("UNAVAILABLE", "authorization service unavailable")`, which the caller turns
 * into a 503. It never resolves `true` for a decision it could not make.
 */
import type { OrgScope } from "../db/scope";
import type { Action } from "./match";

export interface PolicyPort {
  hasPermission(scope: OrgScope, userId: string, resource: string, action: Action): Promise<boolean>;
}
