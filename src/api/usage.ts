/**
 * Usage, prices and the budget of the org:
 *   GET /usage?from=&to=&groupBy=agent|model|day   tokens and cost over a period (default:
 *                                                  the current calendar month, UTC)
 *   GET /settings/prices                           the org's prices and the default table
 *   PUT /settings/prices  { prices: { "<provider:model prefix>": { input, cachedInput?, output } } }
 *   GET /settings/budget                           the budget and this month's use of it
 *   PUT /settings/budget  { period: "month", maxTokens?, maxUsd? }   (DELETE removes it)
 * `/usage` is readable by whoever may read the audit trail (or `read` on `/usage`).
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { auditRequest } from "../audit/http";
import { authorize, isAllowed } from "../auth/authorize";
import { db } from "../db/client";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { jsonBody } from "../http/body";
import { budgetStub, limitsOf, monthOf, monthRange, refusalOf } from "../usage/budget";
import { DEFAULT_PRICES } from "../usage/prices";
import { queryUsage, usedBetween, type UsageGroupBy } from "../usage/records";
import { BudgetSchema, PricesSchema, orgUsageSettings, setUsageSetting, type Budget } from "../usage/settings";

export const usageRoutes = new Hono<AppEnv>();
export const usageSettingsRoutes = new Hono<AppEnv>();

/** Usage is cost data: audit readers see it, and so does anyone granted `read` on `/usage`. */
async function authorizeUsageRead(c: Context<AppEnv>): Promise<void> {
  if (await isAllowed(c, "/usage", "read")) return;
  await authorize(c, "/audit", "read");
}

function timeParam(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === "") return undefined;
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms)) throw new AppError("BAD_REQUEST", `${name} must be epoch milliseconds or an ISO 8601 time (e.g. 2026-12-01)`);
  return ms;
}

const GROUPS: readonly UsageGroupBy[] = ["agent", "model", "day"];

usageRoutes.get("/", async (c) => {
  await authorizeUsageRead(c);
  const q = c.req.query();
  const groupBy = q.groupBy === undefined || q.groupBy === "" ? undefined : (q.groupBy as UsageGroupBy);
  if (groupBy !== undefined && !GROUPS.includes(groupBy)) throw new AppError("BAD_REQUEST", `groupBy must be one of ${GROUPS.join(", ")}`);
  const month = monthRange();
  const from = timeParam(q.from, "from") ?? month.from;
  const to = timeParam(q.to, "to") ?? (q.from ? Date.now() + 1 : month.to);
  if (to <= from) throw new AppError("BAD_REQUEST", "to must be after from");
  const usage = await queryUsage(db(c.env), c.get("org"), { from, to, groupBy });
  return c.json({ from: new Date(from).toISOString(), to: new Date(to).toISOString(), ...(groupBy ? { groupBy } : {}), ...usage });
});

// ---- prices -----------------------------------------------------------------------------

const PutPrices = z.object({ prices: PricesSchema }).strict();

usageSettingsRoutes.get("/prices", async (c) => {
  await authorize(c, "/settings/prices", "read");
  const { prices } = await orgUsageSettings(c.env, c.get("org").orgId);
  return c.json({ prices: prices ?? {}, defaults: DEFAULT_PRICES, unit: "USD per million tokens" });
});

usageSettingsRoutes.put("/prices", async (c) => {
  await authorize(c, "/settings/prices", "write");
  const body = await jsonBody(c, PutPrices);
  const empty = Object.keys(body.prices).length === 0;
  await setUsageSetting(c.env, c.get("org"), "prices", empty ? null : body.prices);
  auditRequest(c, { action: "settings.prices.put", resource: "/settings/prices", outcome: "success", input: { prices: body.prices } });
  return c.json({ prices: body.prices, defaults: DEFAULT_PRICES, unit: "USD per million tokens" });
});

// ---- budget -----------------------------------------------------------------------------

/** The budget with this month's use of it (one budget object round trip), or `budget: null`. */
async function budgetView(c: Context<AppEnv>, budget: Budget | null) {
  const month = monthOf();
  if (!budget) return { budget: null, month };
  const limits = limitsOf(budget);
  const state = await budgetStub(c.env, c.get("org").orgId, month).state();
  return {
    budget,
    month,
    used: { tokens: state.usedTokens, usd: state.usedUsd },
    reserved: { tokens: state.reservedTokens, usd: state.reservedUsd, calls: state.reservations },
    newRunsRefused: refusalOf(limits, month, state),
  };
}

usageSettingsRoutes.get("/budget", async (c) => {
  await authorize(c, "/settings/budget", "read");
  const { budget } = await orgUsageSettings(c.env, c.get("org").orgId);
  return c.json(await budgetView(c, budget));
});

usageSettingsRoutes.put("/budget", async (c) => {
  await authorize(c, "/settings/budget", "write");
  const budget = await jsonBody(c, BudgetSchema);
  const org = c.get("org");
  // Usage counted while the org had no budget (no round trips then) is taken in first, so a
  // budget set mid-month starts from what the month has used already.
  const month = monthRange();
  const used = await usedBetween(db(c.env), org.orgId, month.from, month.to);
  await budgetStub(c.env, org.orgId, monthOf(month.from)).baseline(used);
  await setUsageSetting(c.env, org, "budget", budget);
  auditRequest(c, { action: "settings.budget.put", resource: "/settings/budget", outcome: "success", input: budget });
  return c.json(await budgetView(c, budget));
});

usageSettingsRoutes.delete("/budget", async (c) => {
  await authorize(c, "/settings/budget", "write");
  await setUsageSetting(c.env, c.get("org"), "budget", null);
  auditRequest(c, { action: "settings.budget.delete", resource: "/settings/budget", outcome: "success" });
  return c.body(null, 204);
});
