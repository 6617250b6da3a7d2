/**
 * D1 schema (drizzle). Every table that holds an org's data carries `org_id`; reads and
 * writes go through the org-scoped access functions in this folder, never raw.
 */
import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

const now = sql`(unixepoch('subsec') * 1000)`;

export interface OrgSettings {
  /** perClient: requests per window from one client address, counted before authentication. */
  rateLimits?: { perPrincipal?: number; perOrg?: number; perClient?: number; windowSeconds?: number };
  /** Run limits (src/workflow/types.ts): maxDepth, maxStepsPerRun, maxCallsPerTurn, stepTimeoutMs, allowCycles. */
  runLimits?: { maxDepth?: number; maxStepsPerRun?: number; maxCallsPerTurn?: number; stepTimeoutMs?: number; allowCycles?: boolean };
  /** The org's own model prices (src/usage/prices.ts): `provider:model` prefix → USD per million tokens. */
  prices?: Record<string, { input: number; cachedInput?: number; output: number }>;
  /** The org's monthly budget (src/usage/budget.ts), enforced while runs go. */
  budget?: { period: "month"; maxTokens?: number; maxUsd?: number };
  /** How clients discover the org's agents (src/a2a/cards.ts, `/settings/discovery`). */
  discovery?: { requireCredentialForCards?: boolean; defaultAgent?: string | null };
}

export const orgs = sqliteTable(
  "orgs",
  {
    id: text("id").primaryKey(),
    /** Subdomain label: `acme` serves `acme.<domain>`. */
    slug: text("slug").notNull(),
    name: text("name").notNull(),
    /** Per-org settings, e.g. `{ rateLimits: { perPrincipal, perOrg, windowSeconds } }`. */
    settings: text("settings", { mode: "json" }).$type<OrgSettings>().notNull().default(sql`'{}'`),
    createdAt: integer("created_at").notNull().default(now),
    updatedAt: integer("updated_at").notNull().default(now),
  },
  (t) => [uniqueIndex("orgs_slug_unique").on(t.slug)],
);

export const repositories = sqliteTable(
  "repositories",
  {
    id: text("id").primaryKey(),
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    gitUrl: text("git_url").notNull(),
    branch: text("branch").notNull().default("main"),
    /** Agents of a root repository are callable without the `repo-name/` namespace. */
    isRoot: integer("is_root", { mode: "boolean" }).notNull().default(false),
    /** Name of the org secret holding the git token, if the repository is private. */
    credentialSecret: text("credential_secret"),
    syncIntervalSeconds: integer("sync_interval_seconds").notNull().default(300),
    syncStatus: text("sync_status", { enum: ["pending", "syncing", "synced", "error"] })
      .notNull()
      .default("pending"),
    lastCommit: text("last_commit"),
    lastSyncedAt: integer("last_synced_at"),
    lastError: text("last_error"),
    /** Per-file errors and warnings of the last sync (bad frontmatter, unknown fields, …). */
    syncProblems: text("sync_problems", { mode: "json" }).$type<SyncProblem[]>().notNull().default(sql`'[]'`),
    /** Name of the org secret holding the push-webhook secret (HMAC key / GitLab token). */
    webhookSecret: text("webhook_secret"),
    /** When the cron sweep should next ask the remote for its head. */
    nextSyncAt: integer("next_sync_at").notNull().default(0),
    /** A sync in progress holds this lease; others back off until it passes. */
    syncLeaseUntil: integer("sync_lease_until"),
    /** The token of the sync holding the lease: its final writes apply only while it still holds it. */
    syncLeaseToken: text("sync_lease_token"),
    /** A head whose sync hit a hard limit (too large, too deep): not fetched again until the branch moves or a forced sync. */
    failedCommit: text("failed_commit"),
    lastCheckedAt: integer("last_checked_at"),
    createdAt: integer("created_at").notNull().default(now),
    updatedAt: integer("updated_at").notNull().default(now),
  },
  (t) => [
    uniqueIndex("repositories_org_name_unique").on(t.orgId, t.name),
    uniqueIndex("repositories_org_url_branch_unique").on(t.orgId, t.gitUrl, t.branch),
    index("repositories_next_sync").on(t.nextSyncAt),
  ],
);

export interface SyncProblem {
  path: string;
  message: string;
  line?: number;
  severity: "error" | "warning";
}

/**
 * Aliases from a repository's `agents.json`: a name callers in that repository use for an
 * external A2A agent (URL + credential secret) or for an agent file at a repository path.
 */
export const agentAliases = sqliteTable(
  "agent_aliases",
  {
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    repositoryId: text("repository_id")
      .notNull()
      .references(() => repositories.id, { onDelete: "cascade" }),
    alias: text("alias").notNull(),
    kind: text("kind", { enum: ["external", "path"] }).notNull(),
    /** external: the A2A endpoint (or agent card) URL. */
    url: text("url"),
    /** external: name of the org secret holding the bearer token. */
    credentialSecret: text("credential_secret"),
    /** path: repository path of the agent file, or `repo-name/Agent`. */
    target: text("target"),
    description: text("description").notNull().default(""),
  },
  (t) => [primaryKey({ columns: [t.repositoryId, t.alias] }), index("agent_aliases_org").on(t.orgId, t.alias)],
);

