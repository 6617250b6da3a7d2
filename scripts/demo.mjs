// `npm run demo`: starts Shaman locally (wrangler dev: local D1, R2, Queues, Durable
// Objects) and a local git server holding examples/agents, creates the demo org `acme`,
// registers that git repository and lets Shaman sync it, calls its ProcessInvoice agent
// over A2A, prints the run's streamed events and the final answer, and stops. No account or API key needed:
// with no model configured, agents run on the built-in offline model.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { DEMO_ORG, ROOT, freePort, http, migrateLocal, seedDemo, startDemoGit, startWrangler } from "./local.mjs";

const persistTo = join(ROOT, ".wrangler", "demo-state");
const org = DEMO_ORG.slug;
const agent = "ProcessInvoice";
const invoice = `INVOICE INV-2026-0417
Globex Corporation, 42 Industrial Way, Springfield
Bill to: Acme Corp
Issue date: 2026-11-02   Due: 2026-12-02
2 x Widget Pro @ 149.00 EUR = 298.00 EUR
1 x Installation @ 80.00 EUR = 80.00 EUR
Subtotal 378.00 EUR  VAT 19% 71.82 EUR  Total 449.82 EUR`;

const step = (s) => console.log(`\n\x1b[1m▸ ${s}\x1b[0m`);

async function main() {
  rmSync(persistTo, { recursive: true, force: true });
  step("Applying D1 migrations (local)");
  migrateLocal(persistTo);

  step("Starting a local git server with examples/agents as acme/agents.git (git http-backend)");
  const { git, url: repoUrl, head } = await startDemoGit();
  console.log(`  ${repoUrl} @ ${head.slice(0, 12)}`);

  const port = await freePort();
  step(`Starting Shaman on http://${org}.localhost:${port} (wrangler dev)`);
  const server = await startWrangler({ port, persistTo });
  try {
    step(`Creating the demo org '${org}' and syncing its agents from git: POST /repositories`);
    const seeded = await seedDemo(port, { repoUrl });
    const sync = seeded.sync;
    console.log(`  repository ${seeded.repository.name} @ ${sync.commit.slice(0, 12)} synced in ${sync.durationMs} ms: agents ${sync.result.agents.join(", ")}`);
    const auth = { authorization: `Bearer ${seeded.apiKey}` };
    console.log(`  owner API key ${seeded.apiKey.slice(0, 17)}… (shown once; every call below is authenticated with it)`);

    step(`Agent card: GET http://${org}.localhost:${port}/a2a/agents/${agent}/.well-known/agent-card.json`);
    const card = await http({ port, host: `${org}.localhost`, path: `/a2a/agents/${agent}/.well-known/agent-card.json`, headers: auth });
    console.log(`  ${card.json.name} v${card.json.version}: ${card.json.description}`);

    // One A2A JSON-RPC call to the agent, as the authenticated demo caller.
    const a2a = (id, method, params) =>
      http({ port, host: `${org}.localhost`, path: `/a2a/agents/${agent}`, method: "POST", headers: { "A2A-Version": "1.0", ...auth }, body: { jsonrpc: "2.0", id, method, params } });

    step(`A2A SendMessage → POST http://${org}.localhost:${port}/a2a/agents/${agent}`);
    const send = await a2a(1, "SendMessage", {
      message: { messageId: crypto.randomUUID(), role: "ROLE_USER", parts: [{ text: invoice }] },
      configuration: { returnImmediately: true },
    });
    if (!send.json?.result?.task) throw new Error(`SendMessage failed: ${send.status} ${send.text}`);
    const task = send.json.result.task;
    console.log(`  task ${task.id}: ${task.status.state}`);

    // Node cannot resolve *.localhost for WebSockets, so this uses the local-only path prefix.
    const wsUrl = `ws://127.0.0.1:${port}/_org/${org}/runs/${task.id}/ws?after=0`;
    step(`Streaming the run's events: ${wsUrl}`);
    await new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl, { headers: auth });
      const timer = setTimeout(() => reject(new Error("the run did not finish within 60 s")), 60_000);
      ws.onmessage = (e) => {
        const ev = JSON.parse(e.data);
        const d = ev.data;
        const detail =
          ev.type === "step.started" ? `attempt ${d.attempt}` :
          ev.type === "step.completed" ? `${d.model}, ${d.durationMs} ms` :
          ev.type === "step.queued" ? `depth ${d.depth}` :
          ev.type === "run.failed" || ev.type === "step.failed" ? d.error : "";
        console.log(`  #${ev.seq} ${ev.at.slice(11, 23)} ${ev.type.padEnd(15)} ${ev.stepId ?? "  "} ${d.agent ?? ""} ${detail}`.trimEnd());
      };
      ws.onclose = () => {
        clearTimeout(timer);
        resolve();
      };
      ws.onerror = () => reject(new Error("WebSocket error"));
    });

    step("A2A GetTask: the final answer");
    const got = await a2a(2, "GetTask", { id: task.id });
    const final = got.json?.result;
    if (final?.status?.state !== "TASK_STATE_COMPLETED") throw new Error(`the task did not complete: ${got.text}`);
    console.log(`  state: ${final.status.state}`);
    for (const line of final.artifacts[0].parts[0].text.split("\n")) console.log(`  │ ${line}`);
    console.log("\nDemo finished. `npm run dev` keeps the platform running on port 8787.");
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
