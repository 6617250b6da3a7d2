/**
 * Shaman's built-in offline model: deterministic, no network, no account. It stands in
 * for a real model when none is configured, so the demo and the tests run anywhere. Its
 * answers say what it is, so nobody mistakes them for an LLM's.
 *
 * Every answer is a pure function of the call (prompt, offered tools, model id); tool-call
 * ids are `offline-<turn>-<n>` (turn = assistant messages so far), so a redelivered turn
 * gets the same answer.
 *
 * ## Without tools
 * A text answer: `[shaman-offline/<name>] Deterministic offline answer: …`, the first
 * sentence of the instructions and the request (see `offlineAnswer`).
 *
 * ## With platform tools (the issue 9 contract), one decision per turn, in this order
 * 1. **Call agents.** `call_agent` is offered, its description lists agents ("Agents you
 *    may call:" then one "- `Name`: …" line each) and no `call_agent` call is in the
 *    conversation yet: one `call_agent` per listed agent, all in this one response (so
 *    they run in parallel), `input` = the request (the first user message's text).
 *    Also in that response: one call of each non-platform tool (an MCP tool) the system
 *    prompt names in backticks (by its full name or the part after `server__`), with
 *    arguments made from its input schema (strings: the request; numbers: their minimum
 *    or 1; the first of an enum); the report lists each tool's result.
 * 2. **Ask for approval.** The approval rule below says so, `request_user_input` is
 *    offered and not called yet: `request_user_input { inputType: "approval", prompt }`,
 *    the prompt naming what is to be approved and why.
 * 3. **Complete.** The conversation holds tool results: `complete_agent_execution` (when
 *    offered; else the same report as text) with
 *    - `result`: a report naming each called agent with its status and quoting its result
 *      (each quote cut at 1,000 characters), and the approval's outcome;
 *    - `status`: FAILED when the approval was rejected (or could not be had); else FAILED
 *      when every called agent failed, PARTIAL when some did, SUCCESS otherwise;
 *    - `summary`: one line saying the same.
 * 4. Otherwise (tools offered but nothing to call or ask, `toolChoice: none`): the text
 *    answer above, which a turn loop takes as a SUCCESS.
 *
 * ## The approval rule
 * A line (of the system prompt or of the request) *asks for approval* when it holds a word
 * starting with "approv" and one of the words ask, request, require, need, must, get,
 * obtain, seek, with no negation before the "approv" word (never, not, don't, no,
 * without). Approval is needed when such a line exists and:
 * - it names no threshold: always; or
 * - it names one ("above", "over", "exceeding", "exceeds", "more than" or "greater than",
 *   then an amount, optionally with a currency code or sign before or after it, e.g.
 *   "Ask a person to approve invoices above 1,000 EUR"), and the request's total is
 *   greater than it. The request's total is the first amount after the last whole word
 *   "total" in the request (e.g. "Total: EUR 1,250.00", `"total": 1250`), within 24
 *   characters on the same line; commas are thousands separators. A request with no
 *   total needs no approval. Currencies are shown, not converted or compared.
 * An approval answer ("approved" / "rejected", see the contract) counts as approved when
 * it starts with "approve", "yes" or "ok"; anything else, or an error result, is a
 * rejection.
 *
 * ## Time and usage
 * `offline:<name>@<N>ms` answers every call after N milliseconds (at most 600,000; the
 * call's abort signal cuts the wait short), for benchmarks that need a model taking time.
 * `offline:<name>@<N>ms/<M>ms` also streams a text answer one line every M milliseconds (at
 * most 10,000), like a model writing as it goes; a generate call is not slowed by it.
 * Usage is an estimate: input tokens = characters of the prompt and tools / 4, output
 * tokens = characters of the answer (text and tool-call inputs) / 4, rounded up.
 */
import type {
  JSONValue,
  LanguageModelV4,
  LanguageModelV4CallOptions,
  LanguageModelV4Content,
  LanguageModelV4FunctionTool,
  LanguageModelV4GenerateResult,
  LanguageModelV4Prompt,
  LanguageModelV4StreamPart,
  LanguageModelV4ToolResultOutput,
  ProviderV4,
} from "@ai-sdk/provider";
import { NoSuchModelError } from "@ai-sdk/provider";

