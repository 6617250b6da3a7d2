// `npm run check:restart`: shows that a run survives a restart of the local runtime (issue 9,
// item 6). It starts `wrangler dev` on a fresh persist directory, seeds an org whose git
// repository holds a parent agent that calls two children (all on the offline model with a
// delay, so the run takes seconds), starts a run over A2A (returnImmediately), stops wrangler
// (the whole process group) while the run is mid-way, starts it again on the same persist
// directory and port, and polls GET /runs/{id} until the run ends. Exit 0 when the run
// completed with every step completed; otherwise 1, saying what happened.
//
//   node scripts/restart-check.mjs [--at=child-running|parent-waiting|root-running|input-required]
//                                  [--delay=1500] [--timeout=180] [--run-timeout=MS] [--kill] [--keep]
//
//   --at          when to stop wrangler (default child-running: a child step claimed by the
//                 executor, its model call in flight; parent-waiting: the parent parked on
//                 its children; root-running: the root's first turn in flight;
//                 input-required: the parent asks a person to approve (its prompt then has
//                 an approval rule), no job in flight; the check answers after the restart)
//   --delay       the offline model's delay per turn, in ms (offline:slow@<N>ms)
//   --timeout     seconds to wait after the restart for the run to end
//   --run-timeout RUN_TIMEOUT_MS for both wrangler processes (the run object's alarm fails
//                 a run not finished by then: shows whether that backstop fires after a restart)
//   --kill        SIGKILL the process group instead of SIGTERM (a crash, no shutdown)
//   --keep        keep the persist directory (printed) for inspection
import { rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, freePort, http, migrateLocal, portIsFree, seedDemo, startDemoGit, startWrangler } from "./local.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unknown argument ${a}`);
    return [m[1], m[2] ?? true];
  }),
);
const AT = String(args.at ?? "child-running");
const DELAY_MS = Number(args.delay ?? 1500);
const TIMEOUT_S = Number(args.timeout ?? 180);
const AT_CHOICES = ["child-running", "parent-waiting", "root-running", "input-required"];
if (!AT_CHOICES.includes(AT)) throw new Error(`--at must be one of ${AT_CHOICES.join(", ")}`);
// Short watchdog intervals (the run object re-sends a job unclaimed for 5 s, and runs again
// a turn whose claim is older than 10 s), so the check does not wait the production 5/10 min.
const VARS = {
  JOB_RESEND_AFTER_MS: String(Number(args["resend-after"] ?? 5_000)),
  TURN_LEASE_MS: String(Number(args["turn-lease"] ?? 10_000)),
  ...(args["run-timeout"] ? { RUN_TIMEOUT_MS: String(Number(args["run-timeout"])) } : {}),
};

const ORG = "restart";
const PARENT = "Coordinator";
const CHILDREN = ["CheckVendor", "CheckTotals"];
const MODEL = `offline:slow@${DELAY_MS}ms`;
const FINISHED_RUN = new Set(["completed", "failed", "canceled"]);

/** The check's repository: a parent that calls both children, the children answer in text. */
function agentFiles() {
  const files = {
    [`${PARENT}/prompt.md`]: `---
description: Checks an invoice by asking two checkers in parallel, then reports.
exposed: true
model: ${MODEL}
allowedAgents: [${CHILDREN.join(", ")}]
---
You are ${PARENT}. Ask each checker you may call about the invoice, then report what they found.
${AT === "input-required" ? "Ask a person to approve invoices above 10 EUR.\n" : ""}`,
  };
  for (const name of CHILDREN) {
    files[`${name}/prompt.md`] = `---
description: ${name === "CheckVendor" ? "Checks the vendor of an invoice." : "Checks that an invoice's totals add up."}
exposed: false
model: ${MODEL}
---
You are ${name}. Check the invoice you are given and answer in one line.
`;
  }
  return files;
}

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s`;
const log = (s) => console.log(`${elapsed()}  ${s}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The steps as an indented tree: agent, status, turns, attempts. */
function printSteps(run, indent = "  ") {
  const byParent = new Map();
  for (const s of run.steps) {
    const list = byParent.get(s.parentId ?? null) ?? [];
    list.push(s);
    byParent.set(s.parentId ?? null, list);
  }
  const walk = (parentId, depth) => {
    for (const s of byParent.get(parentId) ?? []) {
      const took = s.startedAt && s.finishedAt ? `, ${s.finishedAt - s.startedAt} ms` : "";
      const extra = s.error ? `: ${s.error}` : s.resultStatus ? ` (${s.resultStatus})` : "";
      console.log(`${indent}${"  ".repeat(depth)}${s.id.slice(0, 12)} ${s.agent.padEnd(12)} ${s.status.padEnd(14)} turns ${s.turns}, attempts ${s.attempts}${took}${extra}`);
      walk(s.id, depth + 1);
    }
  };
  walk(null, 0);
}

