/**
 * Conversations: tasks that share a `contextId` (issue 11 item 6). A new task in a context
 * sees the context's earlier turns: each earlier settled task of the same agent gives its
 * user message and, when it completed, its final answer. Bounded to the last
 * `MAX_TURNS` turns and `MAX_BYTES` of text, the oldest dropped first. They reach the
 * run as `RunInit.history`; the root step's model reads them before the message.
 *
 * The text comes from the runs' D1 rows (`input_text`, `output_text`, written by the run
 * object with its summary); a row without it (a run from before migration 0006) is read
 * from the run's object instead.
 */
import { contextRuns } from "../db/runs";
import { db } from "../db/client";
import type { RunRow } from "../db/schema";
import type { OrgScope } from "../db/scope";
import { runStub } from "../runs/stub";
import type { HistoryTurn } from "../runs/types";
import { messageText } from "./wire";

export const MAX_TURNS = 20;
export const MAX_BYTES = 32 * 1024;

const TERMINAL = new Set(["completed", "failed", "canceled"]);
const bytes = (s: string) => new TextEncoder().encode(s).length;

/** The earlier turns of a context for a new task of `agent`, oldest first. */
export async function contextHistory(env: Env, scope: OrgScope, agent: { repositoryId: string; name: string }, contextId: string, exceptRunId?: string): Promise<HistoryTurn[]> {
  // Each task is at most two turns: MAX_TURNS / 2 tasks cover the bound.
  const rows = (await contextRuns(db(env), scope, agent, contextId, MAX_TURNS / 2, exceptRunId)).filter((r) => TERMINAL.has(r.status));
  const texts = await Promise.all(rows.map((r) => turnText(env, scope, r)));
  const turns: HistoryTurn[] = [];
  // rows are newest first: collect backwards, then reverse.
  for (const t of texts) {
    if (!t) continue;
    if (t.output !== null) turns.push({ role: "assistant", text: t.output });
    turns.push({ role: "user", text: t.input });
  }
  return bound(turns.reverse());
}

/** Keeps the last `MAX_TURNS` turns within `MAX_BYTES`, dropping the oldest first (a lone oversized turn keeps its end). */
export function bound(turns: HistoryTurn[], maxTurns = MAX_TURNS, maxBytes = MAX_BYTES): HistoryTurn[] {
  const kept: HistoryTurn[] = [];
  let size = 0;
  for (let i = turns.length - 1; i >= 0 && kept.length < maxTurns; i--) {
    const t = turns[i]!;
    const n = bytes(t.text);
    if (size + n > maxBytes) {
      if (kept.length === 0) kept.push({ role: t.role, text: tail(t.text, maxBytes) });
      break;
    }
    kept.push(t);
    size += n;
  }
  return kept.reverse();
}

function tail(text: string, maxBytes: number): string {
  let out = text.slice(-maxBytes);
  while (bytes(out) > maxBytes) out = out.slice(Math.ceil((bytes(out) - maxBytes) / 4) || 1);
  return out;
}

async function turnText(env: Env, scope: OrgScope, row: RunRow): Promise<{ input: string; output: string | null } | null> {
  if (row.inputText !== null && (row.status !== "completed" || row.outputText !== null)) {
    return { input: row.inputText, output: row.status === "completed" ? row.outputText : null };
  }
  const snapshot = await runStub(env, row.id).snapshot(scope.orgId);
  if (!snapshot) return null;
  return { input: messageText(snapshot.message), output: snapshot.status === "completed" ? snapshot.output : null };
}
