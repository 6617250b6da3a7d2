// `npm run bench:ab -- <baseline checkout> [<candidate checkout>]`: SendMessage runs/s of two
// checkouts of Shaman side by side (two `wrangler dev` at once, rounds alternating, 20
// connections, offline model), as the candidate ÷ baseline ratio of the same run. For
// finding which commit moved the figure: `git worktree add /tmp/base <commit>` and link
// its node_modules (`ln -s "$PWD/node_modules" /tmp/base/node_modules`).
import autocannon from "autocannon";
import { rmSync } from "node:fs";
import { join, resolve } from "node:path";

const [baseRoot, candidateRoot = process.cwd()] = process.argv.slice(2).map((p) => resolve(p));
if (!baseRoot) {
  console.error("usage: npm run bench:ab -- <baseline checkout> [<candidate checkout>]");
  process.exit(2);
}
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DURATION = Number(process.env.BENCH_SECONDS ?? 5);

async function start(root, label) {
  const local = await import(join(root, "scripts/local.mjs"));
  const persistTo = join(root, ".wrangler", "ab-state");
  rmSync(persistTo, { recursive: true, force: true });
  local.migrateLocal(persistTo);
  const port = await local.freePort();
  const server = await local.startWrangler({ port, persistTo });
  const { git, url } = await local.startDemoGit();
  const limits = { perPrincipal: 1e9, perOrg: 1e9, perClient: 1e9, windowSeconds: 60 };
  const { apiKey } = await local.seedDemo(port, { rateLimits: limits, repoUrl: url });
  return { label, port, apiKey, stop: () => Promise.all([server.stop(), git.close()]) };
}

const send = (t, duration) =>
  new Promise((res, rej) =>
    autocannon(
      {
        url: `http://127.0.0.1:${t.port}/a2a/agents/Summarize`,
        connections: 20,
        duration,
        method: "POST",
        headers: { host: `acme.localhost:${t.port}`, "content-type": "application/json", "a2a-version": "1.0", authorization: `Bearer ${t.apiKey}` },
        // A new messageId per request: a repeated one is deduplicated (the same task back, no run).
        requests: [
          {
            setupRequest: (req) => ({ ...req, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "SendMessage", params: { message: { messageId: `ab-${crypto.randomUUID()}`, role: "ROLE_USER", parts: [{ text: "Benchmark." }] } } }) }),
            // JSON-RPC errors answer 200 too: count answers that are not a completed task.
            onResponse: (status, body) => {
              if (status === 200 && !String(body).includes("TASK_STATE_COMPLETED")) t.notCompleted = (t.notCompleted ?? 0) + 1;
            },
          },
        ],
      },
      (e, r) => (e ? rej(e) : res(r)),
    ),
  );

const base = await start(baseRoot, "baseline");
const candidate = await start(candidateRoot, "candidate");
try {
  await send(base, 1);
  await send(candidate, 1);
  const rps = { baseline: [], candidate: [] };
  for (let i = 0; i < ROUNDS; i++) {
    for (const t of [base, candidate]) {
      const r = await send(t, DURATION);
      rps[t.label].push(r.requests.average);
      console.log(`${t.label.padEnd(9)} round ${i + 1}: ${r.requests.average} runs/s  p50 ${r.latency.p50} ms  (${r.non2xx} non-2xx, ${r.errors} errors, ${t.notCompleted ?? 0} not completed so far)`);
    }
  }
  const mean = (x) => x.reduce((s, v) => s + v, 0) / x.length;
  console.log(`RESULT baseline_rps=${mean(rps.baseline).toFixed(1)} candidate_rps=${mean(rps.candidate).toFixed(1)} ratio=${(mean(rps.candidate) / mean(rps.baseline)).toFixed(2)}`);
} finally {
  await Promise.all([base.stop(), candidate.stop()]);
}
