/**
 * D1 schema (drizzle). Every table that holds an org's data carries `org_id`; reads and
 * writes go through the org-scoped access functions in this folder, never raw.
 */
import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

const now = sql`(unixepoch('subsec') * 1000)`;

export const orgs = sqliteTable(
  "orgs",
  {
    id: text("id").primaryKey(),
    /** Subdomain label: `acme` serves `acme.<domain>`. */
    slug: text("slug").notNull(),
    name: text("name").notNull(),
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
    createdAt: integer("created_at").notNull().default(now),
    updatedAt: integer("updated_at").notNull().default(now),
  },
  (t) => [uniqueIndex("repositories_org_name_unique").on(t.orgId, t.name)],
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
  },
  (t) => [index("runs_org_created").on(t.orgId, t.createdAt), index("runs_org_context").on(t.orgId, t.contextId)],
);

export type OrgRow = typeof orgs.$inferSelect;
export type RepositoryRow = typeof repositories.$inferSelect;
export type AgentRow = typeof agents.$inferSelect;
export type RunRow = typeof runs.$inferSelect;
export type RunStatus = RunRow["status"];
