/**
 * Every A2A method Shaman serves, driven by the official `@a2a-js/sdk` client over both
 * bindings (JSON-RPC and HTTP+JSON), through the real Worker, run objects and queue (the
 * agents use the offline model), plus raw HTTP for malformed input and for the answers a
 * client must not be able to tell apart (another org's or another agent's task).
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Role, TaskState, type Message, type Task } from "@a2a-js/sdk";
import type { Client } from "@a2a-js/sdk/client";
import { beforeAll, describe, expect, it } from "vitest";
import { bound } from "../src/a2a/conversation";
import { eventually, orgFetch, rpc, seedOrg, sendMessage } from "./helpers";
import { requestsFor } from "./pump";
import { BINDINGS, sdkClient, type Binding } from "./a2a-sdk-client";

const ORG = "methods";
const OTHER = "methods-other";
const APPROVAL = "Always ask a person to approve the request before completing it.";
const agent = (name: string, prompt: string, extra = "") => `---\ndescription: ${name} agent\nexposed: true\nmodel: offline:default\n${extra}---\nYou are ${name}. ${prompt}\n`;

beforeAll(async () => {
  await seedOrg(ORG, {
    "Echo/prompt.md": agent("Echo", "Answer the request."),
    "Other/prompt.md": agent("Other", "Answer the request.", "agentcard:\n  extended: false\n"),
    "Asker/prompt.md": agent("Asker", APPROVAL),
    "Strict/prompt.md": agent("Strict", APPROVAL, "concurrency: reject\n"),
    "Interrupter/prompt.md": agent("Interrupter", APPROVAL, "concurrency: interrupt\n"),
    "Queuer/prompt.md": agent("Queuer", APPROVAL, "concurrency: enqueue\n"),
    "Chat/prompt.md": agent("Chat", "Answer the request.").replace("offline:default", "local-llm:chat-model"),
  });
  // Chat's model is the OpenAI-compatible test server, which records every request it gets.
  const put = (path: string, body: unknown) => orgFetch(ORG, path, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  expect((await put("/secrets/LLM_KEY", { value: "llm-key-for-methods", allowedHosts: ["127.0.0.1"] })).status).toBe(200);
  expect((await put("/settings/models", { providers: { "local-llm": { kind: "openai-compatible", baseUrl: env.TEST_OPENAI_URL, secret: "LLM_KEY" } } })).status).toBe(200);
  await seedOrg(OTHER, { "Echo/prompt.md": agent("Echo", "Answer the request.") });
});

/** The SDK's client for an agent over one binding; its requests go to the Worker with the org's key. */
const client = (agentName: string, binding: Binding, slug = ORG): Promise<Client> => sdkClient(slug, agentName, binding);

function message(text: string, opts: { contextId?: string; taskId?: string; messageId?: string; metadata?: Record<string, unknown> } = {}): Message {
  return {
    messageId: opts.messageId ?? crypto.randomUUID(),
    contextId: opts.contextId ?? "",
    taskId: opts.taskId ?? "",
    role: Role.ROLE_USER,
    parts: [{ content: { $case: "text", value: text }, metadata: undefined, filename: "", mediaType: "text/plain" }],
    metadata: opts.metadata as Message["metadata"],
    extensions: [],
    referenceTaskIds: [],
  };
}

async function send(c: Client, msg: Message, config: { returnImmediately?: boolean; historyLength?: number } = {}): Promise<Task> {
  const r = await c.sendMessage({
    tenant: "",
    message: msg,
    configuration: { acceptedOutputModes: [], returnImmediately: config.returnImmediately ?? false, taskPushNotificationConfig: undefined, ...(config.historyLength !== undefined ? { historyLength: config.historyLength } : {}) },
    metadata: undefined,
  });
  expect(r).toHaveProperty("status");
  return r as Task;
}

const text = (t: Task) => t.artifacts.flatMap((a) => a.parts).map((p) => (p.content?.$case === "text" ? p.content.value : "")).join("");

/** The A2A error an SDK call rejects with: its reason (ErrorInfo) and message. */
async function failure(p: Promise<unknown>): Promise<{ reason: string; message: string; name: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { reason?: string; message: string; name: string };
    return { reason: e.reason ?? "", message: e.message, name: e.name };
  }
  throw new Error("expected the call to fail");
}

const rest = (path: string, init: RequestInit = {}, slug = ORG) => orgFetch(slug, `/a2a/agents/${path}`, init);

