// `npm run dev`: Shaman on http://<org>.localhost:8787 with local D1, R2, Queues and
// Durable Objects (state kept in .wrangler/state), and the demo org `acme` whose agents
// sync from a local git server (examples/agents served by git http-backend).
import { DEMO_ORG, migrateLocal, portIsFree, seedDemo, startDemoGit, startWrangler } from "./local.mjs";

const port = Number(process.env.PORT ?? 8787);
if (!(await portIsFree(port))) {
  console.error(`port ${port} is in use; set PORT to use another`);
  process.exit(1);
}
migrateLocal();
const { git, url: repoUrl } = await startDemoGit();
const server = await startWrangler({ port, inherit: true, remember: true });
const seeded = await seedDemo(port, { repoUrl });
const base = `http://${DEMO_ORG.slug}.localhost:${port}`;
console.log(`\nShaman is running. Demo org '${DEMO_ORG.slug}': agents ${seeded.sync.result.agents.join(", ")}
  synced from ${repoUrl} (a local git server; clone it to look, change it through ${git.url}/__admin/…)
  re-sync: curl -X POST ${base}/repositories/${seeded.repository.id}/sync -H 'Authorization: Bearer dev:${DEMO_ORG.owner}')
  owner API key (shown once):  ${seeded.apiKey}
  or, locally, as the owner:   Authorization: Bearer dev:${DEMO_ORG.owner}
  agents:  curl ${base}/a2a/agents -H 'Authorization: Bearer dev:${DEMO_ORG.owner}'
  call:    curl -s ${base}/a2a/agents/ProcessInvoice -H 'Authorization: Bearer dev:${DEMO_ORG.owner}' -H 'A2A-Version: 1.0' -H 'content-type: application/json' \\
             -d '{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"Invoice 7 from Globex, total 120 EUR"}]}}}'
  events:  curl ${base}/runs/<taskId>/events   (WebSocket: ${base.replace("http", "ws")}/runs/<taskId>/ws?after=0)
Press Ctrl-C to stop.`);
const stop = async () => {
  await server.stop();
  await git.close();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
