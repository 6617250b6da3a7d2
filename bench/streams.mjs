// Live stream fan-out (issue 11), in `npm run bench` (bench/run.mjs) or alone:
// `node bench/streams.mjs`.
//   (i) WebSocket fan-out: STREAM_SOCKETS sockets watch one run of Fan100 (100 parallel
//       branches: ~700 events over ~1 s, model text included) from its start
//       (`/runs/{id}/ws?after=0`); every socket must get every event of the run's log, in
//       order. Delivery delay of an event on a socket = receive time − the event's `at` (the
//       run object stamps it when it appends it, just before the broadcast). Per event, the
//       LAST socket's delay; p50/p99 over the run's events. Against: one socket watching
//       another Fan100 run in the same bench (ws_1_*), and a bare hibernating Durable Object
//       (bench/floor /bcast/) broadcasting as many messages to the same number of sockets
//       (ws_bare_*). Target: ws_last_p50 ≤ 1.2 × ws_bare_last_p50.
//   (j) SSE fan-out: STREAM_SSE subscribers of one Fan100 task (A2A SubscribeToTask,
//       JSON-RPC) from its start; each must get the same events, ids strictly increasing,
//       ending with COMPLETED. Delay per event = receive − the `at` of the run event whose
//       seq is the SSE id (from the run's log). Against one subscriber of another run.
// Node cannot resolve *.localhost: the org is addressed as /_org/acme/… on 127.0.0.1.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, addGitRepo, freePort, http, migrateLocal, readTree, registerRepository, seedDemo, startDemoGit, startWrangler } from "../scripts/local.mjs";

const STREAM_SOCKETS = Number(process.env.BENCH_STREAM_SOCKETS ?? 1_000);
const STREAM_SSE = Number(process.env.BENCH_STREAM_SSE ?? 100);
// The SSE bench's task: Talk answers after 3 s (the subscribers connect meanwhile), writing
// its answer a line every 20 ms: one artifact update per 150 ms batch of model text.
const AGENT = process.env.BENCH_STREAM_AGENT ?? "Talk";
const SSE_LINES = Number(process.env.BENCH_STREAM_SSE_LINES ?? 300);
// The WebSocket bench's run: Fan100 with 15 s model turns, so that every socket is open
// before its events flow (opening 1,000 takes seconds; the bare object's sockets are all
// open before it broadcasts, too).
const WS_AGENT = process.env.BENCH_STREAM_WS_AGENT ?? "Stream100";
// A socket still open this long after it was opened is cut and counted as an error (a run watched
// by 1,000 sockets one message per event takes ~100 s here: the machine delivers ~12k messages/s).
const TIMEOUT_MS = 300_000;
// Rounds of (Shaman run, bare broadcast of that run's schedule) at STREAM_SOCKETS: the bare
// figure alone moves by ±30% between rounds, so the medians are compared.
const WS_ROUNDS = Number(process.env.BENCH_STREAM_ROUNDS ?? 2);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : "NaN");
const pct = (xs, p) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

/** Opens `n` sockets to `url`, resolves once all are open; each records (seq, receive time) until closed. */
async function openSockets(url, n, headers) {
  const sockets = [];
  const started = Date.now();
  await Promise.all(
    Array.from({ length: n }, () =>
      new Promise((resolve) => {
        const s = { got: [], closed: null, error: null };
        s.done = new Promise((done) => {
          const ws = new WebSocket(url, headers ? { headers } : undefined);
          const timer = setTimeout(() => {
            s.error ??= "timeout";
            ws.close();
          }, TIMEOUT_MS);
          ws.onopen = () => resolve();
          ws.onmessage = (e) => {
            const t = Date.now();
            try {
              const msg = JSON.parse(e.data);
              // `?batch=1`: an array of events per message
              for (const ev of Array.isArray(msg) ? msg : [msg]) if (typeof ev.seq === "number") s.got.push({ seq: ev.seq, at: Date.parse(ev.at), t });
            } catch {}
          };
          ws.onerror = () => {
            s.error ??= "error";
            resolve();
          };
          ws.onclose = () => {
            clearTimeout(timer);
            done();
          };
        });
        sockets.push(s);
      }),
    ),
  );
  sockets.openMs = Date.now() - started;
  return sockets;
}

