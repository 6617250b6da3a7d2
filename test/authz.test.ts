/** Authorisation: Permiso's matching rules, the built-in D1 engine, the Permiso adapter. */
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { db } from "../src/db/client";
import { ensureOrg } from "../src/db/orgs";
import * as schema from "../src/db/schema";
import { memberships, permissions, roles, userRoles, users } from "../src/db/schema";
import { scopeOf, type OrgScope } from "../src/db/scope";
import { AppError } from "../src/errors";
import { policyFor } from "../src/authz";
import {
  BuiltinPolicy,
  DEFAULT_ROLES,
  assignUserRole,
  clearPolicyCache,
  effectivePermissions,
  ensureDefaultRoles,
  grantRolePermission,
  grantUserPermission,
  revokeRolePermission,
  revokeUserPermission,
  unassignUserRole,
} from "../src/authz/builtin";
import { grantCovers, grantSchema, type Action } from "../src/authz/match";
import { PermisoPolicy, clearPermisoCache } from "../src/authz/permiso";

const run = crypto.randomUUID().slice(0, 8);

async function expectUnavailable(p: Promise<unknown>) {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe("UNAVAILABLE");
  expect((err as AppError).status).toBe(503);
}

async function expectAppError(p: Promise<unknown>, code: string) {
  await expect(p).rejects.toMatchObject({ name: "AppError", code });
}

// ---- matching ----------------------------------------------------------------------------

describe("grantCovers (Permiso semantics)", () => {
  const cases: [resource: string, action: string, askResource: string, askAction: string, covered: boolean][] = [
    ["/agents/ProcessInvoice", "execute", "/agents/ProcessInvoice", "execute", true],
    ["/agents/ProcessInvoice", "execute", "/agents/ProcessInvoice", "read", false],
    ["/agents/ProcessInvoice", "execute", "/agents/ProcessInvoiceV2", "execute", false],
    ["/agents/ProcessInvoice", "execute", "/agents/ProcessInvoice/x", "execute", false],
    ["/agents/*", "execute", "/agents/X", "execute", true],
    ["/agents/*", "execute", "/agents/X/Y", "execute", true],
    ["/agents/*", "execute", "/agents", "execute", false],
    ["/agents/*", "execute", "/agentsX", "execute", false],
    ["/agents/*", "execute", "/repositories/1", "execute", false],
    ["/*", "read", "/secrets/db", "read", true],
    ["/*", "read", "/org", "read", true],
    ["*", "read", "/audit", "read", true],
    ["/*", "read", "/audit", "write", false],
    ["/runs/*", "*", "/runs/r1", "admin", true],
    ["/runs/*", "*", "/runs/r1", "execute", true],
    ["/audit", "*", "/audit", "read", true],
    ["/audit", "*", "/audit/x", "read", false],
    // no action hierarchy: admin does not imply read, write does not imply read
    ["/org", "admin", "/org", "read", false],
    ["/repositories/*", "write", "/repositories/1", "read", false],
    // a malformed empty grant never matches an empty question
    ["", "", "", "", false],
  ];
  it.each(cases)("grant %s %s → %s %s: %s", (resource, action, askResource, askAction, covered) => {
    expect(grantCovers({ resource, action }, askResource, askAction)).toBe(covered);
  });

  it("accepts only well-formed grants", () => {
    const ok = [
      ["/agents/*", "execute"],
      ["/*", "*"],
      ["*", "read"],
      ["/audit", "read"],
      ["/secrets/db-password", "admin"],
    ];
    const bad = [
      ["/agents/*/x", "execute"],
      ["agents/*", "execute"],
      ["/a*b", "read"],
      ["/agents/X", "delete"],
      ["/agents/X", ""],
      ["", "read"],
      [`/${"x".repeat(600)}`, "read"],
    ];
    for (const [resource, action] of ok) expect(grantSchema.safeParse({ resource, action }).success, `${resource} ${action}`).toBe(true);
    for (const [resource, action] of bad) expect(grantSchema.safeParse({ resource, action }).success, `${resource} ${action}`).toBe(false);
  });
});

