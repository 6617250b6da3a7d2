/**
 * The A2A client for external agents (src/a2a-client), against real @a2a-js/sdk agents
 * (test/servers/a2a-agent.ts): each agent through sendRemote / followRemote, v0.3, what
 * headers go where (the org credential only to its allowed hosts, the caller JWT always
 * and verifiable with the JWKS), and the transient flag of every kind of failure.
 */
import { env } from "cloudflare:workers";
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { cancelRemote, CALLER_HEADER, followRemote, RemoteCallError, sendRemote, type RemoteAgentTarget } from "../src/a2a-client/remote";
import { internalIssuer } from "../src/auth/internal-jwt";
import { scopeOf, type OrgScope } from "../src/db/scope";
import { bootstrapOrg, eventually, orgFetch, worker } from "./helpers";

/** One request the agent server saw (test/servers/a2a-agent.ts, GET /__log). */
interface A2ALogEntry {
  method: string;
  path: string;
  rpc?: string;
  headers: Record<string, string | string[] | undefined>;
  configuration?: unknown;
}

const AGENTS = env.TEST_A2A_AGENT_URL;
const ORG = "a2a-client";
const KEY = "remote-key-3f9a1c2e7b";
const PORT_KEY = "port-key-8d2e4b1a90";
const FAR_KEY = "far-key-5c7e9a2b14";
let scope: OrgScope;

beforeAll(async () => {
  const boot = await bootstrapOrg(ORG);
  scope = scopeOf({ id: boot.org.id, slug: boot.org.slug, name: `${ORG} Inc.` });
  const put = (name: string, value: string, allowedHosts: string[]) =>
    orgFetch(ORG, `/secrets/${name}`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ value, allowedHosts }) });
  expect((await put("REMOTE_KEY", KEY, ["127.0.0.1"])).status).toBe(200);
  // Only the agent server's port: the capture server on the same IP is another origin.
  expect((await put("PORT_KEY", PORT_KEY, [new URL(AGENTS).host])).status).toBe(200);
  expect((await put("FAR_KEY", FAR_KEY, ["agents.example.com"])).status).toBe(200);
});

/** A target at a path of its own (the agent server accepts any prefix before the agent's name). */
function target(agent: string, credentialSecret: string | null = null): RemoteAgentTarget & { path: string } {
  const path = `/${crypto.randomUUID().slice(0, 8)}/${agent}`;
  return { name: agent, url: `${AGENTS}${path}`, credentialSecret, path };
}

const who = (step = "step-1") => ({ runId: `run-${crypto.randomUUID()}`, stepId: step });

async function agentLog(path: string): Promise<A2ALogEntry[]> {
  const all = (await (await fetch(`${AGENTS}/__log`)).json()) as A2ALogEntry[];
  return all.filter((e) => e.path === path || e.path.startsWith(`${path}/`));
}
const rpcs = (log: A2ALogEntry[]) => log.filter((e) => e.rpc).map((e) => e.rpc);

async function refusal(p: Promise<unknown>): Promise<RemoteCallError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(RemoteCallError);
    return err as RemoteCallError;
  }
  throw new Error("the call succeeded");
}