/**
 * Per event: the last socket's delay (receive − at), for events stamped after `since` (the
 * last socket open: earlier ones were replayed, not broadcast); and what was lost or out of order.
 */
function delays(sockets, expectedSeqs, since = 0) {
  const lastBySeq = new Map();
  let lost = 0;
  let disorder = 0;
  const one = [];
  for (const s of sockets) {
    const seqs = s.got.map((g) => g.seq);
    const have = new Set(seqs);
    for (const q of expectedSeqs) if (!have.has(q)) lost++;
    for (let i = 1; i < seqs.length; i++) if (seqs[i] <= seqs[i - 1]) disorder++;
    for (const g of s.got) {
      if (g.at < since) continue;
      const d = g.t - g.at;
      lastBySeq.set(g.seq, Math.max(lastBySeq.get(g.seq) ?? -Infinity, d));
      if (s === sockets[0]) one.push(d);
    }
  }
  const last = [...lastBySeq.values()];
  return { lastP50: pct(last, 50), lastP99: pct(last, 99), firstP50: pct(one, 50), lost, disorder, errors: sockets.filter((s) => s.error).length };
}

async function startRun({ port, auth }, text, agent = AGENT) {
  const r = await http({
    port,
    path: `/_org/acme/a2a/agents/${agent}`,
    method: "POST",
    headers: { "content-type": "application/json", "a2a-version": "1.0", ...auth },
    body: { jsonrpc: "2.0", id: 1, method: "SendMessage", params: { message: { messageId: `stream-${crypto.randomUUID()}`, role: "ROLE_USER", parts: [{ text }] }, configuration: { returnImmediately: true } } },
  });
  const id = r.json?.result?.task?.id;
  if (!id) throw new Error(`SendMessage answered ${r.status}: ${r.text}`);
  return id;
}

async function eventLog({ port, auth }, runId) {
  const all = [];
  let after = 0;
  for (;;) {
    const r = await http({ port, path: `/_org/acme/runs/${runId}/events?after=${after}&limit=500`, headers: auth });
    if (r.status !== 200) throw new Error(`events answered ${r.status}`);
    all.push(...r.json.events);
    if (r.json.events.length < 500) return all;
    after = r.json.next;
  }
}

/** (i) WebSocket fan-out of one run to `n` sockets. */
async function wsRun(target, n, batch = false) {
  // The run waits for its sockets: its first model turn takes 15 s, and the sockets replay from 0.
  const runId = await startRun(target, `ws fan-out ${n}`, WS_AGENT);
  const sockets = await openSockets(`ws://127.0.0.1:${target.port}/_org/acme/runs/${runId}/ws?after=0${batch ? "&batch=1" : ""}`, n, target.auth);
  const since = Date.now();
  await Promise.all(sockets.map((s) => s.done));
  const log = await eventLog(target, runId);
  // Events appended before a socket connected were replayed to it, not broadcast: only the
  // events after the last socket connected count for delays (all count for losses).
  // The sockets close when the run settles: events after its terminal event are not theirs.
  const end = log.find((e) => e.type === "run.completed" || e.type === "run.failed" || e.type === "run.canceled")?.seq ?? Infinity;
  const d = delays(sockets, log.filter((e) => e.seq <= end).map((e) => e.seq), since);
  const measured = log.filter((e) => e.seq <= end && Date.parse(e.at) >= since);
  // What the bare object replays: the measured events' offsets and sizes.
  const first = measured.length ? Date.parse(measured[0].at) : 0;
  const schedule = measured.map((e) => [Date.parse(e.at) - first, JSON.stringify(e).length]);
  if (measured.length < log.length / 2) console.log(`  ! only ${measured.length} of ${log.length} events came after the last of ${n} sockets opened (${sockets.openMs} ms)`);
  const runMs = Date.parse(log.at(-1).at) - Date.parse(log[0].at);
  return { ...d, events: log.length, measured: measured.length, schedule, openMs: sockets.openMs, runMs };
}

