/**
 * Usage rows: one per model call (migrations/0004_usage.sql), written by `callModel`, read
 * by `GET /usage`. The id is the call's own (`run:step:turn:attempt`), so a write that is
 * repeated (a retried job, a retried write) cannot count a call twice.
 */
import { and, eq, gte, lt, sql, type SQL } from "drizzle-orm";
import { index, integer, real, sqliteTable, text } from "drizzle-orm/sqlite-core";
import type { Db } from "../db/client";
import type { OrgScope } from "../db/scope";

export const usageRecords = sqliteTable(
  "usage_records",
  {
    id: text("id").primaryKey(),
    orgId: text("org_id").notNull(),
    runId: text("run_id").notNull(),
    stepId: text("step_id").notNull(),
    turn: integer("turn").notNull(),
    attempt: integer("attempt").notNull(),
    agent: text("agent").notNull(),
    repositoryId: text("repository_id").notNull(),
    model: text("model").notNull(),
    inputTokens: integer("input_tokens").notNull().default(0),
    cachedInputTokens: integer("cached_input_tokens").notNull().default(0),
    outputTokens: integer("output_tokens").notNull().default(0),
    reasoningTokens: integer("reasoning_tokens").notNull().default(0),
    costUsd: real("cost_usd").notNull().default(0),
    /** False when no price table knows the model (it cost 0 here). */
    priced: integer("priced", { mode: "boolean" }).notNull().default(true),
    /** The call's maximum, as reserved (or as it would be) against a budget. */
    reservedTokens: integer("reserved_tokens").notNull().default(0),
    reservedUsd: real("reserved_usd").notNull().default(0),
    at: integer("at").notNull(),
  },
  (t) => [index("usage_org_at").on(t.orgId, t.at), index("usage_org_agent_at").on(t.orgId, t.repositoryId, t.agent, t.at), index("usage_org_run").on(t.orgId, t.runId)],
);

export type UsageRecord = typeof usageRecords.$inferSelect;
export type NewUsageRecord = typeof usageRecords.$inferInsert;

/** The id of a model call: the same call (same attempt at the same turn) always gets the same one. */
export function callIdOf(ctx: { runId: string; stepId: string; turn: number; attempt: number }): string {
  return `${ctx.runId}:${ctx.stepId}:${ctx.turn}:${ctx.attempt}`;
}

/** Writes a usage row; one that exists already (same id) is left as it is. */
export async function writeUsage(db: Db, row: NewUsageRecord): Promise<void> {
  await db.insert(usageRecords).values(row).onConflictDoNothing({ target: usageRecords.id });
}

/** Writes usage rows together (one D1 batch); rows that exist already are left as they are. */
export async function writeUsageMany(db: Db, rows: readonly NewUsageRecord[]): Promise<void> {
  if (rows.length === 0) return;
  // D1 binds at most 100 parameters per statement: 18 columns, so 5 rows a statement.
  const statements = [];
  for (let i = 0; i < rows.length; i += 5) statements.push(db.insert(usageRecords).values(rows.slice(i, i + 5)).onConflictDoNothing({ target: usageRecords.id }));
  const [first, ...rest] = statements;
  await db.batch([first!, ...rest]);
}

export type UsageGroupBy = "agent" | "model" | "day";

export interface UsageTotals {
  calls: number;
  inputTokens: number;
  cachedInputTokens: number;
  outputTokens: number;
  reasoningTokens: number;
  /** inputTokens + outputTokens. */
  totalTokens: number;
  costUsd: number;
  /** Calls of models no price table knows (counted at 0). */
  unpricedCalls: number;
}

export interface UsageGroup extends UsageTotals {
  /** agent: `{ agent, repositoryId }`; model: `{ model }`; day: `{ day: "YYYY-MM-DD" }` (UTC). */
  key: Record<string, string>;
}

