// `npm run bench`: measures Shaman under `wrangler dev` against baselines taken in the same
// run (this machine is noisy; only ratios and same-run figures mean anything).
//   (a) gateway: requests/s on a cheap org route (the agent card: subdomain → org, D1
//       lookup cached in the isolate) versus a bare hello-world Worker on the same wrangler;
//   (b) SendMessage end to end with the offline model: runs/s and latency (each call makes
//       a run Durable Object, a D1 row, a queue hop to the executor and back), next to
//       Cloudflare's Agents SDK creating one agent per request (bench/agents-sdk) on the
//       same wrangler, as a ratio;
//   (c) repository sync of a 500-agent git repository from a local git http-backend:
//       first sync, unchanged resync, one changed file, and the cost per file.
import autocannon from "autocannon";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, freePort, http, migrateLocal, seedDemo, startDemoGit, startWrangler } from "../scripts/local.mjs";

const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const SEND_CONNECTIONS = Number(process.env.BENCH_SEND_CONNECTIONS ?? 20);

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
    let agentSeq = 0;
    const sdkLoad = (duration = DURATION) =>
      new Promise((resolve, reject) => {
        autocannon(
          {
            url: `http://127.0.0.1:${sdkPort}/agents/bench-agent/x`,
            connections: SEND_CONNECTIONS,
            duration,
            method: "POST",
            body: "Benchmark the platform, please.",
            // a new agent (a new Durable Object) per request, as a per-run design needs
            requests: [{ setupRequest: (req) => ({ ...req, path: `/agents/bench-agent/run-${Date.now()}-${agentSeq++}` }) }],
          },
          (err, result) => (err ? reject(err) : resolve(result)),
        );
      });
    await load({ ...send, duration: 1 });
    await sdkLoad(1);
    const sendRounds = [];
    const sdkRounds = [];
    for (let i = 0; i < 2; i++) {
      sendRounds.push(await load(send));
      sdkRounds.push(await sdkLoad());
    }
    sendRounds.forEach((r, i) => console.log(`  Shaman SendMessage        round ${i + 1}: ${summary(r)}`));
    sdkRounds.forEach((r, i) => console.log(`  Agents SDK, agent/request round ${i + 1}: ${summary(r)}`));
    const sendRps = mean(sendRounds);
    const sdkRps = mean(sdkRounds);
    const p50 = sendRounds.reduce((s, r) => s + r.latency.p50, 0) / sendRounds.length;
    const errors = sendRounds.reduce((s, r) => s + r.non2xx + r.errors + r.timeouts, 0);
    console.log(`  → ${fmt(sendRps, 1)} runs/s, median latency ${fmt(p50, 1)} ms; ${fmt(sendRps / sdkRps, 2)}× the Agents SDK (${fmt(sdkRps, 1)} req/s)`);

    const s = await syncBench(shamanPort, git.url, auth);
    console.log(
      `\nRESULT gateway_ratio=${fmt(ratio, 2)} hello_rps=${fmt(mean(helloRounds))} card_rps=${fmt(mean(cardRounds))} send_rps=${fmt(sendRps, 1)} send_p50_ms=${fmt(p50, 1)} send_errors=${errors} agents_sdk_rps=${fmt(sdkRps, 1)} send_vs_agents_sdk=${fmt(sendRps / sdkRps, 2)} ` +
        `sync_agents=${SYNC_AGENTS} sync_first_ms=${fmt(s.first)} sync_unchanged_ms=${fmt(s.unchanged)} sync_one_change_ms=${fmt(s.oneChange)} sync_ms_per_file=${fmt(s.first / SYNC_AGENTS, 2)}`,
    );
  } finally {
    await Promise.all([shaman.stop(), hello.stop(), sdk.stop(), git.close()]);
  }
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
