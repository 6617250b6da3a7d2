/**
 * Org budgets (`settings.budget`: `{ period: "month", maxTokens?, maxUsd? }`), enforced while
 * runs go: each model call reserves its maximum in the org's budget object for the month
 * (durable-objects/budget.ts) before it starts and settles after, so parallel branches cannot
 * overshoot together. A call the budget cannot hold fails its step (`BudgetExceededError`);
 * new runs are refused (`budgetRefusal`) while a call like the smallest one refused could not
 * run either, or the budget is used up. Months are calendar months in UTC.
 *
 * An org without a budget never reaches a budget object: the settings (cached briefly) say so.
 */
import type { BudgetAmount, BudgetLimits, BudgetObject, BudgetState, ReserveResult } from "../../durable-objects/budget";
import { JsonRpcError } from "../a2a/jsonrpc";
import { AppError } from "../errors";
import { orgUsageSettings, type Budget } from "./settings";

/** The JSON-RPC error code of a request refused for the org's budget (server range, not one of A2A's -32001..-32009). */
export const BUDGET_EXCEEDED_RPC_CODE = -32040;

/** `YYYY-MM` (UTC) of a time. */
export function monthOf(at: number = Date.now()): string {
  return new Date(at).toISOString().slice(0, 7);
}

/** [start, end) of the calendar month (UTC) that holds `at`, in epoch ms. */
export function monthRange(at: number = Date.now()): { from: number; to: number } {
  const d = new Date(at);
  return { from: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), to: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
}

/** How many RPCs went to budget objects from this isolate (tests check that an org without a budget makes none). */
export const budgetRoundTrips = { count: 0 };

export function budgetStub(env: Env, orgId: string, month: string): DurableObjectStub<BudgetObject> {
  budgetRoundTrips.count++;
  return env.BUDGETS.get(env.BUDGETS.idFromName(`${orgId}:${month}`));
}

export function limitsOf(budget: Budget): BudgetLimits {
  return { ...(budget.maxTokens !== undefined ? { maxTokens: budget.maxTokens } : {}), ...(budget.maxUsd !== undefined ? { maxUsd: budget.maxUsd } : {}) };
}

const fmtTokens = (n: number) => `${Math.round(n).toLocaleString("en-US")} tokens`;
const fmtUsd = (n: number) => `$${n >= 100 ? n.toFixed(2) : n >= 0.01 ? n.toFixed(4).replace(/0{1,2}$/, "") : n.toPrecision(2)}`;

/** "1,000 tokens" / "$5.00" / "1,000 tokens or $5.00". */
export function describeBudget(budget: BudgetLimits): string {
  const parts: string[] = [];
  if (budget.maxTokens !== undefined) parts.push(fmtTokens(budget.maxTokens));
  if (budget.maxUsd !== undefined) parts.push(fmtUsd(budget.maxUsd));
  return parts.join(" or ");
}

/** What is used and reserved in the unit(s) of the budget. */
function describeState(budget: BudgetLimits, state: BudgetState, which: "tokens" | "usd" | "both" = "both"): string {
  const tokens = budget.maxTokens !== undefined && which !== "usd";
  const usd = budget.maxUsd !== undefined && which !== "tokens";
  const used = [tokens ? fmtTokens(state.usedTokens) : null, usd ? fmtUsd(state.usedUsd) : null].filter(Boolean).join(" / ");
  const reserved = [tokens ? fmtTokens(state.reservedTokens) : null, usd ? fmtUsd(state.reservedUsd) : null].filter(Boolean).join(" / ");
  return `${used} used, ${reserved} reserved`;
}

function describeNeed(budget: BudgetLimits, need: BudgetAmount, which: "tokens" | "usd" | "both" = "both"): string {
  const parts: string[] = [];
  if (budget.maxTokens !== undefined && which !== "usd") parts.push(`up to ${fmtTokens(need.tokens)}`);
  if (budget.maxUsd !== undefined && which !== "tokens") parts.push(`up to ${fmtUsd(need.usd)}`);
  return parts.join(" / ");
}

/** A model call the org's budget cannot hold. Not transient: the step fails with this message. */
export class BudgetExceededError extends AppError {
  constructor(message: string, details: Record<string, unknown>) {
    super("PAYMENT_REQUIRED", message, { reason: "BUDGET_EXCEEDED", ...details });
    this.name = "BudgetExceededError";
  }
}

