// `npm run demo`: starts Shaman locally (wrangler dev: local D1, R2, Queues, Durable
// Objects) and a local git server holding examples/agents, creates the demo org `acme`,
// registers that git repository and lets Shaman sync it, then runs a multi-agent flow:
// ProcessInvoice (over A2A) calls ValidateData and VendorCheck in parallel, joins, and asks
// a person to approve the invoice because its total is above 1,000 EUR. Two partners run
// beside Shaman on 127.0.0.1 (scripts/partners.mjs) and are registered in the org:
// `@modelcontextprotocol/server-everything` over Streamable HTTP (PUT /mcp-servers/everything),
// whose `get-sum` tool ValidateData calls, and SanctionsScreen, an agent of a "partner
// platform" served by a real `@a2a-js/sdk` server (PUT /external-agents/SanctionsScreen),
// which VendorCheck calls over A2A. The run's DAG is drawn live from its event stream (an
// indented tree, one line per step and per tool call or external call, redrawn in a
// terminal; one line per change when the output is not a terminal, as in CI logs). The
// demo answers the approval itself through POST /runs/{id}/input/{requestId}, shows the run
// finishing, lists the tool and external calls with their results and prints the final
// answer (A2A GetTask); it fails (exit 1) unless the MCP tool ran and the external agent
// answered. Last, an unmodified A2A client (`@a2a-js/sdk/client`) that knows only the org's
// URL discovers its agents and uses every method of the spec on both bindings
// (scripts/a2a-walkthrough.mjs); the demo fails if any answer is wrong. No account or API
// key is needed: with no model configured, agents run on the built-in offline model.
//
// Flags: --plain (one line per change even in a terminal), --events (also print every event).
import { rmSync } from "node:fs";
import { join } from "node:path";
import { DEMO_ORG, ROOT, freePort, http, migrateLocal, seedDemo, startDemoGit, startWrangler } from "./local.mjs";
import { a2aWalkthrough } from "./a2a-walkthrough.mjs";
import { PARTNER_NAMES, registerPartners, startPartners } from "./partners.mjs";

const persistTo = join(ROOT, ".wrangler", "demo-state");
const org = DEMO_ORG.slug;
const agent = "ProcessInvoice";
// Above ProcessInvoice's approval threshold (1,000 EUR): the run stops for a person.
const invoice = `INVOICE INV-2026-0417
Globex Corporation, 42 Industrial Way, Springfield
VAT ID DE129273398   IBAN DE89 3704 0044 0532 0130 00
Bill to: Acme Corp
Issue date: 2026-11-02   Due: 2026-12-02
8 x Widget Pro @ 149.00 EUR = 1,192.00 EUR
1 x Installation @ 80.00 EUR = 80.00 EUR
Subtotal 1,272.00 EUR  VAT 19% 241.68 EUR  Total 1,513.68 EUR`;
const RUN_TIMEOUT_MS = 120_000;

const args = new Set(process.argv.slice(2));
const live = process.stdout.isTTY === true && !args.has("--plain") && !process.env.CI;
const color = process.stdout.isTTY === true && !process.env.NO_COLOR;
const paint = (code, s) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = (s) => paint(1, s);
const dim = (s) => paint(2, s);

// ---- the DAG, as the events tell it -----------------------------------------------------

const STATUS_LOOK = {
  queued: ["·", 2],
  running: ["▸", 36],
  waiting: ["◷", 33],
  input_required: ["?", 35],
  completed: ["✓", 32],
  failed: ["✗", 31],
  canceled: ["⊘", 31],
};

const clipText = (s, n) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** A tool call's result as one short line: an MCP result's text, an external agent's answer. */
function resultLine(d) {
  if (d.error !== undefined) return `error: ${String(d.error)}`;
  const r = d.result;
  if (r && typeof r === "object" && Array.isArray(r.content)) return r.content.map((c) => (typeof c === "string" ? c : JSON.stringify(c))).join(" ");
  if (r && typeof r === "object" && typeof r.status === "string") return `${r.status}: ${typeof r.result === "string" ? r.result : JSON.stringify(r.result ?? r.question ?? "")}`;
  return typeof r === "string" ? r : JSON.stringify(r);
}

/**
 * The run's steps, built from its events (step.queued … step.completed), and, under each
 * step, its calls that are work of their own: MCP tool calls and calls to external agents
 * (tool.called, then the step waits on them, tool.started, tool.progress, tool.result).
 */