export const OFFLINE_PROVIDER = "shaman-offline";
/** The longest `@<N>ms` delay honoured. */
export const OFFLINE_MAX_DELAY_MS = 600_000;

const userText = (m: LanguageModelV4Prompt[number] | undefined) =>
  m?.role === "user" ? m.content.map((p) => (p.type === "text" ? p.text : "")).join("").trim() : "";

function lastUserText(prompt: LanguageModelV4Prompt): string {
  for (let i = prompt.length - 1; i >= 0; i--) {
    if (prompt[i]?.role === "user") return userText(prompt[i]);
  }
  return "";
}

/** The step's request: the first user message (the input a step was started with). */
function requestText(prompt: LanguageModelV4Prompt): string {
  return userText(prompt.find((m) => m.role === "user"));
}

function systemText(prompt: LanguageModelV4Prompt): string {
  return prompt
    .filter((m) => m.role === "system")
    .map((m) => (typeof m.content === "string" ? m.content : ""))
    .join("\n")
    .trim();
}

const words = (s: string) => (s.match(/\S+/g) ?? []).length;
const firstSentence = (s: string) => {
  const line = s.replace(/^#+\s*/gm, "").split(/\n\s*\n/)[0]?.replace(/\s+/g, " ").trim() ?? "";
  const m = /^(.{1,200}?[.!?])(\s|$)/.exec(line);
  return (m?.[1] ?? line.slice(0, 200)).trim();
};
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}…` : s);

/** The longest `/<M>ms` pause between streamed lines honoured. */
export const OFFLINE_MAX_LINE_PAUSE_MS = 10_000;

/**
 * `name@500ms` → name and delay; `name@500ms/20ms` also streams a text answer a line every
 * 20 ms (a model "typing"); anything else is a plain name.
 */
export function parseOfflineModelId(modelId: string): { name: string; delayMs: number; linePauseMs: number } {
  const m = /^(.*)@(\d+)ms(?:\/(\d+)ms)?$/.exec(modelId);
  if (!m) return { name: modelId || "default", delayMs: 0, linePauseMs: 0 };
  return {
    name: m[1] || "default",
    delayMs: Math.min(Number(m[2]), OFFLINE_MAX_DELAY_MS),
    linePauseMs: Math.min(Number(m[3] ?? 0), OFFLINE_MAX_LINE_PAUSE_MS),
  };
}

/** The deterministic text answer for a prompt: a pure function of the prompt's text. */
export function offlineAnswer(modelId: string, prompt: LanguageModelV4Prompt): string {
  const user = lastUserText(prompt);
  const system = systemText(prompt);
  const lines = [
    `[${OFFLINE_PROVIDER}/${modelId}] Deterministic offline answer: no language model was called.`,
    system ? `Instructions: ${firstSentence(system)}` : "Instructions: (none)",
    `Request (${words(user)} words): ${user || "(empty)"}`,
  ];
  return lines.join("\n");
}

// ---- the approval rule ------------------------------------------------------------------

const AMOUNT = String.raw`(\d[\d,]*(?:\.\d+)?)`;
const toNumber = (s: string) => Number(s.replace(/,/g, ""));

export interface ApprovalRule {
  /** The line that asks for approval, as written. */
  line: string;
  threshold?: { amount: number; currency?: string };
}

/** The first line of `text` that asks for approval (see the module header), if any. */
export function approvalRuleIn(text: string): ApprovalRule | undefined {
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const lower = line.toLowerCase();
    const at = lower.search(/\bapprov/);
    if (at < 0) continue;
    if (!/\b(ask|asks|request|requests|require|requires|required|need|needs|needed|must|get|obtain|seek)\b/.test(lower)) continue;
    if (/\b(never|not|don't|do not|no|without)\b/.test(lower.slice(0, at))) continue;
    // The first threshold word followed by an amount ("look over the invoice" is none).
    for (const kw of lower.matchAll(/\b(above|over|exceeding|exceeds|more than|greater than)\s+/g)) {
      const rest = line.slice(kw.index + kw[0].length);
      const m = new RegExp(String.raw`^(?:([A-Z]{3})\s?|([$€£¥])\s?)?${AMOUNT}(?:\s?([A-Z]{3})\b)?`).exec(rest);
      if (m?.[3]) {
        const currency = m[1] ?? m[2] ?? m[4];
        return { line, threshold: { amount: toNumber(m[3]), ...(currency ? { currency } : {}) } };
      }
    }
    return { line };
  }
  return undefined;
}

/** The request's total: the first amount after the last whole word "total" (same line, ≤ 24 chars). */
export function requestTotal(request: string): number | undefined {
  let total: number | undefined;
  for (const m of request.matchAll(new RegExp(String.raw`\btotal\b[^\d\n]{0,24}?${AMOUNT}`, "gi"))) {
    if (m[1]) total = toNumber(m[1]);
  }
  return total;
}

export interface ApprovalDecision {
  rule: ApprovalRule;
  total?: number;
}

/** Whether this step must ask a person to approve, by the rule in the module header. */
export function approvalNeeded(system: string, request: string): ApprovalDecision | undefined {
  const rule = approvalRuleIn(system) ?? approvalRuleIn(request);
  if (!rule) return undefined;
  if (!rule.threshold) return { rule };
  const total = requestTotal(request);
  if (total === undefined || !(total > rule.threshold.amount)) return undefined;
  return { rule, total };
}

// ---- reading the conversation ------------------------------------------------------------

/** Agents listed in a `call_agent` description ("Agents you may call:" then "- `Name`: …"). */
export function listedAgents(description: string | undefined): string[] {
  if (!description) return [];
  const at = description.indexOf("Agents you may call:");
  if (at < 0) return [];
  const names: string[] = [];
  for (const line of description.slice(at).split("\n")) {
    const m = /^\s*- `([^`]+)`/.exec(line);
    if (m?.[1] && !names.includes(m[1])) names.push(m[1]);
  }
  return names;
}

