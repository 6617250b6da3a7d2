// `npm run bench`: measures Shaman under `wrangler dev` against baselines taken in the same
// run (this machine is noisy; only ratios and same-run figures mean anything).
//   (a) gateway: requests/s on a cheap org route (the agent card: subdomain → org, D1
//       lookup cached in the isolate) versus a bare hello-world Worker on the same wrangler;
//   (b) SendMessage end to end with the offline model: runs/s and latency (each call makes
//       a run Durable Object, a D1 row, a queue hop to the executor and back), next to
//       Cloudflare's Agents SDK creating one agent per request (bench/agents-sdk) on the
//       same wrangler, as a ratio, and next to the floor of this design on this runtime
//       (bench/floor: a bare Worker whose request makes a new SQLite-backed Durable Object
//       that does one queue round trip), as send_vs_floor;
//   (c) repository sync of a 500-agent git repository from a local git http-backend:
//       first sync, unchanged resync, one changed file, and the cost per file;
//   (d) orchestration (issue 9), on the bench agents of bench/agents/ (a second root
//       repository of the org, served by the same local git server):
//       - Shaman's 10-step sequential chain (Chain01 → … → Chain10, offline model) against
//         10 bare queue round trips in sequence through one new Durable Object per request
//         (bench/floor `/chain/`): chain_ratio, at CHAIN_CONNECTIONS and at 1 connection;
//       - a 100-way fan-out (Fan100, a 500 ms model per turn) against a single branch (Fan1):
//         fanout_ratio, and the same fan-out on the Agents SDK (a new parent agent calling
//         100 new agents): fanout_vs_agents_sdk;
//       - 200 concurrent runs of a three-way fan-out (Tri), each watched over its WebSocket
//         from the start and checked against its event log: runs_per_s, events_lost.
//   (g), (h) tools (issue 10, bench/tools.mjs): MCP router overhead against a direct
//       JSON-RPC tools/call from inside the Worker (mcp_router_ratio), on a 2025 session
//       server and a stateless 2026-07-28 one; the cost of a tool call in a run
//       (tool_run_20_ms, tool_run_0_ms, ms_per_tool_call).
//   (i), (j) live streams (issue 11, bench/streams.mjs): WebSocket fan-out (1,000 sockets on
//       one run) against one socket and a bare Durable Object broadcast (ws_vs_bare), and SSE
//       fan-out (100 A2A subscribers of one task) against one; every event delivered, in order.
import autocannon from "autocannon";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { streamResultFields, streamsBench } from "./streams.mjs";
import { BENCH_VARS, mcpRouterBench, registerBenchMcp, startBenchMcp, toolCostBench, toolResultFields } from "./tools.mjs";
import { ROOT, addGitRepo, freePort, http, migrateLocal, readTree, registerRepository, seedDemo, startDemoGit, startWrangler } from "../scripts/local.mjs";

const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const SEND_CONNECTIONS = Number(process.env.BENCH_SEND_CONNECTIONS ?? 20);
const CHAIN_CONNECTIONS = Number(process.env.BENCH_CHAIN_CONNECTIONS ?? SEND_CONNECTIONS);
const CHAIN_STEPS = 10;
const FANOUT = 100;
const FANOUT_ROUNDS = 3;
const CONCURRENT_RUNS = Number(process.env.BENCH_CONCURRENT_RUNS ?? 200);
/** Org run limits for the bench agents: a 100-way turn, a 10-deep chain (the root is depth 0). */
const RUN_LIMITS = { maxCallsPerTurn: 100, maxStepsPerRun: 1000, maxDepth: 16 };

/**
 * `onResponse(status, body)`, if given, sees every answer (e.g. to count runs that did not
 * complete). `amount`, if given, replaces `duration`: the round sends that many requests
 * and ends when all have been answered (nothing left running behind the next round).
 */
function load({ port, path, host, method = "GET", body, headers = {}, connections = CONNECTIONS, duration = DURATION, amount, timeout, onResponse }) {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://127.0.0.1:${port}${path}`,
        connections,
        ...(amount ? { amount } : { duration }),
        ...(timeout ? { timeout } : {}),
        method,
        headers: { host: `${host}:${port}`, ...(body ? { "content-type": "application/json" } : {}), ...headers },
        ...(body ? { body: JSON.stringify(body) } : {}),
        // Every A2A message gets its own messageId: a repeated one is deduplicated (the same
        // task back, no run), which would measure a lookup instead of a run.
        requests: [{ ...(body?.params?.message ? { setupRequest: (req) => ({ ...req, body: JSON.stringify(withMessageId(body, `bench-${crypto.randomUUID()}`)) }) } : {}), ...(onResponse ? { onResponse } : {}) }],
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
  });
}

/** A JSON-RPC SendMessage body with another messageId. */
const withMessageId = (body, messageId) => ({ ...body, params: { ...body.params, message: { ...body.params.message, messageId } } });