// ---- built-in engine ---------------------------------------------------------------------

describe("built-in engine (D1)", () => {
  const d = db(env);
  const policy = new BuiltinPolicy(d);
  let orgA: OrgScope;
  let orgB: OrgScope;

  beforeAll(async () => {
    orgA = await ensureOrg(d, { slug: `authz-a-${run}`, name: "Authz A" });
    orgB = await ensureOrg(d, { slug: `authz-b-${run}`, name: "Authz B" });
  });
  beforeEach(() => clearPolicyCache());
  afterEach(() => vi.restoreAllMocks());

  /** A user row, member of the given orgs. */
  async function newUser(...orgs: OrgScope[]): Promise<string> {
    const id = crypto.randomUUID();
    await d.insert(users).values({ id, identityProvider: "test", identityProviderUserId: id, email: `${id}@authz.test` });
    for (const o of orgs) await d.insert(memberships).values({ orgId: o.orgId, userId: id });
    return id;
  }

  async function newRole(scope: OrgScope, name: string): Promise<string> {
    const id = crypto.randomUUID();
    await d.insert(roles).values({ id, orgId: scope.orgId, name });
    return id;
  }

  const can = (scope: OrgScope, user: string, resource: string, action: Action) => policy.hasPermission(scope, user, resource, action);

  it("denies a member without grants", async () => {
    const u = await newUser(orgA);
    expect(await can(orgA, u, "/agents/ProcessInvoice", "execute")).toBe(false);
    expect(await can(orgA, u, "/org", "read")).toBe(false);
  });

  it("allows exactly what a direct grant covers", async () => {
    const u = await newUser(orgA);
    await grantUserPermission(d, orgA, u, "/agents/ProcessInvoice", "execute");
    expect(await can(orgA, u, "/agents/ProcessInvoice", "execute")).toBe(true);
    expect(await can(orgA, u, "/agents/ProcessInvoice", "read")).toBe(false);
    expect(await can(orgA, u, "/agents/Summarize", "execute")).toBe(false);
  });

  it("covers a subtree with a trailing * and every action with action *", async () => {
    const u = await newUser(orgA);
    await grantUserPermission(d, orgA, u, "/repositories/*", "write");
    await grantUserPermission(d, orgA, u, "/runs/*", "*");
    expect(await can(orgA, u, "/repositories/r1", "write")).toBe(true);
    expect(await can(orgA, u, "/repositories/r1/files", "write")).toBe(true);
    expect(await can(orgA, u, "/repositories", "write")).toBe(false);
    expect(await can(orgA, u, "/repositories/r1", "read")).toBe(false);
    for (const action of ["execute", "read", "write", "admin"] as const) {
      expect(await can(orgA, u, "/runs/run-1", action)).toBe(true);
    }
    expect(await can(orgA, u, "/audit", "read")).toBe(false);
  });

  it("allows what the user's roles are granted, until the role is taken away", async () => {
    const u = await newUser(orgA);
    const roleId = await newRole(orgA, `auditor-${crypto.randomUUID().slice(0, 6)}`);
    const roleName = (await d.select({ name: roles.name }).from(roles).where(eq(roles.id, roleId)).get())!.name;
    await grantRolePermission(d, orgA, roleId, "/audit", "read");
    expect(await can(orgA, u, "/audit", "read")).toBe(false);
    await assignUserRole(d, orgA, u, roleName);
    expect(await can(orgA, u, "/audit", "read")).toBe(true);
    expect(await can(orgA, u, "/audit", "write")).toBe(false);
    expect(await unassignUserRole(d, orgA, u, roleName)).toBe(true);
    expect(await unassignUserRole(d, orgA, u, roleName)).toBe(false);
    expect(await can(orgA, u, "/audit", "read")).toBe(false);
  });

  it("revokes direct and role grants", async () => {
    const u = await newUser(orgA);
    const roleName = `ops-${crypto.randomUUID().slice(0, 6)}`;
    const roleId = await newRole(orgA, roleName);
    await assignUserRole(d, orgA, u, roleName);
    await grantUserPermission(d, orgA, u, "/secrets/*", "write");
    await grantRolePermission(d, orgA, roleId, "/org", "admin");
    expect(await can(orgA, u, "/secrets/token", "write")).toBe(true);
    expect(await can(orgA, u, "/org", "admin")).toBe(true);
    expect(await revokeUserPermission(d, orgA, u, "/secrets/*", "write")).toBe(true);
    expect(await revokeUserPermission(d, orgA, u, "/secrets/*", "write")).toBe(false);
    expect(await revokeRolePermission(d, orgA, roleId, "/org", "admin")).toBe(true);
    expect(await can(orgA, u, "/secrets/token", "write")).toBe(false);
    expect(await can(orgA, u, "/org", "admin")).toBe(false);
  });

  it("creates the default roles once, with their grants", async () => {
    const org = await ensureOrg(d, { slug: `authz-roles-${run}`, name: "Roles" });
    const ids = await ensureDefaultRoles(d, org);
    expect(Object.keys(ids).sort()).toEqual(["admin", "developer", "owner", "viewer"]);
    const countGrants = async () => (await d.select({ id: permissions.id }).from(permissions).where(eq(permissions.orgId, org.orgId))).length;
    const expected = Object.values(DEFAULT_ROLES).reduce((n, r) => n + r.grants.length, 0);
    expect(await countGrants()).toBe(expected);
    // idempotent: same ids, no duplicate grants
    expect(await ensureDefaultRoles(d, org)).toEqual(ids);
    expect(await countGrants()).toBe(expected);
    const stored = await d
      .select({ resource: permissions.resource, action: permissions.action })
      .from(permissions)
      .where(and(eq(permissions.orgId, org.orgId), eq(permissions.subjectId, ids.developer)));
    expect(stored.map((g) => `${g.resource} ${g.action}`).sort()).toEqual(
      ["/agents/* execute", "/agents/* read", "/repositories/* read", "/repositories/* write", "/runs/* read", "/audit read"].sort(),
    );

    const member = async (role: string) => {
      const u = await newUser(org);
      await assignUserRole(d, org, u, role);
      return u;
    };
    const [owner, admin, developer, viewer] = await Promise.all(["owner", "admin", "developer", "viewer"].map(member));
    const table: [user: string, resource: string, action: Action, allowed: boolean][] = [
      [owner!, "/org", "admin", true],
      [owner!, "/secrets/db", "write", true],
      [admin!, "/api-keys/k1", "admin", true],
      [admin!, "/agents/ProcessInvoice", "execute", true],
      [developer!, "/agents/ProcessInvoice", "execute", true],
      [developer!, "/agents/ProcessInvoice", "read", true],
      [developer!, "/agents/ProcessInvoice", "write", false],
      [developer!, "/repositories/r1", "write", true],
      [developer!, "/runs/r1", "read", true],
      [developer!, "/runs/r1", "write", false],
      [developer!, "/audit", "read", true],
      [developer!, "/secrets/db", "read", false],
      [developer!, "/org", "admin", false],
      [viewer!, "/secrets/db", "read", true],
      [viewer!, "/audit", "read", true],
      [viewer!, "/agents/ProcessInvoice", "execute", false],
      [viewer!, "/repositories/r1", "write", false],
    ];
    for (const [u, resource, action, allowed] of table) {
      expect(await can(org, u, resource, action), `${resource} ${action}`).toBe(allowed);
    }
  });

  it("leaves an existing default role's grants as an admin changed them", async () => {
    const org = await ensureOrg(d, { slug: `authz-custom-${run}`, name: "Custom" });
    const ids = await ensureDefaultRoles(d, org);
    expect(await revokeRolePermission(d, org, ids.developer, "/audit", "read")).toBe(true);
    await ensureDefaultRoles(d, org);
    const u = await newUser(org);
    await assignUserRole(d, org, u, "developer");
    expect(await can(org, u, "/audit", "read")).toBe(false);
    expect(await can(org, u, "/runs/r1", "read")).toBe(true);
  });

  it("never counts another org's grants (same user in two orgs)", async () => {
    const u = await newUser(orgA, orgB);
    await grantUserPermission(d, orgA, u, "/agents/*", "execute");
    const rolesA = await ensureDefaultRoles(d, orgA);
    await ensureDefaultRoles(d, orgB);
    await assignUserRole(d, orgA, u, "owner");
    expect(await can(orgA, u, "/agents/X", "execute")).toBe(true);
    expect(await can(orgA, u, "/org", "admin")).toBe(true);
    expect(await can(orgB, u, "/agents/X", "execute")).toBe(false);
    expect(await can(orgB, u, "/org", "admin")).toBe(false);
    // a role id of org A cannot be used in org B
    await expectAppError(grantRolePermission(d, orgB, rolesA.owner, "/*", "*"), "NOT_FOUND");
    // even a user_roles row pointing across orgs (never written by the API) grants nothing
    await d.insert(userRoles).values({ orgId: orgB.orgId, userId: u, roleId: rolesA.owner });
    clearPolicyCache();
    expect(await can(orgB, u, "/org", "admin")).toBe(false);
    expect(await effectivePermissions(d, orgB, u)).toEqual([]);
  });

  it("counts grants only while the user is a member", async () => {
    const u = await newUser(orgA);
    const outsider = await newUser(orgB);
    await grantUserPermission(d, orgA, u, "/audit", "read");
    expect(await can(orgA, u, "/audit", "read")).toBe(true);
    await d.delete(memberships).where(and(eq(memberships.orgId, orgA.orgId), eq(memberships.userId, u)));
    clearPolicyCache();
    expect(await can(orgA, u, "/audit", "read")).toBe(false);
    await expectAppError(grantUserPermission(d, orgA, outsider, "/audit", "read"), "NOT_FOUND");
    await expectAppError(assignUserRole(d, orgA, outsider, "owner"), "NOT_FOUND");
  });

  it("refuses malformed grants and unknown roles", async () => {
    const u = await newUser(orgA);
    await expectAppError(grantUserPermission(d, orgA, u, "/agents/*/x", "execute"), "BAD_REQUEST");
    await expectAppError(grantUserPermission(d, orgA, u, "/agents/X", "delete"), "BAD_REQUEST");
    await expectAppError(assignUserRole(d, orgA, u, "no-such-role"), "NOT_FOUND");
    expect(await d.select().from(permissions).where(eq(permissions.subjectId, u))).toEqual([]);
  });

  it("caches a user's grants for 10 s; grant functions clear the cache", async () => {
    const u = await newUser(orgA);
    expect(await can(orgA, u, "/audit", "read")).toBe(false);
    // a write that bypasses the grant functions is not seen while the entry is fresh…
    await d.insert(permissions).values({ id: crypto.randomUUID(), orgId: orgA.orgId, subjectType: "user", subjectId: u, resource: "/audit", action: "read" });
    expect(await can(orgA, u, "/audit", "read")).toBe(false);
    // …and is seen once the 10 s are over
    const now = Date.now();
    vi.spyOn(Date, "now").mockReturnValue(now + 10_001);
    expect(await can(orgA, u, "/audit", "read")).toBe(true);
    vi.restoreAllMocks();

    clearPolicyCache();
    expect(await can(orgA, u, "/org", "read")).toBe(false);
    await grantUserPermission(d, orgA, u, "/org", "read");
    expect(await can(orgA, u, "/org", "read")).toBe(true);
    await revokeUserPermission(d, orgA, u, "/org", "read");
    expect(await can(orgA, u, "/org", "read")).toBe(false);
  });

  it("lists effective permissions with their source, like Permiso", async () => {
    const u = await newUser(orgA);
    const roleName = `lister-${crypto.randomUUID().slice(0, 6)}`;
    const roleId = await newRole(orgA, roleName);
    await assignUserRole(d, orgA, u, roleName);
    await grantUserPermission(d, orgA, u, "/agents/ProcessInvoice", "execute");
    await grantRolePermission(d, orgA, roleId, "/agents/*", "*");
    await grantRolePermission(d, orgA, roleId, "/audit", "read");
    const sort = (xs: { resource: string; action: string }[]) => [...xs].sort((a, b) => `${a.resource}${a.action}`.localeCompare(`${b.resource}${b.action}`));
    expect(sort(await effectivePermissions(d, orgA, u, "/agents/ProcessInvoice", "execute"))).toEqual([
      { resource: "/agents/*", action: "*", source: "role", sourceId: roleId },
      { resource: "/agents/ProcessInvoice", action: "execute", source: "user", sourceId: u },
    ]);
    expect(await effectivePermissions(d, orgA, u, "/agents/ProcessInvoice", "read")).toEqual([
      { resource: "/agents/*", action: "*", source: "role", sourceId: roleId },
    ]);
    expect(await effectivePermissions(d, orgA, u, "/audit", "write")).toEqual([]);
    expect(await effectivePermissions(d, orgA, u)).toHaveLength(3);
  });

  it("fails closed when D1 cannot be read", async () => {
    const broken = drizzle(
      {
        prepare() {
          throw new Error("D1_ERROR: network connection lost");
        },
      } as unknown as D1Database,
      { schema },
    );
    const u = await newUser(orgA);
    await expectUnavailable(new BuiltinPolicy(broken).hasPermission(orgA, u, "/audit", "read"));
    // the failure was not cached for the healthy engine either
    await grantUserPermission(d, orgA, u, "/audit", "read");
    expect(await can(orgA, u, "/audit", "read")).toBe(true);
  });
});