/** The bare floor: a hibernating object broadcasting the same schedule (offsets, sizes) to `n` sockets. */
async function bareRun(floorPort, n, schedule, batch = false) {
  const name = `bcast-${crypto.randomUUID()}`;
  const sockets = await openSockets(`ws://127.0.0.1:${floorPort}/bcast/${name}`, n);
  const r = await http({ port: floorPort, path: `/bcast/${name}`, method: "POST", headers: { "content-type": "application/json" }, body: { schedule, batch } });
  if (r.status !== 200) throw new Error(`bcast answered ${r.status}: ${r.text}`);
  await Promise.all(sockets.map((s) => s.done));
  return { ...delays(sockets, Array.from({ length: schedule.length }, (_, i) => i + 1)), openMs: sockets.openMs };
}

/** One SSE subscriber (A2A SubscribeToTask over JSON-RPC): the (id, receive time) of each event. */
async function sseSubscribe({ port, auth }, runId) {
  const res = await fetch(`http://127.0.0.1:${port}/_org/acme/a2a/agents/${AGENT}`, {
    method: "POST",
    headers: { "content-type": "application/json", "a2a-version": "1.0", ...auth },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "SubscribeToTask", params: { id: runId } }),
  });
  const got = [];
  let last = null;
  if (!res.ok || !res.body) return { got, last, error: `HTTP ${res.status}` };
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of res.body) {
    const t = Date.now();
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const id = block.split("\n").find((l) => l.startsWith("id: "))?.slice(4);
      const data = block.split("\n").find((l) => l.startsWith("data: "))?.slice(6);
      if (!data) continue;
      got.push({ id: Number(id), t, data });
      last = JSON.parse(data).result;
    }
  }
  return { got, last, error: null };
}

/** (j) SSE fan-out of one task to `n` subscribers. */
async function sseRun(target, n) {
  const request = Array.from({ length: SSE_LINES }, (_, i) => `line ${i + 1} of the SSE fan-out bench (${n} subscribers)`).join("\n");
  const runId = await startRun(target, request);
  const subs = await Promise.all(Array.from({ length: n }, () => sseSubscribe(target, runId)));
  const log = await eventLog(target, runId);
  const atBySeq = new Map(log.map((e) => [e.seq, Date.parse(e.at)]));
  // Each subscriber's updates come after its Task (the state when it subscribed): the one
  // that subscribed first is the reference, and every other must hold exactly its tail.
  const ref = subs.reduce((a, b) => (b.got.length > a.got.length ? b : a)).got.slice(1).map((g) => g.data);
  const since = Math.max(...subs.map((s) => s.got[0]?.t ?? 0));
  let mismatched = 0;
  let disorder = 0;
  const lastBySeq = new Map();
  const one = [];
  for (const s of subs) {
    const updates = s.got.slice(1);
    if (updates.map((g) => g.data).join("\n") !== ref.slice(ref.length - updates.length).join("\n")) mismatched++;
    for (let i = 1; i < s.got.length; i++) if (s.got[i].id <= s.got[i - 1].id) disorder++;
    if (s.last?.statusUpdate?.status?.state !== "TASK_STATE_COMPLETED") mismatched++;
    for (const g of updates) {
      const at = atBySeq.get(g.id);
      if (at === undefined || at < since) continue;
      lastBySeq.set(g.id, Math.max(lastBySeq.get(g.id) ?? -Infinity, g.t - at));
      if (s === subs[0]) one.push(g.t - at);
    }
  }
  const last = [...lastBySeq.values()];
  return { lastP50: pct(last, 50), lastP99: pct(last, 99), firstP50: pct(one, 50), updates: ref.length, mismatched, disorder, errors: subs.filter((s) => s.error).length };
}

