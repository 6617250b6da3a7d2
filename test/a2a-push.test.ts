/**
 * Push notifications (issue 11 item 9): task push configs (src/push/), the push object per
 * task (durable-objects/push.ts) and a receiver on 127.0.0.1 (test/servers/push-receiver.ts).
 * The run object hands every event to `notifyPush`; some tests call it (or the push object)
 * directly to drive one part alone.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { backoffDelay, BACKOFF_BASE_MS, BACKOFF_CAP_MS, MAX_ATTEMPTS, redactError } from "../durable-objects/push";
import { scopeOf, type OrgScope } from "../src/db/scope";
import {
  attachPushConfig,
  createPushConfig,
  deletePushConfig,
  getPushConfig,
  listPushConfigs,
  MAX_CONFIGS_PER_TASK,
  notifyPush,
  pushStub,
  renderPushConfig,
  type DeliveryRecord,
  type PushCaller,
} from "../src/push";
import { MAX_RECORDS_PER_CONFIG, PUSH_RETENTION_MS } from "../src/push/limits";
import type { RunEvent } from "../src/runs/types";
import { bootstrapOrg, eventually, exampleAgents, orgFetch, rpc, seedOrg, sendMessage } from "./helpers";

const ORG = "push-a";
const OTHER = "push-b";
let scope: OrgScope;
let other: OrgScope;

async function scopeFor(slug: string): Promise<OrgScope> {
  const row = await env.DB.prepare("SELECT id, slug, name FROM orgs WHERE slug = ?").bind(slug).first<{ id: string; slug: string; name: string }>();
  return scopeOf(row!);
}

/** Streams its answer as model text (the offline model): more than one text batch for a long request. */
const ECHO = "---\ndescription: Echo agent\nexposed: true\nmodel: offline:default\n---\nYou are Echo. Answer the request.\n";
const LONG = Array.from({ length: 4 }, (_, i) => `Line ${i}: ${"lorem ipsum ".repeat(125)}`).join("\n");

beforeAll(async () => {
  await seedOrg(ORG, { ...exampleAgents(), "Echo/prompt.md": ECHO });
  await bootstrapOrg(OTHER);
  scope = await scopeFor(ORG);
  other = await scopeFor(OTHER);
});

function caller(opts: { read?: boolean; use?: boolean; dialect?: "1.0" | "0.3" } = {}): PushCaller {
  return {
    principal: "key:test",
    dialect: opts.dialect ?? "1.0",
    mayReadTask: async () => opts.read ?? true,
    mayUseSecret: async () => opts.use ?? true,
  };
}

/** A finished task (the Summarize agent answers in one step). */
async function finishedTask(): Promise<string> {
  const r = await rpc(ORG, "Summarize", sendMessage("Summarize: push notifications are POSTed to a URL."));
  expect(r.body.result.task.status.state).toBe("TASK_STATE_COMPLETED");
  return r.body.result.task.id;
}

let prefixes = 0;
function receiverPath(): string {
  return `/r/${++prefixes}-${crypto.randomUUID().slice(0, 8)}`;
}

async function received(prefix: string): Promise<{ path: string; headers: Record<string, string>; body: string; answered: number | "hang" }[]> {
  return (await (await fetch(`${env.TEST_PUSH_URL}/__received?prefix=${encodeURIComponent(prefix)}`)).json()) as any;
}

async function control(prefix: string, rule: { fail?: number; status?: number; hang?: number }): Promise<void> {
  await fetch(`${env.TEST_PUSH_URL}/__control`, { method: "POST", body: JSON.stringify({ prefix, ...rule }) });
}

async function records(runId: string): Promise<DeliveryRecord[]> {
  return (await pushStub(env, runId).deliveries(scope.orgId)) ?? [];
}

const pushObject = (runId: string) => env.PUSH.get(env.PUSH.idFromName(runId));

/** Runs the push object's alarm until `ok` holds (an alarm run early counts as its time: retries are due). */
async function driveUntil(runId: string, ok: (r: DeliveryRecord[]) => boolean, rounds = 40): Promise<DeliveryRecord[]> {
  for (let i = 0; i < rounds; i++) {
    const r = await records(runId);
    if (ok(r)) return r;
    await runDurableObjectAlarm(pushObject(runId));
    await new Promise((res) => setTimeout(res, 25));
  }
  return records(runId);
}

function kinds(bodies: string[]): string[] {
  return bodies.map((b) => {
    const j = JSON.parse(b);
    if (j.statusUpdate) return `status:${j.statusUpdate.status.state}`;
    if (j.artifactUpdate) return `artifact:${j.artifactUpdate.artifact.name}`;
    if (j.kind === "status-update") return `status:${j.status.state}${j.final ? ":final" : ""}`;
    if (j.kind === "artifact-update") return `artifact:${j.artifact.name}`;
    return "other";
  });
}