const totalsColumns = {
  calls: sql<number>`count(*)`,
  inputTokens: sql<number>`coalesce(sum(${usageRecords.inputTokens}), 0)`,
  cachedInputTokens: sql<number>`coalesce(sum(${usageRecords.cachedInputTokens}), 0)`,
  outputTokens: sql<number>`coalesce(sum(${usageRecords.outputTokens}), 0)`,
  reasoningTokens: sql<number>`coalesce(sum(${usageRecords.reasoningTokens}), 0)`,
  costUsd: sql<number>`coalesce(sum(${usageRecords.costUsd}), 0)`,
  unpricedCalls: sql<number>`coalesce(sum(case when ${usageRecords.priced} then 0 else 1 end), 0)`,
};

function totalsOf(r: Omit<UsageTotals, "totalTokens">): UsageTotals {
  const n = (v: unknown) => Number(v ?? 0);
  return {
    calls: n(r.calls),
    inputTokens: n(r.inputTokens),
    cachedInputTokens: n(r.cachedInputTokens),
    outputTokens: n(r.outputTokens),
    reasoningTokens: n(r.reasoningTokens),
    totalTokens: n(r.inputTokens) + n(r.outputTokens),
    costUsd: Math.round(n(r.costUsd) * 1e9) / 1e9,
    unpricedCalls: n(r.unpricedCalls),
  };
}

/** The org's usage in [from, to): totals, and groups when asked. */
export async function queryUsage(db: Db, scope: OrgScope, opts: { from: number; to: number; groupBy?: UsageGroupBy | undefined }): Promise<{ totals: UsageTotals; groups?: UsageGroup[] }> {
  const where: SQL = and(eq(usageRecords.orgId, scope.orgId), gte(usageRecords.at, opts.from), lt(usageRecords.at, opts.to))!;
  const totalsQuery = db.select(totalsColumns).from(usageRecords).where(where);
  if (!opts.groupBy) {
    const [t] = await totalsQuery;
    return { totals: totalsOf(t!) };
  }
  let groupsQuery;
  if (opts.groupBy === "agent") {
    groupsQuery = db
      .select({ ...totalsColumns, agent: usageRecords.agent, repositoryId: usageRecords.repositoryId })
      .from(usageRecords)
      .where(where)
      .groupBy(usageRecords.repositoryId, usageRecords.agent)
      .then((rows) => rows.map((r) => ({ key: { agent: r.agent, repositoryId: r.repositoryId }, ...totalsOf(r) })));
  } else if (opts.groupBy === "model") {
    groupsQuery = db
      .select({ ...totalsColumns, model: usageRecords.model })
      .from(usageRecords)
      .where(where)
      .groupBy(usageRecords.model)
      .then((rows) => rows.map((r) => ({ key: { model: r.model }, ...totalsOf(r) })));
  } else {
    const day = sql<string>`strftime('%Y-%m-%d', ${usageRecords.at} / 1000, 'unixepoch')`;
    groupsQuery = db
      .select({ ...totalsColumns, day })
      .from(usageRecords)
      .where(where)
      .groupBy(day)
      .orderBy(day)
      .then((rows) => rows.map((r) => ({ key: { day: r.day }, ...totalsOf(r) })));
  }
  const [[t], groups] = await Promise.all([totalsQuery, groupsQuery]);
  // Largest cost first (ties: most tokens), except days, which read best in order.
  if (opts.groupBy !== "day") groups.sort((a, b) => b.costUsd - a.costUsd || b.totalTokens - a.totalTokens);
  return { totals: totalsOf(t!), groups };
}

/** The org's usage in [from, to) as tokens and dollars (for a budget set mid-month). */
export async function usedBetween(db: Db, orgId: string, from: number, to: number): Promise<{ tokens: number; usd: number }> {
  const [r] = await db
    .select({ tokens: sql<number>`coalesce(sum(${usageRecords.inputTokens} + ${usageRecords.outputTokens}), 0)`, usd: sql<number>`coalesce(sum(${usageRecords.costUsd}), 0)` })
    .from(usageRecords)
    .where(and(eq(usageRecords.orgId, orgId), gte(usageRecords.at, from), lt(usageRecords.at, to)));
  return { tokens: Number(r?.tokens ?? 0), usd: Number(r?.usd ?? 0) };
}