// ---- Permiso adapter ---------------------------------------------------------------------

describe("Permiso adapter", () => {
  const url = env.TEST_PERMISO_URL;
  const KEY = "permiso-test-key";

  const orgScope = (label: string) => {
    const id = `org-${label}-${crypto.randomUUID().slice(0, 8)}`;
    return scopeOf({ id, slug: id, name: label });
  };

  async function seed(scope: OrgScope, users: Record<string, { grants?: { resource: string; action: string }[]; roles?: string[] }>, roleGrants: Record<string, { resource: string; action: string }[]> = {}) {
    const res = await fetch(`${url}/__grants`, { method: "POST", body: JSON.stringify({ orgId: scope.orgId, users, roles: roleGrants }) });
    expect(res.status).toBe(200);
  }

  async function requestsFor(scope: OrgScope): Promise<any[]> {
    const all = (await (await fetch(`${url}/__requests`)).json()) as any[];
    return all.filter((r) => r.orgId === scope.orgId);
  }

  beforeEach(() => clearPermisoCache());

  it("answers allowed and denied from Permiso's grants (direct, role, wildcard)", async () => {
    const org = orgScope("allow");
    await seed(org, { alice: { grants: [{ resource: "/agents/ProcessInvoice", action: "execute" }], roles: ["dev"] } }, { dev: [{ resource: "/runs/*", action: "read" }] });
    const p = new PermisoPolicy(url, KEY);
    expect(await p.hasPermission(org, "alice", "/agents/ProcessInvoice", "execute")).toBe(true);
    expect(await p.hasPermission(org, "alice", "/runs/r1", "read")).toBe(true);
    expect(await p.hasPermission(org, "alice", "/agents/ProcessInvoice", "read")).toBe(false);
    expect(await p.hasPermission(org, "alice", "/runs/r1", "write")).toBe(false);
    expect(await p.hasPermission(org, "bob", "/runs/r1", "read")).toBe(false);
  });

  it("sends x-org-id, the bearer key and the query variables", async () => {
    const org = orgScope("headers");
    await seed(org, { alice: { grants: [{ resource: "/audit", action: "read" }] } });
    expect(await new PermisoPolicy(`${url}/`, KEY).hasPermission(org, "alice", "/audit", "read")).toBe(true);
    const [req, ...more] = await requestsFor(org);
    expect(more).toEqual([]);
    expect(req).toMatchObject({
      orgId: org.orgId,
      authorization: `Bearer ${KEY}`,
      contentType: "application/json",
      variables: { userId: "alice", resourceId: "/audit", action: "read" },
    });
  });

  it("answers another org's question from that org's grants only", async () => {
    const orgA = orgScope("iso-a");
    const orgB = orgScope("iso-b");
    await seed(orgA, { alice: { grants: [{ resource: "/*", action: "*" }] } });
    await seed(orgB, { alice: {} });
    const p = new PermisoPolicy(url, KEY);
    expect(await p.hasPermission(orgA, "alice", "/org", "admin")).toBe(true);
    expect(await p.hasPermission(orgB, "alice", "/org", "admin")).toBe(false);
    expect((await requestsFor(orgB))[0]?.orgId).toBe(orgB.orgId);
  });

  it("caches decisions, denials included, for 10 s", async () => {
    const org = orgScope("cache");
    await seed(org, { alice: { grants: [{ resource: "/audit", action: "read" }] } });
    const p = new PermisoPolicy(url, KEY);
    expect(await p.hasPermission(org, "alice", "/audit", "read")).toBe(true);
    expect(await p.hasPermission(org, "alice", "/org", "read")).toBe(false);
    await seed(org, { alice: { grants: [{ resource: "/org", action: "read" }] } });
    expect(await p.hasPermission(org, "alice", "/audit", "read")).toBe(true);
    expect(await p.hasPermission(org, "alice", "/org", "read")).toBe(false);
    expect(await requestsFor(org)).toHaveLength(2);
    const now = Date.now();
    vi.spyOn(Date, "now").mockReturnValue(now + 10_001);
    try {
      expect(await p.hasPermission(org, "alice", "/audit", "read")).toBe(false);
      expect(await p.hasPermission(org, "alice", "/org", "read")).toBe(true);
    } finally {
      vi.restoreAllMocks();
    }
    expect(await requestsFor(org)).toHaveLength(4);
  });

  it("fails closed when Permiso cannot be reached", async () => {
    const org = orgScope("down");
    await expectUnavailable(new PermisoPolicy("http://127.0.0.1:9", KEY).hasPermission(org, "alice", "/audit", "read"));
  });

  it("fails closed on a missing or wrong API key (401 UNAUTHENTICATED)", async () => {
    const org = orgScope("key");
    await seed(org, { alice: { grants: [{ resource: "/*", action: "*" }] } });
    await expectUnavailable(new PermisoPolicy(url).hasPermission(org, "alice", "/audit", "read"));
    await expectUnavailable(new PermisoPolicy(url, "wrong-key").hasPermission(org, "alice", "/audit", "read"));
    const seen = await requestsFor(org);
    expect(seen.map((r) => r.authorization)).toEqual([null, "Bearer wrong-key"]);
    // failures are not cached: the right key gets the real answer at once
    expect(await new PermisoPolicy(url, KEY).hasPermission(org, "alice", "/audit", "read")).toBe(true);
  });

  it("fails closed on a GraphQL error in a 200 answer, and does not cache it", async () => {
    const org = orgScope("gqlerr");
    await seed(org, { alice: { grants: [{ resource: "/*", action: "*" }] } });
    await fetch(`${url}/__faults`, { method: "POST", body: JSON.stringify({ orgId: org.orgId, graphqlErrors: 1 }) });
    const p = new PermisoPolicy(url, KEY);
    await expectUnavailable(p.hasPermission(org, "alice", "/audit", "read"));
    expect(await p.hasPermission(org, "alice", "/audit", "read")).toBe(true);
  });

  it("fails closed when Permiso is too slow", async () => {
    const org = orgScope("slow");
    await seed(org, { alice: { grants: [{ resource: "/*", action: "*" }] } });
    await fetch(`${url}/__faults`, { method: "POST", body: JSON.stringify({ orgId: org.orgId, delayMs: 2_000 }) });
    const started = Date.now();
    await expectUnavailable(new PermisoPolicy(url, KEY, { timeoutMs: 200 }).hasPermission(org, "alice", "/audit", "read"));
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it("the fake keeps Permiso's contract: bearer first, then x-org-id, effectivePermissions", async () => {
    const org = orgScope("contract");
    await seed(org, { alice: { grants: [{ resource: "/agents/*", action: "execute" }], roles: ["r"] } }, { r: [{ resource: "/agents/X", action: "*" }] });
    const gql = (headers: Record<string, string>, query: string, variables: Record<string, unknown> = {}) =>
      fetch(`${url}/graphql`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ query, variables }) });
    const noKey = await gql({ "x-org-id": org.orgId }, "{ hasPermission(userId: \"alice\", resourceId: \"/agents/X\", action: \"execute\") }");
    expect(noKey.status).toBe(401);
    expect(((await noKey.json()) as any).errors[0].extensions.code).toBe("UNAUTHENTICATED");
    const noOrg = await gql({ authorization: `Bearer ${KEY}` }, "{ hasPermission(userId: \"alice\", resourceId: \"/agents/X\", action: \"execute\") }");
    expect(((await noOrg.json()) as any).errors[0].message).toMatch(/x-org-id/);
    const eff = await gql(
      { authorization: `Bearer ${KEY}`, "x-org-id": org.orgId },
      "query($u: ID!, $r: String!, $a: String) { effectivePermissions(userId: $u, resourceId: $r, action: $a) { resourceId action source sourceId } }",
      { u: "alice", r: "/agents/X", a: "execute" },
    );
    expect(eff.status).toBe(200);
    expect(((await eff.json()) as any).data.effectivePermissions).toEqual([
      { resourceId: "/agents/*", action: "execute", source: "user", sourceId: "alice" },
      { resourceId: "/agents/X", action: "*", source: "role", sourceId: "r" },
    ]);
  });
});

