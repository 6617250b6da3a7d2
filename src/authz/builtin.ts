/**
 * The built-in policy engine: Permiso's model (users and roles of an org, grants of
 * `action` on a resource path to either) stored in D1, so Shaman needs no extra service.
 *
 * A user's grants count only in the org they were made in, and only while the user is a
 * member of that org: a user removed from an org loses its access there at once, even if
 * stale grants or role assignments remain (Permiso gets the same effect by keeping users
 * per org).
 */
import { and, eq, exists, inArray, or, sql } from "drizzle-orm";
import type { Db } from "../db/client";
import { memberships, permissions, roles, userRoles } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { AppError, notFound } from "../errors";
import { grantCovers, grantSchema, actionCovers, resourceCovers, type Action, type Grant } from "./match";
import type { PolicyPort } from "./port";

export interface EffectivePermission {
  resource: string;
  action: string;
  /** Granted to the user directly, or through one of the user's roles. */
  source: "user" | "role";
  /** The user id or the role id that holds the grant. */
  sourceId: string;
}

// ---- decisions --------------------------------------------------------------------------

// Isolate cache of each (org, user)'s grants: every authorised request asks, grants change
// rarely, and one D1 round trip per request would dominate a warm call. 10 s bounds how
// long another isolate keeps acting on a revoked grant; this isolate's writes clear it at
// once. The promise is cached so a burst of requests by one user shares one query.
const GRANTS_TTL_MS = 10_000;
const MAX_CACHED_SUBJECTS = 10_000;
const grantCache = new Map<string, { grants: Promise<readonly EffectivePermission[]>; expires: number }>();

export function clearPolicyCache(): void {
  grantCache.clear();
}

/** Direct grants and role grants of a member, in one query. */
async function loadGrants(db: Db, scope: OrgScope, userId: string): Promise<EffectivePermission[]> {
  const isMember = exists(
    db
      .select({ one: sql`1` })
      .from(memberships)
      .where(and(eq(memberships.orgId, scope.orgId), eq(memberships.userId, userId))),
  );
  const roleIds = db
    .select({ id: userRoles.roleId })
    .from(userRoles)
    .where(and(eq(userRoles.orgId, scope.orgId), eq(userRoles.userId, userId)));
  const rows = await db
    .select({
      resource: permissions.resource,
      action: permissions.action,
      source: permissions.subjectType,
      sourceId: permissions.subjectId,
    })
    .from(permissions)
    .where(
      and(
        eq(permissions.orgId, scope.orgId),
        isMember,
        or(
          and(eq(permissions.subjectType, "user"), eq(permissions.subjectId, userId)),
          and(eq(permissions.subjectType, "role"), inArray(permissions.subjectId, roleIds)),
        ),
      ),
    );
  return rows;
}

function cachedGrants(db: Db, scope: OrgScope, userId: string): Promise<readonly EffectivePermission[]> {
  const key = `${scope.orgId}\u0000${userId}`;
  const now = Date.now();
  const hit = grantCache.get(key);
  if (hit && hit.expires > now) return hit.grants;
  const grants = loadGrants(db, scope, userId);
  if (grantCache.size >= MAX_CACHED_SUBJECTS) grantCache.clear();
  const entry = { grants, expires: now + GRANTS_TTL_MS };
  grantCache.set(key, entry);
  // A failed load must not be served from the cache for the next 10 s.
  grants.catch(() => {
    if (grantCache.get(key) === entry) grantCache.delete(key);
  });
  return grants;
}

export class BuiltinPolicy implements PolicyPort {
  readonly #db: Db;

  constructor(database: Db) {
    this.#db = database;
  }