describe("push notification configs", () => {
  it("creates, reads, lists, replaces and deletes a task's configs; the token and credentials are stored encrypted and never shown", async () => {
    const taskId = await finishedTask();
    const url = `${env.TEST_PUSH_URL}${receiverPath()}`;
    const created = await createPushConfig(env, scope, caller(), taskId, {
      taskId,
      id: "cfg-1",
      url,
      token: "tok-secret-1",
      authentication: { scheme: "Bearer", credentials: "cred-secret-1" },
    });
    expect(created).toMatchObject({ id: "cfg-1", taskId, url, hasToken: true, authentication: { scheme: "Bearer", secret: null, hasCredentials: true }, dialect: "1.0", createdBy: "key:test" });
    expect(renderPushConfig("1.0", created)).toEqual({ id: "cfg-1", taskId, url, authentication: { scheme: "Bearer" } });
    expect(renderPushConfig("0.3", created)).toEqual({ taskId, pushNotificationConfig: { id: "cfg-1", url, authentication: { schemes: ["Bearer"] } } });

    // stored encrypted: neither value is in the row
    const row = await env.DB.prepare("SELECT * FROM push_configs WHERE run_id = ? AND id = 'cfg-1'").bind(taskId).first<Record<string, unknown>>();
    expect(JSON.stringify(row)).not.toContain("tok-secret-1");
    expect(JSON.stringify(row)).not.toContain("cred-secret-1");
    expect(row!.token_ciphertext).toEqual(expect.any(String));

    // v0.3 shape, generated id
    const second = await createPushConfig(env, scope, caller({ dialect: "0.3" }), taskId, { taskId, pushNotificationConfig: { url, authentication: { schemes: ["Basic"], credentials: "dXNlcjpwYXNz" } } });
    expect(second.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(second).toMatchObject({ dialect: "0.3", hasToken: false, authentication: { scheme: "Basic" } });

    expect(await getPushConfig(env, scope, caller(), taskId, "cfg-1")).toEqual(created);
    expect((await listPushConfigs(env, scope, caller(), taskId)).map((c) => c.id).sort()).toEqual(["cfg-1", second.id].sort());

    // same id: replaced
    const replaced = await createPushConfig(env, scope, caller(), taskId, { id: "cfg-1", url: `${url}/v2` });
    expect(replaced).toMatchObject({ id: "cfg-1", url: `${url}/v2`, hasToken: false, authentication: null });
    expect(await listPushConfigs(env, scope, caller(), taskId)).toHaveLength(2);

    expect(await deletePushConfig(env, scope, caller(), taskId, "cfg-1")).toBe(true);
    expect(await deletePushConfig(env, scope, caller(), taskId, "cfg-1")).toBe(false);
    await expect(getPushConfig(env, scope, caller(), taskId, "cfg-1")).rejects.toMatchObject({ name: "PushError", code: "config_not_found" });
    expect((await listPushConfigs(env, scope, caller(), taskId)).map((c) => c.id)).toEqual([second.id]);
  });

  it("refuses invalid configs with invalid_config, and more than the limit per task", async () => {
    const taskId = await finishedTask();
    const ok = `${env.TEST_PUSH_URL}${receiverPath()}`;
    const bad: [unknown, RegExp][] = [
      [{}, /url/],
      [{ url: "" }, /url/],
      [{ url: 42 }, /url/],
      [{ url: "ftp://example.com/hook" }, /http\(s\)/],
      [{ url: "not a url" }, /not a valid URL/],
      [{ url: "https://user:pw@example.com/hook" }, /credentials/],
      [{ url: ok, id: "bad id!" }, /id/],
      [{ url: ok, token: "line\nbreak" }, /token/],
      [{ url: ok, authentication: { scheme: "Bearer", credentials: "a\r\nX-Evil: 1" } }, /credentials/],
      [{ url: ok, authentication: { scheme: "Bad Scheme", credentials: "x" } }, /scheme/],
      [{ url: ok, authentication: { credentials: "x" } }, /scheme/],
      [{ url: ok, authentication: { scheme: "Bearer", credentials: "secret:not a name" } }, /secret name/],
      ["just a string", /config/],
    ];
    for (const [config, message] of bad) {
      await expect(createPushConfig(env, scope, caller(), taskId, config), JSON.stringify(config)).rejects.toMatchObject({ code: "invalid_config", message: expect.stringMatching(message) });
    }
    for (let i = 0; i < MAX_CONFIGS_PER_TASK; i++) await createPushConfig(env, scope, caller(), taskId, { id: `c${i}`, url: ok });
    await expect(createPushConfig(env, scope, caller(), taskId, { id: "one-more", url: ok })).rejects.toMatchObject({ code: "too_many_configs" });
    // replacing one of them is still fine
    await createPushConfig(env, scope, caller(), taskId, { id: "c0", url: `${ok}/x` });
  });

  it("answers another org's task, a malformed id, a missing task and a task the caller may not read exactly alike: task_not_found", async () => {
    const taskId = await finishedTask();
    const url = `${env.TEST_PUSH_URL}${receiverPath()}`;
    await createPushConfig(env, scope, caller(), taskId, { id: "mine", url });
    const cases: [OrgScope, PushCaller, string][] = [
      [other, caller(), taskId],
      [scope, caller(), "not-a-uuid"],
      [scope, caller(), crypto.randomUUID()],
      [scope, caller({ read: false }), taskId],
    ];
    for (const [s, c, id] of cases) {
      for (const call of [
        () => createPushConfig(env, s, c, id, { url }),
        () => getPushConfig(env, s, c, id, "mine"),
        () => listPushConfigs(env, s, c, id),
        () => deletePushConfig(env, s, c, id, "mine"),
      ]) {
        await expect(call()).rejects.toMatchObject({ name: "PushError", code: "task_not_found", message: "Task not found" });
      }
    }
    // the other org's attempts changed nothing
    expect((await listPushConfigs(env, scope, caller(), taskId)).map((c) => c.id)).toEqual(["mine"]);
    // the push object answers another org like a missing one
    expect(await pushStub(env, taskId).deliveries(other.orgId)).toBeNull();
  });
});

describe("push delivery", () => {
  it("POSTs every update of the task in order, with the token and authentication, and stops after the final one", async () => {
    const taskId = await finishedTask();
    const path = receiverPath();
    // attached from the task's first event (as SendMessage's configuration does)
    await attachPushConfig(env, scope, caller(), taskId, { id: "v1", url: `${env.TEST_PUSH_URL}${path}/v1`, token: "tok-v1", authentication: { scheme: "Bearer", credentials: "cred-v1" } });
    await attachPushConfig(env, scope, caller({ dialect: "0.3" }), taskId, { pushNotificationConfig: { id: "v03", url: `${env.TEST_PUSH_URL}${path}/v03`, token: "tok-v03" } });
    const got = await eventually(() => received(path), (r) => r.length >= 6);
    const v1 = got.filter((r) => r.path === `${path}/v1`);
    const v03 = got.filter((r) => r.path === `${path}/v03`);
    // the updates a stream carries after its Task, without the model's text as it streams
    expect(kinds(v1.map((r) => r.body))).toEqual(["status:TASK_STATE_WORKING", "artifact:result", "status:TASK_STATE_COMPLETED"]);
    expect(kinds(v03.map((r) => r.body))).toEqual(["status:working", "artifact:result", "status:completed:final"]);
    for (const r of v1) {
      expect(r.headers).toMatchObject({ "x-a2a-notification-token": "tok-v1", authorization: "Bearer cred-v1", "content-type": "application/a2a+json", "a2a-version": "1.0" });
      expect(JSON.parse(r.body)[Object.keys(JSON.parse(r.body))[0]!].taskId).toBe(taskId);
    }
    for (const r of v03) {
      expect(r.headers).toMatchObject({ "x-a2a-notification-token": "tok-v03", "content-type": "application/json" });
      expect(r.headers.authorization).toBeUndefined();
    }
    const answer = JSON.parse(v1[1]!.body).artifactUpdate;
    expect(answer).toMatchObject({ taskId, artifact: { artifactId: `${taskId}-result`, parts: [{ text: expect.stringContaining("push notifications") }] }, lastChunk: true });

    // every attempt recorded, never a token or credential
    const recs = await eventually(() => records(taskId), (r) => r.length >= 6);
    expect(recs.every((r) => r.outcome === "delivered" && r.status === 200 && r.attempt === 1)).toBe(true);
    expect(recs.filter((r) => r.configId === "v1").map((r) => r.n)).toEqual([1, 2, 3]);
    expect(JSON.stringify(recs)).not.toMatch(/tok-v|cred-v1/);

    // done: no alarm left, and a late wake sends nothing more
    const done = await eventually(() => pushStub(env, taskId).status(scope.orgId), (s) => s?.done === true);
    expect(done).toMatchObject({ ended: true, done: true, pending: {} });
    // the only alarm left is the end of the retention period
    expect(await runInDurableObject(pushObject(taskId), (_o, state) => state.storage.getAlarm())).toBe(done!.purgeAt);
    // a late wake changes nothing: no push, the same alarm
    await pushStub(env, taskId).wake(scope.orgId, taskId, 99);
    expect(await runInDurableObject(pushObject(taskId), (_o, state) => state.storage.getAlarm())).toBe(done!.purgeAt);
    expect(await received(path)).toHaveLength(6);
  });

  it("retries a failed push with exponential backoff and full jitter from the alarm, keeping the order", async () => {
    expect(backoffDelay(1, 0)).toBe(0);
    expect(backoffDelay(1, 0.999)).toBeLessThan(BACKOFF_BASE_MS);
    expect(backoffDelay(3, 0.999)).toBeGreaterThan(2 * BACKOFF_BASE_MS);
    expect(backoffDelay(3, 0.999)).toBeLessThan(4 * BACKOFF_BASE_MS);
    expect(backoffDelay(40, 0.999)).toBeLessThan(BACKOFF_CAP_MS);
    expect(backoffDelay(40, 0.999)).toBeGreaterThan(BACKOFF_CAP_MS * 0.99);

    const taskId = await finishedTask();
    const path = receiverPath();
    await control(path, { fail: 2, status: 503 });
    await attachPushConfig(env, scope, caller(), taskId, { id: "retry", url: `${env.TEST_PUSH_URL}${path}`, token: "tok-r" });
    const recs = await driveUntil(taskId, (r) => r.filter((x) => x.outcome === "delivered").length >= 3);
    expect(recs.map((r) => [r.n, r.attempt, r.status, r.outcome])).toEqual([
      [1, 1, 503, "retrying"],
      [1, 2, 503, "retrying"],
      [1, 3, 200, "delivered"],
      [2, 1, 200, "delivered"],
      [3, 1, 200, "delivered"],
    ]);
    // each retry waits within the backoff's bound, base·2^(n-1), counted from when the
    // attempt was due (the alarm, driven early here, runs what was due at its set time)
    const wait1 = recs[0]!.retryAt! - recs[0]!.at;
    const wait2 = recs[1]!.retryAt! - Math.max(recs[1]!.at, recs[0]!.retryAt!);
    expect(wait1).toBeGreaterThanOrEqual(0);
    expect(wait1).toBeLessThan(BACKOFF_BASE_MS + 50);
    expect(wait2).toBeGreaterThanOrEqual(0);
    expect(wait2).toBeLessThan(2 * BACKOFF_BASE_MS + 50);
    expect(recs[0]!.error).toBe("HTTP 503");
    const got = await received(path);
    expect(got.map((r) => r.answered)).toEqual([503, 503, 200, 200, 200]);
    // the first update three times, then the others in order
    expect(kinds(got.map((r) => r.body))).toEqual([
      "status:TASK_STATE_WORKING",
      "status:TASK_STATE_WORKING",
      "status:TASK_STATE_WORKING",
      "artifact:result",
      "status:TASK_STATE_COMPLETED",
    ]);
  });

  it("counts a receiver that does not answer as a failure (timeout) and retries", async () => {
    const taskId = await finishedTask();
    const path = receiverPath();
    await control(path, { hang: 1 });
    await attachPushConfig(env, scope, caller(), taskId, { id: "hang", url: `${env.TEST_PUSH_URL}${path}` });
    const recs = await driveUntil(taskId, (r) => r.filter((x) => x.outcome === "delivered").length >= 3);
    expect(recs[0]).toMatchObject({ n: 1, attempt: 1, status: null, outcome: "retrying", error: expect.stringMatching(/no answer within \d+ ms/) });
    expect(recs.filter((r) => r.outcome === "delivered").map((r) => r.n)).toEqual([1, 2, 3]);
  });

  it("gives a push up after MAX_ATTEMPTS attempts, goes on with the next, and stops when the final update is given up too", async () => {
    const taskId = await finishedTask();
    const path = receiverPath();
    await control(path, { fail: MAX_ATTEMPTS, status: 500 });
    await attachPushConfig(env, scope, caller(), taskId, { id: "give-up", url: `${env.TEST_PUSH_URL}${path}` });
    const recs = await driveUntil(taskId, (r) => r.filter((x) => x.outcome === "delivered").length >= 2, 80);
    const first = recs.filter((r) => r.n === 1);
    expect(first).toHaveLength(MAX_ATTEMPTS);
    expect(first.at(-1)).toMatchObject({ attempt: MAX_ATTEMPTS, status: 500, outcome: "gave_up", retryAt: null });
    expect(recs.filter((r) => r.outcome === "delivered").map((r) => r.n)).toEqual([2, 3]);
    expect(await eventually(() => pushStub(env, taskId).status(scope.orgId), (s) => s?.done === true)).toMatchObject({ done: true });

    // a final update that cannot be delivered ends the object too
    const task2 = await finishedTask();
    const path2 = receiverPath();
    await control(path2, { fail: 1000, status: 503 });
    await attachPushConfig(env, scope, caller(), task2, { id: "never", url: `${env.TEST_PUSH_URL}${path2}` });
    const all = await driveUntil(task2, (r) => r.filter((x) => x.outcome === "gave_up").length >= 3, 200);
    expect(all.filter((r) => r.outcome === "gave_up").map((r) => r.n)).toEqual([1, 2, 3]);
    const st2 = await pushStub(env, task2).status(scope.orgId);
    expect(st2).toMatchObject({ ended: true, done: true, pending: {} });
    expect(await runInDurableObject(pushObject(task2), (_o, state) => state.storage.getAlarm())).toBe(st2!.purgeAt);
  });

  it("stops a config's pushes when it is deleted", async () => {
    const taskId = await finishedTask();
    const path = receiverPath();
    await control(path, { fail: 1000, status: 503 });
    await attachPushConfig(env, scope, caller(), taskId, { id: "doomed", url: `${env.TEST_PUSH_URL}${path}` });
    await driveUntil(taskId, (r) => r.length >= 2);
    expect(await deletePushConfig(env, scope, caller(), taskId, "doomed")).toBe(true);
    const before = (await received(path)).length;
    expect(await pushStub(env, taskId).status(scope.orgId)).toMatchObject({ pending: {} });
    await runDurableObjectAlarm(pushObject(taskId));
    expect((await received(path)).length).toBe(before);
    expect((await records(taskId)).at(-1)).toMatchObject({ n: 1, outcome: "dropped", error: "the config was deleted" });
    // nothing left to do: the records are kept until the retention ends
    const st = await pushStub(env, taskId).status(scope.orgId);
    expect(st).toMatchObject({ pending: {}, purgeAt: expect.any(Number) });
    expect(await runInDurableObject(pushObject(taskId), (_o, state) => state.storage.getAlarm())).toBe(st!.purgeAt);
  });

  it("drops a config deleted from D1 behind the object's back before its next push", async () => {
    const taskId = await finishedTask();
    const path = receiverPath();
    await control(path, { fail: 1000, status: 503 });
    await attachPushConfig(env, scope, caller(), taskId, { id: "gone", url: `${env.TEST_PUSH_URL}${path}` });
    await driveUntil(taskId, (r) => r.length >= 1);
    await env.DB.prepare("DELETE FROM push_configs WHERE run_id = ?").bind(taskId).run();
    const before = (await received(path)).length;
    await runDurableObjectAlarm(pushObject(taskId));
    expect((await received(path)).length).toBe(before);
    expect(await pushStub(env, taskId).status(scope.orgId)).toMatchObject({ pending: {} });
  });
});

describe("push URLs and credentials", () => {
  async function putSecret(name: string, value: string, allowedHosts: string[]) {
    const res = await orgFetch(ORG, `/secrets/${name}`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ value, allowedHosts }) });
    expect(res.status).toBe(200);
  }

  it("sends an org secret named as credentials only to its allowed hosts", async () => {
    const taskId = await finishedTask();
    const path = receiverPath();
    await putSecret("PUSH_HOOK_KEY", "s3cret-hook-value", ["127.0.0.1"]);
    await putSecret("PUSH_ELSEWHERE", "other-value", ["hooks.example.com"]);
    const url = `${env.TEST_PUSH_URL}${path}`;

    // not allowed to this host, unknown, or not usable by the caller: refused when made
    await expect(createPushConfig(env, scope, caller(), taskId, { url, authentication: { scheme: "Bearer", credentials: "secret:PUSH_ELSEWHERE" } })).rejects.toMatchObject({
      code: "invalid_config",
      message: expect.stringContaining("may not be sent to 127.0.0.1"),
    });
    await expect(createPushConfig(env, scope, caller(), taskId, { url, authentication: { scheme: "Bearer", credentials: "secret:NO_SUCH" } })).rejects.toMatchObject({ code: "invalid_config" });
    await expect(createPushConfig(env, scope, caller({ use: false }), taskId, { url, authentication: { scheme: "Bearer", credentials: "secret:PUSH_HOOK_KEY" } })).rejects.toMatchObject({
      code: "invalid_config",
      message: expect.stringContaining("no secret named 'PUSH_HOOK_KEY' that you may use"),
    });

    const made = await attachPushConfig(env, scope, caller(), taskId, { id: "sec", url, authentication: { scheme: "Bearer", credentials: "secret:PUSH_HOOK_KEY" } });
    expect(renderPushConfig("1.0", made)).toMatchObject({ authentication: { scheme: "Bearer", credentials: "secret:PUSH_HOOK_KEY" } });
    const row = await env.DB.prepare("SELECT * FROM push_configs WHERE run_id = ?").bind(taskId).first<Record<string, unknown>>();
    expect(JSON.stringify(row)).not.toContain("s3cret-hook-value");
    const got = await eventually(() => received(path), (r) => r.length >= 3);
    expect(got.map((r) => r.headers.authorization)).toEqual(Array(3).fill("Bearer s3cret-hook-value"));
    expect(JSON.stringify(await records(taskId))).not.toContain("s3cret-hook-value");

    // a config whose secret's hosts no longer cover its URL (they changed after it was made):
    // checked again at sending, nothing leaves
    const task2 = await finishedTask();
    const path2 = receiverPath();
    await env.DB.prepare("INSERT INTO push_configs (org_id, run_id, id, url, auth_scheme, auth_secret, from_seq) VALUES (?, ?, 'moved', ?, 'Bearer', 'PUSH_ELSEWHERE', 0)")
      .bind(scope.orgId, task2, `${env.TEST_PUSH_URL}${path2}`)
      .run();
    await pushStub(env, task2).wake(scope.orgId, task2, 0);
    const recs = await driveUntil(task2, (r) => r.length >= 2);
    expect(recs[0]).toMatchObject({ n: 1, status: null, outcome: "retrying", error: expect.stringContaining("may not be sent to 127.0.0.1") });
    expect(JSON.stringify(recs)).not.toContain("other-value");
    expect(await received(path2)).toEqual([]);
  });

  it("follows no redirect with a token or credentials in the request", async () => {
    const taskId = await finishedTask();
    const path = receiverPath();
    const url = `${env.TEST_PUSH_URL}/__redirect?to=${encodeURIComponent(`${env.TEST_PUSH_URL}${path}`)}`;
    await attachPushConfig(env, scope, caller(), taskId, { id: "redir", url, token: "tok-redirect" });
    const recs = await driveUntil(taskId, (r) => r.length >= 1);
    expect(recs[0]).toMatchObject({ status: 307, outcome: "retrying", error: "HTTP 307 (redirects are not followed)" });
    expect(await received(path)).toEqual([]);
  });

  it("holds push URLs to the outbound URL policy: in production https to public hosts only", async () => {
    const taskId = await finishedTask();
    const production = { ...env, SHAMAN_ENV: "production", SHAMAN_SECRETS_KEY: btoa("0123456789abcdef0123456789abcdef") } as Env;
    for (const url of [`${env.TEST_PUSH_URL}/x`, "http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/x", "https://localhost/x", "https://[::1]/x"]) {
      await expect(createPushConfig(production, scope, caller(), taskId, { url }), url).rejects.toMatchObject({ code: "invalid_config", message: expect.stringMatching(/^url: /) });
    }
    const ok = await createPushConfig(production, scope, caller(), taskId, { id: "public", url: "https://hooks.example.com/a2a" });
    expect(ok.url).toBe("https://hooks.example.com/a2a");
  });
});

