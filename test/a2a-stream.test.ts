/**
 * Live streams that never lose an event: A2A streaming (SendStreamingMessage and
 * SubscribeToTask, driven by the official `@a2a-js/sdk` client over JSON-RPC and HTTP+JSON),
 * `Last-Event-ID` resume after a dropped connection, several subscribers, the model's text
 * as it is generated, and the run WebSocket's browser tickets. Runs go through the real
 * Worker, run objects and queue (the agents use the offline model).
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { StreamResponse, TaskState } from "@a2a-js/sdk";
import type { Client } from "@a2a-js/sdk/client";
import { Hono } from "hono";
import { beforeAll, describe, expect, it } from "vitest";
import { JsonRpcError } from "../src/a2a/jsonrpc";
import { taskEventStream } from "../src/a2a/stream";
import type { Dialect } from "../src/a2a/wire";
import type { AppEnv } from "../src/http/app-env";
import { runStub } from "../src/runs/stub";
import { ORG_HEADER } from "../durable-objects/run-object";
import { collect, eventually, keyOf, orgFetch, rpc, seedOrg, sendMessage, worker, type SeedResult } from "./helpers";
import { BINDINGS, sdkClient, type Binding } from "./a2a-sdk-client";

const ORG = "streams";
const OTHER = "streams-other";
const APPROVAL = "Always ask a person to approve the request before completing it.";
const agent = (name: string, prompt: string, model = "offline:default") => `---\ndescription: ${name} agent\nexposed: true\nmodel: ${model}\n---\nYou are ${name}. ${prompt}\n`;

let seed: SeedResult;
let other: SeedResult;
beforeAll(async () => {
  seed = await seedOrg(ORG, {
    "Echo/prompt.md": agent("Echo", "Answer the request."),
    // Answers after 600 ms: long enough to subscribe while it runs.
    "Slow/prompt.md": agent("Slow", "Answer the request.", "offline:slow@600ms"),
    // A parent whose first turn takes 600 ms, then a child: a watcher is there before the child starts.
    "Parent/prompt.md": "---\ndescription: Parent agent\nexposed: true\nmodel: offline:parent@600ms\nallowedAgents: [Kid]\n---\nYou are Parent. Call the agents you may call.\n",
    "Kid/prompt.md": "---\ndescription: Kid agent\nmodel: offline:default\n---\nYou are Kid. Answer the request.\n",
    "Asker/prompt.md": agent("Asker", APPROVAL),
  });
  other = await seedOrg(OTHER, { "Echo/prompt.md": agent("Echo", "Answer the request.") });
});

/** A request text whose offline answer is several lines of ~1,500 characters: more than one 2 KiB text batch. */
const LONG = Array.from({ length: 4 }, (_, i) => `Line ${i}: ${"lorem ipsum ".repeat(125)}`).join("\n");

// ---- the endpoints under test ------------------------------------------------------------
// The real A2A routes (src/a2a/routes.ts, rest.ts) call `taskEventStream` for the streaming
// methods. SubscribeToTask there refuses a finished task even with Last-Event-ID, so resuming
// after the end of a run is tested on `taskEventStream` itself, through this small app that
// calls it as the routes do (the task started through the real SendMessage, returnImmediately,
// and streamed from the snapshot that start returned).