interface Exchange {
  toolName: string;
  input: unknown;
  output?: LanguageModelV4ToolResultOutput;
}

function exchanges(prompt: LanguageModelV4Prompt): Exchange[] {
  const byId = new Map<string, Exchange>();
  const order: Exchange[] = [];
  for (const m of prompt) {
    if (m.role === "assistant") {
      for (const p of m.content) {
        if (p.type !== "tool-call") continue;
        const e: Exchange = { toolName: p.toolName, input: p.input };
        byId.set(p.toolCallId, e);
        order.push(e);
      }
    }
    if (m.role === "assistant" || m.role === "tool") {
      for (const p of m.content) {
        if (p.type !== "tool-result") continue;
        const e = byId.get(p.toolCallId);
        if (e) e.output = p.output;
        else order.push({ toolName: p.toolName, input: undefined, output: p.output });
      }
    }
  }
  return order;
}

/** A tool result as a value: JSON as is, text parsed as JSON when it is JSON. */
function outputValue(output: LanguageModelV4ToolResultOutput | undefined): { error: boolean; value: JSONValue | undefined } {
  if (!output) return { error: true, value: "no result" };
  switch (output.type) {
    case "json":
      return { error: false, value: output.value };
    case "error-json":
      return { error: true, value: output.value };
    case "text":
    case "error-text": {
      let value: JSONValue = output.value;
      try {
        value = JSON.parse(output.value) as JSONValue;
      } catch {
        /* plain text */
      }
      return { error: output.type === "error-text", value };
    }
    case "execution-denied":
      return { error: true, value: output.reason ?? "execution denied" };
    case "content":
      return { error: false, value: output.value.map((p) => (p.type === "text" ? p.text : "")).join("") };
  }
}

const field = (v: JSONValue | undefined, key: string): JSONValue | undefined =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, JSONValue | undefined>)[key] : undefined;
const asText = (v: JSONValue | undefined): string => (typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v));

interface AgentOutcome {
  agent: string;
  status: "SUCCESS" | "PARTIAL" | "FAILED";
  text: string;
}

function agentOutcome(e: Exchange): AgentOutcome {
  const requested = asText(field(e.input as JSONValue, "agent")) || "agent";
  const { error, value } = outputValue(e.output);
  const agent = asText(field(value, "agent")) || requested;
  if (error) return { agent, status: "FAILED", text: asText(value) };
  const status = field(value, "status");
  const result = field(value, "result");
  return {
    agent,
    status: status === "FAILED" || status === "PARTIAL" ? status : "SUCCESS",
    text: result !== undefined ? asText(result) : asText(value),
  };
}