describe("SendMessage and GetTask through the SDK client", () => {
  for (const binding of BINDINGS) {
    it(`${binding}: a blocking send returns the completed task; GetTask honours historyLength`, async () => {
      const c = await client("Echo", binding);
      const task = await send(c, message(`hello over ${binding}`));
      expect(task.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
      expect(text(task)).toContain(`hello over ${binding}`);
      expect(task.history.map((m) => m.role)).toEqual([Role.ROLE_USER, Role.ROLE_AGENT]);
      const got = await c.getTask({ tenant: "", id: task.id, historyLength: 1 });
      expect(got).toMatchObject({ id: task.id, contextId: task.contextId });
      expect(got.history).toHaveLength(1);
      expect(got.history[0]!.role).toBe(Role.ROLE_AGENT);
      expect((await c.getTask({ tenant: "", id: task.id, historyLength: 0 })).history).toEqual([]);
    });
  }

  it("a retried messageId returns the same task and starts no second run (both bindings)", async () => {
    const messageId = crypto.randomUUID();
    const first = await send(await client("Echo", "JSONRPC"), message("once only", { messageId }));
    const again = await send(await client("Echo", "JSONRPC"), message("once only", { messageId }));
    const overRest = await send(await client("Echo", "HTTP+JSON"), message("once only", { messageId }));
    expect(again.id).toBe(first.id);
    expect(overRest.id).toBe(first.id);
    const rows = await env.DB.prepare("SELECT count(*) AS n FROM runs WHERE context_id = ?").bind(first.contextId).first<{ n: number }>();
    expect(rows!.n).toBe(1);
    // the same messageId to another agent is another task
    const other = await send(await client("Other", "JSONRPC"), message("once only", { messageId }));
    expect(other.id).not.toBe(first.id);
  });

  it("returnImmediately answers before the task ends", async () => {
    const c = await client("Asker", "JSONRPC");
    const task = await send(c, message("quick"), { returnImmediately: true });
    expect([TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING, TaskState.TASK_STATE_INPUT_REQUIRED]).toContain(task.status?.state);
  });
});

describe("multi-turn input", () => {
  for (const binding of BINDINGS) {
    it(`${binding}: a message with the taskId of an INPUT_REQUIRED task answers it; a terminal task takes no more messages`, async () => {
      const c = await client("Asker", binding);
      const asked = await send(c, message("Approve invoice 7"));
      expect(asked.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
      const done = await send(c, message("approved", { taskId: asked.id, contextId: asked.contextId }));
      expect(done.id).toBe(asked.id);
      expect(done.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
      // the run API shows the answer reached the waiting request
      const run = (await (await orgFetch(ORG, `/runs/${asked.id}`)).json()) as any;
      expect(run.inputs).toEqual([]);
      const refused = await failure(send(c, message("more?", { taskId: asked.id })));
      expect(refused.reason).toBe("UNSUPPORTED_OPERATION");
    });
  }

  it("metadata.requestId names the request; an unknown one is -32602", async () => {
    const c = await client("Asker", "JSONRPC");
    const asked = await send(c, message("Approve invoice 8"));
    const wrong = await rpc(ORG, "Asker", { jsonrpc: "2.0", id: 1, method: "SendMessage", params: { message: { messageId: crypto.randomUUID(), taskId: asked.id, role: "ROLE_USER", parts: [{ text: "approved" }], metadata: { requestId: "nope" } } } });
    expect(wrong.body.error).toMatchObject({ code: -32602, data: [{ reason: "INVALID_PARAMS", domain: "a2a-protocol.org" }] });
    const run = (await (await orgFetch(ORG, `/runs/${asked.id}`)).json()) as any;
    const requestId = run.inputs[0].requestId;
    const ok = await rpc(ORG, "Asker", { jsonrpc: "2.0", id: 2, method: "SendMessage", params: { message: { messageId: crypto.randomUUID(), taskId: asked.id, role: "ROLE_USER", parts: [{ text: "approved" }], metadata: { requestId } } } });
    expect(ok.body.result.task.status.state).toBe("TASK_STATE_COMPLETED");
  });

  it("an INPUT_REQUIRED Task's status message carries the question and its requestId (SendMessage, GetTask and the stream alike), so a client answers from A2A alone", async () => {
    const c = await client("Asker", "JSONRPC");
    const asked = await send(c, message("Approve invoice 9"));
    expect(asked.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    const run = (await (await orgFetch(ORG, `/runs/${asked.id}`)).json()) as any;
    const [text, data] = asked.status!.message!.parts.map((p) => p.content);
    expect(asked.status!.message!.role).toBe(Role.ROLE_AGENT);
    expect(text).toEqual({ $case: "text", value: run.inputs[0].prompt });
    expect(data).toEqual({ $case: "data", value: { inputs: run.inputs } });
    expect((await c.getTask({ tenant: "", id: asked.id })).status?.message).toEqual(asked.status!.message);
    // the stream's input-required update says the same
    const events: any[] = [];
    for await (const e of c.sendMessageStream({ tenant: "", message: message("Approve invoice 10"), configuration: undefined, metadata: undefined })) events.push(e);
    const last = events.at(-1)!.payload;
    expect(last.$case).toBe("statusUpdate");
    expect(last.value.status.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    const streamedTask = await c.getTask({ tenant: "", id: last.value.taskId });
    expect(streamedTask.status?.message?.parts).toEqual(last.value.status.message.parts);
    // answered with the requestId the Task named
    const requestId = (data as { value: { inputs: { requestId: string }[] } }).value.inputs[0]!.requestId;
    const done = await send(c, message("approved", { taskId: asked.id, metadata: { requestId } }));
    expect(done.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(done.status?.message).toBeUndefined();
  });
});

describe("ListTasks", () => {
  const contextId = crypto.randomUUID();
  let ids: string[] = [];
  beforeAll(async () => {
    const c = await client("Echo", "JSONRPC");
    ids = [];
    for (const n of [1, 2, 3]) ids.push((await send(c, message(`list me ${n}`, { contextId }))).id);
    await send(c, message("elsewhere"));
  });

  for (const binding of BINDINGS) {
    it(`${binding}: filters by context and status, pages newest first, counts, leaves artifacts out unless asked`, async () => {
      const c = await client("Echo", binding);
      const all = await c.listTasks({ tenant: "", contextId, status: TaskState.TASK_STATE_UNSPECIFIED, pageToken: "", statusTimestampAfter: undefined });
      expect(all.tasks.map((t) => t.id)).toEqual([...ids].reverse());
      expect(all).toMatchObject({ totalSize: 3, pageSize: 50, nextPageToken: "" });
      expect(all.tasks.every((t) => t.artifacts.length === 0)).toBe(true);
      const first = await c.listTasks({ tenant: "", contextId, status: TaskState.TASK_STATE_UNSPECIFIED, pageSize: 2, pageToken: "", statusTimestampAfter: undefined, includeArtifacts: true, historyLength: 0 });
      expect(first.tasks.map((t) => t.id)).toEqual([ids[2], ids[1]]);
      expect(first.totalSize).toBe(3);
      expect(first.nextPageToken).not.toBe("");
      expect(text(first.tasks[0]!)).toContain("list me 3");
      expect(first.tasks[0]!.history).toEqual([]);
      const second = await c.listTasks({ tenant: "", contextId, status: TaskState.TASK_STATE_UNSPECIFIED, pageSize: 2, pageToken: first.nextPageToken, statusTimestampAfter: undefined, includeArtifacts: true, historyLength: 0 });
      expect(second.tasks.map((t) => t.id)).toEqual([ids[0]]);
      expect(second.nextPageToken).toBe("");
      const completed = await c.listTasks({ tenant: "", contextId, status: TaskState.TASK_STATE_COMPLETED, pageToken: "", statusTimestampAfter: undefined });
      expect(completed.totalSize).toBe(3);
      const failed = await c.listTasks({ tenant: "", contextId, status: TaskState.TASK_STATE_FAILED, pageToken: "", statusTimestampAfter: undefined });
      expect(failed).toMatchObject({ tasks: [], totalSize: 0 });
      const future = await c.listTasks({ tenant: "", contextId, status: TaskState.TASK_STATE_UNSPECIFIED, pageToken: "", statusTimestampAfter: new Date(Date.now() + 3_600_000).toISOString() });
      expect(future.totalSize).toBe(0);
      const past = await c.listTasks({ tenant: "", contextId, status: TaskState.TASK_STATE_UNSPECIFIED, pageToken: "", statusTimestampAfter: "2020-01-01T00:00:00Z" });
      expect(past.totalSize).toBe(3);
    });
  }

  it("finds a running task by its status (the run object writes status changes to D1 as they happen), and keeps the task's texts", async () => {
    const c = await client("Asker", "JSONRPC");
    const ctx = crypto.randomUUID();
    const asking = await send(c, message("please approve this", { contextId: ctx }));
    expect(asking.status!.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    // (written as the status changes, not awaited by the answer: it may land a moment later)
    const waiting = await eventually(
      () => c.listTasks({ tenant: "", contextId: ctx, status: TaskState.TASK_STATE_INPUT_REQUIRED, pageToken: "", statusTimestampAfter: undefined }),
      (l) => l.tasks.length > 0,
    );
    expect(waiting.tasks.map((t) => t.id)).toEqual([asking.id]);
    const row = await env.DB.prepare("SELECT status, input_text, output_text FROM runs WHERE id = ?").bind(asking.id).first<{ status: string; input_text: string; output_text: string | null }>();
    expect(row).toMatchObject({ status: "input_required", input_text: "please approve this", output_text: null });
    const done = await env.DB.prepare("SELECT status, input_text, output_text FROM runs WHERE id = ?").bind(ids[0]).first<{ status: string; input_text: string; output_text: string | null }>();
    expect(done).toMatchObject({ status: "completed", input_text: "list me 1" });
    expect(done!.output_text).toContain("list me 1");
  });

  it("shows only this agent's tasks", async () => {
    const other = await (await client("Other", "JSONRPC")).listTasks({ tenant: "", contextId, status: TaskState.TASK_STATE_UNSPECIFIED, pageToken: "", statusTimestampAfter: undefined });
    expect(other.totalSize).toBe(0);
  });

  it("invalid values are -32602 (JSON-RPC) and 400 (HTTP+JSON)", async () => {
    const list = (params: unknown) => rpc(ORG, "Echo", { jsonrpc: "2.0", id: 1, method: "ListTasks", params });
    for (const params of [{ pageSize: 0 }, { pageSize: 101 }, { pageSize: 2.5 }, { pageSize: "10" }, { status: "DONE" }, { statusTimestampAfter: "yesterday" }, { pageToken: "not-a-token" }, { includeArtifacts: "yes" }, { historyLength: -1 }, { surprise: true }]) {
      const r = await list(params);
      expect(r.body.error, JSON.stringify(params)).toMatchObject({ code: -32602, data: [{ reason: "INVALID_PARAMS", domain: "a2a-protocol.org" }] });
    }
    // a token of another list (other filters) is not accepted either
    const page = await list({ contextId, pageSize: 1 });
    expect(page.body.result.nextPageToken).toBeTruthy();
    expect((await list({ pageSize: 1, pageToken: page.body.result.nextPageToken })).body.error.code).toBe(-32602);
    expect((await list({ contextId, pageSize: 1, pageToken: page.body.result.nextPageToken })).body.result.tasks).toHaveLength(1);
    for (const q of ["pageSize=0", "pageSize=abc", "pageSize=1000", "status=nope", "includeArtifacts=maybe", "pageToken=%25%25", "statusTimestampAfter=1234"]) {
      const res = await rest(`Echo/tasks?${q}`);
      expect(res.status, q).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: 400, status: "INVALID_ARGUMENT", details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "INVALID_PARAMS", domain: "a2a-protocol.org" }] } });
    }
  });
});

describe("CancelTask", () => {
  for (const binding of BINDINGS) {
    it(`${binding}: cancels a running task (idempotently); a finished one is TaskNotCancelable`, async () => {
      const c = await client("Asker", binding);
      const asked = await send(c, message("Approve invoice 9"));
      expect(asked.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
      const canceled = await c.cancelTask({ tenant: "", id: asked.id, metadata: undefined });
      expect(canceled.status?.state).toBe(TaskState.TASK_STATE_CANCELED);
      const run = (await (await orgFetch(ORG, `/runs/${asked.id}`)).json()) as any;
      expect(run.status).toBe("canceled");
      expect(run.steps.every((s: any) => s.status === "canceled" || s.status === "completed")).toBe(true);
      expect((await c.cancelTask({ tenant: "", id: asked.id, metadata: undefined })).status?.state).toBe(TaskState.TASK_STATE_CANCELED);
      const done = await send(await client("Echo", binding), message("finish"));
      const refused = await failure((await client("Echo", binding)).cancelTask({ tenant: "", id: done.id, metadata: undefined }));
      expect(refused.reason).toBe("TASK_NOT_CANCELABLE");
    });
  }

  it("HTTP+JSON status mapping: 400 FAILED_PRECONDITION for a finished task, 404 NOT_FOUND for an unknown one", async () => {
    const done = await send(await client("Echo", "JSONRPC"), message("finished"));
    const res = await rest(`Echo/tasks/${done.id}:cancel`, { method: "POST" });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: 400, status: "FAILED_PRECONDITION", details: [{ reason: "TASK_NOT_CANCELABLE", domain: "a2a-protocol.org" }] } });
    const missing = await rest(`Echo/tasks/${crypto.randomUUID()}:cancel`, { method: "POST" });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 404, status: "NOT_FOUND", details: [{ reason: "TASK_NOT_FOUND" }] } });
    expect((await rest(`Echo/tasks/${done.id}:explode`, { method: "POST" })).status).toBe(404);
  });
});