/** The refusal of one call: "the org's monthly budget of … is used up (… used, … reserved); the call needs …". */
export function refusalMessage(budget: BudgetLimits, month: string, state: BudgetState, need: BudgetAmount, limit: "tokens" | "usd"): string {
  return `the org's monthly budget of ${describeBudget(budget)} for ${month} is used up (${describeState(budget, state, limit)}); the call needs ${describeNeed(budget, need, limit)}`;
}

export interface Reservation {
  callId: string;
  month: string;
  need: BudgetAmount;
  /** The budget object's answer (for events or logs). */
  state: BudgetState;
}

/**
 * Reserves a call's maximum in the org's budget for this month. Throws
 * `BudgetExceededError` when it does not fit. Returns null (and makes no round trip) for an
 * org without a budget.
 */
export async function reserveBudget(env: Env, orgId: string, callId: string, need: BudgetAmount, known?: { budget: Budget | null }): Promise<Reservation | null> {
  const { budget } = known ?? (await orgUsageSettings(env, orgId));
  if (!budget) return null;
  const month = monthOf();
  const limits = limitsOf(budget);
  const answer: ReserveResult = await budgetStub(env, orgId, month).reserve(callId, need, limits);
  if (!answer.ok) {
    throw new BudgetExceededError(refusalMessage(limits, month, answer.state, need, answer.limit), {
      month,
      budget: limits,
      used: { tokens: answer.state.usedTokens, usd: answer.state.usedUsd },
      reserved: { tokens: answer.state.reservedTokens, usd: answer.state.reservedUsd },
      needed: need,
    });
  }
  return { callId, month, need, state: answer.state };
}

/** Settles a reservation with what the call used (zero when it failed before using anything). */
export async function settleBudget(env: Env, orgId: string, reservation: Reservation, actual: BudgetAmount): Promise<void> {
  await budgetStub(env, orgId, reservation.month).settle(reservation.callId, actual);
}

/**
 * Why a new run of the org may not start now, or null. Refused while the budget is used up,
 * or while a call like the smallest one refused this month would be refused again (what is
 * used plus what it needed is past a limit). Reservations in flight are not counted: they
 * settle soon, usually for less. No round trip for an org without a budget.
 */
export async function budgetRefusal(env: Env, orgId: string): Promise<string | null> {
  const { budget } = await orgUsageSettings(env, orgId);
  if (!budget) return null;
  const month = monthOf();
  const limits = limitsOf(budget);
  const state = await budgetStub(env, orgId, month).state();
  return refusalOf(limits, month, state);
}

/** The refusal for a budget in this state, or null. */
export function refusalOf(limits: BudgetLimits, month: string, state: BudgetState): string | null {
  const small = state.smallestRefused;
  const tokensSpent = limits.maxTokens !== undefined && state.usedTokens >= limits.maxTokens;
  const usdSpent = limits.maxUsd !== undefined && state.usedUsd >= limits.maxUsd;
  const tokensShort = limits.maxTokens !== undefined && small !== null && state.usedTokens + small.tokens > limits.maxTokens;
  const usdShort = limits.maxUsd !== undefined && small !== null && small.usd > 0 && state.usedUsd + small.usd > limits.maxUsd;
  const tokensOut = tokensSpent || tokensShort;
  const usdOut = usdSpent || usdShort;
  if (!tokensOut && !usdOut) return null;
  const which = tokensOut && usdOut ? "both" : tokensOut ? "tokens" : "usd";
  const used = [which !== "usd" ? fmtTokens(state.usedTokens) : null, which !== "tokens" ? fmtUsd(state.usedUsd) : null].filter(Boolean).join(" / ");
  const why = small && !(tokensSpent || usdSpent) ? `; a model call needing ${describeNeed(limits, small, which)} was refused` : "";
  return `the org's monthly budget of ${describeBudget(limits)} for ${month} is used up (${used} used${why}); new runs are refused until the budget is raised or the month ends`;
}

/** The problem (HTTP 402) for a run refused for the budget, on the org API. */
export async function assertWithinBudget(env: Env, orgId: string): Promise<void> {
  const refusal = await budgetRefusal(env, orgId);
  if (refusal) throw new BudgetExceededError(refusal, { month: monthOf() });
}

/** The JSON-RPC error (A2A form) for a run refused for the budget: `error.data` is ErrorInfo-like. */
export function budgetRpcError(message: string): JsonRpcError {
  return new JsonRpcError(BUDGET_EXCEEDED_RPC_CODE, message, { reason: "BUDGET_EXCEEDED", domain: "shaman", metadata: { period: "month", month: monthOf() } });
}