const BATCH = /\bQUEUE \S+ \d+\/\d+/;
const BATCH_OR_ERROR = /\bQUEUE \S+ \d+\/\d+|executor:|^run \S+:|wrangler:error/;

/** wrangler's log lines (colours stripped) that match `re`. */
const logLines = (server, re) =>
  server
    .log()
    .split("\n")
    .map((l) => l.replace(/\x1b\[[0-9;]*m/g, "").trim())
    .filter((l) => re.test(l));

const stateLine = (run) => `run ${run.status}; ` + run.steps.map((s) => `${s.agent} ${s.status}`).join(", ");

/** Whether the run has reached the point where the check stops wrangler. */
function midway(run) {
  const root = run.steps.find((s) => s.parentId === null);
  const children = run.steps.filter((s) => s.parentId !== null);
  if (AT === "root-running") return root?.status === "running" && children.length === 0;
  if (AT === "input-required") return run.status === "input_required" && run.inputs.length > 0;
  if (AT === "parent-waiting") return root?.status === "waiting" && children.length > 0 && children.some((c) => c.status !== "completed");
  return children.some((c) => c.status === "running");
}

async function main() {
  const persistTo = join(ROOT, ".wrangler", `restart-check-${process.pid}`);
  rmSync(persistTo, { recursive: true, force: true });
  log(`persist directory ${persistTo}`);
  migrateLocal(persistTo);

  const { git, url: repoUrl } = await startDemoGit(agentFiles(), `${ORG}/agents`);
  const port = await freePort();
  let server = await startWrangler({ port, persistTo, vars: VARS });
  log(`wrangler dev ready on port ${port} (pid ${server.child.pid})`);
  let ok = false;
  try {
    const seeded = await seedDemo(port, { slug: ORG, repoUrl });
    log(`org '${ORG}' seeded; agents ${seeded.sync.result.agents.join(", ")} on ${MODEL}`);
    const auth = { authorization: `Bearer ${seeded.apiKey}` };
    const call = (p, method = "GET", body) => http({ port: activePort, host: `${ORG}.localhost`, path: p, method, headers: { "A2A-Version": "1.0", ...auth }, body });
    let activePort = port;

    const send = await call(`/a2a/agents/${PARENT}`, "POST", {
      jsonrpc: "2.0",
      id: 1,
      method: "SendMessage",
      params: {
        message: { messageId: crypto.randomUUID(), role: "ROLE_USER", parts: [{ text: "INVOICE INV-7 from Globex Corporation. 2 x Widget @ 10.00 EUR. Total 20.00 EUR" }] },
        configuration: { returnImmediately: true },
      },
    });
    const runId = send.json?.result?.task?.id;
    if (!runId) throw new Error(`SendMessage failed: ${send.status} ${send.text}`);
    log(`run ${runId} started (SendMessage returned ${send.json.result.task.status.state})`);

    // 1. Wait until the run is mid-way.
    let run;
    let last = "";
    const midDeadline = Date.now() + 60_000;
    for (;;) {
      const r = await call(`/runs/${runId}`);
      if (r.status !== 200) throw new Error(`GET /runs/${runId}: ${r.status} ${r.text}`);
      run = r.json;
      const line = stateLine(run);
      if (line !== last) log(line);
      last = line;
      if (midway(run)) break;
      if (FINISHED_RUN.has(run.status)) throw new Error(`the run ended (${run.status}) before it reached '${AT}': nothing to interrupt (try a longer --delay)`);
      if (Date.now() > midDeadline) throw new Error(`the run did not reach '${AT}' within 60 s`);
      await sleep(50);
    }
    const seqBefore = run.lastSeq;

    // 2. Stop the runtime mid-run.
    log(`mid-way (${AT}): stopping wrangler dev (process group ${server.child.pid}, ${args.kill ? "SIGKILL" : "SIGTERM"})`);
    printSteps(run);
    if (args.kill) {
      try {
        process.kill(-server.child.pid, "SIGKILL");
      } catch {}
    }
    await server.stop();
    const before = logLines(server, BATCH).length;
    server = null;
    log(`wrangler dev stopped (it had logged ${before} queue batch${before === 1 ? "" : "es"})`);

    // 3. Start it again on the same state (and port, when it is free again).
    for (let i = 0; i < 40 && !(await portIsFree(port)); i++) await sleep(250);
    activePort = (await portIsFree(port)) ? port : await freePort();
    server = await startWrangler({ port: activePort, persistTo, vars: VARS });
    log(`wrangler dev restarted on port ${activePort}${activePort === port ? " (same port)" : " (the old port was still taken)"}, same persist directory`);

    if (AT === "input-required") {
      for (const req of run.inputs) {
        const a = await call(`/runs/${runId}/input/${req.requestId}`, "POST", { answer: "approved", comment: "answered by the restart check after the restart" });
        log(`answered ${req.inputType} request ${req.requestId} of ${req.agent} after the restart: ${a.status} ${a.json?.status ?? a.text}`);
      }
    }

    // 4. Poll until the run ends.
    const deadline = Date.now() + TIMEOUT_S * 1000;
    let lastProgress = Date.now();
    let lastSeq = -1;
    let quietLogged = 0;
    last = "";
    for (;;) {
      const r = await call(`/runs/${runId}`);
      if (r.status !== 200) throw new Error(`GET /runs/${runId} after the restart: ${r.status} ${r.text}`);
      run = r.json;
      const line = stateLine(run);
      if (line !== last) log(line);
      last = line;
      if (run.lastSeq !== lastSeq) {
        lastSeq = run.lastSeq;
        lastProgress = Date.now();
      }
      if (FINISHED_RUN.has(run.status) || Date.now() > deadline) break;
      const quiet = Math.floor((Date.now() - lastProgress) / 15_000);
      if (quiet > quietLogged) log(`no new event for ${quiet * 15} s (last seq ${run.lastSeq})`);
      quietLogged = quiet;
      await sleep(250);
    }

    // 5. What happened.
    console.log("\nSteps:");
    printSteps(run);
    const events = await call(`/runs/${runId}/events?after=0`);
    console.log(`\nEvents (stopped after #${seqBefore}):`);
    const all = events.json?.events ?? [];
    for (const ev of all) {
      const d = ev.data ?? {};
      const detail = d.error ?? (d.attempt ? `attempt ${d.attempt}${d.turn ? `, turn ${d.turn}` : ""}` : "");
      console.log(`  ${ev.seq === seqBefore + 1 ? "── restart ──\n  " : ""}#${String(ev.seq).padEnd(3)} ${ev.at.slice(11, 23)} ${ev.type.padEnd(18)} ${(ev.stepId ?? "").slice(0, 12).padEnd(12)} ${d.agent ?? ""} ${detail}`.trimEnd());
    }
    if (!all.some((ev) => ev.seq > seqBefore)) console.log("  ── restart ── (no event since)");
    // What the restarted runtime did with the queue: wrangler logs a line per batch delivered
    // ("QUEUE shaman-jobs 2/2 (1600ms)"), and the executor and run object log their errors.
    const lines = logLines(server, BATCH_OR_ERROR);
    console.log(`\nQueue batches delivered (and errors) logged by the restarted wrangler dev: ${lines.length ? "" : "none"}`);
    for (const l of lines.slice(-20)) console.log(`  ${l}`);
    const notDone = run.steps.filter((s) => s.status !== "completed");
    ok = run.status === "completed" && notDone.length === 0 && run.steps.length === 1 + CHILDREN.length;
    console.log("");
    if (ok) {
      log(`PASS: run ${runId} completed after the restart; all ${run.steps.length} steps completed`);
    } else if (!FINISHED_RUN.has(run.status)) {
      log(
        `FAIL: run ${runId} is still '${run.status}' ${TIMEOUT_S} s after the restart; ` +
          `unfinished: ${notDone.map((s) => `${s.agent} (${s.status}, turn ${s.turns}, attempts ${s.attempts})`).join(", ")}; ` +
          `no event since #${run.lastSeq}. Their queue jobs did not come back after the restart and nothing queued them again.`,
      );
    } else {
      log(`FAIL: run ${runId} ended '${run.status}'${run.error ? `: ${run.error}` : ""}; steps not completed: ${notDone.map((s) => `${s.agent} (${s.status})`).join(", ") || "none"}`);
    }
    if (args.keep) log(`persist directory kept: ${persistTo}`);
  } finally {
    if (server) await server.stop();
    await git.close();
    if (!args.keep) rmSync(persistTo, { recursive: true, force: true });
  }
  log(`took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return ok;
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (err) => {
    console.error(`\nrestart check failed: ${err.message}`);
    process.exit(1);
  },
);
