// Tool benchmarks (issue 10), part of `npm run bench` (bench/run.mjs calls the two functions
// below); `node bench/tools.mjs` (with the repository's Node 22: `npx node bench/tools.mjs`)
// runs only these two against a fresh Shaman under `wrangler dev`.
//
//   (g) MCP router overhead: from inside the Worker (the local-only route POST
//       /_dev/bench/mcp, src/dev/bench.ts), BENCH_MCP_CALLS calls in sequence per request of
//       the same tool with the same arguments (`echo { message }`), through Shaman's router
//       (callMcpTool: the cached connection and the SDK client, as a run's tool job) against
//       a bare JSON-RPC `tools/call` fetch (session or stateless headers, kept per isolate
//       like the router's). Rounds alternate at BENCH_MCP_CONNECTIONS connections, after a
//       warm-up of each. On a 2025 session server (server-everything over Streamable HTTP)
//       and on a stateless 2026-07-28 server (the SDK v2 server). mcp_router_ratio = the
//       router's p50 ÷ the direct call's p50, the larger of the two servers' (target ≤ 1.5×).
//   (h) cost per tool call: one blocking SendMessage at a time to Tools20 (the offline model
//       calls the 20 MCP tools its prompt names, all in its first turn: 20 parallel call jobs,
//       then a turn that completes with their results), Tools1 (one tool, the same two turns)
//       and Tools0 (the same agent and tools offered, none named: one turn that answers),
//       rounds alternating, p50 of BENCH_TOOL_ROUNDS each. ms_per_tool_call =
//       (tool_run_20_ms − tool_run_0_ms) ÷ 20 (the second turn included, as a run that uses
//       tools pays it); ms_per_extra_tool_call = (tool_run_20_ms − tool_run_1_ms) ÷ 19.
import autocannon from "autocannon";
import { join } from "node:path";
import { rmSync } from "node:fs";
import { BENCH_TOOLS, startEverything, startStateless } from "./mcp-servers.mjs";
import { ROOT, addGitRepo, freePort, http, migrateLocal, readTree, registerRepository, seedDemo, startDemoGit, startWrangler } from "../scripts/local.mjs";

const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
const MCP_CONNECTIONS = Number(process.env.BENCH_MCP_CONNECTIONS ?? 10);
const MCP_CALLS = Number(process.env.BENCH_MCP_CALLS ?? 10);
const TOOL_ROUNDS = Number(process.env.BENCH_TOOL_ROUNDS ?? 7);
/** The bench MCP server's name in the org registry (the Tools* agents name it). */
export const BENCH_MCP_SERVER = "benchmcp";
/** Shaman's own vars for the bench: the local-only /_dev/bench route. */
export const BENCH_VARS = { SHAMAN_DEV_BENCH: "true" };

const fmt = (n, d = 0) => n.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: d });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Starts the two MCP servers; `close()` stops both. */
export async function startBenchMcp() {
  const [everything, stateless] = await Promise.all([startEverything(), startStateless()]);
  return { everything, stateless, close: () => Promise.all([everything.close(), stateless.close()]) };
}

/** Registers the stateless server as the org's `benchmcp` (before the bench agents are synced). */
export async function registerBenchMcp(port, apiKey, url) {
  const r = await http({ port, host: "acme.localhost", path: `/mcp-servers/${BENCH_MCP_SERVER}`, method: "PUT", headers: { authorization: `Bearer ${apiKey}` }, body: { url, description: "The bench's stateless MCP server (echo, tool01 … tool20)" } });
  if (r.status >= 300) throw new Error(`registering the bench MCP server failed: ${r.status} ${r.text}`);
}

function devLoad({ port, body, connections = MCP_CONNECTIONS, duration = DURATION, amount, warmUp = false }) {
  return new Promise((resolve, reject) => {
    let failures = 0;
    autocannon(
      {
        url: `http://127.0.0.1:${port}/_dev/bench/mcp`,
        connections,
        ...(amount ? { amount } : { duration }),
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        requests: [
          {
            onResponse: (status, text) => {
              if (status !== 200 || !text.includes('"ok":true')) failures++;
            },
          },
        ],
      },
      (err, result) => {
        if (err) return reject(err);
        if (result.requests.total === 0 && !warmUp) return reject(new Error(`a ${duration} s round of /_dev/bench/mcp (${body.mode}) completed no request: raise BENCH_SECONDS`));
        // answered requests ÷ the round's length (autocannon's per-second average reads 0 for slow rounds)
        resolve({ ...result, failures, rate: result.requests.total / result.duration });
      },
    );
  });
}