describe("push of a running task", () => {
  it("pushes the updates after the config was made, handed over by the run object as they happen", async () => {
    const invoice = "Invoice INV-77 from Globex: 10 x servers at 125 EUR, Total: EUR 1,250.00";
    const r = await rpc(ORG, "ProcessInvoice", sendMessage(invoice));
    const task = r.body.result.task;
    expect(task.status.state).toBe("TASK_STATE_INPUT_REQUIRED");
    const path = receiverPath();
    await createPushConfig(env, scope, caller(), task.id, { id: "live", url: `${env.TEST_PUSH_URL}${path}`, token: "tok-live" });
    const events = async (after: number) => ((await (await orgFetch(ORG, `/runs/${task.id}/events?after=${after}`)).json()) as { events: RunEvent[] }).events;
    const seen = (await events(0)).length;

    const waiting = (await (await orgFetch(ORG, `/runs/${task.id}`)).json()) as any;
    const answered = await orgFetch(ORG, `/runs/${task.id}/input/${waiting.inputs[0].requestId}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ answer: "approved" }) });
    expect(answered.status).toBe(200);
    await eventually(() => events(0), (e) => e.some((x) => x.type === "run.completed"));
    expect(seen).toBeGreaterThan(0);

    const got = await eventually(() => received(path), (x) => x.length >= 3);
    // nothing from before the config: the task resumes, its answer, its end
    expect(kinds(got.map((x) => x.body))).toEqual(["status:TASK_STATE_WORKING", "artifact:result", "status:TASK_STATE_COMPLETED"]);
    expect(got.every((x) => x.headers["x-a2a-notification-token"] === "tok-live")).toBe(true);
    expect(await eventually(() => pushStub(env, task.id).status(scope.orgId), (s) => s?.done === true)).toMatchObject({ done: true });
  });

  it("wakes no push object for a task without configs", async () => {
    const taskId = await finishedTask();
    const { events } = (await (await orgFetch(ORG, `/runs/${taskId}/events?after=0`)).json()) as { events: RunEvent[] };
    for (const event of events) await notifyPush(env, scope.orgId, taskId, event);
    expect(await pushStub(env, taskId).status(scope.orgId)).toBeNull();
  });
});

/** Reads a whole SSE response: each event's id and data. */
async function readSse(res: Response): Promise<{ id: string | null; data: any }[]> {
  const text = await res.text();
  return text
    .split("\n\n")
    .map((block) => block.split("\n"))
    .filter((lines) => lines.some((l) => l.startsWith("data: ")))
    .map((lines) => ({
      id: lines.find((l) => l.startsWith("id: "))?.slice(4) ?? null,
      data: JSON.parse(lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n")),
    }));
}

/** Runs the push object's alarm until its status says `ok` (or gives the last status). */
async function driveStatus(runId: string, ok: (s: Awaited<ReturnType<ReturnType<typeof pushStub>["status"]>>) => boolean, rounds = 20) {
  for (let i = 0; i < rounds; i++) {
    const s = await pushStub(env, runId).status(scope.orgId);
    if (ok(s)) return s;
    await runDurableObjectAlarm(pushObject(runId));
    await new Promise((res) => setTimeout(res, 25));
  }
  return pushStub(env, runId).status(scope.orgId);
}

const storageOf = (runId: string) =>
  runInDurableObject(pushObject(runId), async (_o, state) => ({
    alarm: await state.storage.getAlarm(),
    state: state.storage.kv.get("state") ?? null,
    tables: state.storage.sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('queue', 'cursors', 'attempts')")
      .toArray()
      .map((r) => r.name),
  }));

describe("what is pushed", () => {
  for (const dialect of ["1.0", "0.3"] as const) {
    it(`${dialect}: a push body is exactly the SSE event of the same seq; the model's text as it streams is not pushed`, async () => {
      const path = receiverPath();
      const url = `${env.TEST_PUSH_URL}${path}`;
      const messageId = crypto.randomUUID();
      const request =
        dialect === "1.0"
          ? { jsonrpc: "2.0", id: "p-1", method: "SendStreamingMessage", params: { message: { messageId, role: "ROLE_USER", parts: [{ text: LONG }] }, configuration: { taskPushNotificationConfig: { url, token: "tok-sse" } } } }
          : { jsonrpc: "2.0", id: "p-1", method: "message/stream", params: { message: { kind: "message", messageId, role: "user", parts: [{ kind: "text", text: LONG }] }, configuration: { pushNotificationConfig: { url, token: "tok-sse" } } } };
      const res = await orgFetch(ORG, "/a2a/agents/Echo", {
        method: "POST",
        headers: { "content-type": "application/json", ...(dialect === "1.0" ? { "A2A-Version": "1.0" } : {}) },
        body: JSON.stringify(request),
      });
      expect(res.headers.get("content-type")).toBe("text/event-stream");
      const events = await readSse(res);
      // the Task first, then the updates, each with its run event's seq as id
      const [task, ...updates] = events.map((e) => ({ seq: Number(e.id), data: e.data.result }));
      expect(dialect === "1.0" ? Object.keys(task!.data) : [task!.data.kind]).toEqual(["task"]);
      const isModelText = (d: any) => (dialect === "1.0" ? d.artifactUpdate?.artifact?.name === "text" : d.kind === "artifact-update" && d.artifact.name === "text");
      expect(updates.filter((u) => isModelText(u.data)).length).toBeGreaterThan(1);
      const expected = updates.filter((u) => !isModelText(u.data));
      expect(kinds(expected.map((u) => JSON.stringify(u.data)))).toEqual(
        dialect === "1.0" ? ["status:TASK_STATE_WORKING", "artifact:result", "status:TASK_STATE_COMPLETED"] : ["status:working", "artifact:result", "status:completed:final"],
      );

      const got = await eventually(() => received(path), (r) => r.length >= expected.length);
      const pushes = got.map((r) => JSON.parse(r.body));
      expect(pushes).toEqual(expected.map((u) => u.data));
      const seqOf = (p: any) => (dialect === "1.0" ? (Object.values(p)[0] as any).metadata.shaman.seq : p.metadata.shaman.seq);
      expect(pushes.map(seqOf)).toEqual(expected.map((u) => u.seq));
      expect(got.every((r) => r.headers["x-a2a-notification-token"] === "tok-sse")).toBe(true);
    });
  }
});