describe("agents through sendRemote / followRemote", () => {
  it("echo: the send returns at once (returnImmediately on the wire); following gives the text and the data part", async () => {
    const t = target("echo");
    const sent = await sendRemote(env, scope, t, { ...who(), text: "hello there", messageId: crypto.randomUUID() });
    expect(sent.taskId).not.toBe("");
    expect(["submitted", "working", "completed"]).toContain(sent.state);
    expect(sent.streaming).toBe(true);
    const done = await followRemote(env, scope, t, sent.taskId, { ...who(), waitMs: 5_000 });
    expect(done).toEqual({ taskId: sent.taskId, contextId: sent.contextId, state: "completed", text: "hello there", data: { echo: "hello there", length: 11 }, streaming: true });
    const send = (await agentLog(t.path)).find((e) => e.rpc === "SendMessage")!;
    expect(send.configuration).toMatchObject({ returnImmediately: true });
    expect(send.headers["a2a-version"]).toBe("1.0");
  });

  it("fail: failed, with the agent's reason as error and text", async () => {
    const t = target("fail");
    const sent = await sendRemote(env, scope, t, { ...who(), text: "the impossible", messageId: crypto.randomUUID() });
    const done = await followRemote(env, scope, t, sent.taskId, { ...who(), waitMs: 5_000 });
    expect(done).toMatchObject({ state: "failed", error: "cannot do that: the impossible", text: "cannot do that: the impossible" });
  });

  it("ask: input-required with the question in text; an answer with the same taskId completes the task", async () => {
    const t = target("ask");
    const sent = await sendRemote(env, scope, t, { ...who(), text: "greet me", messageId: crypto.randomUUID() });
    const asked = await followRemote(env, scope, t, sent.taskId, { ...who(), waitMs: 5_000 });
    expect(asked).toMatchObject({ taskId: sent.taskId, state: "input-required", text: "What is your name?" });
    expect(asked.error).toBeUndefined();
    const answered = await sendRemote(env, scope, t, { ...who(), text: "Ada", messageId: crypto.randomUUID(), taskId: sent.taskId, contextId: asked.contextId });
    expect(answered.taskId).toBe(sent.taskId);
    const done = await followRemote(env, scope, t, sent.taskId, { ...who(), waitMs: 5_000 });
    expect(done).toMatchObject({ taskId: sent.taskId, state: "completed", text: "Hello, Ada!" });
  });

  it("slow, followed by its stream: a short wait returns the working state, a longer one the completion, without any GetTask", async () => {
    const t = target("slow");
    const sent = await sendRemote(env, scope, t, { ...who(), text: "take your time", messageId: crypto.randomUUID() });
    const early = await followRemote(env, scope, t, sent.taskId, { ...who(), waitMs: 100 });
    expect(["submitted", "working"]).toContain(early.state);
    const done = await followRemote(env, scope, t, sent.taskId, { ...who(), waitMs: 15_000 });
    expect(done).toMatchObject({ state: "completed", text: "slow: take your time", streaming: true });
    expect(rpcs(await agentLog(t.path))).toEqual(["SendMessage", "SubscribeToTask", "SubscribeToTask"]);
  });

  it("an agent whose card says streaming: false is polled: one GetTask per follow, never a subscription", async () => {
    const t = target("nostream");
    const sent = await sendRemote(env, scope, t, { ...who(), text: "poll me", messageId: crypto.randomUUID() });
    expect(sent.streaming).toBe(false);
    const first = await followRemote(env, scope, t, sent.taskId, { ...who(), waitMs: 60_000 });
    expect(["submitted", "working"]).toContain(first.state);
    expect(rpcs(await agentLog(t.path))).toEqual(["SendMessage", "GetTask"]);
    const done = await eventually(
      () => followRemote(env, scope, t, sent.taskId, { ...who(), waitMs: 60_000 }),
      (r) => r.state === "completed",
    );
    expect(done).toMatchObject({ state: "completed", text: "nostream: poll me", streaming: false });
    expect(rpcs(await agentLog(t.path)).every((m) => m === "SendMessage" || m === "GetTask")).toBe(true);
  });

  it("a v0.3 agent is spoken to in v0.3: message/send with blocking false, tasks/resubscribe", async () => {
    const t = target("v03");
    const sent = await sendRemote(env, scope, t, { ...who(), text: "old school", messageId: crypto.randomUUID() });
    expect(["submitted", "working"]).toContain(sent.state);
    const done = await followRemote(env, scope, t, sent.taskId, { ...who(), waitMs: 15_000 });
    expect(done).toMatchObject({ taskId: sent.taskId, state: "completed", text: "v03: old school", streaming: true });
    const log = await agentLog(t.path);
    expect(rpcs(log)).toEqual(["message/send", "tasks/resubscribe"]);
    const send = log.find((e) => e.rpc === "message/send")!;
    expect(send.configuration).toMatchObject({ blocking: false });
    expect(send.headers["a2a-version"]).toBe("0.3");
  });

  it("cancelRemote cancels a running task; canceling it again is not an error", async () => {
    const t = target("slow");
    const sent = await sendRemote(env, scope, t, { ...who(), text: "never mind", messageId: crypto.randomUUID() });
    await cancelRemote(env, scope, t, sent.taskId, who());
    const after = await followRemote(env, scope, t, sent.taskId, { ...who(), waitMs: 0 });
    expect(after).toMatchObject({ state: "canceled" });
    expect(after.error).toBeTruthy();
    await cancelRemote(env, scope, t, sent.taskId, who());
  });

  it("the card is fetched once per isolate, not per call", async () => {
    const t = target("echo");
    await sendRemote(env, scope, t, { ...who(), text: "one", messageId: crypto.randomUUID() });
    await sendRemote(env, scope, t, { ...who(), text: "two", messageId: crypto.randomUUID() });
    const log = await agentLog(t.path);
    expect(log.filter((e) => e.method === "GET").length).toBe(1);
    expect(rpcs(log)).toEqual(["SendMessage", "SendMessage"]);
  });
});