const streams = new Hono<AppEnv>();
streams.onError((err, c) => (err instanceof JsonRpcError ? c.json({ error: { code: err.code, message: err.message } }, 404) : c.text(String(err), 500)));
streams.all("*", async (c) => {
  const url = new URL(c.req.url);
  const slug = url.hostname.split(".")[0]!;
  const orgId = slug === ORG ? seed.org.id : other.org.id;
  const lastEventId = c.req.header("last-event-id");
  const m = /^\/a2a\/agents\/([^/]+)(\/.*)?$/.exec(url.pathname);
  if (!m) return c.text("no", 404);
  const name = m[1]!;
  const rest = m[2] ?? "";
  const start = async (message: unknown, dialect: Dialect) => {
    const params = dialect === "1.0" ? { message, configuration: { returnImmediately: true } } : { message, configuration: { blocking: false } };
    const r = await rpc(slug, name, { jsonrpc: "2.0", id: 1, method: dialect === "1.0" ? "SendMessage" : "message/send", params }, dialect === "1.0" ? { "A2A-Version": "1.0" } : {});
    const id = dialect === "1.0" ? r.body.result.task.id : r.body.result.id;
    return (await runStub(env, id).snapshot(orgId))!;
  };
  if (rest === "") {
    const body = (await c.req.json()) as { id: number | string; method: string; params: any };
    const dialect: Dialect = body.method.includes("/") ? "0.3" : "1.0";
    const base = { orgId, dialect, binding: "jsonrpc" as const, rpcId: body.id, ...(lastEventId ? { lastEventId } : {}) };
    if (body.method === "SendStreamingMessage" || body.method === "message/stream") {
      const snapshot = await start(body.params.message, dialect);
      return taskEventStream(c, { ...base, runId: snapshot.runId, snapshot });
    }
    return taskEventStream(c, { ...base, runId: body.params.id });
  }
  const base = { orgId, dialect: "1.0" as const, binding: "rest" as const, ...(lastEventId ? { lastEventId } : {}) };
  if (rest === "/message:stream") {
    const body = (await c.req.json()) as { message: unknown };
    const snapshot = await start(body.message, "1.0");
    return taskEventStream(c, { ...base, runId: snapshot.runId, snapshot });
  }
  const sub = /^\/tasks\/([^/:]+):subscribe$/.exec(rest);
  if (sub) return taskEventStream(c, { ...base, runId: sub[1]! });
  return c.text("no", 404);
});
type Target = (req: Request) => Promise<Response>;
const small: Target = async (req) => streams.fetch(req, env);
const real: Target = async (req) => worker.fetch(req);

const client = (agentName: string, binding: Binding, target: Target = real): Promise<Client> => sdkClient(ORG, agentName, binding, target);

const message = (text: string) => ({ messageId: crypto.randomUUID(), contextId: "", taskId: "", role: 1, parts: [{ content: { $case: "text", value: text } }], metadata: undefined, extensions: [], referenceTaskIds: [] }) as any;

async function all<T>(gen: AsyncGenerator<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const e of gen) out.push(e);
  return out;
}

/** A stream response in a comparable form: its kind and what a client reads of it. */
function summary(e: StreamResponse): string {
  const p = e.payload;
  if (!p) return "empty";
  if (p.$case === "task") return `task ${p.value.status?.state}`;
  if (p.$case === "statusUpdate") return `status ${p.value.status?.state}`;
  if (p.$case === "artifactUpdate") return `artifact ${p.value.artifact?.name} append=${p.value.append} last=${p.value.lastChunk}`;
  return p.$case;
}

const textOf = (e: StreamResponse) =>
  e.payload?.$case === "artifactUpdate" ? (e.payload.value.artifact?.parts ?? []).map((p) => (p.content?.$case === "text" ? p.content.value : "")).join("") : "";

// ---- raw SSE ------------------------------------------------------------------------------

interface SseEvent {
  id: string | null;
  data: any;
}

/** Reads SSE events from a response; `stopAfter` drops the connection after that many events. */
async function readSse(res: Response, stopAfter = Infinity): Promise<{ events: SseEvent[]; ended: boolean }> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: SseEvent[] = [];
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { events, ended: true };
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const lines = block.split("\n");
      const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (!data) continue;
      const id = lines.find((l) => l.startsWith("id: "))?.slice(4) ?? null;
      events.push({ id, data: JSON.parse(data) });
      if (events.length >= stopAfter) {
        await reader.cancel();
        return { events, ended: false };
      }
    }
  }
}

const rest = (path: string, body: unknown, headers: Record<string, string> = {}, target: Target = real) =>
  target(
    new Request(`http://${ORG}.localhost/a2a/agents${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${keyOf(ORG)}`, ...headers },
      body: JSON.stringify(body),
    }),
  );