/** (i) and (j): the bench, on a Shaman and a floor Worker already running. */
/** Rounds of (Shaman run watched by `STREAM_SOCKETS` sockets, bare broadcast of its schedule) in one delivery mode. */
async function wsRounds(target, floorPort, batch) {
  const label = batch ? "batch=1 (a transition's events in one message; the bare object sends each moment's messages as one array)" : "one message per event";
  console.log(`  ${label}:`);
  const rounds = [];
  for (let i = 0; i < WS_ROUNDS; i++) {
    const wsN = await wsRun(target, STREAM_SOCKETS, batch);
    // The bare object broadcasts the run's own measured events: same offsets, same sizes.
    const bareN = await bareRun(floorPort, STREAM_SOCKETS, wsN.schedule, batch);
    rounds.push({ wsN, bareN });
    console.log(
      `    round ${i + 1}: Shaman last socket p50 ${fmt(wsN.lastP50)} ms, p99 ${fmt(wsN.lastP99)} ms over ${wsN.measured} of ${wsN.events} events, run ${fmt(wsN.runMs)} ms (lost ${wsN.lost}, out of order ${wsN.disorder}, errors ${wsN.errors}, all open in ${wsN.openMs} ms); ` +
        `bare p50 ${fmt(bareN.lastP50)} ms, p99 ${fmt(bareN.lastP99)} ms (lost ${bareN.lost}, all open in ${bareN.openMs} ms): ${fmt(wsN.lastP50 / bareN.lastP50, 2)}×`,
    );
  }
  const m = (f) => median(rounds.map(f));
  const sum = (f) => rounds.reduce((n, r) => n + f(r), 0);
  const wsN = {
    lastP50: m((r) => r.wsN.lastP50),
    lastP99: m((r) => r.wsN.lastP99),
    lost: sum((r) => r.wsN.lost),
    disorder: sum((r) => r.wsN.disorder),
    errors: sum((r) => r.wsN.errors),
    events: rounds[0].wsN.events,
    measured: rounds[0].wsN.measured,
    openMs: m((r) => r.wsN.openMs),
    runMs: m((r) => r.wsN.runMs),
    schedule: rounds[0].wsN.schedule,
  };
  const bareN = { lastP50: m((r) => r.bareN.lastP50), lastP99: m((r) => r.bareN.lastP99), lost: sum((r) => r.bareN.lost), openMs: m((r) => r.bareN.openMs) };
  console.log(`    Shaman, median of ${WS_ROUNDS}: last socket p50 ${fmt(wsN.lastP50)} ms, p99 ${fmt(wsN.lastP99)} ms; lost ${wsN.lost}, out of order ${wsN.disorder}, errors ${wsN.errors}; run ${fmt(wsN.runMs)} ms; all open in ${fmt(wsN.openMs)} ms`);
  console.log(`    bare DO, median of ${WS_ROUNDS}: last socket p50 ${fmt(bareN.lastP50)} ms, p99 ${fmt(bareN.lastP99)} ms; lost ${bareN.lost}; all open in ${fmt(bareN.openMs)} ms`);
  console.log(`    → last socket vs bare broadcast: ${fmt(wsN.lastP50 / bareN.lastP50, 2)}× p50, ${fmt(wsN.lastP99 / bareN.lastP99, 2)}× p99 (target ≤ 1.2×)`);
  return { wsN, bareN };
}

/** (i) and (j): the bench, on a Shaman and a floor Worker already running. */
export async function streamsBench(target, floorPort) {
  console.log(`\n(i) WebSocket fan-out: ${STREAM_SOCKETS} sockets on one ${WS_AGENT} run, against 1 socket and a bare Durable Object broadcasting the same events`);
  const ws1 = await wsRun(target, 1);
  const { wsN, bareN } = await wsRounds(target, floorPort, false);
  const batched = await wsRounds(target, floorPort, true);
  const bare1 = await bareRun(floorPort, 1, wsN.schedule);
  console.log(`  Shaman, 1 socket: p50 ${fmt(ws1.lastP50)} ms, p99 ${fmt(ws1.lastP99)} ms (${ws1.events} events, run ${fmt(ws1.runMs)} ms); bare DO, 1 socket: p50 ${fmt(bare1.lastP50)} ms`);

  console.log(`\n(j) SSE fan-out: ${STREAM_SSE} A2A subscribers (SubscribeToTask) of one ${AGENT} task, against 1`);
  const sse1 = await sseRun(target, 1);
  const sseN = await sseRun(target, STREAM_SSE);
  console.log(`  1 subscriber:    p50 ${fmt(sse1.lastP50)} ms, p99 ${fmt(sse1.lastP99)} ms (${sse1.updates} updates)`);
  console.log(`  ${STREAM_SSE} subscribers: last p50 ${fmt(sseN.lastP50)} ms, p99 ${fmt(sseN.lastP99)} ms; differing ${sseN.mismatched}, out of order ${sseN.disorder}, errors ${sseN.errors}`);
  return { ws1, wsN, bare1, bareN, batched, sse1, sseN };
}

