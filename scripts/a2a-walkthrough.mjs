// An unmodified A2A client against an org, starting from nothing but the org's URL
// (issue 11, "Done when"). `a2aWalkthrough({ port, org, apiKey })` drives every method of
// the spec with `@a2a-js/sdk/client` alone: its `ClientFactory` (`createFromUrl`), its
// JSON-RPC and HTTP+JSON transports and its authentication hook
// (`createAuthenticatingFetchWithRetry`) for the bearer key. No JSON-RPC or REST request is
// written by hand; plain `fetch` reads the discovery documents, and the org's management
// API (`PUT /settings/...`) is used only to set the org up for the walkthrough, printed as
// such. Each step prints a line or two and checks what it got: a wrong answer throws.
//
// `npm run demo` runs it as its last section (scripts/demo.mjs); on its own, against a
// platform already running (`npm run dev`, whose demo org has the agents of examples/agents):
//   npx node scripts/a2a-walkthrough.mjs --port 8787 --org acme --key shk_…
//
// Node cannot resolve `*.localhost`, and Node's own fetch drops a Host header it is given,
// so the SDK gets `localFetch`: a `fetch` made on node:http that connects to
// 127.0.0.1:<port> and keeps `acme.localhost:<port>` as the Host header. Every URL the SDK
// sees is therefore the org's real URL (`http://acme.localhost:<port>`), as the cards name
// it, and the gateway routes by the host name, as in production (no `/_org/` prefix).
import { createServer, request } from "node:http";
import { Readable } from "node:stream";
import { Role, TaskState } from "@a2a-js/sdk";
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory, RestTransportFactory, createAuthenticatingFetchWithRetry } from "@a2a-js/sdk/client";

/** The model the walkthrough gives the org's agents without one (Summarize): a second per turn, long enough to cancel a task and subscribe to it while it runs. */
export const WALKTHROUGH_MODEL = "offline:typist@1000ms";
const DETAILS_EXTENSION = "urn:shaman:a2a:extension:agent-details:v1";

/**
 * A `fetch` for the SDK that sends `http://<anything>.localhost:<port>/…` to
 * 127.0.0.1:<port> over node:http with the Host header kept (streams included: the answer's
 * body is the socket's, as it arrives). Anything else is refused: the walkthrough only talks
 * to the local platform.
 */
export function localFetch(port) {
  return async (input, init) => {
    const req = new Request(input, init);
    const url = new URL(req.url);
    if (url.protocol !== "http:" || !(url.hostname === "localhost" || url.hostname.endsWith(".localhost")) || Number(url.port) !== port) {
      throw new TypeError(`the walkthrough's fetch only reaches the local platform (http://*.localhost:${port}), not ${url.origin}`);
    }
    const body = req.body ? Buffer.from(await req.arrayBuffer()) : undefined;
    const headers = { ...Object.fromEntries(req.headers), host: url.host, ...(body ? { "content-length": String(body.length) } : {}) };
    return new Promise((resolve, reject) => {
      const out = request({ host: "127.0.0.1", port, method: req.method, path: `${url.pathname}${url.search}`, headers, signal: req.signal }, (res) => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) for (const x of [v].flat()) if (x !== undefined) h.append(k, x);
        const empty = req.method === "HEAD" || [204, 205, 304].includes(res.statusCode);
        if (empty) res.resume();
        resolve(new Response(empty ? null : Readable.toWeb(res), { status: res.statusCode, statusText: res.statusMessage, headers: h }));
      });
      out.on("error", reject);
      out.end(body);
    });
  };
}