function approvalOutcome(e: Exchange): { approved: boolean; answer: string; comment?: string } {
  const { error, value } = outputValue(e.output);
  if (error) return { approved: false, answer: `could not be had (${clip(asText(value), 200)})` };
  const answer = (field(value, "answer") !== undefined ? asText(field(value, "answer")) : asText(value)).trim();
  const comment = field(value, "comment");
  return {
    approved: /^(approve|yes\b|ok\b)/i.test(answer),
    answer: answer || "(empty)",
    ...(comment !== undefined && comment !== null && asText(comment) ? { comment: asText(comment) } : {}),
  };
}

// ---- one turn ----------------------------------------------------------------------------

export type OfflineTurn =
  | { kind: "text"; text: string }
  | { kind: "tools"; calls: Array<{ toolCallId: string; toolName: string; input: Record<string, unknown> }> };

function approvalPrompt(request: string, d: ApprovalDecision): string {
  const what = `Approve this request? ${clip(firstSentence(request) || "(empty request)", 200)}`;
  const t = d.rule.threshold;
  if (t && d.total !== undefined) {
    const cur = t.currency ? ` ${t.currency}` : "";
    return `${what}\nIts total ${d.total}${cur} is above the approval threshold of ${t.amount}${cur} ("${clip(d.rule.line, 200)}").`;
  }
  return `${what}\nThe instructions ask for approval: "${clip(d.rule.line, 200)}".`;
}

const PLATFORM = new Set(["call_agent", "complete_agent_execution", "request_user_input", "run_data_write", "run_data_read", "run_data_query", "run_data_list", "run_data_delete"]);

/**
 * Tools other than the platform's (MCP tools) that the instructions name in backticks, by
 * their full name or the part after a `server__` prefix: the offline model calls each once.
 */