class Dag {
  steps = new Map();
  run = { status: "submitted", events: 0 };
  /** tool.called by `<stepId>/<callId>` (call ids are unique within a step): { stepId, tool, args }. */
  calls = new Map();
  /** The work calls' nodes (also in `steps`, keyed `call:<stepId>/<callId>`). */
  work = [];

  /**
   * Applies one event. Returns what it changed: `{ step }`, `{ step, minor: true }` for a
   * detail (a model turn, a request about to park the step), `{ run: true }`, or null.
   */
  apply(ev) {
    this.run.events = ev.seq;
    const d = ev.data ?? {};
    const at = Date.parse(ev.at);
    this.run.createdAt ??= at;
    if (ev.type.startsWith("run.")) {
      const map = { "run.created": "submitted", "run.input_required": "input_required", "run.working": "working", "run.completed": "completed", "run.failed": "failed", "run.canceled": "canceled" };
      if (!map[ev.type] || map[ev.type] === this.run.status) return null;
      this.run.status = map[ev.type];
      if (["completed", "failed", "canceled"].includes(this.run.status)) this.run.endedAt = at;
      return { run: true };
    }
    if (!ev.stepId) return null;
    if (ev.type.startsWith("tool.")) return this.tool(ev, d, at);
    if (ev.type === "step.queued") {
      this.steps.set(ev.stepId, { id: ev.stepId, agent: d.agent, parentId: d.parentId ?? null, depth: d.depth ?? 0, status: "queued", turn: 0, queuedAt: at, endedAt: null, durationMs: null, note: "" });
      return { step: this.steps.get(ev.stepId) };
    }
    const s = this.steps.get(ev.stepId);
    if (!s) return null;
    switch (ev.type) {
      case "step.started":
        if (this.run.status === "submitted") this.run.status = "working";
        s.status = "running";
        s.turn = d.turn ?? s.turn + 1;
        s.note = `turn ${s.turn}${d.attempt > 1 ? ` (attempt ${d.attempt})` : ""}: model`;
        break;
      case "model.turn": {
        const calls = {};
        for (const t of d.toolCalls ?? []) calls[t] = (calls[t] ?? 0) + 1;
        const named = Object.entries(calls).map(([t, n]) => (n > 1 ? `${t} ×${n}` : t));
        s.note = `turn ${d.turn}: ${named.length ? named.join(", ") : "answered"}`;
        return { step: s, minor: true };
      }
      case "step.waiting": {
        const on = d.on ?? [];
        const people = on.filter((w) => w.requestId).length;
        const agents = on.filter((w) => w.step).length;
        const work = on.filter((w) => w.call);
        s.status = people > 0 ? "input_required" : "waiting";
        const what = [agents ? `${agents} agent${agents === 1 ? "" : "s"}` : "", work.length ? `${work.length} call${work.length === 1 ? "" : "s"}` : ""].filter(Boolean).join(" and ");
        s.note = people > 0 ? `waits for a person` : `waits for ${what || "nothing"}`;
        // Each MCP tool call and external agent call it waits on is a node under it, queued.
        for (const w of work) this.workNode(w.call, s, at);
        break;
      }
      case "input.requested":
        s.note = `asks for ${d.inputType === "approval" ? "approval" : "input"}`;
        return { step: s, minor: true };
      case "input.answered":
        s.note = `answered: ${typeof d.answer === "string" ? d.answer : typeof d.answer?.answer === "string" ? d.answer.answer : JSON.stringify(d.answer)}`;
        break;
      case "step.resumed":
        s.status = "queued";
        s.note = `results in; turn ${d.turn} queued`;
        break;
      case "step.retrying":
        s.status = "queued";
        s.note = `retrying: ${String(d.error ?? "").slice(0, 60)}`;
        break;
      case "step.completed":
        s.status = "completed";
        s.endedAt = at;
        s.durationMs = d.durationMs ?? at - s.queuedAt;
        s.note = `${d.status ?? "SUCCESS"} after ${s.turn} turn${s.turn === 1 ? "" : "s"}`;
        break;
      case "step.failed":
      case "step.canceled":
        s.status = ev.type === "step.failed" ? "failed" : "canceled";
        s.endedAt = at;
        s.durationMs = at - s.queuedAt;
        s.note = String(d.error ?? d.reason ?? "").slice(0, 80);
        break;
      default:
        return null;
    }
    return { step: s };
  }