/** The RESULT fields of (i) and (j). */
export function streamResultFields(r) {
  return (
    `ws_sockets=${STREAM_SOCKETS} ws_rounds=${WS_ROUNDS} ws_events=${r.wsN.events} ws_measured=${r.wsN.measured} ws_open_ms=${r.wsN.openMs} ws_bare_open_ms=${r.bareN.openMs} ws_1_p50_ms=${fmt(r.ws1.lastP50, 1)} ws_1_p99_ms=${fmt(r.ws1.lastP99, 1)} ws_last_p50_ms=${fmt(r.wsN.lastP50, 1)} ws_last_p99_ms=${fmt(r.wsN.lastP99, 1)} ` +
    `ws_lost=${r.wsN.lost + r.ws1.lost} ws_disorder=${r.wsN.disorder + r.ws1.disorder} ws_errors=${r.wsN.errors + r.ws1.errors} ` +
    `ws_bare_1_p50_ms=${fmt(r.bare1.lastP50, 1)} ws_bare_last_p50_ms=${fmt(r.bareN.lastP50, 1)} ws_bare_last_p99_ms=${fmt(r.bareN.lastP99, 1)} ws_vs_bare=${fmt(r.wsN.lastP50 / r.bareN.lastP50, 2)} ws_vs_bare_p99=${fmt(r.wsN.lastP99 / r.bareN.lastP99, 2)} ws_run_ms=${fmt(r.wsN.runMs, 0)} ws_1_run_ms=${fmt(r.ws1.runMs, 0)} ` +
    `ws_batch_last_p50_ms=${fmt(r.batched.wsN.lastP50, 1)} ws_batch_last_p99_ms=${fmt(r.batched.wsN.lastP99, 1)} ws_batch_lost=${r.batched.wsN.lost} ws_batch_disorder=${r.batched.wsN.disorder} ws_batch_errors=${r.batched.wsN.errors} ws_batch_run_ms=${fmt(r.batched.wsN.runMs, 0)} ` +
    `ws_bare_batch_last_p50_ms=${fmt(r.batched.bareN.lastP50, 1)} ws_bare_batch_last_p99_ms=${fmt(r.batched.bareN.lastP99, 1)} ws_batch_vs_bare=${fmt(r.batched.wsN.lastP50 / r.batched.bareN.lastP50, 2)} ws_batch_vs_bare_p99=${fmt(r.batched.wsN.lastP99 / r.batched.bareN.lastP99, 2)} ` +
    `sse_subscribers=${STREAM_SSE} sse_updates=${r.sseN.updates} sse_1_p50_ms=${fmt(r.sse1.lastP50, 1)} sse_1_p99_ms=${fmt(r.sse1.lastP99, 1)} sse_last_p50_ms=${fmt(r.sseN.lastP50, 1)} sse_last_p99_ms=${fmt(r.sseN.lastP99, 1)} ` +
    `sse_differing=${r.sseN.mismatched + r.sse1.mismatched} sse_disorder=${r.sseN.disorder} sse_errors=${r.sseN.errors + r.sse1.errors}`
  );
}

/** `node bench/streams.mjs`: only (i) and (j), on a fresh local state of their own. */
async function main() {
  const persistTo = join(ROOT, ".wrangler", "bench-streams-state");
  rmSync(persistTo, { recursive: true, force: true });
  migrateLocal(persistTo);
  const [port, floorPort] = [await freePort(), await freePort()];
  const shaman = await startWrangler({ port, persistTo });
  const floor = await startWrangler({ port: floorPort, config: "bench/floor/wrangler.toml", persistTo: join(persistTo, "floor") });
  const { git, url: repoUrl } = await startDemoGit();
  try {
    const { apiKey } = await seedDemo(port, { rateLimits: { perPrincipal: 1_000_000_000, perOrg: 1_000_000_000, perClient: 1_000_000_000, windowSeconds: 60 }, runLimits: { maxCallsPerTurn: 100, maxStepsPerRun: 1000, maxDepth: 16 }, repoUrl });
    await registerRepository(port, { apiKey, name: "bench", gitUrl: await addGitRepo(git, "acme/bench-agents", readTree("bench/agents")) });
    const r = await streamsBench({ port, auth: { authorization: `Bearer ${apiKey}` } }, floorPort);
    console.log(`\nRESULT ${streamResultFields(r)}`);
  } finally {
    await Promise.all([shaman.stop(), floor.stop(), git.close()]);
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