/** Load where every request names a new Durable Object (`${prefix}${fresh name}${suffix}`), as a per-run design makes one per run. */
let freshSeq = 0;
function freshLoad({ port, prefix, suffix = "", method = "GET", body, connections = SEND_CONNECTIONS, duration = DURATION }) {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://127.0.0.1:${port}${prefix}x${suffix}`,
        connections,
        duration,
        method,
        ...(body ? { body } : {}),
        requests: [{ setupRequest: (req) => ({ ...req, path: `${prefix}run-${Date.now()}-${freshSeq++}${suffix}` }) }],
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
  });
}

const fmt = (n, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
const summary = (r) =>
  `${fmt(r.requests.average)} req/s  p50 ${fmt(r.latency.p50, 1)} ms  p99 ${fmt(r.latency.p99, 1)} ms  (${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts)`;

async function main() {
  const persistTo = join(ROOT, ".wrangler", "bench-state");
  rmSync(persistTo, { recursive: true, force: true });
  migrateLocal(persistTo);
  const [shamanPort, helloPort] = [await freePort(), await freePort()];
  const mcp = await startBenchMcp();
  const shaman = await startWrangler({ port: shamanPort, persistTo, vars: BENCH_VARS });
  const hello = await startWrangler({ port: helloPort, config: "bench/hello/wrangler.toml", persistTo: join(persistTo, "hello") });
  const sdkPort = await freePort();
  const sdk = await startWrangler({ port: sdkPort, config: "bench/agents-sdk/wrangler.toml", persistTo: join(persistTo, "agents-sdk") });
  const floorPort = await freePort();
  const floor = await startWrangler({ port: floorPort, config: "bench/floor/wrangler.toml", persistTo: join(persistTo, "floor") });
  const { git, url: repoUrl } = await startDemoGit();
  try {
    // Limits far above what the bench sends: the limiter still runs on every request.
    const { apiKey } = await seedDemo(shamanPort, { rateLimits: { perPrincipal: 1_000_000_000, perOrg: 1_000_000_000, perClient: 1_000_000_000, windowSeconds: 60 }, runLimits: RUN_LIMITS, repoUrl });
    const auth = { authorization: `Bearer ${apiKey}` };
    // The tool benchmark's MCP server, registered before the bench agents that name it sync.
    await registerBenchMcp(shamanPort, apiKey, mcp.stateless.url);
    // The orchestration agents (bench/agents/) as a second root repository on the same git server.
    const benchAgents = readdirSync(join(ROOT, "bench", "agents")).length;
    const benchRepo = await registerRepository(shamanPort, { apiKey, name: "bench", gitUrl: await addGitRepo(git, "acme/bench-agents", readTree("bench/agents")) });
    if (benchRepo.sync.result?.agents?.length !== benchAgents) throw new Error(`the bench repository synced ${benchRepo.sync.result?.agents?.length} agents, expected ${benchAgents}: ${JSON.stringify(benchRepo.sync)}`);
    // authenticated with an API key: org by subdomain, key check, authorisation, cached D1 lookups
    const card = { port: shamanPort, host: "acme.localhost", path: "/a2a/agents/ProcessInvoice/.well-known/agent-card.json", headers: auth };
    const check = await http(card);
    if (check.status !== 200) throw new Error(`agent card answered ${check.status}`);

    console.log(`\nShaman benchmark — wrangler dev, ${CONNECTIONS} connections, ${DURATION} s per round\n`);
    console.log("(a) gateway route vs bare hello-world Worker (same wrangler, alternating rounds)");
    // warm both
    await load({ port: helloPort, path: "/", host: "localhost", duration: 1 });
    await load({ ...card, duration: 1 });
    const helloRounds = [];
    const cardRounds = [];
    for (let i = 0; i < 2; i++) {
      helloRounds.push(await load({ port: helloPort, path: "/", host: "localhost" }));
      cardRounds.push(await load(card));
    }
    const mean = (rs) => rs.reduce((s, r) => s + r.requests.average, 0) / rs.length;
    helloRounds.forEach((r, i) => console.log(`  hello-world   round ${i + 1}: ${summary(r)}`));
    cardRounds.forEach((r, i) => console.log(`  agent card    round ${i + 1}: ${summary(r)}`));
    const ratio = mean(cardRounds) / mean(helloRounds);
    console.log(`  → gateway/hello ratio: ${fmt(ratio, 2)}× (${fmt(mean(cardRounds))} vs ${fmt(mean(helloRounds))} req/s)`);

    console.log(`\n(b) A2A SendMessage end to end, offline model, ${SEND_CONNECTIONS} connections`);
    const send = {
      port: shamanPort,
      host: "acme.localhost",
      path: "/a2a/agents/Summarize",
      method: "POST",
      headers: { "a2a-version": "1.0", ...auth },
      connections: SEND_CONNECTIONS,
      body: {
        jsonrpc: "2.0",
        id: 1,
        method: "SendMessage",
        params: { message: { messageId: "bench-probe", role: "ROLE_USER", parts: [{ text: "Benchmark the platform, please." }] } },
      },
    };
    const probe = await http({ ...send, body: send.body });
    if (probe.json?.result?.task?.status?.state !== "TASK_STATE_COMPLETED") throw new Error(`SendMessage did not complete: ${probe.text}`);
    // a new agent (a new Durable Object) per request, as a per-run design needs
    const sdkLoad = (duration = DURATION) =>
      freshLoad({ port: sdkPort, prefix: "/agents/bench-agent/", method: "POST", body: "Benchmark the platform, please.", duration });
    // the floor of this design: a new SQLite-backed object per request, one queue round trip
    const floorLoad = (duration = DURATION) => freshLoad({ port: floorPort, prefix: "/floor/", duration });
    const floorProbe = await http({ port: floorPort, path: "/floor/probe" });
    if (floorProbe.json?.hops !== 1) throw new Error(`floor answered ${floorProbe.status}: ${floorProbe.text}`);
    await load({ ...send, duration: 1 });
    await sdkLoad(1);
    await floorLoad(1);
    const sendRounds = [];
    const sdkRounds = [];
    const floorRounds = [];
    for (let i = 0; i < 2; i++) {
      sendRounds.push(await load(send));
      sdkRounds.push(await sdkLoad());
      floorRounds.push(await floorLoad());
    }
    sendRounds.forEach((r, i) => console.log(`  Shaman SendMessage        round ${i + 1}: ${summary(r)}`));
    sdkRounds.forEach((r, i) => console.log(`  Agents SDK, agent/request round ${i + 1}: ${summary(r)}`));
    floorRounds.forEach((r, i) => console.log(`  floor: new DO + queue hop round ${i + 1}: ${summary(r)}`));
    const sendRps = mean(sendRounds);
    const sdkRps = mean(sdkRounds);
    const floorRps = mean(floorRounds);
    const meanP50 = (rs) => rs.reduce((s, r) => s + r.latency.p50, 0) / rs.length;
    const failures = (rs) => rs.reduce((s, r) => s + r.non2xx + r.errors + r.timeouts, 0);
    const p50 = meanP50(sendRounds);
    const errors = failures(sendRounds);
    console.log(`  → ${fmt(sendRps, 1)} runs/s, median latency ${fmt(p50, 1)} ms; ${fmt(sendRps / sdkRps, 2)}× the Agents SDK (${fmt(sdkRps, 1)} req/s)`);
    console.log(`  → ${fmt(sendRps / floorRps, 2)}× the floor of this design (${fmt(floorRps, 1)} req/s, p50 ${fmt(meanP50(floorRounds), 1)} ms; target ≥ 0.7×)`);

    const s = await syncBench(shamanPort, git.url, auth);
    const target = { port: shamanPort, auth };
    const c = await chainBench(floorPort, { meanP50, failures, shaman: target });
    const f = await fanoutBench(target, sdkPort);
    const t = await concurrentBench(target);
    const g = await mcpRouterBench(shamanPort, [
      { label: "2025", url: mcp.everything.url },
      { label: "2026", url: mcp.stateless.url, methods: mcp.stateless.methods },
    ]);
    const h = await toolCostBench(target, mcp.stateless);
    // BENCH_STREAMS=0 leaves out (i) and (j) (~18 min; `node bench/streams.mjs` runs them alone).
    const st = process.env.BENCH_STREAMS === "0" ? null : await streamsBench(target, floorPort);
    console.log(
      `\nRESULT gateway_ratio=${fmt(ratio, 2)} hello_rps=${fmt(mean(helloRounds))} card_rps=${fmt(mean(cardRounds))} send_rps=${fmt(sendRps, 1)} send_p50_ms=${fmt(p50, 1)} send_errors=${errors} agents_sdk_rps=${fmt(sdkRps, 1)} send_vs_agents_sdk=${fmt(sendRps / sdkRps, 2)} ` +
        `floor_rps=${fmt(floorRps, 1)} floor_p50_ms=${fmt(meanP50(floorRounds), 1)} send_vs_floor=${fmt(sendRps / floorRps, 2)} ` +
        `sync_agents=${SYNC_AGENTS} sync_first_ms=${fmt(s.first)} sync_unchanged_ms=${fmt(s.unchanged)} sync_one_change_ms=${fmt(s.oneChange)} sync_ms_per_file=${fmt(s.first / SYNC_AGENTS, 2)} ` +
        `chain_steps=${CHAIN_STEPS} chain_baseline_ms=${fmt(c.baselineP50, 1)} chain_baseline_rps=${fmt(c.baselineRps, 1)} chain_baseline_1c_ms=${fmt(c.baselineP50One, 1)} baseline_errors=${failures(floorRounds) + c.baselineErrors}` +
        (c.shaman
          ? ` shaman_chain_ms=${fmt(c.shaman.p50, 1)} shaman_chain_rps=${fmt(c.shaman.rps, 1)} shaman_chain_1c_ms=${fmt(c.shaman.p50One, 1)} shaman_chain_errors=${c.shaman.errors} chain_turns=${c.shaman.turns} chain_turn_wait_ms=${fmt(c.shaman.waitMs, 1)} chain_turn_work_ms=${fmt(c.shaman.workMs, 1)} chain_ratio=${fmt(c.shaman.p50 / c.baselineP50, 2)} chain_ratio_1c=${fmt(c.shaman.p50One / c.baselineP50One, 2)}`
          : "") +
        ` fanout=${FANOUT} fanout_branches=${f.branches} fan1_ms=${fmt(f.fan1)} fan100_ms=${fmt(f.fan100)} fanout_ratio=${fmt(f.fan100 / f.fan1, 2)} agents_sdk_fan1_ms=${fmt(f.sdk1)} agents_sdk_fanout_ms=${fmt(f.sdk100)}` +
        (f.branches !== FANOUT ? ` agents_sdk_fanout_same_ms=${fmt(f.sdkSame)}` : "") +
        ` fanout_vs_agents_sdk=${fmt(f.sdkSame / f.fan100, 2)}` +
        ` concurrent_runs=${t.runs} concurrent_completed=${t.completed} runs_per_s=${fmt(t.rps, 1)} concurrent_wall_ms=${fmt(t.wall)} events_total=${t.total} events_lost=${t.lost} events_duplicated=${t.duplicated} events_unexpected=${t.unexpected} ws_errors=${t.problems} ws_close_lag_ms=${fmt(t.closeLag ?? 0)} ` +
        toolResultFields(g, h) +
        (st ? ` ${streamResultFields(st)}` : ""),
    );
  } finally {
    await Promise.all([shaman.stop(), hello.stop(), sdk.stop(), floor.stop(), git.close(), mcp.close()]);
  }
}

/** An A2A SendMessage request body (blocking unless `configuration` says otherwise). */
const sendMessage = (text, configuration) => ({
  jsonrpc: "2.0",
  id: 1,
  method: "SendMessage",
  params: { message: { messageId: `bench-${crypto.randomUUID()}`, role: "ROLE_USER", parts: [{ text }] }, ...(configuration ? { configuration } : {}) },
});

/** One blocking SendMessage to an agent of the demo org, timed on the client. */
async function sendOnce({ port, auth }, agent, text = "Benchmark the platform, please.", configuration) {
  const started = performance.now();
  const r = await http({ port, host: "acme.localhost", path: `/a2a/agents/${agent}`, method: "POST", headers: { "a2a-version": "1.0", ...auth }, body: sendMessage(text, configuration) });
  return { ms: performance.now() - started, task: r.json?.result?.task, r };
}

/** The run behind a task, as `GET /runs/{id}` shows it. */
async function runSnapshot({ port, auth }, runId) {
  const r = await http({ port, host: "acme.localhost", path: `/runs/${runId}`, headers: auth });
  if (r.status !== 200) throw new Error(`GET /runs/${runId} answered ${r.status}: ${r.text}`);
  return r.json;
}

/** An autocannon `onResponse` that counts 200 answers whose task did not complete (JSON-RPC errors answer 200 too). */
function countNotCompleted(counter) {
  return (status, body) => {
    if (status !== 200) return; // counted by autocannon as non-2xx
    let state;
    try {
      state = JSON.parse(body)?.result?.task?.status?.state;
    } catch {}
    if (state !== "TASK_STATE_COMPLETED") counter.count++;
  };
}

/**
 * Shaman's 10-step sequential chain with the offline model (issue 9, benchmark (a)): one
 * blocking SendMessage to Chain01 per request, which calls Chain02, … Chain10 (each link
 * waits for the next: 10 steps, 19 model turns, each turn a queue job), answered when the
 * run has completed. Its rounds alternate with the baseline's; the bench prints chain_ratio
 * = Shaman's p50 ÷ the baseline's p50 (target ≤ 1.5×) at CHAIN_CONNECTIONS, and
 * chain_ratio_1c alone. A round is `amount` requests, not a duration: a chain takes seconds
 * under load, and a timed round would leave its last runs going on the server behind the
 * next round.
 */
const shamanChainLoad = ({ port, auth, connections, amount, onResponse }) =>
  load({
    port,
    host: "acme.localhost",
    path: "/a2a/agents/Chain01",
    method: "POST",
    headers: { "a2a-version": "1.0", ...auth },
    body: sendMessage("Benchmark the platform, please."),
    connections,
    amount,
    timeout: 120,
    onResponse,
  });

/**
 * Where one chain's time goes, from its event log (the run object's clock, ms): the mean
 * time from a turn's job being queued (step.queued, or step.resumed for a parent's next
 * turn) to the executor's claim (step.started), and from the claim to the recorded turn
 * (model.turn).
 */
async function chainTurnSplit({ port, auth }, runId) {
  const r = await http({ port, host: "acme.localhost", path: `/runs/${runId}/events?after=0&limit=500`, headers: auth });
  if (r.status !== 200) throw new Error(`GET /runs/${runId}/events answered ${r.status}: ${r.text}`);
  const ready = new Map();
  const started = new Map();
  const wait = [];
  const work = [];
  for (const ev of r.json.events) {
    const at = Date.parse(ev.at);
    if (ev.type === "step.queued" || ev.type === "step.resumed") ready.set(ev.stepId, at);
    else if (ev.type === "step.started" && ready.has(ev.stepId)) {
      wait.push(at - ready.get(ev.stepId));
      ready.delete(ev.stepId);
      started.set(ev.stepId, at);
    } else if (ev.type === "model.turn" && started.has(ev.stepId)) {
      work.push(at - started.get(ev.stepId));
      started.delete(ev.stepId);
    }
  }
  const avg = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  return { turns: work.length, waitMs: avg(wait), workMs: avg(work) };
}

/**
 * (d) CHAIN_STEPS bare queue round trips in sequence through one new Durable Object per
 * request (bench/floor `/chain/`: the object sends a message, the consumer calls it back,
 * the object sends the next): what a sequential chain costs on this runtime with no
 * orchestration at all. Loaded (CHAIN_CONNECTIONS, 2 rounds) and unloaded (1 connection).
 */
async function chainBench(floorPort, { meanP50, failures, shaman: target }) {
  console.log(`\n(d) ${CHAIN_STEPS}-step sequential chain baseline: ${CHAIN_STEPS} bare queue round trips through one new Durable Object per request`);
  const chainLoad = (connections, duration = DURATION) =>
    freshLoad({ port: floorPort, prefix: "/chain/", suffix: `?hops=${CHAIN_STEPS}`, connections, duration });
  const probe = await http({ port: floorPort, path: `/chain/probe?hops=${CHAIN_STEPS}` });
  if (probe.json?.hops !== CHAIN_STEPS) throw new Error(`chain baseline answered ${probe.status}: ${probe.text}`);
  await chainLoad(CHAIN_CONNECTIONS, 1);
  const notCompleted = { count: 0 };
  let shamanLoad = null;
  let turnSplit = null;
  if (shamanChainLoad) {
    // One chain by hand first: it completes, with exactly CHAIN_STEPS steps, all completed.
    const one = await sendOnce(target, "Chain01");
    if (one.task?.status?.state !== "TASK_STATE_COMPLETED") throw new Error(`the Shaman chain did not complete: ${one.r.text}`);
    const run = await runSnapshot(target, one.task.id);
    const done = run.steps.filter((st) => st.status === "completed").length;
    if (run.steps.length !== CHAIN_STEPS || done !== CHAIN_STEPS) throw new Error(`the Shaman chain made ${run.steps.length} steps (${done} completed), expected ${CHAIN_STEPS}`);
    turnSplit = await chainTurnSplit(target, one.task.id);
    console.log(
      `  one Shaman chain alone: ${fmt(one.ms)} ms, ${turnSplit.turns} model turns; per turn ${fmt(turnSplit.waitMs, 1)} ms from queued (or resumed) to started ` +
        `(queue hop, token check, claim) and ${fmt(turnSplit.workMs, 1)} ms from started to its recorded turn (agent, model, tools, report)`,
    );
    const chains = (connections, amount) => shamanChainLoad({ ...target, connections, amount, onResponse: countNotCompleted(notCompleted) });
    // Warm-up: one chain per connection; its latency sizes the rounds to about DURATION each.
    const wave = await chains(CHAIN_CONNECTIONS, CHAIN_CONNECTIONS);
    const perConnection = Math.max(2, Math.round((DURATION * 1000) / Math.max(1, wave.latency.p50)));
    const alone = Math.min(30, Math.max(3, Math.ceil((DURATION * 1000) / Math.max(1, one.ms))));
    shamanLoad = (connections) => chains(connections, connections === 1 ? alone : connections * perConnection);
  }
  const baseline = [];
  const shaman = [];
  for (let i = 0; i < 2; i++) {
    baseline.push(await chainLoad(CHAIN_CONNECTIONS));
    if (shamanLoad) shaman.push(await shamanLoad(CHAIN_CONNECTIONS));
  }
  const one = await chainLoad(1);
  const oneShaman = shamanLoad ? await shamanLoad(1) : null;
  baseline.forEach((r, i) => console.log(`  bare queue chain, ${CHAIN_CONNECTIONS} conn. round ${i + 1}: ${summary(r)}`));
  console.log(`  bare queue chain, 1 connection:    ${summary(one)}`);
  shaman.forEach((r, i) => console.log(`  Shaman chain, ${CHAIN_CONNECTIONS} conn.     round ${i + 1}: ${summary(r)}`));
  if (oneShaman) console.log(`  Shaman chain, 1 connection:        ${summary(oneShaman)}`);
  const mean = (rs) => rs.reduce((s, r) => s + r.requests.average, 0) / rs.length;
  // A round of `amount` requests: answered requests ÷ the round's length.
  const meanRate = (rs) => rs.reduce((s, r) => s + r.requests.total / r.duration, 0) / rs.length;
  const r = {
    baselineP50: meanP50(baseline),
    baselineRps: mean(baseline),
    baselineP50One: one.latency.p50,
    baselineErrors: failures([...baseline, one]),
    shaman: shamanLoad
      ? { p50: meanP50(shaman), rps: meanRate(shaman), p50One: oneShaman.latency.p50, errors: failures([...shaman, oneShaman]) + notCompleted.count, ...turnSplit }
      : null,
  };
  console.log(
    `  → baseline p50 ${fmt(r.baselineP50, 1)} ms (${fmt(r.baselineRps, 1)} req/s) at ${CHAIN_CONNECTIONS} connections, ` +
      `${fmt(r.baselineP50One, 1)} ms alone (${fmt(r.baselineP50One / CHAIN_STEPS, 1)} ms per round trip)`,
  );
  if (r.shaman)
    console.log(
      `  → Shaman chain p50 ${fmt(r.shaman.p50, 1)} ms (${fmt(r.shaman.rps, 1)} runs/s), ${fmt(r.shaman.p50One, 1)} ms alone; ${r.shaman.errors} failed or not completed\n` +
        `  → chain_ratio ${fmt(r.shaman.p50 / r.baselineP50, 2)}× (alone ${fmt(r.shaman.p50One / r.baselineP50One, 2)}×; target ≤ 1.5×)`,
    );
  return r;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * (b) FANOUT-way fan-out against a single branch, a 500 ms model per turn: one blocking
 * SendMessage to Fan100 (one turn calling Leaf001…Leaf100 at once, the leaves' one turn
 * each, one turn joining them) against one to Fan1 (the same three turns, one leaf). Each
 * figure is the median of FANOUT_ROUNDS runs, rounds alternating, after one unmeasured run
 * of each. The Agents SDK peer (bench/agents-sdk `/fanout/<new name>?n=`) alternates with
 * them: a new parent agent, one 500 ms turn, n new agents over RPC each running
 * generateText on the 500 ms mock model, one 500 ms turn joining them (n = FANOUT and 1).
 * The branches a Fan100 run really made are counted from its steps (fanout_branches): the
 * offline model calls the agents that call_agent's description lists, and if the platform
 * lists fewer than FANOUT, the SDK peer is also run with that many (fanout_vs_agents_sdk
 * compares equal fan-outs).
 */
async function fanoutBench(target, sdkPort) {
  console.log(`\n(e) ${FANOUT}-way fan-out vs one branch, 500 ms per model turn; one blocking run each, median of ${FANOUT_ROUNDS}`);
  const shamanRun = async (agent, expected) => {
    const { ms, task, r } = await sendOnce(target, agent);
    if (task?.status?.state !== "TASK_STATE_COMPLETED") throw new Error(`${agent} did not complete: ${r.text}`);
    const run = await runSnapshot(target, task.id);
    const done = run.steps.filter((st) => st.status === "completed").length;
    const branches = run.steps.length - 1;
    if (done !== run.steps.length || (expected !== undefined && branches !== expected)) {
      throw new Error(`${agent} made ${run.steps.length} steps (${done} completed), expected ${expected ?? "?"} branches`);
    }
    return { ms, branches };
  };
  const sdkRun = async (n) => {
    const started = performance.now();
    const r = await http({ port: sdkPort, path: `/fanout/fan-${Date.now()}-${freshSeq++}?n=${n}` });
    if (r.status !== 200 || r.json?.children !== n) throw new Error(`Agents SDK fan-out answered ${r.status}: ${r.text}`);
    return performance.now() - started;
  };
  await shamanRun("Fan1", 1);
  const { branches } = await shamanRun("Fan100");
  if (branches !== FANOUT) {
    console.log(
      `  ! Fan100 lists ${FANOUT} agents in allowedAgents but its runs make ${branches} branches: the offline model calls the agents call_agent's description lists, and the platform lists at most ${branches}`,
    );
  }
  const sdkSizes = branches === FANOUT ? [1, FANOUT] : [1, branches, FANOUT];
  for (const n of sdkSizes) await sdkRun(n);
  const fan1 = [];
  const fan100 = [];
  const sdk = new Map(sdkSizes.map((n) => [n, []]));
  for (let i = 0; i < FANOUT_ROUNDS; i++) {
    fan1.push((await shamanRun("Fan1", 1)).ms);
    fan100.push((await shamanRun("Fan100", branches)).ms);
    for (const n of sdkSizes) sdk.get(n).push(await sdkRun(n));
  }
  const list = (xs) => xs.map((x) => fmt(x)).join(", ");
  const r = { branches, fan1: median(fan1), fan100: median(fan100), sdk1: median(sdk.get(1)), sdk100: median(sdk.get(FANOUT)), sdkSame: median(sdk.get(branches)) };
  console.log(`  Shaman Fan1   (1 branch)       ${fmt(r.fan1)} ms  (rounds ${list(fan1)})`);
  console.log(`  Shaman Fan100 (${branches} branches)  ${fmt(r.fan100)} ms  (rounds ${list(fan100)})`);
  for (const n of sdkSizes) console.log(`  Agents SDK, ${String(n).padEnd(3)} new agent${n === 1 ? " " : "s"}   ${fmt(median(sdk.get(n)))} ms  (rounds ${list(sdk.get(n))})`);
  console.log(`  → fanout_ratio ${fmt(r.fan100 / r.fan1, 2)}× for ${branches} branches (target ≤ 1.3×; 3 model turns in sequence = 1,500 ms at best)`);
  console.log(`  → fanout_vs_agents_sdk ${fmt(r.sdkSame / r.fan100, 2)}× (Agents SDK wall time ÷ Shaman's, ${branches} branches each; above 1 Shaman is faster)`);
  return r;
}

/**
 * (f) CONCURRENT_RUNS runs of Tri (a three-way fan-out, fast offline model) started at once
 * (SendMessage with returnImmediately), each watched over its WebSocket from the start
 * (`/_org/acme/runs/{id}/ws?after=0`: Node cannot resolve *.localhost) until the run object
 * closes it, then each run's event log (`GET /runs/{id}/events`) compared with what its
 * socket delivered: events missing from the socket (events_lost, must be 0) and events it
 * delivered twice (events_duplicated). runs_per_s = runs ÷ the wall time from the first
 * start until every run had ended (its run.completed / run.failed / run.canceled event
 * received on its socket). The sockets close later: under `wrangler dev` the server's close
 * frame comes right after the last event, but the TCP connection (and so the client's
 * `close` event) only ~10 s after; ws_close_lag_ms is that lag (median).
 */
async function concurrentBench(target) {
  const { port, auth } = target;
  console.log(`\n(f) ${CONCURRENT_RUNS} concurrent runs of Tri (3-way fan-out, fast offline model), each watched over its WebSocket`);
  const WS_TIMEOUT_MS = 180_000;
  const watch = (runId) =>
    new Promise((resolve) => {
      const seqs = [];
      let error = null;
      let endedAt = null;
      const ws = new WebSocket(`ws://127.0.0.1:${port}/_org/acme/runs/${runId}/ws?after=0`, { headers: auth });
      const timer = setTimeout(() => {
        error = `no close within ${WS_TIMEOUT_MS / 1000} s`;
        ws.close();
      }, WS_TIMEOUT_MS);
      ws.onmessage = (e) => {
        try {
          const ev = JSON.parse(e.data);
          if (typeof ev.seq === "number") seqs.push({ seq: ev.seq, type: ev.type });
          if (ev.type === "run.completed" || ev.type === "run.failed" || ev.type === "run.canceled") endedAt ??= performance.now();
        } catch {}
      };
      ws.onerror = () => (error ??= "WebSocket error");
      ws.onclose = (e) => {
        clearTimeout(timer);
        resolve({ seqs, endedAt, closedAt: performance.now(), code: e.code, error });
      };
    });
  const started = performance.now();
  const runs = await Promise.all(
    Array.from({ length: CONCURRENT_RUNS }, async (_, i) => {
      const { task, r } = await sendOnce(target, "Tri", `Concurrent run ${i}: benchmark the platform, please.`, { returnImmediately: true });
      if (!task?.id) return { error: `SendMessage ${r.status}: ${r.text.slice(0, 200)}` };
      return { runId: task.id, ...(await watch(task.id)) };
    }),
  );
  const wall = Math.max(...runs.map((x) => x.endedAt ?? x.closedAt ?? performance.now())) - started;
  const closeLag = median(runs.filter((x) => x.endedAt && x.closedAt).map((x) => x.closedAt - x.endedAt));
  let lost = 0;
  let duplicated = 0;
  let unexpected = 0;
  let total = 0;
  let completed = 0;
  const problems = [];
  for (const run of runs) {
    if (!run.runId || run.error) problems.push(run.error ?? "no run");
    else if (!run.endedAt) problems.push("socket closed before the run ended");
    if (!run.runId) continue;
    const log = [];
    for (let after = 0; ; ) {
      const page = await http({ port, host: "acme.localhost", path: `/runs/${run.runId}/events?after=${after}&limit=500`, headers: auth });
      if (page.status !== 200) throw new Error(`GET /runs/${run.runId}/events answered ${page.status}: ${page.text}`);
      log.push(...page.json.events);
      if (page.json.events.length < 500) break;
      after = page.json.next;
    }
    total += log.length;
    const got = new Map();
    for (const ev of run.seqs) got.set(ev.seq, (got.get(ev.seq) ?? 0) + 1);
    const inLog = new Set(log.map((ev) => ev.seq));
    for (const ev of log) if (!got.has(ev.seq)) lost++;
    for (const [seq, n] of got) {
      if (n > 1) duplicated += n - 1;
      if (!inLog.has(seq)) unexpected++;
    }
    const snap = await runSnapshot(target, run.runId);
    if (snap.status === "completed") completed++;
  }
  const r = { runs: CONCURRENT_RUNS, wall, rps: CONCURRENT_RUNS / (wall / 1000), completed, lost, duplicated, unexpected, total, problems: problems.length, closeLag };
  console.log(`  ${completed} of ${CONCURRENT_RUNS} runs completed; all ended ${fmt(wall)} ms after the first start: ${fmt(r.rps, 1)} runs/s (sockets closed a median ${fmt(closeLag)} ms after their run's last event)`);
  console.log(`  events: ${total} in the logs; missing from the sockets ${lost}, delivered twice ${duplicated}, not in the log ${unexpected}; sockets with an error or no run: ${problems.length}${problems.length ? ` (${[...new Set(problems)].slice(0, 3).join("; ")})` : ""}`);
  return r;
}

const SYNC_AGENTS = Number(process.env.BENCH_SYNC_AGENTS ?? 500);
const SYNC_ROUNDS = 3;

/**
 * (c) A repository of SYNC_AGENTS agents on the local git server, registered and synced
 * through the API. Each figure is the median of SYNC_ROUNDS fresh repositories (first
 * sync) or rounds (resyncs), timed by the sync itself (`durationMs`: remote head, fetch,
 * R2 snapshot, D1 index).
 */
async function syncBench(port, gitUrl, auth) {
  console.log(`\n(c) repository sync, ${SYNC_AGENTS} agents (git http-backend on 127.0.0.1), median of ${SYNC_ROUNDS}`);
  const admin = async (path, body) => {
    const r = await fetch(`${gitUrl}/__admin/${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    if (!r.ok) throw new Error(`git admin ${path}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  const api = (path, body) => http({ port, host: "acme.localhost", path, method: "POST", headers: auth, body });
  const first = [];
  const unchanged = [];
  const oneChange = [];
  for (let round = 0; round < SYNC_ROUNDS; round++) {
    const name = `bench/agents-${round}`;
    await admin("repos", { name, files: {} });
    await admin(`repos/${name}/bulk`, { count: SYNC_AGENTS });
    const created = await api("/repositories", { name: `bench-${round}`, gitUrl: `${gitUrl}/${name}.git`, isRoot: false });
    if (created.json?.sync?.status !== "synced") throw new Error(`first sync failed: ${created.text}`);
    if (created.json.sync.result.agents.length !== SYNC_AGENTS) throw new Error(`expected ${SYNC_AGENTS} agents, got ${created.json.sync.result.agents.length}`);
    first.push(created.json.sync.durationMs);
    const id = created.json.repository.id;
    const again = await api(`/repositories/${id}/sync`, {});
    if (again.json?.sync?.status !== "unchanged") throw new Error(`resync was not a no-op: ${again.text}`);
    unchanged.push(again.json.sync.durationMs);
    await admin(`repos/${name}/commit`, { files: { "Agent0042/prompt.md": `---\ndescription: changed in round ${round}\nexposed: true\n---\nChanged.\n` } });
    const changed = await api(`/repositories/${id}/sync`, {});
    if (changed.json?.sync?.result?.changed?.join() !== "Agent0042") throw new Error(`one-file sync did not change exactly Agent0042: ${changed.text}`);
    oneChange.push(changed.json.sync.durationMs);
  }
  const r = { first: median(first), unchanged: median(unchanged), oneChange: median(oneChange) };
  console.log(`  first sync       ${fmt(r.first)} ms  (${fmt(r.first / SYNC_AGENTS, 2)} ms per agent file; rounds ${first.join(", ")})`);
  console.log(`  unchanged resync ${fmt(r.unchanged)} ms  (rounds ${unchanged.join(", ")})`);
  console.log(`  one changed file ${fmt(r.oneChange)} ms  (rounds ${oneChange.join(", ")})`);
  return r;
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench failed: ${err.stack ?? err.message}`);
    process.exit(1);
  },
);
