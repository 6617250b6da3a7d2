// `npm run bench`: measures Shaman under `wrangler dev` against baselines taken in the same
// run (this machine is noisy; only ratios and same-run figures mean anything).
//   (a) gateway: requests/s on a cheap org route (the agent card: subdomain → org, D1
//       lookup cached in the isolate) versus a bare hello-world Worker on the same wrangler;
//   (b) SendMessage end to end with the offline model: runs/s and latency (each call makes
//       a run Durable Object, a D1 row, a queue hop to the executor and back), next to
//       Cloudflare's Agents SDK creating one agent per request (bench/agents-sdk) on the
//       same wrangler, as a ratio.
import autocannon from "autocannon";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, freePort, http, migrateLocal, seedDemo, startWrangler } from "../scripts/local.mjs";

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
  try {
    // Limits far above what the bench sends: the limiter still runs on every request.
    const { apiKey } = await seedDemo(shamanPort, "acme", { perPrincipal: 1_000_000_000, perOrg: 1_000_000_000, windowSeconds: 60 });
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
    console.log(
      `\nRESULT gateway_ratio=${fmt(ratio, 2)} hello_rps=${fmt(mean(helloRounds))} card_rps=${fmt(mean(cardRounds))} send_rps=${fmt(sendRps, 1)} send_p50_ms=${fmt(p50, 1)} send_errors=${errors} agents_sdk_rps=${fmt(sdkRps, 1)} send_vs_agents_sdk=${fmt(sendRps / sdkRps, 2)}`,
    );
  } finally {
    await Promise.all([shaman.stop(), hello.stop(), sdk.stop()]);
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench failed: ${err.stack ?? err.message}`);
    process.exit(1);
  },
);