/**
 * (g) Shaman's MCP router against a direct `tools/call`, both from inside the Worker.
 * `servers`: [{ label, url }]. Returns per server { routerP50, directP50 (per call, ms),
 * routerRps, directRps (calls/s), ratio, errors }, the route's own p50 (`noneP50`, per
 * request) and `ratio` (the largest).
 */
export async function mcpRouterBench(port, servers) {
  const sent = (label) => servers.find((x) => x.label === label)?.methods?.() ?? null;
  console.log(`\n(g) MCP router overhead: ${MCP_CALLS} calls of echo per request from inside the Worker, router (callMcpTool) vs a direct JSON-RPC tools/call, ${MCP_CONNECTIONS} connections, alternating rounds`);
  const args = { message: "benchmark the router" };
  const body = (mode, url) => ({ mode, url, tool: "echo", args, calls: MCP_CALLS });
  const out = { servers: {}, ratio: 0, errors: 0 };
  for (const { label, url } of servers) {
    for (const mode of ["router", "direct"]) {
      const r = await http({ port, path: "/_dev/bench/mcp", method: "POST", body: { ...body(mode, url), calls: 1 } });
      const text = JSON.stringify(r.json?.result ?? null);
      if (r.status !== 200 || !r.json?.ok || !text.includes("benchmark the router")) throw new Error(`/_dev/bench/mcp ${mode} on ${label} answered ${r.status}: ${r.text.slice(0, 300)}`);
    }
    // Warm-ups (2 s each) size the rounds: a fixed number of requests lasting about
    // BENCH_SECONDS, so no call of one round is still running on the server in the next.
    const warm = [await devLoad({ port, body: body("router", url), duration: 2, warmUp: true }), await devLoad({ port, body: body("direct", url), duration: 2, warmUp: true })];
    const wave = Math.max(...warm.map((w) => w.rate));
    const amount = (connections) => Math.max(connections * 2, Math.round(wave * DURATION * (connections === 1 ? 0.5 : 1)));
    await new Promise((r) => setTimeout(r, 2_000));
    const router = [];
    const direct = [];
    for (let i = 0; i < 2; i++) {
      const before = sent(label);
      router.push(await devLoad({ port, body: body("router", url), amount: amount(MCP_CONNECTIONS) }));
      const after = sent(label);
      if (before && i === 0) {
        const diff = Object.entries(after).map(([m, n]) => [m, n - (before[m] ?? 0)]).filter(([, n]) => n > 0);
        console.log(`  ${label} router round 1: the server was sent ${diff.map(([m, n]) => `${n} ${m}`).join(", ")} (${router[0].requests.total * MCP_CALLS} calls answered)`);
      }
      direct.push(await devLoad({ port, body: body("direct", url), amount: amount(MCP_CONNECTIONS) }));
    }
    const routerOne = await devLoad({ port, body: body("router", url), connections: 1, amount: amount(1) });
    const directOne = await devLoad({ port, body: body("direct", url), connections: 1, amount: amount(1) });
    const p50 = (rs) => rs.reduce((s, r) => s + r.latency.p50, 0) / rs.length / MCP_CALLS;
    const rps = (rs) => (rs.reduce((s, r) => s + r.rate, 0) / rs.length) * MCP_CALLS;
    const errors = [...router, ...direct, routerOne, directOne].reduce((s, r) => s + r.failures + r.errors + r.timeouts, 0);
    const r = { routerP50: p50(router), directP50: p50(direct), routerRps: rps(router), directRps: rps(direct), router1c: p50([routerOne]), direct1c: p50([directOne]), errors };
    r.ratio = r.routerP50 / r.directP50;
    r.ratio1c = r.router1c / r.direct1c;
    const line = (name, rs, conns = MCP_CONNECTIONS) =>
      rs.map((x, i) => `  ${label} ${name} ${conns === 1 ? "1 connection" : `round ${i + 1}`}: ${fmt(x.rate * MCP_CALLS)} calls/s, p50 ${fmt(x.latency.p50 / MCP_CALLS, 2)} ms per call (${x.failures + x.errors + x.timeouts} failed)`).join("\n");
    console.log(line("router", router));
    console.log(line("direct", direct));
    console.log(line("router", [routerOne], 1));
    console.log(line("direct", [directOne], 1));
    console.log(
      `  → ${label}: router ${fmt(r.routerP50, 2)} ms, ${fmt(r.routerRps)} calls/s; direct ${fmt(r.directP50, 2)} ms, ${fmt(r.directRps)} calls/s; ratio ${fmt(r.ratio, 2)}× (target ≤ 1.5×); ` +
        `alone ${fmt(r.router1c, 2)} vs ${fmt(r.direct1c, 2)} ms per call, ${fmt(r.ratio1c, 2)}×`,
    );
    out.servers[label] = r;
    out.ratio = Math.max(out.ratio, r.ratio);
    out.errors += errors;
  }
  const none = await devLoad({ port, body: body("none", servers[0].url), duration: Math.min(DURATION, 3) });
  out.noneP50 = none.latency.p50;
  console.log(`  (the route alone, no call, ${MCP_CONNECTIONS} connections: p50 ${fmt(none.latency.p50, 1)} ms per request, ${fmt(none.rate)} req/s)`);
  return out;
}