/** The org's registry of external A2A agents, the last step of name resolution. */
export const externalAgents = sqliteTable(
  "external_agents",
  {
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    url: text("url").notNull(),
    credentialSecret: text("credential_secret"),
    description: text("description").notNull().default(""),
    createdAt: integer("created_at").notNull().default(now),
    updatedAt: integer("updated_at").notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.name] })],
);

export const agents = sqliteTable(
  "agents",
  {
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    repositoryId: text("repository_id")
      .notNull()
      .references(() => repositories.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    /** Path of the agent file inside the repository snapshot. */
    path: text("path").notNull(),
    /** Commit of the snapshot the current index entry was read from. */
    commitSha: text("commit_sha").notNull(),
    /** Content hash of the agent file, for per-file change detection. */
    blobSha: text("blob_sha").notNull(),
    exposed: integer("exposed", { mode: "boolean" }).notNull().default(false),
    description: text("description").notNull().default(""),
    version: text("version"),
    model: text("model"),
    tags: text("tags", { mode: "json" }).$type<string[]>().notNull().default(sql`'[]'`),
    /** Extra A2A card fields from the `agentcard` frontmatter key. */
    card: text("card", { mode: "json" }).$type<Record<string, unknown>>(),
    updatedAt: integer("updated_at").notNull().default(now),
  },
  (t) => [
    primaryKey({ columns: [t.repositoryId, t.name] }),
    index("agents_org_name").on(t.orgId, t.name),
  ],
);

export const runs = sqliteTable(
  "runs",
  {
    id: text("id").primaryKey(),
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    contextId: text("context_id").notNull(),
    agentName: text("agent_name").notNull(),
    repositoryId: text("repository_id").notNull(),
    commitSha: text("commit_sha").notNull(),
    status: text("status", {
      enum: ["submitted", "working", "input_required", "completed", "failed", "canceled"],
    })
      .notNull()
      .default("submitted"),
    /** The principal that started the run (user or API key id); kept for audit of internal steps. */
    initiatedBy: text("initiated_by"),
    error: text("error"),
    createdAt: integer("created_at").notNull().default(now),
    updatedAt: integer("updated_at").notNull().default(now),
    completedAt: integer("completed_at"),
    /** The text of the run's message and of its final answer (a context's earlier turns, migration 0006). */
    inputText: text("input_text"),
    outputText: text("output_text"),
  },
  (t) => [
    index("runs_org_created").on(t.orgId, t.createdAt),
    index("runs_org_context").on(t.orgId, t.contextId),
    index("runs_org_agent_updated").on(t.orgId, t.repositoryId, t.agentName, t.updatedAt),
  ],
);

export type OrgRow = typeof orgs.$inferSelect;
export type RepositoryRow = typeof repositories.$inferSelect;
export type AgentRow = typeof agents.$inferSelect;
export type RunRow = typeof runs.$inferSelect;
export type AgentAliasRow = typeof agentAliases.$inferSelect;
export type ExternalAgentRow = typeof externalAgents.$inferSelect;
export type RunStatus = RunRow["status"];

// ---- identity, permissions, keys, audit, secrets (tenancy issue) ------------------------

/** Users mirror identities of the identity provider (Kratos); orgs reach them through memberships. */
export const users = sqliteTable(
  "users",
  {
    id: text("id").primaryKey(),
    identityProvider: text("identity_provider").notNull(),
    identityProviderUserId: text("identity_provider_user_id").notNull(),
    email: text("email"),
    name: text("name"),
    createdAt: integer("created_at").notNull().default(now),
    updatedAt: integer("updated_at").notNull().default(now),
  },
  (t) => [uniqueIndex("users_identity_unique").on(t.identityProvider, t.identityProviderUserId)],
);

export const memberships = sqliteTable(
  "memberships",
  {
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    createdAt: integer("created_at").notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.userId] }), index("memberships_user").on(t.userId)],
);

/** Roles of an org (defaults: owner, admin, developer, viewer). */
export const roles = sqliteTable(
  "roles",
  {
    id: text("id").primaryKey(),
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    createdAt: integer("created_at").notNull().default(now),
  },
  (t) => [uniqueIndex("roles_org_name_unique").on(t.orgId, t.name)],
);

/**
 * A permission: `action` on `resource` (a path such as `/agents/ProcessInvoice`; a trailing
 * `*` covers a subtree; action `*` covers every action), granted to a user or a role.
 */