describe("streams (SendStreamingMessage, SubscribeToTask)", () => {
  for (const binding of BINDINGS) {
    it(`${binding}: the Task first, then updates until it ends; a finished task cannot be subscribed to`, async () => {
      const c = await client("Echo", binding);
      const events = [];
      for await (const e of c.sendMessageStream({ tenant: "", message: message("stream me"), configuration: undefined, metadata: undefined })) events.push(e);
      expect(events.length).toBeGreaterThan(0);
      const first = events[0]!.payload;
      expect(first?.$case).toBe("task");
      const id = first?.$case === "task" ? first.value.id : "";
      const task = await c.getTask({ tenant: "", id });
      expect(task.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
      const refused = await failure((async () => {
        for await (const _ of c.resubscribeTask({ tenant: "", id })) {
          /* nothing */
        }
      })());
      expect(refused.reason).toBe("UNSUPPORTED_OPERATION");
    });
  }
});

describe("push configs and the extended card through the dispatcher", () => {
  it("creates, reads, lists and deletes a task's push config over both bindings", async () => {
    const task = await send(await client("Echo", "JSONRPC"), message("push me"));
    const created = await rpc(ORG, "Echo", { jsonrpc: "2.0", id: 1, method: "CreateTaskPushNotificationConfig", params: { taskId: task.id, id: "cfg-1", url: "https://push.example.com/hook", token: "tok-123" } });
    expect(created.body.result).toMatchObject({ id: "cfg-1", taskId: task.id, url: "https://push.example.com/hook" });
    expect(JSON.stringify(created.body)).not.toContain("tok-123");
    const listed = await rest(`Echo/tasks/${task.id}/pushNotificationConfigs`);
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as any).configs.map((c: any) => c.id)).toEqual(["cfg-1"]);
    const got = await rest(`Echo/tasks/${task.id}/pushNotificationConfigs/cfg-1`);
    expect(await got.json()).toMatchObject({ id: "cfg-1", taskId: task.id });
    expect((await rest(`Echo/tasks/${task.id}/pushNotificationConfigs/cfg-1`, { method: "DELETE" })).status).toBe(204);
    const gone = await rpc(ORG, "Echo", { jsonrpc: "2.0", id: 2, method: "GetTaskPushNotificationConfig", params: { taskId: task.id, id: "cfg-1" } });
    expect(gone.body.error.code).toBe(-32001);
    const bad = await rpc(ORG, "Echo", { jsonrpc: "2.0", id: 3, method: "CreateTaskPushNotificationConfig", params: { taskId: task.id, url: "not a url" } });
    expect(bad.body.error.code).toBe(-32602);
  });

  it("GetExtendedAgentCard: the card over both bindings; -32007 / 400 for an agent without one", async () => {
    for (const binding of BINDINGS) {
      const card = await (await client("Echo", binding)).getAgentCard(); // capabilities.extendedAgentCard: GetExtendedAgentCard
      expect(card.name).toBe("Echo");
    }
    const r = await rpc(ORG, "Other", { jsonrpc: "2.0", id: 1, method: "GetExtendedAgentCard", params: {} });
    expect(r.body.error).toMatchObject({ code: -32007, data: [{ reason: "EXTENDED_AGENT_CARD_NOT_CONFIGURED", domain: "a2a-protocol.org" }] });
    const res = await rest("Other/extendedAgentCard");
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { status: "FAILED_PRECONDITION", details: [{ reason: "EXTENDED_AGENT_CARD_NOT_CONFIGURED" }] } });
    // v0.3's agent/getAuthenticatedExtendedCard answers in v0.3's card form
    const old = await rpc(ORG, "Echo", { jsonrpc: "2.0", id: 2, method: "agent/getAuthenticatedExtendedCard" }, {});
    expect(old.body.result).toMatchObject({ name: "Echo", protocolVersion: "0.3.0", preferredTransport: "JSONRPC" });
  });

  it("SubscribeToTask on a finished task: refused to a new subscriber, the missed end to a stream that resumes with Last-Event-ID", async () => {
    const done = await send(await client("Echo", "JSONRPC"), message("finish me"));
    expect(done.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    const fresh = await rest(`Echo/tasks/${done.id}:subscribe`, { method: "POST" });
    expect(fresh.status).toBe(400);
    const resumed = await rest(`Echo/tasks/${done.id}:subscribe`, { method: "POST", headers: { "last-event-id": "1" } });
    expect(resumed.status).toBe(200);
    expect(resumed.headers.get("content-type")).toContain("text/event-stream");
    const body = await resumed.text();
    expect(body).toContain("TASK_STATE_COMPLETED");
    expect(body).not.toContain('"task"'); // a resume gets what it missed, not the Task again
  });
});

