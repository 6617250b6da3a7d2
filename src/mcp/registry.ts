/**
 * The org's registry of MCP servers (D1 table `mcp_servers`): servers an admin registers
 * once and agents name in their frontmatter (`mcpServers: { github: registered }`).
 * Header values are org secret NAMES; values are read only when a call is made.
 */
import { and, asc, eq, inArray } from "drizzle-orm";
import { MCP_HEADER_NAME, MCP_MAX_TIMEOUT_MS, MCP_RESERVED_HEADERS, MCP_SERVER_NAME } from "../agents/format";
import type { Db } from "../db/client";
import { mcpServers, type McpServerRow } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { AppError } from "../errors";
import { SECRET_NAME } from "../secrets/store";

export type RegisteredMcpServer = Omit<McpServerRow, "orgId">;

export interface McpServerInput {
  name: string;
  url: string;
  headers?: Record<string, string>;
  bearerSecret?: string | null;
  tools?: string[] | null;
  requireApproval?: string[];
  timeoutMs?: number | null;
  description?: string;
}

const columns = {
  name: mcpServers.name,
  url: mcpServers.url,
  headers: mcpServers.headers,
  bearerSecret: mcpServers.bearerSecret,
  tools: mcpServers.tools,
  requireApproval: mcpServers.requireApproval,
  timeoutMs: mcpServers.timeoutMs,
  description: mcpServers.description,
  createdAt: mcpServers.createdAt,
  updatedAt: mcpServers.updatedAt,
};

export const MAX_MCP_SERVERS = 500;

export async function listMcpServers(db: Db, scope: OrgScope): Promise<RegisteredMcpServer[]> {
  return db.select(columns).from(mcpServers).where(eq(mcpServers.orgId, scope.orgId)).orderBy(asc(mcpServers.name)).limit(MAX_MCP_SERVERS);
}

export async function getMcpServer(db: Db, scope: OrgScope, name: string): Promise<RegisteredMcpServer | null> {
  const rows = await db
    .select(columns)
    .from(mcpServers)
    .where(and(eq(mcpServers.orgId, scope.orgId), eq(mcpServers.name, name)))
    .limit(1);
  return rows[0] ?? null;
}

/** The registered servers of these names (one query); names the org has not registered are absent. */
export async function getMcpServersByName(db: Db, scope: OrgScope, names: string[]): Promise<Map<string, RegisteredMcpServer>> {
  const unique = [...new Set(names)].slice(0, 90);
  if (unique.length === 0) return new Map();
  const rows = await db
    .select(columns)
    .from(mcpServers)
    .where(and(eq(mcpServers.orgId, scope.orgId), inArray(mcpServers.name, unique)));
  return new Map(rows.map((r) => [r.name, r]));
}

/** Every secret an entry names (headers and bearer). */
export function secretsOf(entry: { headers?: Record<string, string> | null; bearerSecret?: string | null }): string[] {
  return [...new Set([...Object.values(entry.headers ?? {}), ...(entry.bearerSecret ? [entry.bearerSecret] : [])])];
}

/** Validates an entry; throws UNPROCESSABLE naming the bad field. The URL policy is the route's. */
export function validateMcpServer(input: McpServerInput): void {
  const bad = (field: string, message: string) => new AppError("UNPROCESSABLE", `${field}: ${message}`, { field });
  if (!MCP_SERVER_NAME.test(input.name)) throw bad("name", "must start with a letter and hold only letters, digits, '_' or '-' (at most 64)");
  const headers = Object.entries(input.headers ?? {});
  if (headers.length > 16) throw bad("headers", "at most 16 headers");
  for (const [header, secret] of headers) {
    if (!MCP_HEADER_NAME.test(header)) throw bad("headers", `'${header}' is not a header name`);
    if (MCP_RESERVED_HEADERS.has(header.toLowerCase())) throw bad("headers", `'${header}' is set by the MCP transport itself`);
    if (header.toLowerCase() === "authorization" && input.bearerSecret) throw bad("headers", "give either an Authorization header or bearerSecret, not both");
    if (typeof secret !== "string" || !SECRET_NAME.test(secret)) throw bad("headers", `the value of '${header}' must be an org secret's name`);
  }
  if (input.bearerSecret != null && !SECRET_NAME.test(input.bearerSecret)) throw bad("bearerSecret", "must be an org secret's name");
  for (const [field, list] of [
    ["tools", input.tools ?? []],
    ["requireApproval", input.requireApproval ?? []],
  ] as const) {
    if (list.length > 200) throw bad(field, "at most 200 entries");
    if (list.some((t) => typeof t !== "string" || t.length === 0 || t.length > 128)) throw bad(field, "entries are tool names (1 to 128 characters)");
  }
  if (input.timeoutMs != null && (!Number.isInteger(input.timeoutMs) || input.timeoutMs < 100 || input.timeoutMs > MCP_MAX_TIMEOUT_MS)) {
    throw bad("timeoutMs", `must be an integer from 100 to ${MCP_MAX_TIMEOUT_MS}`);
  }
  if ((input.description ?? "").length > 2000) throw bad("description", "must be at most 2000 characters");
}

/** Creates or replaces a registered server; returns the stored entry. */
export async function putMcpServer(db: Db, scope: OrgScope, input: McpServerInput): Promise<RegisteredMcpServer> {
  validateMcpServer(input);
  const values = {
    url: input.url,
    headers: input.headers ?? {},
    bearerSecret: input.bearerSecret ?? null,
    tools: input.tools ? [...new Set(input.tools)] : null,
    requireApproval: [...new Set(input.requireApproval ?? [])],
    timeoutMs: input.timeoutMs ?? null,
    description: input.description ?? "",
  };
  const [row] = await db
    .insert(mcpServers)
    .values({ orgId: scope.orgId, name: input.name, ...values })
    .onConflictDoUpdate({ target: [mcpServers.orgId, mcpServers.name], set: { ...values, updatedAt: Date.now() } })
    .returning(columns);
  if (!row) throw new Error(`MCP server ${input.name} could not be stored`);
  return row;
}

/** Removes a registered server; false if the org had none of that name. */
export async function deleteMcpServer(db: Db, scope: OrgScope, name: string): Promise<boolean> {
  const removed = await db
    .delete(mcpServers)
    .where(and(eq(mcpServers.orgId, scope.orgId), eq(mcpServers.name, name)))
    .returning({ name: mcpServers.name });
  return removed.length > 0;
}