const v1Message = (text: string) => ({ message: { messageId: crypto.randomUUID(), role: "ROLE_USER", parts: [{ text }] } });
const kindOf = (d: any) => Object.keys(d).find((k) => ["task", "statusUpdate", "artifactUpdate", "message"].includes(k));

// ---- tests --------------------------------------------------------------------------------

describe("SendStreamingMessage (SDK client)", () => {
  for (const binding of BINDINGS) {
    it(`${binding}: the Task first, then working, the model's text as it is generated, the result and completed`, async () => {
      const events = await all((await client("Echo", binding)).sendMessageStream({ tenant: "", message: message(LONG), configuration: undefined, metadata: undefined }));
      const kinds = events.map(summary);
      expect(kinds[0]).toBe(`task ${TaskState.TASK_STATE_SUBMITTED}`);
      expect(kinds[1]).toBe(`status ${TaskState.TASK_STATE_WORKING}`);
      expect(kinds.at(-1)).toBe(`status ${TaskState.TASK_STATE_COMPLETED}`);
      // the text streams in batches before the task completes: one artifact per turn,
      // appended after its first chunk, its last chunk marked
      const chunks = events.filter((e) => e.payload?.$case === "artifactUpdate" && e.payload.value.artifact?.name === "text");
      expect(chunks.length).toBeGreaterThan(2);
      expect(chunks.map((e) => (e.payload as any).value.append)).toEqual(chunks.map((_, i) => i > 0));
      expect(chunks.map((e) => (e.payload as any).value.lastChunk)).toEqual(chunks.map((_, i) => i === chunks.length - 1));
      expect(new Set(chunks.map((e) => (e.payload as any).value.artifact.artifactId)).size).toBe(1);
      const result = events.find((e) => e.payload?.$case === "artifactUpdate" && e.payload.value.artifact?.name === "result")!;
      expect(kinds.indexOf(summary(result))).toBeGreaterThan(kinds.lastIndexOf(summary(chunks.at(-1)!)));
      expect(chunks.map(textOf).join("")).toBe(textOf(result));
      expect(textOf(result)).toContain("Line 3: lorem ipsum");
      // the task as GetTask reads it has the same result
      const taskId = events[0]!.payload!.$case === "task" ? events[0]!.payload!.value.id : "";
      const snap = await runStub(env, taskId).snapshot(seed.org.id);
      expect(snap?.output).toBe(textOf(result));
    });
  }

  it("v0.3 (message/stream): kind-tagged events, final on the last status", async () => {
    const res = await real(
      new Request(`http://${ORG}.localhost/a2a/agents/Echo`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${keyOf(ORG)}` },
        body: JSON.stringify({ jsonrpc: "2.0", id: "s-1", method: "message/stream", params: { message: { kind: "message", messageId: crypto.randomUUID(), role: "user", parts: [{ kind: "text", text: "old client" }] } } }),
      }),
    );
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const { events, ended } = await readSse(res);
    expect(ended).toBe(true);
    expect(events.every((e) => e.data.jsonrpc === "2.0" && e.data.id === "s-1")).toBe(true);
    const results = events.map((e) => e.data.result);
    expect(results[0]).toMatchObject({ kind: "task", status: { state: "submitted" } });
    expect(results.map((r) => r.kind)).toContain("artifact-update");
    expect(results.find((r) => r.kind === "artifact-update").artifact.parts[0]).toMatchObject({ kind: "text" });
    expect(results.at(-1)).toMatchObject({ kind: "status-update", status: { state: "completed" }, final: true });
    expect(results.filter((r) => r.final === true)).toHaveLength(1);
  });

  it("every SSE event's id is the run's event seq, and each data is a StreamResponse the SDK reads", async () => {
    const res = await rest("/Echo/message:stream", v1Message("ids please"));
    const { events } = await readSse(res);
    const ids = events.map((e) => Number(e.id));
    expect(ids.every((n) => Number.isInteger(n) && n > 0)).toBe(true);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    for (const e of events) expect(StreamResponse.fromJSON(e.data).payload).toBeTruthy();
    const task = events[0]!.data.task;
    const log = (await runStub(env, task.id).events(seed.org.id, 0, 500))!;
    // each id names the run event the response came from
    for (const e of events.slice(1)) {
      const ev = log.find((l) => l.seq === Number(e.id))!;
      const kind = kindOf(e.data);
      if (kind === "statusUpdate" && e.data.statusUpdate.status.state === "TASK_STATE_COMPLETED") expect(ev.type).toBe("run.completed");
      if (kind === "artifactUpdate" && e.data.artifactUpdate.artifact.name === "text") expect(ev.type).toBe("model.delta");
    }
  });
});

describe("SubscribeToTask and Last-Event-ID", () => {
  for (const binding of BINDINGS) {
    it(`${binding}: several subscribers to a running task get the Task, then the same events in the same order`, async () => {
      const started = await rpc(ORG, "Slow", sendMessage(LONG, { returnImmediately: true }));
      const id = started.body.result.task.id as string;
      const subscribers = await Promise.all([0, 1, 2].map(async () => all((await client("Slow", binding)).resubscribeTask({ tenant: "", id }))));
      for (const events of subscribers) {
        expect(events[0]!.payload?.$case).toBe("task");
        expect(summary(events.at(-1)!)).toBe(`status ${TaskState.TASK_STATE_COMPLETED}`);
        expect(events.some((e) => e.payload?.$case === "artifactUpdate")).toBe(true);
      }
      // the same updates after each one's Task (the Task is the state when each subscribed)
      const updates = subscribers.map((events) => events.slice(1).map((e) => JSON.stringify(StreamResponse.toJSON(e))));
      const shortest = Math.min(...updates.map((u) => u.length));
      for (const u of updates) expect(u.slice(-shortest)).toEqual(updates[0]!.slice(-shortest));
    });
  }

  it("a connection dropped mid-run and resumed with Last-Event-ID misses nothing and gets nothing twice", async () => {
    const started = await rpc(ORG, "Slow", sendMessage(LONG, { returnImmediately: true }));
    const id = started.body.result.task.id as string;
    // the Task and the "working" update, then the connection drops (the model is still thinking)
    const first = await readSse(await rest(`/Slow/tasks/${id}:subscribe`, {}), 2);
    expect(first.ended).toBe(false);
    expect(kindOf(first.events[0]!.data)).toBe("task");
    const lastId = first.events.at(-1)!.id!;
    const resumed = await readSse(await rest(`/Slow/tasks/${id}:subscribe`, {}, { "last-event-id": lastId }));
    expect(resumed.ended).toBe(true);
    expect(kindOf(resumed.events[0]!.data)).not.toBe("task"); // a resumed stream goes on where it was
    // the reference: everything after the Task's seq, replayed once the run is over
    const reference = await readSse(await rest(`/Slow/tasks/${id}:subscribe`, {}, { "last-event-id": first.events[0]!.id! }, small));
    const joined = [...first.events.slice(1), ...resumed.events];
    expect(joined.map((e) => e.id)).toEqual(reference.events.map((e) => e.id));
    expect(joined.map((e) => e.data)).toEqual(reference.events.map((e) => e.data));
    expect(new Set(joined.map((e) => e.id)).size).toBe(joined.length);
    expect(joined.at(-1)!.data.statusUpdate.status.state).toBe("TASK_STATE_COMPLETED");
    expect(joined.some((e) => e.data.artifactUpdate?.artifact.name === "text")).toBe(true);
  });

  it("Last-Event-ID 0 replays the whole life of a finished run", async () => {
    const done = await rpc(ORG, "Echo", sendMessage("replay me"));
    const id = done.body.result.task.id as string;
    const { events, ended } = await readSse(await rest(`/Echo/tasks/${id}:subscribe`, {}, { "last-event-id": "0" }, small));
    expect(ended).toBe(true);
    const states = events.filter((e) => e.data.statusUpdate).map((e) => e.data.statusUpdate.status.state);
    expect(states).toEqual(["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"]);
    expect(events.filter((e) => e.data.artifactUpdate?.artifact.name === "result")).toHaveLength(1);
  });

  it("ends at input-required with the question; resumed after the answer, it streams to completion", async () => {
    const res = await rest("/Asker/message:stream", v1Message("Please do the thing"));
    const { events, ended } = await readSse(res);
    expect(ended).toBe(true);
    const last = events.at(-1)!.data.statusUpdate;
    expect(last.status.state).toBe("TASK_STATE_INPUT_REQUIRED");
    const [text, data] = last.status.message.parts;
    expect(text.text).toMatch(/approv/i);
    const request = data.data.inputs[0];
    expect(request).toMatchObject({ inputType: "approval" });
    const id = events[0]!.data.task.id as string;
    // answered through the run API; the client comes back with its last id
    const answered = await orgFetch(ORG, `/runs/${id}/input/${request.requestId}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ answer: "approved" }) });
    expect(answered.status).toBe(200);
    const resumed = await readSse(await rest(`/Asker/tasks/${id}:subscribe`, {}, { "last-event-id": events.at(-1)!.id! }, small));
    const states = resumed.events.filter((e) => e.data.statusUpdate).map((e) => e.data.statusUpdate.status.state);
    expect(states[0]).toBe("TASK_STATE_WORKING");
    expect(states.at(-1)).toBe("TASK_STATE_COMPLETED");
    // a subscriber that missed the question (resuming from before it) stops at it, like the original stream
    const before = await readSse(await rest(`/Asker/tasks/${id}:subscribe`, {}, { "last-event-id": events[0]!.id! }, small));
    expect(before.events.map((e) => e.id)).toEqual([...events.slice(1), ...resumed.events].map((e) => e.id));
  });

  it("a subscriber that comes after the turn started (returnImmediately) still gets the model's text as it streams", async () => {
    const started = await rpc(ORG, "Slow", sendMessage(LONG, { returnImmediately: true }));
    const id = started.body.result.task.id as string;
    // the root's turn is claimed (the model is thinking) before anyone subscribes
    await eventually(async () => (await runStub(env, id).events(seed.org.id, 0, 500))!.map((e) => e.type), (types) => types.includes("step.started"));
    const { events } = await readSse(await rest(`/Slow/tasks/${id}:subscribe`, {}));
    const chunks = events.filter((e) => e.data.artifactUpdate?.artifact.name === "text");
    expect(chunks.length).toBeGreaterThan(0);
    expect(chunks.map((e) => e.data.artifactUpdate.artifact.parts[0].text).join("")).toContain("Line 3:");
    expect(events.at(-1)!.data.statusUpdate.status.state).toBe("TASK_STATE_COMPLETED");
  });

  it("a feed the run object ends early (a restart, a cut) is opened again after the last seq: nothing lost or twice", async () => {
    const started = await rpc(ORG, "Slow", sendMessage(LONG, { returnImmediately: true }));
    const id = started.body.result.task.id as string;
    const res = await rest(`/Slow/tasks/${id}:subscribe`, {});
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("TASK_STATE_WORKING")) text += (await reader.read()).value ?? "";
    // The run object drops every live feed (as when it restarts) while the model still thinks.
    await runInDurableObject(env.RUNS.get(env.RUNS.idFromName(id)), (instance) => (instance as unknown as { closeStreams(): void }).closeStreams());
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const got = text
      .split("\n\n")
      .filter((b) => b.includes("data: "))
      .map((b) => ({ id: /^id: (.*)$/m.exec(b)?.[1] ?? null, data: JSON.parse(/^data: (.*)$/m.exec(b)![1]!) }));
    expect(kindOf(got[0]!.data)).toBe("task");
    const reference = await readSse(await rest(`/Slow/tasks/${id}:subscribe`, {}, { "last-event-id": got[0]!.id! }, small));
    expect(got.slice(1).map((e) => e.id)).toEqual(reference.events.map((e) => e.id));
    expect(got.slice(1).map((e) => e.data)).toEqual(reference.events.map((e) => e.data));
    expect(got.at(-1)!.data.statusUpdate.status.state).toBe("TASK_STATE_COMPLETED");
  });

  it("the run object cuts a feed whose reader falls too far behind; what it sent before is the log's beginning, in order", async () => {
    const asked = await rpc(ORG, "Asker", sendMessage("Please do the thing", { returnImmediately: true }));
    const id = asked.body.result.task.id as string;
    const stub = env.RUNS.get(env.RUNS.idFromName(id));
    const waiting = await eventually(async () => (await runStub(env, id).snapshot(seed.org.id))!, (r) => r.status === "input_required" && r.inputs.length > 0);
    const events0 = (await runStub(env, id).events(seed.org.id, 0, 500))!;
    const before = events0.at(-1)!.seq;
    // A reader that reads nothing, allowed 2 events of backlog.
    let feed: Response | null = null;
    await runInDurableObject(stub, async (instance) => {
      (instance as unknown as { streamMaxBacklog: number }).streamMaxBacklog = 2;
      feed = await instance.fetch(new Request(`https://run.internal/runs/${id}/stream?after=${before}`, { headers: { [ORG_HEADER]: seed.org.id } }));
    });
    const answered = await orgFetch(ORG, `/runs/${id}/input/${waiting.inputs[0]!.requestId}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ answer: "approved" }) });
    expect(answered.status).toBe(200);
    await eventually(async () => (await runStub(env, id).snapshot(seed.org.id))!.status, (s) => s === "completed");
    const lines = (await new Response(feed!.body).text()).trim().split("\n").map((l) => JSON.parse(l));
    const seqs = lines.filter((l) => typeof l.seq === "number").map((l) => l.seq as number);
    const all = (await runStub(env, id).events(seed.org.id, before, 500))!.map((e) => e.seq);
    expect(lines[0]).toEqual({ type: "live" });
    // cut: it ended before the run's last events, and what it had is the log's beginning
    expect(seqs.length).toBeGreaterThan(0);
    expect(seqs.length).toBeLessThan(all.length);
    expect(seqs).toEqual(all.slice(0, seqs.length));
  });

  it("another org's task is not found", async () => {
    const theirs = await rpc(OTHER, "Echo", sendMessage("mine"));
    const id = theirs.body.result.task.id as string;
    const body = { jsonrpc: "2.0", id: 1, method: "SubscribeToTask", params: { id } };
    // the stream itself refuses it (before any stream is opened) …
    const direct = await small(new Request(`http://${ORG}.localhost/a2a/agents/Echo`, { method: "POST", body: JSON.stringify(body) }));
    expect(((await direct.json()) as any).error.code).toBe(-32001);
    // … and so does the route, with a Last-Event-ID too
    const viaRoute = await rpc(ORG, "Echo", body, { "A2A-Version": "1.0", "Last-Event-ID": "0" });
    expect(viaRoute.body.error.code).toBe(-32001);
  });
});