  async hasPermission(scope: OrgScope, userId: string, resource: string, action: Action): Promise<boolean> {
    let grants: readonly EffectivePermission[];
    try {
      grants = await cachedGrants(this.#db, scope, userId);
    } catch (err) {
      console.error("authz: loading grants failed:", err instanceof Error ? err.message : String(err));
      throw new AppError("UNAVAILABLE", "authorization service unavailable");
    }
    return grants.some((g) => grantCovers(g, resource, action));
  }
}

// ---- administration (bootstrap, management API) ----------------------------------------

export type DefaultRoleName = "owner" | "admin" | "developer" | "viewer";

/**
 * The roles every org starts with. `owner` and `admin` hold the same grants: what sets an
 * owner apart (e.g. only owners may make owners, an org keeps at least one) is a rule of
 * the management API about role assignments, not a permission on a resource.
 */
export const DEFAULT_ROLES: Record<DefaultRoleName, { description: string; grants: readonly Grant[] }> = {
  owner: { description: "Everything, including managing owners", grants: [{ resource: "/*", action: "*" }] },
  admin: { description: "Everything in the org", grants: [{ resource: "/*", action: "*" }] },
  developer: {
    description: "Call agents, manage repositories, read runs and the audit log",
    grants: [
      { resource: "/agents/*", action: "execute" },
      { resource: "/agents/*", action: "read" },
      { resource: "/repositories/*", action: "read" },
      { resource: "/repositories/*", action: "write" },
      { resource: "/runs/*", action: "read" },
      { resource: "/audit", action: "read" },
    ],
  },
  viewer: { description: "Read everything", grants: [{ resource: "/*", action: "read" }] },
};

const DEFAULT_ROLE_NAMES = Object.keys(DEFAULT_ROLES) as DefaultRoleName[];

/**
 * Creates the default roles of an org if they are missing and returns their ids by name.
 * A role that already exists is left as it is (an admin may have changed its grants);
 * a role created here gets its default grants in the same atomic batch, so a crash never
 * leaves a default role without them.
 */
export async function ensureDefaultRoles(db: Db, scope: OrgScope): Promise<Record<DefaultRoleName, string>> {
  const candidates = DEFAULT_ROLE_NAMES.map((name) => ({ name, id: crypto.randomUUID() }));
  const insertRoles = db
    .insert(roles)
    .values(candidates.map((r) => ({ id: r.id, orgId: scope.orgId, name: r.name, description: DEFAULT_ROLES[r.name].description })))
    .onConflictDoNothing({ target: [roles.orgId, roles.name] });
  // Each grant is inserted only if the role row carries the id chosen above, i.e. if the
  // role was created by this very batch.
  const insertGrants = candidates.flatMap((r) =>
    DEFAULT_ROLES[r.name].grants.map((g) =>
      db
        .insert(permissions)
        .select((qb) =>
          qb
            .select({
              id: sql<string>`${crypto.randomUUID()}`.as("id"),
              orgId: roles.orgId,
              subjectType: sql<"role">`'role'`.as("subject_type"),
              subjectId: roles.id,
              resource: sql<string>`${g.resource}`.as("resource"),
              action: sql<string>`${g.action}`.as("action"),
              createdAt: sql<number>`(unixepoch('subsec') * 1000)`.as("created_at"),
            })
            .from(roles)
            .where(and(eq(roles.orgId, scope.orgId), eq(roles.id, r.id))),
        )
        .onConflictDoNothing(),
    ),
  );
  await db.batch([insertRoles, ...insertGrants]);
  clearPolicyCache();
  const rows = await db
    .select({ id: roles.id, name: roles.name })
    .from(roles)
    .where(and(eq(roles.orgId, scope.orgId), inArray(roles.name, DEFAULT_ROLE_NAMES)));
  const ids: Partial<Record<DefaultRoleName, string>> = {};
  for (const row of rows) ids[row.name as DefaultRoleName] = row.id;
  for (const name of DEFAULT_ROLE_NAMES) {
    if (!ids[name]) throw new Error(`default role ${name} could not be created`);
  }
  return ids as Record<DefaultRoleName, string>;
}

function validGrant(resource: string, action: string): Grant {
  const parsed = grantSchema.safeParse({ resource, action });
  if (!parsed.success) {
    throw new AppError("BAD_REQUEST", "invalid permission", {
      errors: parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
    });
  }
  return parsed.data;
}

async function requireMember(db: Db, scope: OrgScope, userId: string): Promise<void> {
  const row = await db
    .select({ userId: memberships.userId })
    .from(memberships)
    .where(and(eq(memberships.orgId, scope.orgId), eq(memberships.userId, userId)))
    .get();
  if (!row) throw notFound("User");
}

async function roleIdOf(db: Db, scope: OrgScope, where: { id: string } | { name: string }): Promise<string> {
  const row = await db
    .select({ id: roles.id })
    .from(roles)
    .where(and(eq(roles.orgId, scope.orgId), "id" in where ? eq(roles.id, where.id) : eq(roles.name, where.name)))
    .get();
  if (!row) throw notFound("Role");
  return row.id;
}

async function grant(db: Db, scope: OrgScope, subjectType: "user" | "role", subjectId: string, g: Grant): Promise<void> {
  await db
    .insert(permissions)
    .values({ id: crypto.randomUUID(), orgId: scope.orgId, subjectType, subjectId, resource: g.resource, action: g.action })
    .onConflictDoNothing();
  clearPolicyCache();
}

async function revoke(db: Db, scope: OrgScope, subjectType: "user" | "role", subjectId: string, g: Grant): Promise<boolean> {
  const deleted = await db
    .delete(permissions)
    .where(
      and(
        eq(permissions.orgId, scope.orgId),
        eq(permissions.subjectType, subjectType),
        eq(permissions.subjectId, subjectId),
        eq(permissions.resource, g.resource),
        eq(permissions.action, g.action),
      ),
    )
    .returning({ id: permissions.id });
  clearPolicyCache();
  return deleted.length > 0;
}

/** Grants `action` on `resource` to a member of the org (idempotent). */
export async function grantUserPermission(db: Db, scope: OrgScope, userId: string, resource: string, action: string): Promise<void> {
  const g = validGrant(resource, action);
  await requireMember(db, scope, userId);
  await grant(db, scope, "user", userId, g);
}

/** Grants `action` on `resource` to a role of the org (idempotent). */
export async function grantRolePermission(db: Db, scope: OrgScope, roleId: string, resource: string, action: string): Promise<void> {
  const g = validGrant(resource, action);
  await grant(db, scope, "role", await roleIdOf(db, scope, { id: roleId }), g);
}

/** Removes a direct grant; true if there was one. */
export async function revokeUserPermission(db: Db, scope: OrgScope, userId: string, resource: string, action: string): Promise<boolean> {
  return revoke(db, scope, "user", userId, validGrant(resource, action));
}

/** Removes a role's grant; true if there was one. */
export async function revokeRolePermission(db: Db, scope: OrgScope, roleId: string, resource: string, action: string): Promise<boolean> {
  return revoke(db, scope, "role", roleId, validGrant(resource, action));
}

/** Gives a member of the org one of the org's roles, by name (idempotent). */
export async function assignUserRole(db: Db, scope: OrgScope, userId: string, roleName: string): Promise<void> {
  const [roleId] = await Promise.all([roleIdOf(db, scope, { name: roleName }), requireMember(db, scope, userId)]);
  await db.insert(userRoles).values({ orgId: scope.orgId, userId, roleId }).onConflictDoNothing();
  clearPolicyCache();
}

/** Takes a role away from a user; true if the user had it. */
export async function unassignUserRole(db: Db, scope: OrgScope, userId: string, roleName: string): Promise<boolean> {
  const roleIds = db
    .select({ id: roles.id })
    .from(roles)
    .where(and(eq(roles.orgId, scope.orgId), eq(roles.name, roleName)));
  const deleted = await db
    .delete(userRoles)
    .where(and(eq(userRoles.orgId, scope.orgId), eq(userRoles.userId, userId), inArray(userRoles.roleId, roleIds)))
    .returning({ roleId: userRoles.roleId });
  clearPolicyCache();
  return deleted.length > 0;
}

/**
 * The grants that give a user access, like Permiso's `effectivePermissions`: every direct
 * and role grant covering `resource` and `action` (either filter may be left out). Read
 * fresh from D1, not from the decision cache, because it answers administrators.
 */
export async function effectivePermissions(
  db: Db,
  scope: OrgScope,
  userId: string,
  resource?: string,
  action?: string,
): Promise<EffectivePermission[]> {
  const grants = await loadGrants(db, scope, userId);
  return grants.filter(
    (g) => (resource === undefined || resourceCovers(g.resource, resource)) && (action === undefined || actionCovers(g.action, action)),
  );
}