describe("credentials and the caller token", () => {
  it("without a credential: Authorization carries the caller JWT, which verifies with /.well-known/jwks.json (aud = the agent's origin, the calling org/run/step)", async () => {
    const t = target("echo");
    const call = who("step-7");
    await sendRemote(env, scope, t, { ...call, depth: 2, text: "hi", messageId: crypto.randomUUID() });
    const log = await agentLog(t.path);
    const card = log.find((e) => e.method === "GET")!;
    expect(card.headers.authorization).toBeUndefined();
    expect(card.headers[CALLER_HEADER.toLowerCase()]).toBeUndefined();
    const send = log.find((e) => e.rpc === "SendMessage")!;
    const token = send.headers[CALLER_HEADER.toLowerCase()] as string;
    expect(token).toMatch(/^eyJ/);
    expect(send.headers.authorization).toBe(`Bearer ${token}`);
    const jwks = (await (await worker.fetch("http://localhost/.well-known/jwks.json")).json()) as JSONWebKeySet;
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { audience: new URL(AGENTS).origin, issuer: internalIssuer(env) });
    expect(payload).toMatchObject({ org_id: scope.orgId, run_id: call.runId, step_id: "step-7", depth: 2 });
  });

  it("with a credential: Authorization carries the org secret (its host is allowed), the JWT goes in X-Shaman-Caller", async () => {
    const t = target("echo", "REMOTE_KEY");
    await sendRemote(env, scope, t, { ...who(), text: "hi", messageId: crypto.randomUUID() });
    const log = await agentLog(t.path);
    const send = log.find((e) => e.rpc === "SendMessage")!;
    expect(send.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(send.headers[CALLER_HEADER.toLowerCase()]).toMatch(/^eyJ/);
    // The card is public: fetched without the key.
    expect(log.find((e) => e.method === "GET")!.headers.authorization).toBeUndefined();
  });

  it("a target whose host the secret may not go to gets no request with the key", async () => {
    const t = target("echo", "FAR_KEY");
    const err = await refusal(sendRemote(env, scope, t, { ...who(), text: "hi", messageId: crypto.randomUUID() }));
    expect(err.transient).toBe(false);
    expect(err.message).toContain("may not be sent to 127.0.0.1");
    expect(err.message).not.toContain(FAR_KEY);
    const log = await agentLog(t.path);
    expect(log.some((e) => JSON.stringify(e.headers).includes(FAR_KEY))).toBe(false);
    expect(rpcs(log)).toEqual([]);
  });

  it("a card that points the endpoint at another origin: the key is not sent there", async () => {
    const t = target("elsewhere", "PORT_KEY");
    const err = await refusal(sendRemote(env, scope, t, { ...who(), text: "hi", messageId: crypto.randomUUID() }));
    expect(err.transient).toBe(false);
    expect(err.message).not.toContain(PORT_KEY);
    const captured = (await (await fetch(`${env.TEST_CAPTURE_URL}/__captured?prefix=/a2a-elsewhere`)).json()) as { headers: unknown }[];
    expect(captured.some((r) => JSON.stringify(r.headers).includes(PORT_KEY))).toBe(false);
  });

  it("a credential secret that does not exist: not transient, and no request", async () => {
    const t = target("echo", "NO_SUCH_SECRET");
    const err = await refusal(sendRemote(env, scope, t, { ...who(), text: "hi", messageId: crypto.randomUUID() }));
    expect(err.transient).toBe(false);
    expect(err.message).toContain("NO_SUCH_SECRET");
    expect(await agentLog(t.path)).toEqual([]);
  });
});