export const permissions = sqliteTable(
  "permissions",
  {
    id: text("id").primaryKey(),
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    subjectType: text("subject_type", { enum: ["user", "role"] }).notNull(),
    subjectId: text("subject_id").notNull(),
    resource: text("resource").notNull(),
    action: text("action").notNull(),
    createdAt: integer("created_at").notNull().default(now),
  },
  (t) => [
    uniqueIndex("permissions_grant_unique").on(t.orgId, t.subjectType, t.subjectId, t.resource, t.action),
    index("permissions_subject").on(t.orgId, t.subjectType, t.subjectId),
  ],
);

export const userRoles = sqliteTable(
  "user_roles",
  {
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    roleId: text("role_id")
      .notNull()
      .references(() => roles.id, { onDelete: "cascade" }),
    createdAt: integer("created_at").notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.userId, t.roleId] })],
);

/** API keys for machine clients: only a hash is stored; the prefix identifies the key. */
export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    /** Visible part of the key (`shk_<prefix>_…`), unique, used to find the row. */
    prefix: text("prefix").notNull(),
    /** SHA-256 of the whole key, hex. */
    hash: text("hash").notNull(),
    /** Grants of the key itself: `[{ resource, action }]`. */
    permissions: text("permissions", { mode: "json" }).$type<{ resource: string; action: string }[]>().notNull(),
    createdBy: text("created_by"),
    createdAt: integer("created_at").notNull().default(now),
    expiresAt: integer("expires_at"),
    revokedAt: integer("revoked_at"),
    lastUsedAt: integer("last_used_at"),
  },
  (t) => [uniqueIndex("api_keys_prefix_unique").on(t.prefix), index("api_keys_org").on(t.orgId)],
);

/** Append-only audit trail. Summaries are redacted before they are written. */
export const auditLog = sqliteTable(
  "audit_log",
  {
    /** Time-ordered id (ms timestamp + random), the pagination cursor. */
    id: text("id").primaryKey(),
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    at: integer("at").notNull(),
    /** Who acted: `user:<id>`, `key:<id>`, `system`. */
    actor: text("actor").notNull(),
    /** The original user behind internal steps (agent calls, tools, model calls). */
    userId: text("user_id"),
    runId: text("run_id"),
    stepId: text("step_id"),
    action: text("action").notNull(),
    resource: text("resource").notNull(),
    outcome: text("outcome", { enum: ["success", "denied", "error"] }).notNull(),
    durationMs: integer("duration_ms"),
    requestId: text("request_id"),
    summary: text("summary", { mode: "json" }).$type<Record<string, unknown>>(),
  },
  (t) => [
    index("audit_org_id").on(t.orgId, t.id),
    index("audit_org_action").on(t.orgId, t.action, t.id),
    index("audit_org_run").on(t.orgId, t.runId, t.id),
  ],
);

/** Org secrets, AES-GCM encrypted with a key from a Worker secret. Never readable through an API. */
export const orgSecrets = sqliteTable(
  "org_secrets",
  {
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    /** base64(iv ‖ ciphertext ‖ tag) */
    ciphertext: text("ciphertext").notNull(),
    keyVersion: integer("key_version").notNull().default(1),
    /**
     * Host patterns this secret may be sent to as an outbound credential (git, MCP, external
     * agents, provider keys); null or empty: nowhere (see src/net/outbound.ts).
     */
    allowedHosts: text("allowed_hosts", { mode: "json" }).$type<string[]>(),
    createdAt: integer("created_at").notNull().default(now),
    updatedAt: integer("updated_at").notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.name] })],
);

export type UserRow = typeof users.$inferSelect;
export type RoleRow = typeof roles.$inferSelect;
export type PermissionRow = typeof permissions.$inferSelect;
export type ApiKeyRow = typeof apiKeys.$inferSelect;
export type AuditRow = typeof auditLog.$inferSelect;

// ---- MCP servers (issue 10) --------------------------------------------------------------

/**
 * The org's registry of MCP servers: agents name them in their frontmatter
 * (`mcpServers: { github: registered }`). Header values are org secret NAMES, never values.
 */
export const mcpServers = sqliteTable(
  "mcp_servers",
  {
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    url: text("url").notNull(),
    /** `{ "Header-Name": "SECRET_NAME" }`: each header's value is read from the org secret. */
    headers: text("headers", { mode: "json" }).$type<Record<string, string>>().notNull().default(sql`'{}'`),
    /** An org secret sent as `Authorization: Bearer <value>`. */
    bearerSecret: text("bearer_secret"),
    /** The tools agents may use; null: all of the server's tools. */
    tools: text("tools", { mode: "json" }).$type<string[]>(),
    /** Tools that run only after a person approves the call (`*`: all). */
    requireApproval: text("require_approval", { mode: "json" }).$type<string[]>().notNull().default(sql`'[]'`),
    timeoutMs: integer("timeout_ms"),
    description: text("description").notNull().default(""),
    createdAt: integer("created_at").notNull().default(now),
    updatedAt: integer("updated_at").notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.name] })],
);

export type McpServerRow = typeof mcpServers.$inferSelect;
