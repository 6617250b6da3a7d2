/**
 * A small stand-in for Permiso (codespin-ai/permiso) for tests: a real GraphQL server
 * (graphql-yoga on node:http) with Permiso's contract for what Shaman uses:
 *
 * - `POST /graphql`, `hasPermission(userId: ID!, resourceId: String!, action: String!): Boolean!`
 *   and `effectivePermissions(userId: ID!, resourceId: String!, action: String): [EffectivePermission!]!`;
 * - started with an API key, every request needs `Authorization: Bearer <key>`, else a
 *   GraphQL error with `extensions.code = "UNAUTHENTICATED"` and HTTP 401 (checked first,
 *   as Permiso does);
 * - every request needs `x-org-id`, else a GraphQL error (BAD_USER_INPUT, HTTP 400);
 * - grants per org, to users directly or through roles, with Permiso's wildcard rules
 *   (`src/authz/match.ts`).
 *
 * Test controls: `POST /__grants` `{ orgId, users: { id: { grants, roles } }, roles: { id: grants } }`
 * replaces an org's data; `POST /__faults` `{ orgId, graphqlErrors?, delayMs? }` makes the
 * next N requests for that org answer a GraphQL error (HTTP 200) or delays them;
 * `GET /__requests` lists what was received (headers that matter, operation, variables);
 * `DELETE /__requests` clears that list.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { GraphQLError } from "graphql";
import { createSchema, createYoga } from "graphql-yoga";
import { grantCovers, resourceCovers } from "../../src/authz/match";

interface FakeGrant {
  resource: string;
  action: string;
}

interface OrgData {
  users: Record<string, { grants?: FakeGrant[]; roles?: string[] }>;
  roles: Record<string, FakeGrant[]>;
}

export interface RecordedRequest {
  orgId: string | null;
  authorization: string | null;
  contentType: string | null;
  operationName: string | null;
  variables: Record<string, unknown> | null;
}

interface Context {
  orgId: string;
}

const typeDefs = /* GraphQL */ `
  scalar DateTime

  type EffectivePermission {
    resourceId: ID!
    action: String!
    source: String!
    sourceId: ID
    createdAt: DateTime!
  }

  type Query {
    hasPermission(userId: ID!, resourceId: String!, action: String!): Boolean!
    effectivePermissions(userId: ID!, resourceId: String!, action: String): [EffectivePermission!]!
  }
`;

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export interface RunningPermiso {
  url: string;
  close(): Promise<void>;
}

export async function startPermiso(options: { apiKey?: string; port?: number } = {}): Promise<RunningPermiso> {
  const orgs = new Map<string, OrgData>();
  const faults = new Map<string, { graphqlErrors: number; delayMs: number }>();
  const requests: RecordedRequest[] = [];
  const createdAt = new Date().toISOString();

  function effective(orgId: string, userId: string, resourceId: string, action: string | null | undefined) {
    const org = orgs.get(orgId);
    const user = org?.users[userId];
    if (!org || !user) return [];
    const covers = (g: FakeGrant) =>
      action ? grantCovers(g, resourceId, action) : resourceCovers(g.resource, resourceId);
    const out: { resourceId: string; action: string; source: string; sourceId: string; createdAt: string }[] = [];
    for (const g of user.grants ?? []) {
      if (covers(g)) out.push({ resourceId: g.resource, action: g.action, source: "user", sourceId: userId, createdAt });
    }
    for (const roleId of user.roles ?? []) {
      for (const g of org.roles[roleId] ?? []) {
        if (covers(g)) out.push({ resourceId: g.resource, action: g.action, source: "role", sourceId: roleId, createdAt });
      }
    }
    return out;
  }

  const yoga = createYoga<{}, Context>({
    graphqlEndpoint: "/graphql",
    logging: false,
    maskedErrors: false,
    schema: createSchema<Context>({
      typeDefs,
      resolvers: {
        Query: {
          hasPermission: (_: unknown, args: { userId: string; resourceId: string; action: string }, ctx: Context) =>
            effective(ctx.orgId, args.userId, args.resourceId, args.action).length > 0,
          effectivePermissions: (
            _: unknown,
            args: { userId: string; resourceId: string; action?: string | null },
            ctx: Context,
          ) => effective(ctx.orgId, args.userId, args.resourceId, args.action),
        },
      },
    }),
    context: async ({ request, params }) => {
      const orgId = request.headers.get("x-org-id");
      requests.push({
        orgId,
        authorization: request.headers.get("authorization"),
        contentType: request.headers.get("content-type"),
        operationName: params.operationName ?? null,
        variables: (params.variables as Record<string, unknown> | undefined) ?? null,
      });
      if (options.apiKey !== undefined && request.headers.get("authorization") !== `Bearer ${options.apiKey}`) {
        throw new GraphQLError("Invalid or missing Bearer token", {
          extensions: { code: "UNAUTHENTICATED", http: { status: 401 } },
        });
      }
      if (!orgId) {
        throw new GraphQLError("Missing x-org-id header", {
          extensions: { code: "BAD_USER_INPUT", http: { status: 400 } },
        });
      }
      const fault = faults.get(orgId);
      if (fault && fault.delayMs > 0) await new Promise((r) => setTimeout(r, fault.delayMs));
      if (fault && fault.graphqlErrors > 0) {
        fault.graphqlErrors--;
        throw new GraphQLError("Injected failure", { extensions: { code: "INTERNAL_SERVER_ERROR", http: { status: 200 } } });
      }
      return { orgId };
    },
  });

  const json = (res: import("node:http").ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));

  const server: Server = createServer(async (req, res) => {
    try {
      const path = (req.url ?? "/").split("?")[0];
      if (path === "/__requests" && req.method === "GET") return json(res, 200, requests);
      if (path === "/__requests" && req.method === "DELETE") {
        requests.length = 0;
        return json(res, 200, { ok: true });
      }
      if (path === "/__grants" && req.method === "POST") {
        const body = JSON.parse(await readBody(req)) as { orgId: string } & Partial<OrgData>;
        orgs.set(body.orgId, { users: body.users ?? {}, roles: body.roles ?? {} });
        return json(res, 200, { ok: true });
      }
      if (path === "/__faults" && req.method === "POST") {
        const body = JSON.parse(await readBody(req)) as { orgId: string; graphqlErrors?: number; delayMs?: number };
        faults.set(body.orgId, { graphqlErrors: body.graphqlErrors ?? 0, delayMs: body.delayMs ?? 0 });
        return json(res, 200, { ok: true });
      }
      await yoga.requestListener(req, res);
    } catch (err) {
      if (!res.headersSent) json(res, 500, { error: String(err) });
      else res.end();
    }
  });

  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