// ---- adapter selection -------------------------------------------------------------------

describe("policyFor", () => {
  it("uses the built-in engine by default, one adapter per env", () => {
    const e = { DB: env.DB };
    expect(policyFor(e)).toBeInstanceOf(BuiltinPolicy);
    expect(policyFor(e)).toBe(policyFor(e));
    expect(policyFor({ DB: env.DB, AUTHZ_PROVIDER: "builtin" })).toBeInstanceOf(BuiltinPolicy);
  });

  it("uses Permiso when configured, with the configured key", async () => {
    const e = { DB: env.DB, AUTHZ_PROVIDER: "permiso", PERMISO_URL: env.TEST_PERMISO_URL, PERMISO_API_KEY: "permiso-test-key" };
    const p = policyFor(e);
    expect(p).toBeInstanceOf(PermisoPolicy);
    const id = `org-select-${crypto.randomUUID().slice(0, 8)}`;
    const org = scopeOf({ id, slug: id, name: "select" });
    await fetch(`${env.TEST_PERMISO_URL}/__grants`, { method: "POST", body: JSON.stringify({ orgId: id, users: { u1: { grants: [{ resource: "/org", action: "read" }] } } }) });
    expect(await p.hasPermission(org, "u1", "/org", "read")).toBe(true);
    // without the key the same service refuses, so the key above was really sent
    const unkeyed = policyFor({ ...e, PERMISO_API_KEY: undefined });
    await expectUnavailable(unkeyed.hasPermission(org, "u1", "/org", "write"));
  });

  it("refuses to run without PERMISO_URL or with an unknown provider", () => {
    for (const e of [{ DB: env.DB, AUTHZ_PROVIDER: "permiso" }, { DB: env.DB, AUTHZ_PROVIDER: "permisso" }]) {
      let err: unknown;
      try {
        policyFor(e);
      } catch (x) {
        err = x;
      }
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).status).toBe(503);
    }
  });
});