  /** The node of a work call (an MCP tool or an external agent), made when its step waits on it. */
  workNode(callId, parent, at) {
    const key = `call:${parent.id}/${callId}`;
    if (this.steps.has(key)) return this.steps.get(key);
    const c = this.calls.get(`${parent.id}/${callId}`) ?? { stepId: parent.id, tool: "?", args: {} };
    const external = c.tool === "call_agent";
    const node = {
      id: external ? "a2a" : "mcp",
      kind: external ? "remote" : "mcp",
      callId,
      stepId: parent.id,
      tool: c.tool,
      args: c.args,
      agent: external ? `${c.args?.agent ?? "?"} [external, A2A]` : `${c.tool} [MCP]`,
      parentId: parent.id,
      depth: parent.depth + 1,
      status: "queued",
      turn: 0,
      queuedAt: at,
      endedAt: null,
      durationMs: null,
      note: external ? "SendMessage queued" : `args ${clipText(JSON.stringify(c.args ?? {}), 60)}`,
      result: undefined,
    };
    this.steps.set(key, node);
    this.work.push(node);
    return node;
  }

  tool(ev, d, at) {
    if (ev.type === "tool.called") {
      this.calls.set(`${ev.stepId}/${d.callId}`, { stepId: ev.stepId, tool: d.tool, args: d.args });
      return null;
    }
    const node = this.steps.get(`call:${ev.stepId}/${d.callId}`);
    if (!node) return null; // a platform tool or a call to one of our agents: its step tells
    switch (ev.type) {
      case "tool.started":
        node.status = "running";
        node.startedAt = at;
        node.note = d.kind === "mcp" ? `tools/call on server ${d.server}${d.attempt > 1 ? ` (attempt ${d.attempt})` : ""}` : `SendMessage to ${d.agent}${d.attempt > 1 ? ` (attempt ${d.attempt})` : ""}`;
        break;
      case "tool.progress":
        node.status = d.state === "retrying" ? "queued" : "waiting";
        node.note = d.state === "retrying" ? `retrying: ${clipText(String(d.error ?? ""), 60)}` : `remote task ${d.state}${d.text ? `: ${clipText(d.text, 60)}` : ""}`;
        break;
      case "tool.result":
        node.status = d.error !== undefined ? "failed" : "completed";
        node.endedAt = at;
        node.durationMs = at - node.queuedAt;
        node.result = d;
        node.note = clipText(resultLine(d), 100);
        break;
      default:
        return null;
    }
    return { step: node };
  }

  /** Steps in tree order, each with its drawing prefix. */
  ordered() {
    const kids = new Map();
    const roots = [];
    for (const s of this.steps.values()) {
      if (s.parentId && this.steps.has(s.parentId)) (kids.get(s.parentId) ?? kids.set(s.parentId, []).get(s.parentId)).push(s);
      else roots.push(s);
    }
    const out = [];
    const walk = (s, lead, last, top) => {
      out.push({ step: s, prefix: top ? "" : `${lead}${last ? "└─ " : "├─ "}` });
      const children = kids.get(s.id) ?? [];
      children.forEach((c, i) => walk(c, top ? "" : `${lead}${last ? "   " : "│  "}`, i === children.length - 1, false));
    };
    roots.forEach((r) => walk(r, "", true, true));
    return out;
  }
}

const seconds = (ms) => `${(ms / 1000).toFixed(2)} s`;

/** Splits text into lines of at most `width` characters (at spaces where it can). */
function wrap(text, width) {
  const out = [];
  for (const para of text.split("\n")) {
    let line = "";
    for (const word of para.split(/\s+/).filter(Boolean)) {
      if (line && line.length + 1 + word.length > width) {
        out.push(line);
        line = "";
      }
      line = line ? `${line} ${word}` : word;
      while (line.length > width) {
        out.push(line.slice(0, width));
        line = line.slice(width);
      }
    }
    out.push(line);
  }
  return out;
}

const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;
/** `line` if it fits in `cols` visible characters, else its text cut to fit (without colours). */
function fit(line, cols) {
  const plain = line.replace(ANSI, "");
  return plain.length <= cols ? line : `${plain.slice(0, cols - 1)}…`;
}

