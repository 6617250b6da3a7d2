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
//   (d) orchestration: 10 bare queue round trips in sequence through one new Durable Object
//       per request (bench/floor `/chain/`), the baseline for Shaman's 10-step chain
//       (issue 9 benchmark (a), chain_ratio; plug Shaman's load in at `shamanChainLoad`).
import autocannon from "autocannon";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, freePort, http, migrateLocal, seedDemo, startDemoGit, startWrangler } from "../scripts/local.mjs";

const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const SEND_CONNECTIONS = Number(process.env.BENCH_SEND_CONNECTIONS ?? 20);
const CHAIN_CONNECTIONS = Number(process.env.BENCH_CHAIN_CONNECTIONS ?? SEND_CONNECTIONS);
const CHAIN_STEPS = 10;

function load({ port, path, host, method = "GET", body, headers = {}, connections = CONNECTIONS, duration = DURATION }) {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://127.0.0.1:${port}${path}`,
        connections,
        duration,
        method,
        headers: { host: `${host}:${port}`, ...(body ? { "content-type": "application/json" } : {}), ...headers },
        ...(body ? { body: JSON.stringify(body) } : {}),
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
  });
}

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
  const shaman = await startWrangler({ port: shamanPort, persistTo });
  const hello = await startWrangler({ port: helloPort, config: "bench/hello/wrangler.toml", persistTo: join(persistTo, "hello") });
  const sdkPort = await freePort();
  const sdk = await startWrangler({ port: sdkPort, config: "bench/agents-sdk/wrangler.toml", persistTo: join(persistTo, "agents-sdk") });
  const floorPort = await freePort();
  const floor = await startWrangler({ port: floorPort, config: "bench/floor/wrangler.toml", persistTo: join(persistTo, "floor") });
  const { git, url: repoUrl } = await startDemoGit();
  try {
    // Limits far above what the bench sends: the limiter still runs on every request.
    const { apiKey } = await seedDemo(shamanPort, { rateLimits: { perPrincipal: 1_000_000_000, perOrg: 1_000_000_000, perClient: 1_000_000_000, windowSeconds: 60 }, repoUrl });
    const auth = { authorization: `Bearer ${apiKey}` };
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
        params: { message: { messageId: "bench", role: "ROLE_USER", parts: [{ text: "Benchmark the platform, please." }] } },
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
    const c = await chainBench(floorPort, { meanP50, failures, shaman: { port: shamanPort, auth } });
    console.log(
      `\nRESULT gateway_ratio=${fmt(ratio, 2)} hello_rps=${fmt(mean(helloRounds))} card_rps=${fmt(mean(cardRounds))} send_rps=${fmt(sendRps, 1)} send_p50_ms=${fmt(p50, 1)} send_errors=${errors} agents_sdk_rps=${fmt(sdkRps, 1)} send_vs_agents_sdk=${fmt(sendRps / sdkRps, 2)} ` +
        `floor_rps=${fmt(floorRps, 1)} floor_p50_ms=${fmt(meanP50(floorRounds), 1)} send_vs_floor=${fmt(sendRps / floorRps, 2)} ` +
        `sync_agents=${SYNC_AGENTS} sync_first_ms=${fmt(s.first)} sync_unchanged_ms=${fmt(s.unchanged)} sync_one_change_ms=${fmt(s.oneChange)} sync_ms_per_file=${fmt(s.first / SYNC_AGENTS, 2)} ` +
        `chain_steps=${CHAIN_STEPS} chain_baseline_ms=${fmt(c.baselineP50, 1)} chain_baseline_rps=${fmt(c.baselineRps, 1)} chain_baseline_1c_ms=${fmt(c.baselineP50One, 1)} baseline_errors=${failures(floorRounds) + c.baselineErrors}` +
        (c.shaman ? ` shaman_chain_ms=${fmt(c.shaman.p50, 1)} shaman_chain_rps=${fmt(c.shaman.rps, 1)} chain_ratio=${fmt(c.shaman.p50 / c.baselineP50, 2)} chain_ratio_1c=${fmt(c.shaman.p50One / c.baselineP50One, 2)}` : ""),
    );
  } finally {
    await Promise.all([shaman.stop(), hello.stop(), sdk.stop(), floor.stop(), git.close()]);
  }
}

/**
 * Shaman's 10-step sequential chain with the offline model (issue 9, benchmark (a)) plugs in
 * HERE: a function `({ port, auth, connections, duration }) => Promise<autocannon result>`
 * (`port`: Shaman's, `auth`: the API key header) that makes one CHAIN_STEPS-step chain per
 * request and answers when it has finished, e.g. `load({ port, host: "acme.localhost",
 * path: "/a2a/agents/<chain agent>", method: "POST", headers: { "a2a-version": "1.0", ...auth },
 * body: <a blocking SendMessage>, connections, duration })`. While it is null only the
 * baseline is measured; once set, its rounds alternate with the baseline's and the bench
 * prints chain_ratio = Shaman's p50 ÷ the baseline's p50 (target ≤ 1.5×) at
 * CHAIN_CONNECTIONS, and chain_ratio_1c alone.
 */
const shamanChainLoad = null;

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
  const shamanLoad = shamanChainLoad && ((connections, duration = DURATION) => shamanChainLoad({ ...target, connections, duration }));
  if (shamanLoad) await shamanLoad(CHAIN_CONNECTIONS, 1);
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
  const r = {
    baselineP50: meanP50(baseline),
    baselineRps: mean(baseline),
    baselineP50One: one.latency.p50,
    baselineErrors: failures([...baseline, one]),
    shaman: shamanLoad ? { p50: meanP50(shaman), rps: mean(shaman), p50One: oneShaman.latency.p50 } : null,
  };
  console.log(
    `  → baseline p50 ${fmt(r.baselineP50, 1)} ms (${fmt(r.baselineRps, 1)} req/s) at ${CHAIN_CONNECTIONS} connections, ` +
      `${fmt(r.baselineP50One, 1)} ms alone (${fmt(r.baselineP50One / CHAIN_STEPS, 1)} ms per round trip)`,
  );
  if (r.shaman) console.log(`  → chain_ratio ${fmt(r.shaman.p50 / r.baselineP50, 2)}× (alone ${fmt(r.shaman.p50One / r.baselineP50One, 2)}×; target ≤ 1.5×)`);
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
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
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