export function namedTools(system: string, tools: Map<string, LanguageModelV4FunctionTool>): LanguageModelV4FunctionTool[] {
  const quoted = new Set([...system.matchAll(/`([^`\n]{1,100})`/g)].map((m) => m[1]!.trim()));
  const out: LanguageModelV4FunctionTool[] = [];
  for (const t of tools.values()) {
    if (PLATFORM.has(t.name)) continue;
    const bare = t.name.includes("__") ? t.name.slice(t.name.indexOf("__") + 2) : t.name;
    if (quoted.has(t.name) || quoted.has(bare)) out.push(t);
  }
  return out;
}

/** Arguments that satisfy a tool's input schema: strings are the request, numbers their minimum (or 1), the first of an enum. */
export function argumentsFor(tool: LanguageModelV4FunctionTool, request: string): Record<string, unknown> {
  type Schema = { type?: string | string[]; properties?: Record<string, Schema>; required?: string[]; enum?: unknown[]; default?: unknown; minimum?: number; items?: Schema };
  const valueOf = (s: Schema | undefined, depth: number): unknown => {
    if (!s || depth > 4) return null;
    if (s.default !== undefined) return s.default;
    if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
    const type = Array.isArray(s.type) ? s.type[0] : s.type;
    switch (type) {
      case "string":
        return clip(request, 500);
      case "number":
      case "integer":
        return typeof s.minimum === "number" ? s.minimum : 1;
      case "boolean":
        return false;
      case "array":
        return [];
      case "object":
        return objectOf(s, depth + 1);
      default:
        return clip(request, 500);
    }
  };
  const objectOf = (s: Schema, depth: number): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const key of s.required ?? []) out[key] = valueOf(s.properties?.[key], depth);
    return out;
  };
  return objectOf(tool.inputSchema as Schema, 0);
}

/** What the offline model answers to one call: a pure function of the call. */
export function offlineTurn(modelId: string, options: Pick<LanguageModelV4CallOptions, "prompt" | "tools" | "toolChoice">): OfflineTurn {
  const { name } = parseOfflineModelId(modelId);
  const prompt = options.prompt;
  const text = (): OfflineTurn => ({ kind: "text", text: offlineAnswer(name, prompt) });
  if (options.toolChoice?.type === "none") return text();
  const tools = new Map<string, LanguageModelV4FunctionTool>();
  for (const t of options.tools ?? []) if (t.type === "function") tools.set(t.name, t);
  if (tools.size === 0) return text();

  const turn = prompt.filter((m) => m.role === "assistant").length;
  const id = (n: number) => `offline-${turn}-${n}`;
  const request = requestText(prompt);
  const done = exchanges(prompt);

  // 1. Call every listed agent, and every other tool the instructions name, in parallel, once.
  const agents = listedAgents(tools.get("call_agent")?.description);
  const named = namedTools(systemText(prompt), tools).filter((t) => !done.some((e) => e.toolName === t.name));
  if ((agents.length > 0 && !done.some((e) => e.toolName === "call_agent")) || (named.length > 0 && done.length === 0)) {
    const calls: Array<{ toolCallId: string; toolName: string; input: Record<string, unknown> }> = [];
    if (!done.some((e) => e.toolName === "call_agent")) for (const agent of agents) calls.push({ toolCallId: id(calls.length), toolName: "call_agent", input: { agent, input: request } });
    for (const t of named) calls.push({ toolCallId: id(calls.length), toolName: t.name, input: argumentsFor(t, request) });
    return { kind: "tools", calls };
  }

  // 2. Ask for approval when the rule says so.
  const approval = approvalNeeded(systemText(prompt), request);
  const asked = done.filter((e) => e.toolName === "request_user_input");
  if (approval && tools.has("request_user_input") && asked.length === 0) {
    return { kind: "tools", calls: [{ toolCallId: id(0), toolName: "request_user_input", input: { prompt: approvalPrompt(request, approval), inputType: "approval" } }] };
  }

  // 3. Complete from the tool results.
  const answered = done.filter((e) => e.output !== undefined);
  if (answered.length === 0) return text();
  const outcomes = done.filter((e) => e.toolName === "call_agent").map(agentOutcome);
  const decision = asked.length > 0 ? approvalOutcome(asked[asked.length - 1]!) : undefined;
  const failed = outcomes.filter((o) => o.status === "FAILED").length;
  const partial = outcomes.filter((o) => o.status === "PARTIAL").length;
  let status: "SUCCESS" | "PARTIAL" | "FAILED" = "SUCCESS";
  if (outcomes.length > 0 && failed === outcomes.length) status = "FAILED";
  else if (failed + partial > 0) status = "PARTIAL";
  if (decision && !decision.approved) status = "FAILED";

  const lines = [`[${OFFLINE_PROVIDER}/${name}] Report on: ${clip(firstSentence(request) || "(empty request)", 200)}`];
  if (outcomes.length > 0) {
    lines.push(`Agents called: ${outcomes.length}`);
    for (const o of outcomes) lines.push(`- ${o.agent} (${o.status}): ${clip(o.text, 1000) || "(no result)"}`);
  }
  const used = done.filter((e) => e.toolName !== "call_agent" && e.toolName !== "request_user_input" && e.output !== undefined);
  if (used.length > 0) {
    lines.push(`Tools used: ${used.length}`);
    for (const e of used) {
      const { error, value } = outputValue(e.output);
      lines.push(`- ${e.toolName}${error ? " (error)" : ""}: ${clip(asText(value), 1000) || "(no result)"}`);
    }
  }
  if (decision) lines.push(`Approval: ${decision.answer}${decision.comment ? ` (comment: ${clip(decision.comment, 500)})` : ""}`);

  const parts: string[] = [];
  if (outcomes.length > 0) {
    parts.push(
      failed + partial === 0
        ? `${outcomes.length} agent${outcomes.length === 1 ? "" : "s"} succeeded`
        : `${outcomes.length - failed - partial} of ${outcomes.length} agents succeeded` +
            (failed ? `, ${failed} failed (${outcomes.filter((o) => o.status === "FAILED").map((o) => o.agent).join(", ")})` : "") +
            (partial ? `, ${partial} partial` : ""),
    );
  }
  if (decision) parts.push(decision.approved ? "approved by a person" : `not approved: ${clip(decision.answer, 100)}${decision.comment ? ` (${clip(decision.comment, 200)})` : ""}`);
  const summary = parts.length > 0 ? `${status}: ${parts.join("; ")}` : `${status}: ${answered.length} tool result${answered.length === 1 ? "" : "s"}`;
  const result = lines.join("\n");

  if (!tools.has("complete_agent_execution")) return { kind: "text", text: `${result}\n${summary}` };
  return { kind: "tools", calls: [{ toolCallId: id(0), toolName: "complete_agent_execution", input: { result, status, summary } }] };
}

// ---- the model ---------------------------------------------------------------------------

const estimate = (chars: number) => Math.ceil(chars / 4);

function usage(options: LanguageModelV4CallOptions, turn: OfflineTurn) {
  const input = estimate(JSON.stringify(options.prompt).length + (options.tools ? JSON.stringify(options.tools).length : 0));
  const outChars = turn.kind === "text" ? turn.text.length : turn.calls.reduce((n, c) => n + c.toolName.length + JSON.stringify(c.input).length, 0);
  const output = estimate(outChars);
  return {
    inputTokens: { total: input, noCache: input, cacheRead: 0, cacheWrite: 0 },
    outputTokens: { total: output, text: turn.kind === "text" ? output : 0, reasoning: 0 },
  };
}

const finishReason = (turn: OfflineTurn) =>
  turn.kind === "tools" ? { unified: "tool-calls" as const, raw: "tool_calls" } : { unified: "stop" as const, raw: "stop" };

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason ?? new Error("aborted"));
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason ?? new Error("aborted"));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export class OfflineLanguageModel implements LanguageModelV4 {
  readonly specificationVersion = "v4" as const;
  readonly provider = OFFLINE_PROVIDER;
  readonly supportedUrls = {};
  /** Milliseconds every call waits before answering (`<name>@<N>ms`). */
  readonly delayMs: number;
  /** Milliseconds between the lines of a streamed text answer (`<name>@<N>ms/<M>ms`). */
  readonly linePauseMs: number;
  constructor(readonly modelId: string) {
    ({ delayMs: this.delayMs, linePauseMs: this.linePauseMs } = parseOfflineModelId(modelId));
  }

  async doGenerate(options: LanguageModelV4CallOptions): Promise<LanguageModelV4GenerateResult> {
    await sleep(this.delayMs, options.abortSignal);
    const turn = offlineTurn(this.modelId, options);
    const content: LanguageModelV4Content[] =
      turn.kind === "text"
        ? [{ type: "text", text: turn.text }]
        : turn.calls.map((c) => ({ type: "tool-call", toolCallId: c.toolCallId, toolName: c.toolName, input: JSON.stringify(c.input) }));
    return {
      content,
      finishReason: finishReason(turn),
      usage: usage(options, turn),
      response: { id: `offline-${crypto.randomUUID()}`, modelId: this.modelId, timestamp: new Date() },
      warnings: [],
    };
  }

  async doStream(options: LanguageModelV4CallOptions) {
    await sleep(this.delayMs, options.abortSignal);
    const turn = offlineTurn(this.modelId, options);
    const pause = this.linePauseMs;
    const stream = new ReadableStream<LanguageModelV4StreamPart>({
      async start(controller) {
        controller.enqueue({ type: "stream-start", warnings: [] });
        if (turn.kind === "text") {
          controller.enqueue({ type: "text-start", id: "t0" });
          const lines = turn.text.split(/(?<=\n)/);
          for (const [i, delta] of lines.entries()) {
            if (i > 0 && pause > 0) {
              try {
                await sleep(pause, options.abortSignal);
              } catch (err) {
                controller.error(err);
                return;
              }
            }
            controller.enqueue({ type: "text-delta", id: "t0", delta });
          }
          controller.enqueue({ type: "text-end", id: "t0" });
        } else {
          for (const c of turn.calls) {
            const input = JSON.stringify(c.input);
            controller.enqueue({ type: "tool-input-start", id: c.toolCallId, toolName: c.toolName });
            controller.enqueue({ type: "tool-input-delta", id: c.toolCallId, delta: input });
            controller.enqueue({ type: "tool-input-end", id: c.toolCallId });
            controller.enqueue({ type: "tool-call", toolCallId: c.toolCallId, toolName: c.toolName, input });
          }
        }
        controller.enqueue({ type: "finish", usage: usage(options, turn), finishReason: finishReason(turn) });
        controller.close();
      },
    });
    return { stream };
  }
}

export const offlineProvider: ProviderV4 = {
  specificationVersion: "v4",
  languageModel: (modelId: string) => new OfflineLanguageModel(modelId || "default"),
  embeddingModel: (modelId: string) => {
    throw new NoSuchModelError({ modelId, modelType: "embeddingModel" });
  },
  imageModel: (modelId: string) => {
    throw new NoSuchModelError({ modelId, modelType: "imageModel" });
  },
};