/** One blocking SendMessage to a demo org agent, timed on the client. */
async function sendOnce({ port, auth }, agent, text) {
  const started = performance.now();
  const r = await http({
    port,
    host: "acme.localhost",
    path: `/a2a/agents/${agent}`,
    method: "POST",
    headers: { "a2a-version": "1.0", ...auth },
    body: { jsonrpc: "2.0", id: 1, method: "SendMessage", params: { message: { messageId: `bench-${crypto.randomUUID()}`, role: "ROLE_USER", parts: [{ text }] } } },
  });
  return { ms: performance.now() - started, task: r.json?.result?.task, r };
}

/**
 * (h) The cost of a tool call in a run: Tools20, Tools1 and Tools0 (see the header), one
 * blocking run at a time. Each probe run is checked: completed, and the bench server saw
 * exactly 20, 1 and 0 tools/call requests.
 */
export async function toolCostBench(target, stateless) {
  console.log(`\n(h) cost per tool call: one blocking SendMessage at a time to Tools20 (20 MCP calls in one turn, in parallel), Tools1 (one call) and Tools0 (none), median of ${TOOL_ROUNDS}`);
  const agents = [
    ["Tools0", 0],
    ["Tools1", 1],
    ["Tools20", BENCH_TOOLS.length],
  ];
  const runOnce = async (agent, expected, i) => {
    const before = await stateless.calls();
    const { ms, task, r } = await sendOnce(target, agent, `Tool benchmark ${i}: please run.`);
    if (task?.status?.state !== "TASK_STATE_COMPLETED") throw new Error(`${agent} did not complete: ${r.text.slice(0, 500)}`);
    const made = (await stateless.calls()) - before;
    if (made !== expected) throw new Error(`${agent} made ${made} tool calls, expected ${expected}`);
    last.set(agent, task.id);
    return ms;
  };
  const last = new Map();
  for (const [agent, n] of agents) await runOnce(agent, n, "warm-up");
  const times = new Map(agents.map(([a]) => [a, []]));
  for (let i = 0; i < TOOL_ROUNDS; i++) for (const [agent, n] of agents) times.get(agent).push(await runOnce(agent, n, i));
  const r = { zero: median(times.get("Tools0")), one: median(times.get("Tools1")), twenty: median(times.get("Tools20")) };
  r.perCall = (r.twenty - r.zero) / BENCH_TOOLS.length;
  r.perExtraCall = (r.twenty - r.one) / (BENCH_TOOLS.length - 1);
  for (const [agent] of agents) console.log(`  ${agent.padEnd(7)} ${fmt(median(times.get(agent)))} ms  (runs ${times.get(agent).map((x) => fmt(x)).join(", ")})`);
  r.split = await toolRunSplit(target, last.get("Tools20"));
  const sp = r.split;
  console.log(
    `  the last Tools20 run, from its event log (run object clock): first turn ${fmt(sp.firstTurn)} ms (queued → model.turn); the ${sp.calls} calls ${fmt(sp.callsWall)} ms ` +
      `(model.turn → last tool.result; each ${fmt(sp.callWait, 1)} ms from tool.called to tool.started (queue hop, claim), ${fmt(sp.callWork, 1)} ms from tool.started to tool.result (the MCP call, its record), means); ` +
      `then ${fmt(sp.rest)} ms to run.completed (the second turn)`,
  );
  console.log(`  → ${fmt(r.perCall, 1)} ms per tool call ((Tools20 − Tools0) ÷ 20, the second turn included); ${fmt(r.perExtraCall, 1)} ms per extra call ((Tools20 − Tools1) ÷ 19)`);
  return r;
}