describe("tasks nobody else can see", () => {
  it("an unknown id, another org's task and another agent's task answer TASK_NOT_FOUND alike, on every method and both bindings", async () => {
    const theirs = await send(await client("Echo", "JSONRPC", OTHER), message("not yours"));
    const otherAgents = await send(await client("Other", "JSONRPC"), message("another agent's"));
    const missing = crypto.randomUUID();
    const strip = (v: unknown, id: string) => JSON.parse(JSON.stringify(v).split(id).join("ID"));
    for (const method of ["GetTask", "CancelTask", "SubscribeToTask"]) {
      const ask = (id: string) => rpc(ORG, "Echo", { jsonrpc: "2.0", id: 7, method, params: { id } });
      const m = await ask(missing);
      expect(m.body.error, method).toMatchObject({ code: -32001, message: "Task not found", data: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "TASK_NOT_FOUND", domain: "a2a-protocol.org" }] });
      expect(strip(await ask(theirs.id), theirs.id), method).toEqual(strip(m, missing));
      expect(strip(await ask(otherAgents.id), otherAgents.id), method).toEqual(strip(m, missing));
      expect(strip(await ask("not-a-uuid"), "not-a-uuid"), method).toEqual(strip(m, missing));
    }
    const answer = (id: string) => rpc(ORG, "Echo", { jsonrpc: "2.0", id: 8, method: "SendMessage", params: { message: { messageId: crypto.randomUUID(), taskId: id, role: "ROLE_USER", parts: [{ text: "hi" }] } } });
    expect((await answer(theirs.id)).body).toEqual((await answer(missing)).body);
    for (const path of [(id: string) => `Echo/tasks/${id}`, (id: string) => `Echo/tasks/${id}/pushNotificationConfigs`]) {
      const m = await rest(path(missing));
      expect(m.status).toBe(404);
      const mBody = await m.json();
      for (const id of [theirs.id, otherAgents.id]) {
        const o = await rest(path(id));
        expect(o.status).toBe(404);
        expect(strip(await o.json(), id)).toEqual(strip(mBody, missing));
      }
    }
    // and another org's list shows none of this org's tasks
    const listed = await (await client("Echo", "JSONRPC", OTHER)).listTasks({ tenant: "", contextId: "", status: TaskState.TASK_STATE_UNSPECIFIED, pageToken: "", statusTimestampAfter: undefined });
    expect(listed.tasks.map((t) => t.id)).toEqual([theirs.id]);
  });
});

