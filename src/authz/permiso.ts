/**
 * The Permiso adapter: asks Permiso's GraphQL API (`POST {PERMISO_URL}/graphql`) whether a
 * user may act on a resource. Permiso scopes every request to an org by the `x-org-id`
 * header; Shaman's org id is used as Permiso's org id, and Shaman's user id as Permiso's
 * user id, so an operator provisions Permiso with the same ids.
 *
 * Fails closed: a network error, a timeout, a non-200 answer, GraphQL errors (such as
 * UNAUTHENTICATED for a missing or wrong API key) or a malformed body all throw
 * `AppError("UNAVAILABLE")`; only a well-formed boolean answer is a decision.
 */
import { z } from "zod";
import type { OrgScope } from "../db/scope";
import { AppError } from "../errors";
import type { Action } from "./match";
import type { PolicyPort } from "./port";

const HAS_PERMISSION = `query HasPermission($userId: ID!, $resourceId: String!, $action: String!) {
  hasPermission(userId: $userId, resourceId: $resourceId, action: $action)
}`;

const answerSchema = z.object({
  data: z.object({ hasPermission: z.boolean() }).nullish(),
  errors: z.array(z.object({ message: z.string() }).loose()).optional(),
});

const DEFAULT_TIMEOUT_MS = 3_000;

// Isolate cache of decisions, denials included: a route may check several permissions per
// request and Permiso is a network hop away. 10 s bounds how long a changed grant takes
// to apply. Failures are never cached. The key includes the service URL so two
// configurations in one isolate (tests, a migration) never share answers.
const DECISION_TTL_MS = 10_000;
const MAX_CACHED_DECISIONS = 10_000;
const decisions = new Map<string, { allowed: boolean; expires: number }>();

export function clearPermisoCache(): void {
  decisions.clear();
}

function unavailable(reason: string): AppError {
  // The reason stays in the log: Permiso's messages are not for Shaman's callers.
  console.error(`authz: permiso: ${reason}`);
  return new AppError("UNAVAILABLE", "authorization service unavailable");
}

export interface PermisoOptions {
  /** Per-request timeout; 3 s by default. */
  timeoutMs?: number;
}

export class PermisoPolicy implements PolicyPort {
  readonly #endpoint: string;
  readonly #apiKey: string | undefined;
  readonly #timeoutMs: number;

  constructor(baseUrl: string, apiKey?: string, options: PermisoOptions = {}) {
    this.#endpoint = `${baseUrl.replace(/\/+$/, "")}/graphql`;
    this.#apiKey = apiKey || undefined;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  async hasPermission(scope: OrgScope, userId: string, resource: string, action: Action): Promise<boolean> {
    const key = [this.#endpoint, scope.orgId, userId, resource, action].join("\u0000");
    const now = Date.now();
    const hit = decisions.get(key);
    if (hit && hit.expires > now) return hit.allowed;
    const allowed = await this.#ask(scope, userId, resource, action);
    if (decisions.size >= MAX_CACHED_DECISIONS) decisions.clear();
    decisions.set(key, { allowed, expires: now + DECISION_TTL_MS });
    return allowed;
  }

  async #ask(scope: OrgScope, userId: string, resource: string, action: Action): Promise<boolean> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/json",
      "x-org-id": scope.orgId,
    };
    if (this.#apiKey) headers.authorization = `Bearer ${this.#apiKey}`;
    let res: Response;
    let body: unknown;
    try {
      res = await fetch(this.#endpoint, {
        method: "POST",
        headers,
        body: JSON.stringify({
          operationName: "HasPermission",
          query: HAS_PERMISSION,
          variables: { userId, resourceId: resource, action },
        }),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      if (res.status !== 200) {
        // Drain the body so the connection can be reused.
        await res.body?.cancel();
        throw unavailable(`HTTP ${res.status}`);
      }
      body = await res.json();
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw unavailable(err instanceof Error ? `${err.name}: ${err.message}` : String(err));
    }
    const parsed = answerSchema.safeParse(body);
    if (!parsed.success) throw unavailable("malformed answer");
    const { data, errors } = parsed.data;
    if (errors && errors.length > 0) throw unavailable(`GraphQL error: ${errors.map((e) => e.message).join("; ")}`);
    if (!data) throw unavailable("answer without data");
    return data.hasPermission;
  }
}