/** A push receiver on 127.0.0.1: records every POST (path, headers, body). */
function startReceiver() {
  const got = [];
  const server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      got.push({ path: req.url, headers: req.headers, body });
      res.writeHead(200).end();
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${server.address().port}`, got, close: () => new Promise((r) => server.close(() => r())) }));
  });
}

class StepFailed extends Error {}
function check(ok, what) {
  if (!ok) throw new StepFailed(what);
}

const STATE = Object.fromEntries(Object.entries(TaskState).filter(([, v]) => typeof v === "number").map(([k, v]) => [v, k.replace("TASK_STATE_", "")]));
const stateOf = (t) => STATE[t?.status?.state] ?? String(t?.status?.state);
const textOfParts = (parts) => (parts ?? []).map((p) => (p.content?.$case === "text" ? p.content.value : "")).join("");
const resultText = (t) => t.artifacts.filter((a) => a.name === "result").map((a) => textOfParts(a.parts)).join("");
const clip = (s, n) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
const oneLine = (s) => s.replace(/\s+/g, " ").trim();

function message(text, opts = {}) {
  return {
    messageId: crypto.randomUUID(),
    contextId: opts.contextId ?? "",
    taskId: opts.taskId ?? "",
    role: Role.ROLE_USER,
    parts: [{ content: { $case: "text", value: text }, metadata: undefined, filename: "", mediaType: "text/plain" }],
    metadata: opts.metadata,
    extensions: [],
    referenceTaskIds: [],
  };
}

const sendParams = (msg, configuration = {}) => ({
  tenant: "",
  message: msg,
  configuration: { acceptedOutputModes: ["text/plain"], taskPushNotificationConfig: undefined, returnImmediately: false, ...configuration },
  metadata: undefined,
});

/** `client.sendMessage` answered with a Task (this platform always answers with one). */
async function sendTask(client, msg, configuration) {
  const r = await client.sendMessage(sendParams(msg, configuration));
  check(r && "status" in r, `SendMessage answered a Message, not a Task: ${JSON.stringify(r)}`);
  return r;
}

const listParams = (p = {}) => ({ tenant: "", contextId: "", status: TaskState.TASK_STATE_UNSPECIFIED, pageToken: "", statusTimestampAfter: undefined, ...p });

/** The A2A error a call rejects with (the SDK's error classes carry the ErrorInfo reason). */
async function rejection(p) {
  try {
    await p;
  } catch (err) {
    return { reason: err.reason ?? "", name: err.name, message: err.message };
  }
  throw new StepFailed("expected the call to be refused");
}

/** A stream response as one comparable word: its kind and what a client reads of it. */
function kindOf(e) {
  const p = e.payload;
  if (p?.$case === "task") return `task:${stateOf(p.value)}`;
  if (p?.$case === "statusUpdate") return `status:${STATE[p.value.status?.state]}`;
  if (p?.$case === "artifactUpdate") return `artifact:${p.value.artifact?.name}`;
  return p?.$case ?? "empty";
}
const seqOf = (e) => e.payload?.value?.metadata?.shaman?.seq;

/** `setTimeout` as a promise. */
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until `ok(value)` (at most `ms`); the last value either way. */
async function until(fn, ok, ms = 30_000, every = 100) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await pause(every);
  }
}

/** A long request (4 lines of ~1,500 characters): its answer streams in more than one 2 KiB text batch. */
const NOTES = Array.from({ length: 4 }, (_, i) => `Note ${i + 1}: ${"The quarterly numbers are in, the warehouse move is on schedule and the new supplier terms start next month. ".repeat(14)}`).join("\n");

/** Invoices for ProcessInvoice (examples/agents): one under its 1,000 EUR approval threshold, one above it. */
const SMALL_INVOICE = `INVOICE INV-2026-0533
Initech GmbH, Hauptstrasse 5, Stuttgart
VAT ID DE811569869   IBAN DE44 5001 0517 5407 3249 31
Bill to: Acme Corp
Issue date: 2026-11-10   Due: 2026-12-10
3 x Printer toner @ 80.00 EUR = 240.00 EUR
Subtotal 240.00 EUR  VAT 19% 45.60 EUR  Total 285.60 EUR`;
const LARGE_INVOICE = `INVOICE INV-2026-0912
Umbrella Logistics Ltd, 7 Dock Road, Rotterdam
VAT ID NL859345176B01   IBAN NL91 ABNA 0417 1643 00
Bill to: Acme Corp
Issue date: 2026-11-12   Due: 2026-12-12
4 x Pallet racking @ 620.00 EUR = 2,480.00 EUR
Subtotal 2,480.00 EUR  VAT 21% 520.80 EUR  Total 3,000.80 EUR`;

/**
 * Runs the walkthrough against `http://<org>.localhost:<port>` with the API key `apiKey`.
 * `setup` (default true) first sets the org's default agent (`PUT /settings/discovery`) and,
 * for agents that name no model, the default model `WALKTHROUGH_MODEL` (`PUT /settings/models`):
 * the org's management API, not A2A. `log` prints a line. Returns what it checked, in short.
 * Throws at the first wrong answer.
 */
export async function a2aWalkthrough({ port, org, apiKey, setup = true, defaultAgent = "ProcessInvoice", log = console.log, dim = (s) => s }) {
  const orgUrl = `http://${org}.localhost:${port}`;
  const plainFetch = localFetch(port);
  // The SDK's own hook for credentials: every request of the transports carries the key.
  const authFetch = createAuthenticatingFetchWithRetry(plainFetch, {
    headers: async () => ({ authorization: `Bearer ${apiKey}` }),
    shouldRetryWithHeaders: async () => undefined,
  });
  // Cards are read with plainFetch (no credential), the calls with authFetch.
  const factory = (preferred) =>
    new ClientFactory(
      ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
        transports: [new JsonRpcTransportFactory({ fetchImpl: authFetch }), new RestTransportFactory({ fetchImpl: authFetch })],
        cardResolver: new DefaultAgentCardResolver({ fetchImpl: plainFetch }),
        ...(preferred ? { preferredTransports: [preferred] } : {}),
      }),
    );
  const step = (name, line, more) => {
    log(`  ${name.padEnd(16)} ${line}`);
    if (more) log(dim(`  ${"".padEnd(16)} ${more}`));
  };
  const done = [];
  const ok = (name) => done.push(name);

  if (setup) {
    const put = async (path, body) => {
      const r = await authFetch(`${orgUrl}${path}`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      check(r.ok, `PUT ${path}: ${r.status} ${await r.text()}`);
    };
    await put("/settings/discovery", { requireCredentialForCards: false, defaultAgent });
    await put("/settings/models", { defaultModel: WALKTHROUGH_MODEL });
    step("org setup", dim(`(management API, as the owner) PUT /settings/discovery {defaultAgent: ${defaultAgent}}; PUT /settings/models {defaultModel: ${WALKTHROUGH_MODEL}}`));
  }

  // ---- discovery: nothing but the org's URL, no credential -----------------------------------
  const rootRes = await plainFetch(`${orgUrl}/.well-known/agent-card.json`, { headers: { "A2A-Version": "1.0" } });
  check(rootRes.status === 200, `GET /.well-known/agent-card.json without a credential: ${rootRes.status} ${await rootRes.clone().text()}`);
  const rootCard = await rootRes.json();
  const ifaces = (rootCard.supportedInterfaces ?? []).map((i) => `${i.protocolBinding} ${i.protocolVersion}`);
  const schemes = Object.keys(rootCard.securitySchemes ?? {});
  check(rootCard.name === defaultAgent, `the root card is ${rootCard.name}, not the default agent ${defaultAgent}`);
  check(ifaces.includes("JSONRPC 1.0") && ifaces.includes("HTTP+JSON 1.0"), `supportedInterfaces lists ${ifaces.join(", ")}`);
  check(schemes.includes("bearer"), `the card's securitySchemes are ${schemes.join(", ")}`);
  const dirRes = await plainFetch(`${orgUrl}/.well-known/agents.json`);
  check(dirRes.status === 200, `GET /.well-known/agents.json without a credential: ${dirRes.status}`);
  const directory = await dirRes.json();
  const names = directory.agents.map((a) => a.name);
  check(names.includes(defaultAgent) && names.includes("Summarize"), `the directory lists ${names.join(", ")}`);
  check(!names.includes("ValidateData") && !names.includes("VendorCheck"), `the directory shows private agents: ${names.join(", ")}`);
  step("discovery", `GET ${orgUrl}/.well-known/agent-card.json (no credential) → ${rootCard.name}: ${ifaces.join(", ")}; auth ${schemes.join(" | ")}`, `GET /.well-known/agents.json (no credential) → ${names.join(", ")} (private agents not listed)`);

  const invoices = await factory().createFromUrl(orgUrl); // the root card, resolved by the SDK
  const summarizeCard = directory.agents.find((a) => a.name === "Summarize").agentCard;
  const summarize = await factory().createFromUrl(summarizeCard, "");
  check(invoices.transport.protocolName === "JSONRPC" && summarize.transport.protocolName === "JSONRPC", "the SDK did not pick JSON-RPC from the cards");
  step("createFromUrl", `createFromUrl("${orgUrl}") → ${defaultAgent} over ${invoices.transport.protocolName} ${invoices.protocolVersion}; Summarize from the directory's agentCard URL`);
  ok("discovery");

  // ---- SendMessage (blocking) -------------------------------------------------------------------
  const simple = await sendTask(summarize, message("Summarize: the office moves to the new building on 3 March; desks are packed on 28 February."));
  check(simple.status.state === TaskState.TASK_STATE_COMPLETED && resultText(simple).length > 0, `blocking SendMessage: ${stateOf(simple)}`);
  step("SendMessage", `Summarize, blocking → task ${simple.id.slice(0, 8)}… ${stateOf(simple)}: ${clip(oneLine(resultText(simple)), 70)}`);
  ok("SendMessage");

  // ---- SendStreamingMessage, and SubscribeToTask opened while it runs ---------------------------
  const streamed = [];
  let taskId = null;
  let working = null;
  const workingSeen = new Promise((r) => (working = r));
  const streaming = (async () => {
    for await (const e of summarize.sendMessageStream(sendParams(message(NOTES)))) {
      streamed.push(e);
      if (e.payload?.$case === "task") taskId = e.payload.value.id;
      if (kindOf(e) === "status:WORKING") working();
    }
    working();
  })();
  await Promise.race([workingSeen, streaming]);
  check(taskId, `the stream's first response is not the Task: ${streamed.map(kindOf).join(", ")}`);
  const resubscribed = [];
  for await (const e of summarize.resubscribeTask({ tenant: "", id: taskId })) resubscribed.push(e);
  await streaming;
  const kinds = streamed.map(kindOf);
  const chunks = streamed.filter((e) => kindOf(e) === "artifact:text");
  const chunkText = chunks.map((e) => textOfParts(e.payload.value.artifact.parts)).join("");
  const final = streamed.at(-1);
  check(kinds[0] === "task:SUBMITTED" || kinds[0] === "task:WORKING", `the stream starts with ${kinds[0]}`);
  check(kindOf(final) === "status:COMPLETED", `the stream ends with ${kindOf(final)}`);
  check(chunks.length >= 2 && chunks[0].payload.value.append === false && chunks.at(-1).payload.value.lastChunk === true, `model text came as ${chunks.length} chunk(s)`);
  const result = streamed.find((e) => kindOf(e) === "artifact:result");
  check(result && chunkText === textOfParts(result.payload.value.artifact.parts), "the text chunks do not add up to the result artifact");
  const statusCount = kinds.filter((k) => k.startsWith("status:")).length;
  const artifactCount = kinds.filter((k) => k.startsWith("artifact:")).length;
  step("stream", `SendStreamingMessage → ${kinds[0]}, ${statusCount} status updates (${kinds.filter((k) => k.startsWith("status:")).map((k) => k.slice(7)).join(" → ")}), ${artifactCount} artifact updates: ${chunks.length} model text chunks (${chunkText.length} chars, append/lastChunk) + the result`);
  ok("SendStreamingMessage");

  // The subscriber: the Task first, then exactly the stream's events from where it joined.
  check(resubscribed[0]?.payload?.$case === "task", `SubscribeToTask starts with ${kindOf(resubscribed[0] ?? {})}`);
  const rest = resubscribed.slice(1);
  const from = streamed.findIndex((e) => seqOf(e) !== undefined && seqOf(e) === seqOf(rest[0]));
  check(rest.length > 0 && from > 0, `SubscribeToTask gave no update after the Task (${resubscribed.map(kindOf).join(", ")})`);
  const sameTail = JSON.stringify(rest) === JSON.stringify(streamed.slice(from));
  check(sameTail, `SubscribeToTask's events differ from the stream's: ${rest.map(kindOf).join(",")} vs ${streamed.slice(from).map(kindOf).join(",")}`);
  step("SubscribeToTask", `opened after "working" (mid-run) → ${kindOf(resubscribed[0])}, then the stream's last ${rest.length} events, identical (seq ${seqOf(rest[0])}–${seqOf(rest.at(-1))})`);
  ok("SubscribeToTask");

  // ---- GetTask with historyLength -----------------------------------------------------------------
  const whole = await summarize.getTask({ tenant: "", id: taskId });
  const last = await summarize.getTask({ tenant: "", id: taskId, historyLength: 1 });
  check(whole.history.length === 2 && last.history.length === 1 && last.history[0].role === Role.ROLE_AGENT, `GetTask history: ${whole.history.length} then ${last.history.length} with historyLength 1`);
  check(resultText(whole) === chunkText, "GetTask's result differs from the streamed text");
  step("GetTask", `${taskId.slice(0, 8)}… ${stateOf(whole)}, history ${whole.history.length} messages; historyLength: 1 → ${last.history.length} (the agent's answer)`);
  ok("GetTask");

  // ---- multi-turn: a second task in the first one's context sees it --------------------------------
  const turn1 = await sendTask(invoices, message(SMALL_INVOICE));
  check(turn1.status.state === TaskState.TASK_STATE_COMPLETED, `turn 1: ${stateOf(turn1)} ${resultText(turn1)}`);
  const followUp = "Please run the checks on that invoice once more.";
  const turn2 = await sendTask(invoices, message(followUp, { contextId: turn1.contextId }));
  check(turn2.status.state === TaskState.TASK_STATE_COMPLETED && turn2.contextId === turn1.contextId, `turn 2: ${stateOf(turn2)} in context ${turn2.contextId}`);
  // Turn 2's message names no invoice; its answer screens the vendor of turn 1's (the agent's model read the context's earlier turn).
  const answer2 = resultText(turn2);
  check(answer2.includes("Initech GmbH") && !followUp.includes("Initech"), `turn 2's answer does not show turn 1: ${clip(answer2, 300)}`);
  const inContext = await invoices.listTasks(listParams({ contextId: turn1.contextId }));
  check(inContext.tasks.length === 2 && inContext.totalSize === 2, `ListTasks {contextId} → ${inContext.tasks.length} tasks`);
  step("conversation", `${defaultAgent} in context ${turn1.contextId.slice(0, 8)}…: turn 1 an invoice of Initech GmbH → ${stateOf(turn1)}; turn 2 "${followUp}" → ${stateOf(turn2)}`, `turn 2's answer screens "Initech GmbH", which only turn 1 held: it read the earlier turn; ListTasks {contextId} → ${inContext.tasks.length} tasks`);
  ok("conversation");

  // ---- INPUT_REQUIRED, answered with the task's id ----------------------------------------------------
  const asked = await sendTask(invoices, message(LARGE_INVOICE));
  check(asked.status.state === TaskState.TASK_STATE_INPUT_REQUIRED, `an invoice above 1,000 EUR: ${stateOf(asked)}`);
  const question = asked.status.message;
  const pending = question?.parts.find((p) => p.content?.$case === "data")?.content.value?.inputs ?? [];
  check(pending.length >= 1 && pending[0].requestId, `the INPUT_REQUIRED status names no pending request: ${JSON.stringify(question)}`);
  const requestId = pending[0].requestId;
  const approved = await sendTask(invoices, message("approved", { taskId: asked.id, contextId: asked.contextId, metadata: { requestId } }));
  check(approved.id === asked.id && approved.status.state === TaskState.TASK_STATE_COMPLETED, `answering ${requestId}: ${stateOf(approved)}`);
  check(/approv/i.test(resultText(approved)), `the final answer does not mention the approval: ${clip(resultText(approved), 200)}`);
  const waiting = await invoices.listTasks(listParams({ status: TaskState.TASK_STATE_INPUT_REQUIRED }));
  check(!waiting.tasks.some((t) => t.id === asked.id), "ListTasks {status: INPUT_REQUIRED} still lists the answered task");
  step("input required", `an invoice of 3,000.80 EUR → ${stateOf(asked)}: "${clip(oneLine(textOfParts(question.parts.filter((p) => p.content?.$case === "text"))), 60)}"`, `SendMessage {taskId, metadata.requestId: ${requestId.slice(0, 8)}…} "approved" (the id from the Task's status message) → the same task ${stateOf(approved)}`);
  ok("input required");

  // ---- ListTasks: filters and pages -------------------------------------------------------------------
  const completed = await summarize.listTasks(listParams({ status: TaskState.TASK_STATE_COMPLETED, pageSize: 1 }));
  check(completed.tasks.length === 1 && completed.totalSize >= 2 && completed.nextPageToken, `ListTasks {status: COMPLETED, pageSize: 1}: ${completed.tasks.length} tasks, totalSize ${completed.totalSize}`);
  const page2 = await summarize.listTasks(listParams({ status: TaskState.TASK_STATE_COMPLETED, pageSize: 1, pageToken: completed.nextPageToken }));
  check(page2.tasks.length === 1 && page2.tasks[0].id !== completed.tasks[0].id, "the second page repeats the first");
  check(completed.tasks[0].artifacts.length === 0, "ListTasks returned artifacts without includeArtifacts");
  const byContext = await summarize.listTasks(listParams({ contextId: simple.contextId, includeArtifacts: true }));
  check(byContext.tasks.length === 1 && byContext.tasks[0].id === simple.id && resultText(byContext.tasks[0]).length > 0, `ListTasks {contextId} → ${byContext.tasks.map((t) => t.id).join(", ")}`);
  step("ListTasks", `{status: COMPLETED, pageSize: 1} → ${completed.tasks[0].id.slice(0, 8)}… of ${completed.totalSize}; {pageToken} → ${page2.tasks[0].id.slice(0, 8)}…; {contextId, includeArtifacts} → the one task, with its result`);
  ok("ListTasks");

  // ---- CancelTask ---------------------------------------------------------------------------------------
  const started = await sendTask(summarize, message("Summarize: a task that is canceled while it runs."), { returnImmediately: true });
  const running = await until(() => summarize.getTask({ tenant: "", id: started.id }), (t) => t.status.state !== TaskState.TASK_STATE_SUBMITTED, 30_000);
  check(running.status.state === TaskState.TASK_STATE_WORKING, `the task to cancel is ${stateOf(running)}, not running`);
  const canceled = await summarize.cancelTask({ tenant: "", id: started.id, metadata: undefined });
  check(canceled.status.state === TaskState.TASK_STATE_CANCELED, `CancelTask of a running task: ${stateOf(canceled)}`);
  const again = await summarize.cancelTask({ tenant: "", id: started.id, metadata: undefined });
  check(again.status.state === TaskState.TASK_STATE_CANCELED, `CancelTask again: ${stateOf(again)}`);
  const notCancelable = await rejection(summarize.cancelTask({ tenant: "", id: simple.id, metadata: undefined }));
  check(notCancelable.reason === "TASK_NOT_CANCELABLE", `CancelTask of a completed task: ${notCancelable.name} ${notCancelable.message}`);
  const afterCancel = await rejection(summarize.sendMessage(sendParams(message("more?", { taskId: started.id }))));
  check(afterCancel.reason === "UNSUPPORTED_OPERATION", `a message to the canceled task: ${afterCancel.name} ${afterCancel.message}`);
  step("CancelTask", `a running task (${stateOf(running)}) → ${stateOf(canceled)}; again → ${stateOf(again)} (idempotent); a completed task → ${notCancelable.name} (-32002)`, `a message to the canceled task → ${afterCancel.name} (-32004)`);
  ok("CancelTask");

  // ---- push notifications to a receiver on 127.0.0.1 --------------------------------------------------
  // A plain-http loopback URL passes the outbound URL policy only in local development
  // (SHAMAN_ENV=development, from scripts/local-vars.mjs, which scripts/local.mjs's
  // startWrangler gives the Worker); what `wrangler deploy` ships refuses it.
  const receiver = await startReceiver();
  try {
    const token = `walkthrough-${crypto.randomUUID()}`;
    const pushed = await sendTask(summarize, message("Summarize: this task's updates are pushed to a receiver."), { returnImmediately: true });
    const config = { tenant: "", taskId: pushed.id, id: "walkthrough", url: `${receiver.url}/a2a-push`, token, authentication: undefined };
    const created = await summarize.createTaskPushNotificationConfig(config);
    check(created.id === "walkthrough" && created.url === config.url && created.token === "", `CreateTaskPushNotificationConfig → ${JSON.stringify(created)}`);
    const fetched = await summarize.getTaskPushNotificationConfig({ tenant: "", taskId: pushed.id, id: "walkthrough" });
    const listed = await summarize.listTaskPushNotificationConfig({ tenant: "", taskId: pushed.id, pageSize: 0, pageToken: "" });
    check(fetched.url === config.url && listed.configs.length === 1, `Get/List: ${JSON.stringify(fetched)} ${JSON.stringify(listed)}`);
    const isFinal = (r) => {
      try {
        return JSON.parse(r.body).statusUpdate?.status?.state === "TASK_STATE_COMPLETED";
      } catch {
        return false;
      }
    };
    await until(async () => receiver.got, (g) => g.some(isFinal), 60_000, 200);
    check(receiver.got.some(isFinal), `the receiver got no final update (${receiver.got.length} pushes)`);
    check(receiver.got.every((r) => r.headers["x-a2a-notification-token"] === token && r.path === "/a2a-push"), "a push came without the configured token");
    const pushKinds = receiver.got.map((r) => Object.keys(JSON.parse(r.body))[0]);
    await summarize.deleteTaskPushNotificationConfig({ tenant: "", taskId: pushed.id, id: "walkthrough" });
    const afterDelete = await summarize.listTaskPushNotificationConfig({ tenant: "", taskId: pushed.id, pageSize: 0, pageToken: "" });
    const gone = await rejection(summarize.getTaskPushNotificationConfig({ tenant: "", taskId: pushed.id, id: "walkthrough" }));
    check(afterDelete.configs.length === 0 && gone.reason === "TASK_NOT_FOUND", `after Delete: ${afterDelete.configs.length} configs, Get → ${gone.name}`);
    step("push", `Create (token never shown again) / Get / List on a running task → ${receiver.url} got ${receiver.got.length} POSTs (${[...new Set(pushKinds)].join(", ")}, ending COMPLETED), each with X-A2A-Notification-Token`, `Delete → List has none; Get → ${gone.name}`);
  } finally {
    await receiver.close();
  }
  ok("push notifications");

  // ---- the extended card (authenticated) --------------------------------------------------------------
  const extended = await invoices.getAgentCard(); // the card says extendedAgentCard: true, so the SDK calls GetExtendedAgentCard
  const details = extended.capabilities?.extensions?.find((x) => x.uri === DETAILS_EXTENSION);
  check(rootCard.capabilities?.extendedAgentCard === true && details, `GetExtendedAgentCard: ${JSON.stringify(extended.capabilities)}`);
  const d = details.params ?? {};
  step("extended card", `GetExtendedAgentCard (with the key) → ${extended.name} + ${DETAILS_EXTENSION.split(":").slice(-2, -1)[0]}: model ${d.model}, commit ${String(d.commit ?? "").slice(0, 12)}, allowedAgents ${(d.allowedAgents ?? []).join(", ")}`);
  ok("GetExtendedAgentCard");

  // ---- the HTTP+JSON binding, from the same card -------------------------------------------------------
  const restClient = await factory("HTTP+JSON").createFromUrl(summarizeCard, "");
  check(restClient.transport.protocolName === "HTTP+JSON", `the REST client uses ${restClient.transport.protocolName}`);
  const viaRest = await sendTask(restClient, message("Summarize: the same agent over HTTP+JSON."));
  const gotRest = await restClient.getTask({ tenant: "", id: viaRest.id, historyLength: 1 });
  const listedRest = await restClient.listTasks(listParams({ contextId: viaRest.contextId }));
  const restCancel = await rejection(restClient.cancelTask({ tenant: "", id: viaRest.id, metadata: undefined }));
  const restCard = await restClient.getAgentCard();
  check(viaRest.status.state === TaskState.TASK_STATE_COMPLETED && gotRest.history.length === 1 && listedRest.tasks.length === 1 && restCancel.reason === "TASK_NOT_CANCELABLE", "the HTTP+JSON calls did not answer as the JSON-RPC ones");
  check(restCard.capabilities?.extensions?.some((x) => x.uri === DETAILS_EXTENSION), "GET /extendedAgentCard over HTTP+JSON has no details");
  step("HTTP+JSON", `the same card, preferredTransports [HTTP+JSON] → SendMessage ${stateOf(viaRest)}, GetTask, ListTasks, CancelTask → ${restCancel.name}, GetExtendedAgentCard: same answers`);
  ok("HTTP+JSON binding");

  return { steps: done };
}

// ---- on its own ------------------------------------------------------------------------------
if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const port = Number(arg("port", "8787"));
  const apiKey = arg("key", process.env.SHAMAN_API_KEY);
  if (!apiKey) {
    console.error("usage: npx node scripts/a2a-walkthrough.mjs --port 8787 --org acme --key <API key of the org>");
    process.exit(2);
  }
  a2aWalkthrough({ port, org: arg("org", "acme"), apiKey }).then(
    (r) => {
      console.log(`\n  ${r.steps.length} steps, every answer checked.`);
      process.exit(0);
    },
    (err) => {
      console.error(`\nwalkthrough failed: ${err.message}`);
      process.exit(1);
    },
  );
}