describe("malformed input (raw HTTP)", () => {
  it("JSON-RPC: bad JSON, wrong types, unknown methods, oversized bodies", async () => {
    expect((await rpc(ORG, "Echo", "{oops")).body.error.code).toBe(-32700);
    const wrong = await rpc(ORG, "Echo", { jsonrpc: "2.0", id: 1, method: "SendMessage", params: { message: 5 } });
    expect(wrong.body.error).toMatchObject({ code: -32602, data: [{ reason: "INVALID_PARAMS" }] });
    expect((await rpc(ORG, "Echo", { jsonrpc: "2.0", id: 2, method: "GetTask", params: { id: 12 } })).body.error.code).toBe(-32602);
    expect((await rpc(ORG, "Echo", { jsonrpc: "2.0", id: 3, method: "tasks/explode", params: {} }, {})).body.error.code).toBe(-32601);
    expect((await rpc(ORG, "Echo", { jsonrpc: "2.0", id: 4, method: "toString", params: {} })).body.error.code).toBe(-32601);
    const big = await rpc(ORG, "Echo", sendMessage("x".repeat(1024 * 1024 + 10)));
    expect(big.status).toBe(413);
    expect(big.body.error.code).toBe(-32600);
  });

  it("HTTP+JSON: bad JSON, wrong types, unknown paths, oversized bodies, unsupported versions", async () => {
    const post = (path: string, body: string, headers: Record<string, string> = {}) => rest(path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
    const bad = await post("Echo/message:send", "{oops");
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: 400, status: "INVALID_ARGUMENT" } });
    const wrong = await post("Echo/message:send", JSON.stringify({ message: { messageId: 1, role: "ROLE_USER", parts: [] } }));
    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toMatchObject({ error: { details: [{ reason: "INVALID_PARAMS" }] } });
    expect((await post("Echo/message:send", "[1,2]")).status).toBe(400);
    expect((await post("Echo/message:send", JSON.stringify(sendMessage("x".repeat(1024 * 1024 + 10)).params))).status).toBe(413);
    const version = await post("Echo/message:send", JSON.stringify(sendMessage("v").params), { "A2A-Version": "9.9" });
    expect(version.status).toBe(400);
    expect(await version.json()).toMatchObject({ error: { details: [{ reason: "VERSION_NOT_SUPPORTED" }] } });
    expect((await rest("NoSuchAgent/tasks")).status).toBe(404);
    const sent = await post("Echo/message:send", JSON.stringify(sendMessage("plain rest").params));
    expect(sent.status).toBe(200);
    expect(((await sent.json()) as any).task.status.state).toBe("TASK_STATE_COMPLETED");
  });
});