function stepLine(s, prefix, width, now) {
  const [icon, code] = STATUS_LOOK[s.status] ?? ["?", 0];
  const took = s.durationMs ?? now - s.queuedAt;
  const name = `${prefix}${s.agent}`.padEnd(width);
  return `  ${name}  ${dim(s.id.padEnd(3))}  ${paint(code, `${icon} ${s.status.padEnd(14)}`)} ${seconds(Math.max(0, took)).padStart(8)}  ${dim(s.note)}`;
}

/** Draws the tree: redrawn in place in a terminal, one line per change otherwise. */
class TreeView {
  drawn = 0;
  timer = null;
  constructor(dag) {
    this.dag = dag;
    if (live) this.timer = setInterval(() => this.redraw(), 100);
  }

  /** The tree's lines, each cut to the terminal's width (a wrapped line would spoil the redraw). */
  lines() {
    const rows = this.dag.ordered();
    const width = Math.max(16, ...rows.map((r) => r.prefix.length + r.step.agent.length));
    const now = Date.now();
    const run = this.dag.run;
    const cols = Math.max(20, (process.stdout.columns || 120) - 1);
    const steps = this.dag.steps.size - this.dag.work.length;
    const calls = this.dag.work.length ? ` · ${this.dag.work.length} tool/external call${this.dag.work.length === 1 ? "" : "s"}` : "";
    return [
      dim(`  run ${run.status} · ${steps} step${steps === 1 ? "" : "s"}${calls} · ${run.events} events · ${seconds((run.endedAt ?? now) - (run.createdAt ?? now))}`),
      ...rows.map((r) => stepLine(r.step, r.prefix, width, now)),
    ].map((l) => fit(l, cols));
  }

  clear() {
    if (live && this.drawn > 0) process.stdout.write(`\x1b[${this.drawn}F\x1b[J`);
    this.drawn = 0;
  }

  redraw() {
    if (!live) return;
    this.clear();
    const lines = this.lines();
    process.stdout.write(`${lines.join("\n")}\n`);
    this.drawn = lines.length;
  }

  /**
   * Something changed (see Dag.apply) at `at` (the event's time): redraw; or, not in a
   * terminal, print one line for a step's change (indented by depth; details skipped) or
   * the run's, stamped with the time since the run was created.
   */
  changed(change, at) {
    if (live) return this.redraw();
    if (change.minor) return;
    const stamp = dim(`+${seconds(at - (this.dag.run.createdAt ?? at)).padStart(7)}`);
    if (change.run) return console.log(`${stamp}  ${bold(`run ${this.dag.run.status}`)}`);
    const step = change.step;
    const indent = step.depth > 0 ? `${"   ".repeat(step.depth - 1)}└─ ` : "";
    const width = Math.max(16, indent.length + step.agent.length);
    console.log(`${stamp}${stepLine(step, indent, width, at)}`);
  }

  /** A message above the tree. */
  log(text) {
    this.clear();
    console.log(text);
    this.redraw();
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.redraw(); // leaves the last tree on screen
  }
}

// ---- the demo --------------------------------------------------------------------------

const section = (s) => console.log(`\n${bold(`▸ ${s}`)}`);

