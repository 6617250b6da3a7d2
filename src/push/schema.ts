/**
 * D1 table of push notification configs (migration 0007_push.sql). Kept here rather than in
 * src/db/schema.ts: only src/push/ reads or writes it, always with the org id.
 */
import { sql } from "drizzle-orm";
import { integer, primaryKey, sqliteTable, text } from "drizzle-orm/sqlite-core";
import { orgs } from "../db/schema";

const now = sql`(unixepoch('subsec') * 1000)`;

export const pushConfigs = sqliteTable(
  "push_configs",
  {
    orgId: text("org_id")
      .notNull()
      .references(() => orgs.id, { onDelete: "cascade" }),
    /** The task (run) id. */
    runId: text("run_id").notNull(),
    id: text("id").notNull(),
    url: text("url").notNull(),
    /** The config's `token`, encrypted with the org's key (AAD names org, task, config). */
    tokenCiphertext: text("token_ciphertext"),
    /** `authentication.scheme` (e.g. Bearer). */
    authScheme: text("auth_scheme"),
    /** Literal `authentication.credentials`, encrypted like the token. */
    authCiphertext: text("auth_ciphertext"),
    /** Or: the org secret whose value is the credentials (`secret:<NAME>`). */
    authSecret: text("auth_secret"),
    /** The A2A version the config was made over: the shape of what is pushed. */
    dialect: text("dialect").$type<"1.0" | "0.3">().notNull().default("1.0"),
    /** Pushes cover the task's events after this sequence number (0: from its start). */
    fromSeq: integer("from_seq").notNull().default(0),
    createdBy: text("created_by"),
    createdAt: integer("created_at").notNull().default(now),
    updatedAt: integer("updated_at").notNull().default(now),
  },
  (t) => [primaryKey({ columns: [t.orgId, t.runId, t.id] })],
);

export type PushConfigRow = typeof pushConfigs.$inferSelect;