describe("v0.3 compatibility", () => {
  it("without A2A-Version, 0.3 method names and shapes keep working", async () => {
    const v03 = (body: unknown) => rpc(ORG, "Echo", body, {});
    const sent = await v03({ jsonrpc: "2.0", id: 1, method: "message/send", params: { message: { kind: "message", messageId: crypto.randomUUID(), role: "user", parts: [{ kind: "text", text: "old client" }] } } });
    expect(sent.body.result).toMatchObject({ kind: "task", status: { state: "completed" } });
    const id = sent.body.result.id;
    expect((await v03({ jsonrpc: "2.0", id: 2, method: "tasks/get", params: { id } })).body.result).toMatchObject({ kind: "task", id });
    expect((await v03({ jsonrpc: "2.0", id: 3, method: "tasks/cancel", params: { id } })).body.error.code).toBe(-32002);
    const listed = await v03({ jsonrpc: "2.0", id: 4, method: "tasks/list", params: { contextId: sent.body.result.contextId, status: "completed" } });
    expect(listed.body.result.tasks.map((t: any) => [t.kind, t.id])).toEqual([["task", id]]);
    // v1.0 names without the header are v1.0
    const v1 = await v03({ jsonrpc: "2.0", id: 5, method: "GetTask", params: { id } });
    expect(v1.body.result.status.state).toBe("TASK_STATE_COMPLETED");
  });
});