describe("run WebSocket tickets", () => {
  const ticketFor = async (slug: string, runId: string) => {
    const res = await orgFetch(slug, `/runs/${runId}/ws-ticket`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    return (await res.json()) as { ticket: string; expiresAt: string; url: string; protocol: string };
  };
  /** A WebSocket request with no credential at all (what a browser sends). */
  const open = (slug: string, path: string, headers: Record<string, string> = {}) => worker.fetch(`http://${slug}.localhost${path}`, { headers: { upgrade: "websocket", ...headers } });

  it("a ticket opens the run's WebSocket once, without a credential: replay, model text, tool detail, the end", async () => {
    // Streamed (SendStreamingMessage), so the model's text was streamed into the log too.
    const streamed = await readSse(await rest("/Echo/message:stream", v1Message("watch me")));
    const id = streamed.events[0]!.data.task.id as string;
    const t = await ticketFor(ORG, id);
    expect(t.url).toBe(`ws://${ORG}.localhost/runs/${id}/ws?ticket=${t.ticket}`);
    expect(new Date(t.expiresAt).getTime()).toBeLessThanOrEqual(Date.now() + 60_000);
    // no credential: refused
    expect((await open(ORG, `/runs/${id}/ws?after=0`)).status).toBe(401);
    const res = await open(ORG, `/runs/${id}/ws?ticket=${t.ticket}&after=0`);
    expect(res.status).toBe(101);
    const ws = res.webSocket!;
    ws.accept();
    const { messages, closeCode } = await collect(ws);
    expect(closeCode).toBe(1000);
    const types = messages.map((m) => m.type);
    expect(types[0]).toBe("run.created");
    expect(types).toContain("model.delta");
    expect(types.indexOf("model.delta")).toBeLessThan(types.indexOf("model.turn"));
    expect(types.at(-1)).toBe("run.completed");
    // used once
    expect((await open(ORG, `/runs/${id}/ws?ticket=${t.ticket}`)).status).toBe(404);
  });

  it("a WebSocket watching a run gets every step's model text as it streams (children too); a run nobody watches streams none", async () => {
    const started = await rpc(ORG, "Parent", sendMessage("Watch the kid", { returnImmediately: true }));
    const id = started.body.result.task.id as string;
    const res = await orgFetch(ORG, `/runs/${id}/ws?after=0`, { headers: { upgrade: "websocket" } });
    expect(res.status).toBe(101);
    const ws = res.webSocket!;
    ws.accept();
    const { messages } = await collect(ws);
    const kid = messages.filter((m) => m.stepId === "s2").map((m) => m.type);
    expect(kid).toContain("model.delta");
    expect(kid.indexOf("model.delta")).toBeGreaterThan(kid.indexOf("step.started"));
    expect(kid.lastIndexOf("model.delta")).toBeLessThan(kid.indexOf("model.turn"));
    expect(messages.filter((m) => m.type === "model.delta").map((m) => m.data.text).join("")).toContain("Watch the kid");
    // the same run unwatched: the same steps and turns, no text streamed
    const unwatched = await rpc(ORG, "Parent", sendMessage("Watch the kid"));
    const log = (await runStub(env, unwatched.body.result.task.id).events(seed.org.id, 0, 500))!;
    expect(log.filter((e) => e.type === "model.turn").length).toBe(messages.filter((m) => m.type === "model.turn").length);
    expect(log.filter((e) => e.type === "model.delta")).toEqual([]);
  });

  it("batch=1: every message is an array of events (a transition's events in one), the same events in the same order as one per message", async () => {
    const started = await rpc(ORG, "Parent", sendMessage("Batch the kid", { returnImmediately: true }));
    const id = started.body.result.task.id as string;
    const ws = async (query: string) => {
      const res = await orgFetch(ORG, `/runs/${id}/ws?${query}`, { headers: { upgrade: "websocket" } });
      expect(res.status).toBe(101);
      res.webSocket!.accept();
      return collect(res.webSocket!);
    };
    const t = await ticketFor(ORG, id);
    const [plain, batched, ticketed] = await Promise.all([
      ws("after=0"),
      ws("after=0&batch=1"),
      (async () => {
        const res = await open(ORG, `/runs/${id}/ws?ticket=${t.ticket}&after=0&batch=1`);
        res.webSocket!.accept();
        return collect(res.webSocket!);
      })(),
    ]);
    const log = (await runStub(env, id).events(seed.org.id, 0, 500))!;
    expect(plain.messages.map((m) => m.seq)).toEqual(log.map((e) => e.seq));
    for (const b of [batched, ticketed]) {
      expect(b.messages.every((m) => Array.isArray(m))).toBe(true);
      expect(b.messages.flat()).toEqual(plain.messages);
      // a transition's events travel together: fewer messages than events
      expect(b.messages.length).toBeLessThan(log.length);
      expect(b.closeCode).toBe(1000);
    }
    // a finished run's replay is one array per page
    const replay = await ws("after=0&batch=true");
    expect(replay.messages).toHaveLength(1);
    expect(replay.messages[0]).toEqual(plain.messages);
    // anything else is refused
    expect((await orgFetch(ORG, `/runs/${id}/ws?batch=yes`, { headers: { upgrade: "websocket" } })).status).toBe(400);
  });

  it("with many watchers (here: from 1 on) events go out every 25 ms, batch=1 ones several transitions together: still every event once, in order, to both kinds of socket", async () => {
    const started = await rpc(ORG, "Parent", sendMessage("Coalesce the kid", { returnImmediately: true }));
    const id = started.body.result.task.id as string;
    await runInDurableObject(env.RUNS.get(env.RUNS.idFromName(id)), (o) => {
      (o as unknown as { coalesceFrom: number }).coalesceFrom = 1;
    });
    const watch = async (query: string) => {
      const res = await orgFetch(ORG, `/runs/${id}/ws?${query}`, { headers: { upgrade: "websocket" } });
      res.webSocket!.accept();
      return collect(res.webSocket!);
    };
    const [batched, plain] = await Promise.all([watch("after=0&batch=1"), watch("after=0")]);
    const log = (await runStub(env, id).events(seed.org.id, 0, 500))!;
    expect(batched.messages.flat().map((e: any) => e.seq)).toEqual(log.map((e) => e.seq));
    expect(plain.messages.map((e: any) => e.seq)).toEqual(log.map((e) => e.seq));
    expect(batched.closeCode).toBe(1000);
  });

  it("a subprotocol ticket is accepted and echoed", async () => {
    const done = await rpc(ORG, "Echo", sendMessage("protocol"));
    const id = done.body.result.task.id as string;
    const t = await ticketFor(ORG, id);
    const res = await open(ORG, `/runs/${id}/ws`, { "sec-websocket-protocol": t.protocol });
    expect(res.status).toBe(101);
    expect(res.headers.get("sec-websocket-protocol")).toBe(t.protocol);
    res.webSocket!.accept();
    res.webSocket!.close(1000);
    expect((await open(ORG, `/runs/${id}/ws`, { "sec-websocket-protocol": t.protocol })).status).toBe(404);
  });

  it("a ticket is for its run only: another run, another org's host, an expired or made-up ticket answer like a missing run", async () => {
    const a = (await rpc(ORG, "Echo", sendMessage("a"))).body.result.task.id as string;
    const b = (await rpc(ORG, "Echo", sendMessage("b"))).body.result.task.id as string;
    const theirs = (await rpc(OTHER, "Echo", sendMessage("c"))).body.result.task.id as string;
    const missing = async (res: Response) => {
      expect(res.status).toBe(404);
      expect(((await res.json()) as any).title ?? "").not.toMatch(/ticket/i);
    };
    const t = await ticketFor(ORG, a);
    await missing(await open(ORG, `/runs/${b}/ws?ticket=${t.ticket}`)); // another run
    await missing(await open(OTHER, `/runs/${a}/ws?ticket=${t.ticket}`)); // another org's host
    await missing(await open(ORG, `/runs/${crypto.randomUUID()}/ws?ticket=${t.ticket}`));
    await missing(await open(ORG, `/runs/${a}/ws?ticket=${"x".repeat(43)}`));
    // another org's run cannot get a ticket either
    expect((await orgFetch(ORG, `/runs/${theirs}/ws-ticket`, { method: "POST" })).status).toBe(404);
    // an expired ticket
    const expired = (await runStub(env, a).issueWsTicket(seed.org.id, -1))!;
    await missing(await open(ORG, `/runs/${a}/ws?ticket=${expired.ticket}`));
    // the first ticket still works for its own run (the refusals above did not use it up)
    expect((await open(ORG, `/runs/${a}/ws?ticket=${t.ticket}`)).status).toBe(101);
  });
});