/** Where a tool run's time goes, from its event log (the run object's clock, ms). */
async function toolRunSplit({ port, auth }, runId) {
  const r = await http({ port, host: "acme.localhost", path: `/runs/${runId}/events?after=0&limit=500`, headers: auth });
  if (r.status !== 200) throw new Error(`GET /runs/${runId}/events answered ${r.status}: ${r.text}`);
  const events = r.json.events.map((ev) => ({ ...ev, t: Date.parse(ev.at) }));
  const first = (type) => events.find((ev) => ev.type === type)?.t;
  const turns = events.filter((ev) => ev.type === "model.turn");
  // the MCP calls: those a call job started (complete_agent_execution has a tool.result too)
  const started = new Map(events.filter((ev) => ev.type === "tool.started" && ev.data.kind === "mcp").map((ev) => [ev.data.callId, ev.t]));
  const results = events.filter((ev) => ev.type === "tool.result" && started.has(ev.data.callId));
  const called = new Map(events.filter((ev) => ev.type === "tool.called").map((ev) => [ev.data.callId, ev.t]));
  const avg = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const lastResult = Math.max(...results.map((ev) => ev.t));
  return {
    firstTurn: turns[0].t - first("step.queued"),
    calls: results.length,
    callsWall: lastResult - turns[0].t,
    callWait: avg([...started].filter(([id]) => called.has(id)).map(([id, t]) => t - called.get(id))),
    callWork: avg(results.filter((ev) => started.has(ev.data.callId)).map((ev) => ev.t - started.get(ev.data.callId))),
    rest: first("run.completed") - lastResult,
  };
}

/** The RESULT fields of (g) and (h). */
export function toolResultFields(g, h) {
  const s25 = g.servers["2025"];
  const s26 = g.servers["2026"];
  const server = (p, s) =>
    `${p}_router_p50_ms=${fmt(s.routerP50, 2)} ${p}_direct_p50_ms=${fmt(s.directP50, 2)} ${p}_router_rps=${fmt(s.routerRps)} ${p}_direct_rps=${fmt(s.directRps)} ${p}_ratio=${fmt(s.ratio, 2)} ` +
    `${p}_router_1c_ms=${fmt(s.router1c, 2)} ${p}_direct_1c_ms=${fmt(s.direct1c, 2)} ${p}_ratio_1c=${fmt(s.ratio1c, 2)}`;
  return (
    `mcp_router_ratio=${fmt(g.ratio, 2)} ${server("mcp2025", s25)} ${server("mcp2026", s26)} mcp_errors=${g.errors} ` +
    `tool_run_0_ms=${fmt(h.zero)} tool_run_1_ms=${fmt(h.one)} tool_run_20_ms=${fmt(h.twenty)} ms_per_tool_call=${fmt(h.perCall, 1)} ms_per_extra_tool_call=${fmt(h.perExtraCall, 1)} tool_calls_wall_ms=${fmt(h.split.callsWall)} tool_call_wait_ms=${fmt(h.split.callWait, 1)} tool_call_work_ms=${fmt(h.split.callWork, 1)}`
  );
}

/** `node bench/tools.mjs`: only (g) and (h), on a fresh local state of their own. */
async function main() {
  const persistTo = join(ROOT, ".wrangler", "bench-tools-state");
  rmSync(persistTo, { recursive: true, force: true });
  migrateLocal(persistTo);
  const port = await freePort();
  const mcp = await startBenchMcp();
  const shaman = await startWrangler({ port, persistTo, vars: BENCH_VARS });
  const { git, url: repoUrl } = await startDemoGit();
  try {
    const { apiKey } = await seedDemo(port, { rateLimits: { perPrincipal: 1_000_000_000, perOrg: 1_000_000_000, perClient: 1_000_000_000, windowSeconds: 60 }, runLimits: { maxCallsPerTurn: 100, maxStepsPerRun: 1000, maxDepth: 16 }, repoUrl });
    await registerBenchMcp(port, apiKey, mcp.stateless.url);
    await registerRepository(port, { apiKey, name: "bench", gitUrl: await addGitRepo(git, "acme/bench-agents", readTree("bench/agents")) });
    const g = await mcpRouterBench(port, [
      { label: "2025", url: mcp.everything.url },
      { label: "2026", url: mcp.stateless.url, methods: mcp.stateless.methods },
    ]);
    const h = await toolCostBench({ port, auth: { authorization: `Bearer ${apiKey}` } }, mcp.stateless);
    console.log(`\nRESULT ${toolResultFields(g, h)}`);
  } finally {
    await Promise.all([shaman.stop(), mcp.close(), git.close()]);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(`bench failed: ${err.stack ?? err.message}`);
      process.exit(1);
    },
  );
}