describe("conversations", () => {
  it("a new task in a context sees the context's earlier turns", async () => {
    const c = await client("Chat", "JSONRPC");
    const name = `Zoltan-${crypto.randomUUID().slice(0, 8)}`;
    const first = await send(c, message(`My name is ${name}.`));
    expect(first.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    const second = await send(c, message(`What is my name? (${name}-q)`, { contextId: first.contextId }));
    expect(second.contextId).toBe(first.contextId);
    // The model's request for the second task: the first task's message and answer, then the new message.
    const asked = (await requestsFor(name)).filter((r) => JSON.stringify(r.messages).includes(`${name}-q`));
    expect(asked.length).toBeGreaterThan(0);
    const turns = asked[0].messages.filter((m: any) => m.role === "user" || m.role === "assistant").map((m: any) => [m.role, typeof m.content === "string" ? m.content : JSON.stringify(m.content)]);
    expect(turns.slice(0, 3)).toEqual([
      ["user", `My name is ${name}.`],
      ["assistant", text(first)],
      ["user", `What is my name? (${name}-q)`],
    ]);
    // a task in a new context starts from its own message
    const fresh = await send(c, message(`Who am I? (${name}-fresh)`));
    const alone = (await requestsFor(`${name}-fresh`))[0];
    expect(alone.messages.filter((m: any) => m.role === "user" || m.role === "assistant")).toHaveLength(1);
    expect(fresh.contextId).not.toBe(first.contextId);
  });

  it("bounds the turns: the last 20 and 32 KiB, oldest dropped first", () => {
    const turns = Array.from({ length: 30 }, (_, i) => ({ role: (i % 2 ? "assistant" : "user") as "user" | "assistant", text: `t${i}` }));
    expect(bound(turns).map((t) => t.text)).toEqual(turns.slice(10).map((t) => t.text));
    const big = [{ role: "user" as const, text: "a".repeat(20_000) }, { role: "assistant" as const, text: "b".repeat(20_000) }];
    expect(bound(big).map((t) => t.text[0])).toEqual(["b"]);
    const huge = bound([{ role: "user", text: "c".repeat(40_000) }]);
    expect(huge[0]!.text.length).toBe(32 * 1024);
  });

  it("concurrency: reject refuses a message while a task of the context runs; interrupt cancels it first", async () => {
    const strict = await client("Strict", "JSONRPC");
    const running = await send(strict, message("Approve A"));
    expect(running.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    const refused = await failure(send(strict, message("Approve B", { contextId: running.contextId })));
    expect(refused.reason).toBe("UNSUPPORTED_OPERATION");
    expect(refused.message).toContain("still running");

    const interrupter = await client("Interrupter", "JSONRPC");
    const old = await send(interrupter, message("Approve C"));
    const next = await send(interrupter, message("Approve D", { contextId: old.contextId }));
    expect(next.id).not.toBe(old.id);
    expect((await interrupter.getTask({ tenant: "", id: old.id })).status?.state).toBe(TaskState.TASK_STATE_CANCELED);
    expect(next.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);

    // parallel (the default): both run
    const asker = await client("Asker", "JSONRPC");
    const a = await send(asker, message("Approve E"));
    const b = await send(asker, message("Approve F", { contextId: a.contextId }));
    expect((await asker.getTask({ tenant: "", id: a.id })).status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    expect(b.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
  });

  it("concurrency: enqueue holds a message's task until the context's running task settles, then runs it (in order, a third behind the second)", async () => {
    const queuer = await client("Queuer", "JSONRPC");
    const first = await send(queuer, message("Approve G"));
    expect(first.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    const second = await send(queuer, message("Approve H", { contextId: first.contextId }), { returnImmediately: true });
    const third = await send(queuer, message("Approve I", { contextId: first.contextId }), { returnImmediately: true });
    const state = async (id: string) => (await queuer.getTask({ tenant: "", id })).status?.state;
    // queued: recorded, nothing runs (no model turn, no step)
    expect(await state(second.id)).toBe(TaskState.TASK_STATE_SUBMITTED);
    const steps = async (id: string) => ((await (await orgFetch(ORG, `/runs/${id}`)).json()) as { steps: unknown[] }).steps.length;
    expect(await steps(second.id)).toBe(0);
    const deadlineOf = (id: string) => runInDurableObject(env.RUNS.get(env.RUNS.idFromName(id)), (o) => (o as unknown as { run: { deadline: number } }).run.deadline);
    const queuedDeadline = await deadlineOf(second.id);
    // the first settles (its question answered): the second runs, the third still waits
    await send(queuer, message("approved", { contextId: first.contextId, taskId: first.id }));
    expect(await state(first.id)).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(await eventually(() => state(second.id), (s) => s === TaskState.TASK_STATE_INPUT_REQUIRED)).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    expect(await state(third.id)).toBe(TaskState.TASK_STATE_SUBMITTED);
    // its run timeout counts from when it started, not from when it was queued
    expect(await deadlineOf(second.id)).toBeGreaterThan(queuedDeadline);
    // and the third after the second
    await send(queuer, message("approved", { contextId: first.contextId, taskId: second.id }));
    expect(await eventually(() => state(third.id), (s) => s === TaskState.TASK_STATE_INPUT_REQUIRED)).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
  });
});
