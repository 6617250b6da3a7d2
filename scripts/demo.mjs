// `npm run demo`: starts Shaman locally (wrangler dev: local D1, R2, Queues, Durable
// Objects) and a local git server holding examples/agents, creates the demo org `acme`,
// registers that git repository and lets Shaman sync it, then runs a multi-agent flow:
// ProcessInvoice (over A2A) calls ValidateData and VendorCheck in parallel, joins, and asks
// a person to approve the invoice because its total is above 1,000 EUR. The run's DAG is
// drawn live from its event stream (an indented tree, one line per step, redrawn in a
// terminal; one line per change when the output is not a terminal, as in CI logs). The
// demo answers the approval itself through POST /runs/{id}/input/{requestId}, shows the run
// finishing and prints the final answer (A2A GetTask). No account or API key is needed:
// with no model configured, agents run on the built-in offline model.
//
// Flags: --plain (one line per change even in a terminal), --events (also print every event).
import { rmSync } from "node:fs";
import { join } from "node:path";
import { DEMO_ORG, ROOT, freePort, http, migrateLocal, seedDemo, startDemoGit, startWrangler } from "./local.mjs";

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

/** The run's steps, built from its events (step.queued … step.completed). */
class Dag {
  steps = new Map();
  run = { status: "submitted", events: 0 };

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
        const agents = on.length - people;
        s.status = people > 0 ? "input_required" : "waiting";
        s.note = people > 0 ? `waits for a person` : `waits for ${agents} agent${agents === 1 ? "" : "s"}`;
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
        return null; // tool.called / tool.result: the next state change says what came of them
    }
    return { step: s };
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
    return [
      dim(`  run ${run.status} · ${this.dag.steps.size} step${this.dag.steps.size === 1 ? "" : "s"} · ${run.events} events · ${seconds((run.endedAt ?? now) - (run.createdAt ?? now))}`),
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

  const port = await freePort();
  section(`Starting Shaman on http://${org}.localhost:${port} (wrangler dev)`);
  const server = await startWrangler({ port, persistTo });
  try {
    section(`Creating the demo org '${org}' and syncing its agents from git: POST /repositories`);
    const seeded = await seedDemo(port, { repoUrl });
    const sync = seeded.sync;
    console.log(`  repository ${seeded.repository.name} @ ${sync.commit.slice(0, 12)} synced in ${sync.durationMs} ms: agents ${sync.result.agents.join(", ")}`);
    const auth = { authorization: `Bearer ${seeded.apiKey}` };
    console.log(`  owner API key ${seeded.apiKey.slice(0, 17)}… (shown once; every call below is authenticated with it)`);
    const api = (path, method = "GET", body) => http({ port, host: `${org}.localhost`, path, method, headers: auth, body });

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
    const asked = [];
    const requests = new Map();
    await new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl, { headers: auth });
      let failure = null;
      const fail = (err) => {
        failure ??= err;
        try {
          ws.close();
        } catch {}
      };
      const timer = setTimeout(() => fail(new Error(`the run did not finish within ${RUN_TIMEOUT_MS / 1000} s`)), RUN_TIMEOUT_MS);
      ws.onmessage = (e) => {
        const ev = JSON.parse(e.data);
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
        clearTimeout(timer);
        view.stop();
        if (failure) reject(failure);
        else resolve();
      };
      ws.onerror = () => fail(new Error("WebSocket error"));
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
    console.log("\nDemo finished. `npm run dev` keeps the platform running on port 8787; the README shows how to answer a request for input by hand.");
  } finally {
    await server.stop();
    await git.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`\ndemo failed: ${err.message}`);
    process.exit(1);
  },
);