async function main() {
  rmSync(persistTo, { recursive: true, force: true });
  section("Applying D1 migrations (local)");
  migrateLocal(persistTo);

  section("Starting a local git server with examples/agents as acme/agents.git (git http-backend)");
  const { git, url: repoUrl, head } = await startDemoGit();
  console.log(`  ${repoUrl} @ ${head.slice(0, 12)}`);

  section("Starting the partners on 127.0.0.1: an MCP server and an external A2A agent (scripts/partners.mjs)");
  const partners = await startPartners();
  console.log(`  MCP server   @modelcontextprotocol/server-everything over Streamable HTTP: ${partners.mcp.url}`);
  console.log(`  A2A agent    ${PARTNER_NAMES.externalAgent} on a "partner platform" (@a2a-js/sdk server): ${partners.sanctions.url}`);

  const port = await freePort();
  section(`Starting Shaman on http://${org}.localhost:${port} (wrangler dev)`);
  let server;
  try {
    server = await startWrangler({ port, persistTo });
    section(`Creating the demo org '${org}' and syncing its agents from git: POST /repositories`);
    const seeded = await seedDemo(port, { repoUrl });
    const sync = seeded.sync;
    console.log(`  repository ${seeded.repository.name} @ ${sync.commit.slice(0, 12)} synced in ${sync.durationMs} ms: agents ${sync.result.agents.join(", ")}`);
    const auth = { authorization: `Bearer ${seeded.apiKey}` };
    console.log(`  owner API key ${seeded.apiKey.slice(0, 17)}… (shown once; every call below is authenticated with it)`);
    const api = (path, method = "GET", body) => http({ port, host: `${org}.localhost`, path, method, headers: auth, body });

    section(`Registering the partners in '${org}': PUT /mcp-servers/${PARTNER_NAMES.mcpServer}, PUT /external-agents/${PARTNER_NAMES.externalAgent}`);
    const registered = await registerPartners(port, { slug: org, apiKey: seeded.apiKey, mcpUrl: partners.mcp.url, sanctionsUrl: partners.sanctions.url });
    console.log(`  mcp server '${registered.mcpServer.name}' → ${registered.mcpServer.url}, tools offered: ${(registered.mcpServer.tools ?? ["(all)"]).join(", ")}   (ValidateData: mcpServers: [${PARTNER_NAMES.mcpServer}])`);
    console.log(`  external agent '${registered.externalAgent.name}' → ${registered.externalAgent.url}   (VendorCheck: allowedAgents: [${PARTNER_NAMES.externalAgent}])`);

    section(`Agent card: GET http://${org}.localhost:${port}/a2a/agents/${agent}/.well-known/agent-card.json`);
    const card = await api(`/a2a/agents/${agent}/.well-known/agent-card.json`);
    console.log(`  ${card.json.name} v${card.json.version}: ${card.json.description}`);

    // One A2A JSON-RPC call to the agent, as the authenticated demo caller.
    const a2a = (id, method, params) =>
      http({ port, host: `${org}.localhost`, path: `/a2a/agents/${agent}`, method: "POST", headers: { "A2A-Version": "1.0", ...auth }, body: { jsonrpc: "2.0", id, method, params } });

    section(`A2A SendMessage → POST http://${org}.localhost:${port}/a2a/agents/${agent} (an invoice of 1,513.68 EUR)`);
    for (const line of invoice.split("\n")) console.log(dim(`  │ ${line}`));
    const send = await a2a(1, "SendMessage", {
      message: { messageId: crypto.randomUUID(), role: "ROLE_USER", parts: [{ text: invoice }] },
      configuration: { returnImmediately: true },
    });
    if (!send.json?.result?.task) throw new Error(`SendMessage failed: ${send.status} ${send.text}`);
    const task = send.json.result.task;
    console.log(`  task ${task.id}: ${task.status.state} (returnImmediately; without it SendMessage returns when the run ends or needs a person)`);

    // Node cannot resolve *.localhost for WebSockets, so this uses the local-only path prefix.
    const wsUrl = `ws://127.0.0.1:${port}/_org/${org}/runs/${task.id}/ws?after=0`;
    section(`The run's DAG, live from its event stream: ${wsUrl}`);
    const dag = new Dag();
    const view = new TreeView(dag);
    const seen = [];
    const asked = [];
    const requests = new Map();
    // The stream ends when the run does. A connection that closes earlier (wrangler dev
    // reloads the Worker when a source file changes) is opened again after the last event seen.
    await new Promise((resolve, reject) => {
      let ws = null;
      let lastSeq = 0;
      let reconnects = 0;
      let failure = null;
      const finished = () => ["completed", "failed", "canceled"].includes(dag.run.status);
      const fail = (err) => {
        failure ??= err;
        try {
          ws?.close();
        } catch {}
      };
      const timer = setTimeout(() => fail(new Error(`the run did not finish within ${RUN_TIMEOUT_MS / 1000} s`)), RUN_TIMEOUT_MS);
      const connect = () => {
        let opened = false;
        ws = new WebSocket(wsUrl.replace(/after=0$/, `after=${lastSeq}`), { headers: auth });
        ws.onopen = () => (opened = true);
        ws.onmessage = (e) => {
          const ev = JSON.parse(e.data);
          if (ev.seq <= lastSeq) return;
          lastSeq = ev.seq;
          seen.push(ev);
          if (args.has("--events")) view.log(dim(`  #${ev.seq} ${ev.at.slice(11, 23)} ${ev.type.padEnd(18)} ${ev.stepId ?? "  "} ${JSON.stringify(ev.data).slice(0, 100)}`));
          const changed = dag.apply(ev);
          if (changed) view.changed(changed, Date.parse(ev.at));
          // Answer once the step has parked on the request (the same transition's next event).
          if (ev.type === "input.requested") requests.set(ev.data.requestId, ev);
          if (ev.type === "step.waiting") {
            for (const w of ev.data.on ?? []) {
              const req = requests.get(w.requestId);
              if (req) answer(req).catch(fail);
              requests.delete(w.requestId);
            }
          }
        };
        ws.onclose = () => {
          if (!failure && !finished() && reconnects < 20) {
            reconnects += 1;
            view.log(dim(`  (the event stream closed before the run ended; reconnecting after #${lastSeq})`));
            setTimeout(connect, opened ? 100 : 500);
            return;
          }
          clearTimeout(timer);
          view.stop();
          if (failure) reject(failure);
          else if (!finished()) reject(new Error(`the event stream closed and could not be opened again (last event #${lastSeq})`));
          else resolve();
        };
      };
      connect();
    });

    /** A person's part, played by the demo: see the request, find it where a UI would, answer it. */
    async function answer(ev) {
      const { requestId, prompt, inputType, choices } = ev.data;
      const who = dag.steps.get(ev.stepId);
      asked.push(requestId);
      view.log(
        [
          "",
          bold(`  ✋ ${who?.agent ?? ev.stepId} (${ev.stepId}) asks a person for ${inputType === "approval" ? "an approval" : "input"} (request ${requestId}):`),
          ...wrap(String(prompt), 96).map((l) => `     │ ${l}`),
        ].join("\n"),
      );
      // Where a person (or a UI) finds what is pending: GET /runs/{id} → inputs, and the A2A task's state.
      const run = await api(`/runs/${task.id}`);
      const pending = run.json?.inputs ?? [];
      const got = await a2a(2, "GetTask", { id: task.id });
      const reply =
        inputType === "approval"
          ? { answer: "approved", comment: "Checked against the purchase order (npm run demo)" }
          : inputType === "choice" && choices?.length
            ? { answer: choices[0] }
            : { answer: "Please go ahead. (npm run demo)" };
      view.log(
        [
          `     GET /runs/${task.id} → status ${run.json?.status}, inputs: ${pending.map((i) => `${i.requestId} (${i.agent}, ${i.inputType})`).join(", ") || "none"}`,
          `     A2A GetTask → ${got.json?.result?.status?.state}`,
          `     POST /runs/${task.id}/input/${requestId} ${JSON.stringify(reply)}`,
        ].join("\n"),
      );
      const posted = await api(`/runs/${task.id}/input/${requestId}`, "POST", reply);
      if (posted.status !== 200) throw new Error(`answering ${requestId} failed: ${posted.status} ${posted.text}`);
      view.log(`     → ${posted.status} ${JSON.stringify(posted.json)}\n`);
    }

    section(`GET /runs/${task.id}: the finished DAG`);
    const run = (await api(`/runs/${task.id}`)).json;
    const byParent = new Map();
    for (const s of run.steps) (byParent.get(s.parentId) ?? byParent.set(s.parentId, []).get(s.parentId)).push(s);
    const walk = (s, lead, last, top) => {
      const took = s.finishedAt && s.createdAt ? seconds(s.finishedAt - s.createdAt) : "—";
      const tokens = s.usage ? `${(s.usage.inputTokens ?? 0) + (s.usage.outputTokens ?? 0)} tokens` : "";
      console.log(`  ${`${top ? "" : `${lead}${last ? "└─ " : "├─ "}`}${s.agent}`.padEnd(22)} ${s.id.padEnd(3)} ${s.status.padEnd(10)} ${String(s.resultStatus ?? "").padEnd(8)} ${String(s.turns).padStart(2)} turn${s.turns === 1 ? " " : "s"} ${took.padStart(8)}  ${dim(`${s.model ?? ""} ${tokens}`)}`);
      const kids = byParent.get(s.id) ?? [];
      kids.forEach((c, i) => walk(c, top ? "" : `${lead}${last ? "   " : "│  "}`, i === kids.length - 1, false));
    };
    (byParent.get(null) ?? []).forEach((r) => walk(r, "", true, true));
    console.log(`  run ${run.status} in ${seconds(run.updatedAt - run.createdAt)}, ${run.lastSeq} events`);

    section("Tool calls and external agents (events tool.called → tool.started → tool.result)");
    const agentOf = (stepId) => run.steps.find((s) => s.id === stepId)?.agent ?? stepId;
    for (const n of dag.work) {
      const label = n.kind === "mcp" ? `MCP tool ${n.tool}` : `external agent ${n.args?.agent} (A2A)`;
      console.log(`  ${agentOf(n.stepId)} (${n.stepId}) → ${label}   call ${n.callId}, ${n.status}${n.durationMs !== null ? ` in ${seconds(n.durationMs)}` : ""}`);
      if (n.kind === "mcp") console.log(dim(`     args   ${JSON.stringify(n.args)}`));
      else console.log(dim(`     input  ${clipText(String(n.args?.input ?? "").replace(/\s+/g, " "), 96)}`));
      for (const l of wrap(n.result ? resultLine(n.result) : "(no result)", 92)) console.log(`     │ ${l}`);
    }
    if (dag.work.length === 0) console.log("  (none)");

    section("A2A GetTask: the final answer");
    const got = await a2a(3, "GetTask", { id: task.id });
    const final = got.json?.result;
    if (final?.status?.state !== "TASK_STATE_COMPLETED") throw new Error(`the task did not complete: ${got.text}`);
    console.log(`  state: ${final.status.state}`);
    for (const line of final.artifacts[0].parts[0].text.split("\n")) console.log(`  │ ${line}`);

    // The offline model is deterministic: the demo checks the flow it shows did happen.
    const offline = run.steps.every((s) => String(s.model ?? "").startsWith("offline:"));
    const children = run.steps.filter((s) => s.parentId === run.steps[0]?.id).map((s) => s.agent).sort();
    if (offline && (asked.length !== 1 || children.join() !== "ValidateData,VendorCheck")) {
      throw new Error(`expected ValidateData and VendorCheck in parallel and one approval, saw children [${children}] and ${asked.length} request(s)`);
    }
    // The MCP tool ran on the server and the external agent answered, and both reached the report.
    const report = final.artifacts[0].parts[0].text;
    const sum = dag.work.find((n) => n.kind === "mcp" && n.tool === `${PARTNER_NAMES.mcpServer}__get-sum` && n.status === "completed");
    const screened = dag.work.find((n) => n.kind === "remote" && n.args?.agent === PARTNER_NAMES.externalAgent && n.result?.result?.status === "SUCCESS");
    const problems = [];
    if (!sum || !/The sum of/.test(resultLine(sum.result))) problems.push(`the MCP tool ${PARTNER_NAMES.mcpServer}__get-sum did not run (${sum ? resultLine(sum.result) : "no call"})`);
    if (!screened || !(partners.sanctions.requests.SendMessage > 0)) problems.push(`the external agent ${PARTNER_NAMES.externalAgent} did not answer (${screened ? "no request reached it" : "no successful call"})`);
    if (sum && !report.includes(resultLine(sum.result))) problems.push("the final report does not show the MCP tool's result");
    if (screened && !report.includes(screened.result.result.result)) problems.push("the final report does not show the external agent's answer");
    if (problems.length > 0) throw new Error(problems.join("; "));
    console.log(`\n  checked: ${sum.tool} ran on the MCP server (${resultLine(sum.result)}); ${PARTNER_NAMES.externalAgent} answered over A2A (${partners.sanctions.requests.SendMessage} SendMessage); both are in the report.`);

    section(`The same org from an unmodified A2A client that knows only its URL: http://${org}.localhost:${port} (@a2a-js/sdk/client, scripts/a2a-walkthrough.mjs)`);
    const walked = await a2aWalkthrough({ port, org, apiKey: seeded.apiKey, log: console.log, dim });
    console.log(`\n  checked: ${walked.steps.length} steps (${walked.steps.join(", ")}), every answer as the spec says.`);
    console.log("\nDemo finished. `npm run dev` keeps the platform running on port 8787; the README shows how to answer a request for input by hand.");
  } finally {
    await server?.stop();
    await git.close();
    await partners.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`\ndemo failed: ${err.message}`);
    process.exit(1);
  },
);