describe("push records and retention", () => {
  it("keeps a finished task's records for the retention period, then deletes all its storage and the task's configs", async () => {
    const taskId = await finishedTask();
    const path = receiverPath();
    const url = `${env.TEST_PUSH_URL}${path}`;
    const before = Date.now();
    await attachPushConfig(env, scope, caller(), taskId, { id: "kept", url });
    const done = await eventually(() => pushStub(env, taskId).status(scope.orgId), (s) => s?.done === true);
    expect(done).toMatchObject({ ended: true, done: true, pending: {} });
    // the alarm is set for the end of the retention period, counted from when the pushes were over
    expect(done!.purgeAt).toBeGreaterThanOrEqual(before + PUSH_RETENTION_MS);
    expect(done!.purgeAt).toBeLessThanOrEqual(Date.now() + PUSH_RETENTION_MS);
    expect(await storageOf(taskId)).toMatchObject({ alarm: done!.purgeAt, tables: expect.arrayContaining(["queue", "cursors", "attempts"]) });
    expect(await records(taskId)).toHaveLength(3);

    // the retention ends (the alarm run early counts as its time)
    await runDurableObjectAlarm(pushObject(taskId));
    expect(await storageOf(taskId)).toEqual({ alarm: null, state: null, tables: [] });
    expect(await pushStub(env, taskId).deliveries(scope.orgId)).toBeNull();
    expect(await pushStub(env, taskId).status(scope.orgId)).toBeNull();
    const shown = await orgFetch(ORG, `/runs/${taskId}/push-deliveries`);
    expect(await shown.json()).toEqual({ deliveries: [], next: null });
    // the finished task's configs went with them
    expect(await listPushConfigs(env, scope, caller(), taskId)).toEqual([]);

    // a config made afterwards covers the (finished) task from then on: nothing is sent again
    await createPushConfig(env, scope, caller(), taskId, { id: "late", url: `${url}/late` });
    await driveStatus(taskId, (s) => s?.done === true);
    expect(await received(path)).toHaveLength(3);
    expect(await pushStub(env, taskId).status(scope.orgId)).toMatchObject({ done: true, purgeAt: expect.any(Number) });
  });

  it("stops a running task's pushes when its config is deleted, and deletes the object's storage after the retention", async () => {
    const invoice = "Invoice INV-78 from Globex: 2 x racks at 900 EUR, Total: EUR 1,800.00";
    const r = await rpc(ORG, "ProcessInvoice", sendMessage(invoice));
    const task = r.body.result.task;
    expect(task.status.state).toBe("TASK_STATE_INPUT_REQUIRED");
    const path = receiverPath();
    await createPushConfig(env, scope, caller(), task.id, { id: "short-lived", url: `${env.TEST_PUSH_URL}${path}`, token: "tok-del" });
    expect(await deletePushConfig(env, scope, caller(), task.id, "short-lived")).toBe(true);

    const waiting = (await (await orgFetch(ORG, `/runs/${task.id}`)).json()) as any;
    const answered = await orgFetch(ORG, `/runs/${task.id}/input/${waiting.inputs[0].requestId}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ answer: "approved" }) });
    expect(answered.status).toBe(200);
    const events = await eventually(
      async () => ((await (await orgFetch(ORG, `/runs/${task.id}/events?after=0`)).json()) as { events: RunEvent[] }).events,
      (e) => e.some((x) => x.type === "run.completed"),
    );
    // The task once had a config, so the run's last events still wake its push object (it
    // finds none): wait for the wake of the final event, then for the alarms it armed.
    const completedSeq = events.find((x) => x.type === "run.completed")!.seq;
    await eventually(async () => ((await storageOf(task.id)).state as { knownSeq?: number } | null)?.knownSeq ?? 0, (k) => k >= completedSeq);
    let idle = await pushStub(env, task.id).status(scope.orgId);
    for (let i = 0; i < 20 && !(typeof idle?.purgeAt === "number" && (await storageOf(task.id)).alarm === idle.purgeAt); i++) {
      await runDurableObjectAlarm(pushObject(task.id));
      idle = await pushStub(env, task.id).status(scope.orgId);
    }

    // no config left: nothing is pushed, and the object waits only for the end of its retention
    expect(idle).toMatchObject({ ended: false, pending: {}, purgeAt: expect.any(Number) });
    expect((await storageOf(task.id)).alarm).toBe(idle!.purgeAt);
    expect(await received(path)).toEqual([]);
    await runDurableObjectAlarm(pushObject(task.id));
    expect(await storageOf(task.id)).toEqual({ alarm: null, state: null, tables: [] });
    expect(await received(path)).toEqual([]);
  });

  it("keeps the newest MAX_RECORDS_PER_CONFIG delivery records of each config", async () => {
    const taskId = await finishedTask();
    const path = receiverPath();
    await control(path, { fail: 1000, status: 503 });
    await attachPushConfig(env, scope, caller(), taskId, { id: "capped", url: `${env.TEST_PUSH_URL}${path}/capped` });
    await attachPushConfig(env, scope, caller(), taskId, { id: "neighbour", url: `${env.TEST_PUSH_URL}${path}/neighbour` });
    const first = await driveUntil(taskId, (r) => r.some((x) => x.configId === "capped") && r.some((x) => x.configId === "neighbour"));
    const oldest = first.find((x) => x.configId === "capped")!;
    const neighbours = first.filter((x) => x.configId === "neighbour").length;
    // as if the config had been tried for a long time: older attempts up to the cap
    await runInDurableObject(pushObject(taskId), (_o, state) => {
      for (let i = 0; i < MAX_RECORDS_PER_CONFIG; i++) {
        state.storage.sql.exec("INSERT INTO attempts (config_id, seq, n, attempt, at, status, error, outcome, retry_at) VALUES ('capped', 0, 0, ?, 0, 503, 'filler', 'retrying', NULL)", i + 1);
      }
    });
    const count = async (configId: string) => (await pushStub(env, taskId).deliveries(scope.orgId, { configId }))!.length;
    expect(await count("capped")).toBe(MAX_RECORDS_PER_CONFIG + 1);
    // the next attempt of the config makes room
    await driveUntil(taskId, (r) => r.some((x) => x.configId === "capped" && x.n === 1 && x.attempt === 2));
    const capped = (await pushStub(env, taskId).deliveries(scope.orgId, { configId: "capped" }))!;
    expect(capped).toHaveLength(MAX_RECORDS_PER_CONFIG);
    expect(capped.some((x) => x.id === oldest.id)).toBe(false);
    expect(capped.at(-1)).toMatchObject({ configId: "capped", n: 1, attempt: 2, status: 503 });
    // another config's records are its own
    expect(await count("neighbour")).toBeGreaterThanOrEqual(neighbours);
  });

  it("records a delivery error without a token, credential, secret or URL query", () => {
    const url = "https://hooks.example.com/a2a?key=q-secret-1#frag-2";
    expect(redactError(`POST ${url} failed: tok-1 was refused, Bearer cred-1`, url, ["tok-1", "cred-1", null])).toBe(
      "POST https://hooks.example.com/a2a failed: [redacted] was refused, Bearer [redacted]",
    );
    expect(redactError("the server said key=q-secret-1", url, [])).toBe("the server said [redacted]");
    expect(redactError("HTTP 503", url, ["tok-1"])).toBe("HTTP 503");
  });
});

describe("GET /runs/{id}/push-deliveries", () => {
  it("shows a task's delivery records, page by page and per config, never a token, credential or URL query", async () => {
    const taskId = await finishedTask();
    const path = receiverPath();
    await attachPushConfig(env, scope, caller(), taskId, { id: "a", url: `${env.TEST_PUSH_URL}${path}/a?key=q-secret-a`, token: "tok-route", authentication: { scheme: "Bearer", credentials: "cred-route" } });
    await attachPushConfig(env, scope, caller({ dialect: "0.3" }), taskId, { pushNotificationConfig: { id: "b", url: `${env.TEST_PUSH_URL}${path}/b` } });
    await eventually(() => records(taskId), (r) => r.length >= 6);

    const res = await orgFetch(ORG, `/runs/${taskId}/push-deliveries`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toMatch(/tok-route|cred-route|q-secret-a/);
    const all = JSON.parse(text) as { deliveries: any[]; next: number | null };
    expect(all.next).toBeNull();
    expect(all.deliveries).toHaveLength(6);
    for (const d of all.deliveries) {
      expect(d).toEqual({
        id: expect.any(Number),
        configId: expect.stringMatching(/^[ab]$/),
        seq: expect.any(Number),
        n: expect.any(Number),
        attempt: 1,
        at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        status: 200,
        error: null,
        outcome: "delivered",
        retryAt: null,
      });
    }
    expect(all.deliveries.filter((d) => d.configId === "a").map((d) => d.n)).toEqual([1, 2, 3]);

    // pages
    const page1 = (await (await orgFetch(ORG, `/runs/${taskId}/push-deliveries?limit=4`)).json()) as typeof all;
    expect(page1.deliveries).toHaveLength(4);
    expect(page1.next).toBe(page1.deliveries[3].id);
    const page2 = (await (await orgFetch(ORG, `/runs/${taskId}/push-deliveries?limit=4&after=${page1.next}`)).json()) as typeof all;
    expect(page2).toMatchObject({ next: null });
    expect([...page1.deliveries, ...page2.deliveries]).toEqual(all.deliveries);

    // one config
    const onlyB = (await (await orgFetch(ORG, `/runs/${taskId}/push-deliveries?configId=b`)).json()) as typeof all;
    expect(onlyB.deliveries.map((d) => d.configId)).toEqual(["b", "b", "b"]);

    // bad parameters: a problem body
    for (const q of ["limit=0", "limit=501", "limit=x", "after=-1", "configId=bad%20id!"]) {
      const bad = await orgFetch(ORG, `/runs/${taskId}/push-deliveries?${q}`);
      expect(bad.status, q).toBe(400);
      expect(bad.headers.get("content-type")).toBe("application/problem+json");
    }

    // a run without pushes has none; a missing run, a malformed id and another org's run are alike
    const plain = await finishedTask();
    expect(await (await orgFetch(ORG, `/runs/${plain}/push-deliveries`)).json()).toEqual({ deliveries: [], next: null });
    // and reading them made no tables in its push object
    expect(await storageOf(plain)).toEqual({ alarm: null, state: null, tables: [] });
    const notFound = async (slug: string, id: string) => {
      const r = await orgFetch(slug, `/runs/${id}/push-deliveries`);
      const body = (await r.json()) as Record<string, unknown>;
      return { status: r.status, body: { ...body, requestId: undefined } };
    };
    const missing = await notFound(ORG, crypto.randomUUID());
    expect(missing.status).toBe(404);
    expect(await notFound(ORG, "not-a-uuid")).toEqual(missing);
    expect(await notFound(OTHER, taskId)).toEqual(missing);
  });
});