describe("failures: RemoteCallError and its transient flag", () => {
  const send = (t: RemoteAgentTarget, extra: { timeoutMs?: number } = {}) => sendRemote(env, scope, t, { ...who(), ...extra, text: "x", messageId: crypto.randomUUID() });

  it("nothing listening: transient", async () => {
    const err = await refusal(send({ name: "gone", url: "http://127.0.0.1:1/agent", credentialSecret: null }));
    expect(err.transient).toBe(true);
    expect(err.message).toContain("could not be reached");
  });

  it("the endpoint answers 503: transient; the key is not in the message", async () => {
    const err = await refusal(send(target("down", "REMOTE_KEY")));
    expect(err).toMatchObject({ transient: true, status: 503 });
    expect(err.message).not.toContain(KEY);
  });

  it("an agent that quotes the request's credential and token in its error: both are cut out of the message", async () => {
    const err = await refusal(send(target("leaky", "REMOTE_KEY")));
    expect(err).toMatchObject({ transient: false, rpcCode: -32603 });
    expect(err.message).toContain("refused: authorization=");
    expect(err.message).not.toContain(KEY);
    expect(err.message).not.toMatch(/eyJ[A-Za-z0-9_-]+\./);
  });

  it("the endpoint answers 200 with HTML: not transient", async () => {
    const err = await refusal(send(target("garbage")));
    expect(err.transient).toBe(false);
    expect(err.message).toContain("not an A2A response");
  });

  it("no agent card (404): not transient", async () => {
    const err = await refusal(send(target("nosuchagent")));
    expect(err).toMatchObject({ transient: false, status: 404 });
  });

  it("an endpoint that never answers: timed out, transient", async () => {
    const err = await refusal(send(target("hang"), { timeoutMs: 300 }));
    expect(err.transient).toBe(true);
    expect(err.message).toContain("did not answer in time");
  });

  it("a task the agent does not know (JSON-RPC error): not transient", async () => {
    const t = target("echo");
    const err = await refusal(followRemote(env, scope, t, "no-such-task", { ...who(), waitMs: 0 }));
    expect(err).toMatchObject({ transient: false, rpcCode: -32001 });
    expect(err.message).toContain("task not found");
    // The stream is refused the same way; followRemote falls back to GetTask and reports it.
    const streamed = await refusal(followRemote(env, scope, t, "no-such-task", { ...who(), waitMs: 1_000 }));
    expect(streamed).toMatchObject({ transient: false, rpcCode: -32001 });
  });

  it("a URL the outbound policy refuses is never called", async () => {
    const err = await refusal(send({ name: "creds", url: `http://user:pw@${new URL(AGENTS).host}/x/echo`, credentialSecret: null }));
    expect(err.transient).toBe(false);
    expect(err.message).not.toContain("pw");
  });
});
