/**
 * MCP tools (issue 10, item 1), against real servers on 127.0.0.1: server-everything (the
 * 2025 session protocol) behind a counting proxy, and the SDK v2 stateless server of the
 * 2026-07-28 revision (test/servers/mcp-stateless.ts). Each test uses its own server path,
 * so its request counts are its own.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseAgentFile } from "../src/agents/format";
import { mirrorUser, addMember } from "../src/auth/users";
import { assignUserRole, clearPolicyCache, grantUserPermission } from "../src/authz/builtin";
import { db } from "../src/db/client";
import { orgBySlug } from "../src/db/orgs";
import type { OrgScope } from "../src/db/scope";
import { agentMcpServers, callMcpTool, clearMcpCaches, mcpServerInfo, mcpToolset, mcpToolsForModel, type McpServerSpec } from "../src/mcp";
import { MODEL_TOOL_NAME, namespaceTools } from "../src/mcp/naming";
import { bootstrapOrg, eventually, orgFetch } from "./helpers";

const ORG = "mcp";
let scope: OrgScope;
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const everything = (name: string): McpServerSpec => ({ name: "everything", url: `${env.TEST_MCP_EVERYTHING_URL}/p/${name}` });
const stateless = (name: string, kind = "mcp"): McpServerSpec => ({ name: "stateless", url: `${env.TEST_MCP_STATELESS_URL}/${kind}/${name}` });

async function everythingStats(name: string): Promise<{ methods: Record<string, number>; requests: number; headers: Record<string, string>[] }> {
  return (await fetch(`${env.TEST_MCP_EVERYTHING_URL}/__stats?name=${name}`)).json();
}
async function statelessStats(path: string): Promise<{ methods: Record<string, number>; calls: { tool: string; traceparent: string | null; headers: Record<string, string> }[] }> {
  return (await fetch(`${env.TEST_MCP_STATELESS_URL}/__stats?path=${encodeURIComponent(path)}`)).json();
}
const call = (spec: McpServerSpec, tool: string, args: Record<string, unknown>, timeoutMs?: number) =>
  callMcpTool(env, scope, spec, tool, args as never, { callId: crypto.randomUUID(), traceparent: TRACEPARENT, ...(timeoutMs ? { timeoutMs } : {}) });

const json = (body: unknown, method = "PUT", key?: string) => ({
  method,
  headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
  body: JSON.stringify(body),
});

/** A URL on 127.0.0.1 where nothing listens. */
async function deadUrl(): Promise<string> {
  return "http://127.0.0.1:9/mcp";
}

beforeAll(async () => {
  await bootstrapOrg(ORG);
  scope = (await orgBySlug(db(env), ORG))!;
});

beforeEach(() => clearMcpCaches());

describe("protocol negotiation", () => {
  it("speaks the stateless 2026-07-28 revision to a modern server (no session)", async () => {
    const info = await mcpServerInfo(env, scope, stateless("nego"));
    expect(info).toEqual({ ok: true, era: "modern", protocolVersion: "2026-07-28", sessionId: undefined });
    const stats = await statelessStats("/mcp/nego");
    expect(stats.methods["server/discover"]).toBe(1);
    expect(stats.methods.initialize).toBeUndefined();
  });

  it("falls back to the 2025-11-25 session protocol with server-everything", async () => {
    const info = await mcpServerInfo(env, scope, everything("nego"));
    expect(info.ok).toBe(true);
    if (!info.ok) return;
    expect(info.era).toBe("legacy");
    expect(info.protocolVersion).toBe("2025-11-25");
    expect(info.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await everythingStats("nego")).methods.initialize).toBe(1);
  });

  it("keeps the session or discovery: a second call does not negotiate again", async () => {
    for (const spec of [everything("reuse"), stateless("reuse")]) {
      expect((await call(spec, "echo", { message: "one" })).ok).toBe(true);
      expect((await call(spec, "echo", { message: "two" })).ok).toBe(true);
    }
    const e = await everythingStats("reuse");
    expect(e.methods.initialize).toBe(1);
    expect(e.methods["tools/call"]).toBe(2);
    // the standalone GET stream is never opened (a Worker keeps no stream across requests)
    expect(e.headers.filter((h) => h["mcp-session-id"] && !h["content-type"])).toEqual([]);
    const s = await statelessStats("/mcp/reuse");
    expect(s.methods["server/discover"]).toBe(1);
    expect(s.methods["tools/call"]).toBe(2);
  });

  it("a connection opened while serving one request is used by the next (another I/O context)", async () => {
    for (const spec of [everything("contexts"), stateless("contexts")]) {
      expect((await call(spec, "echo", { message: "from the test" })).ok).toBe(true);
      // a Durable Object's request is another I/O context of the same isolate, as the next queue batch is
      const stub = env.RATE_LIMITER.get(env.RATE_LIMITER.idFromName(`mcp-${crypto.randomUUID()}`));
      const inside = await runInDurableObject(stub, () => call(spec, "echo", { message: "from the object" }));
      expect(inside.ok).toBe(true);
      expect((await call(spec, "echo", { message: "back in the test" })).ok).toBe(true);
    }
    expect((await everythingStats("contexts")).methods).toMatchObject({ initialize: 1, "tools/call": 3 });
    expect((await statelessStats("/mcp/contexts")).methods).toMatchObject({ "server/discover": 1, "tools/call": 3 });
  });

  it("re-establishes a session the server has dropped, once, and the call goes through", async () => {
    const spec = everything("dead-session");
    const info = await mcpServerInfo(env, scope, spec);
    if (!info.ok) throw new Error(info.error);
    // the server forgets the session (as after a restart)
    const del = await fetch(spec.url, { method: "DELETE", headers: { "mcp-session-id": info.sessionId!, "mcp-protocol-version": info.protocolVersion } });
    expect(del.status).toBe(200);
    const res = await call(spec, "echo", { message: "after" });
    expect(res).toEqual({ ok: true, result: { content: ["Echo: after"] } });
    expect((await everythingStats("dead-session")).methods.initialize).toBe(2);
    const again = await mcpServerInfo(env, scope, spec);
    expect(again.ok && again.sessionId).not.toBe(info.sessionId);
  });
});

describe("tool lists", () => {
  it("are cached per server: a second listing makes no request (server-everything: the default ttl)", async () => {
    const a = await mcpToolset(env, scope, [everything("list-cache")]);
    const b = await mcpToolset(env, scope, [everything("list-cache")]);
    expect(a.problems).toEqual([]);
    expect(b.tools.map((t) => t.name)).toEqual(a.tools.map((t) => t.name));
    expect(a.tools.map((t) => t.tool)).toContain("get-structured-content");
    expect((await everythingStats("list-cache")).methods["tools/list"]).toBe(1);
  });

  it("honour the server's ttlMs: 300 s is kept, 0 (immediately stale) is listed again", async () => {
    await mcpToolset(env, scope, [stateless("ttl")]);
    await mcpToolset(env, scope, [stateless("ttl")]);
    expect((await statelessStats("/mcp/ttl")).methods["tools/list"]).toBe(1);
    await mcpToolset(env, scope, [stateless("ttl", "fresh")]);
    await mcpToolset(env, scope, [stateless("ttl", "fresh")]);
    expect((await statelessStats("/fresh/ttl")).methods["tools/list"]).toBe(2);
  });

  it("namespace tools per server, so two servers' `echo` do not collide", async () => {
    const { tools, problems } = await mcpToolset(env, scope, [everything("ns"), stateless("ns")]);
    expect(problems).toEqual([]);
    const echoes = tools.filter((t) => t.tool === "echo");
    expect(echoes.map((t) => t.name).sort()).toEqual(["everything__echo", "stateless__echo"]);
    expect(new Set(tools.map((t) => t.name)).size).toBe(tools.length);
    for (const t of tools) expect(t.name).toMatch(MODEL_TOOL_NAME);
    const set = mcpToolsForModel(tools);
    expect(Object.keys(set).sort()).toEqual(tools.map((t) => t.name).sort());
    expect(set.stateless__echo!.execute).toBeUndefined();
  });

  it("names stay model-safe and unique after sanitizing and truncation, and do not depend on order", () => {
    const long = "x".repeat(80);
    const pairs = [
      { server: "a__b", tool: "c" },
      { server: "a", tool: "b__c" },
      { server: "srv", tool: "weird.name/with spaces" },
      { server: "srv", tool: "weird_name_with_spaces" },
      { server: "long", tool: `${long}1` },
      { server: "long", tool: `${long}2` },
      { server: "plain", tool: "echo" },
    ];
    const names = namespaceTools(pairs);
    for (const n of names) expect(n).toMatch(MODEL_TOOL_NAME);
    expect(new Set(names).size).toBe(names.length);
    expect(names[6]).toBe("plain__echo");
    expect(names[3]).not.toBe("srv__weird_name_with_spaces");
    const reversed = namespaceTools([...pairs].reverse());
    expect(reversed.reverse()).toEqual(names);
  });

  it("offer only the allowed tools; an allowed tool the server lacks is a problem", async () => {
    const { tools, problems } = await mcpToolset(env, scope, [{ ...stateless("allowed"), tools: ["echo", "weather", "nope"] }]);
    expect(tools.map((t) => t.tool).sort()).toEqual(["echo", "weather"]);
    expect(problems).toEqual(["MCP server 'stateless' has no tool 'nope'"]);
    const denied = await callMcpTool(env, scope, { ...stateless("allowed"), tools: ["echo"] }, "counter", { key: "allowed" }, { callId: "c1", traceparent: TRACEPARENT });
    expect(denied).toMatchObject({ ok: false, transient: false });
    expect((await (await fetch(`${env.TEST_MCP_STATELESS_URL}/__counter?key=allowed`)).json()) as any).toEqual({ count: 0 });
  });

  it("mark destructive tools and the ones listed in requireApproval as needing approval", async () => {
    const { tools } = await mcpToolset(env, scope, [{ ...stateless("approval"), requireApproval: ["counter"] }]);
    const by = Object.fromEntries(tools.map((t) => [t.tool, t]));
    expect(by.delete_everything).toMatchObject({ destructive: true, requiresApproval: true });
    expect(by.counter).toMatchObject({ destructive: false, requiresApproval: true });
    expect(by.echo).toMatchObject({ destructive: false, requiresApproval: false });
    expect(by.delete_everything!.description).toContain("must approve");
    const all = await mcpToolset(env, scope, [{ ...stateless("approval"), requireApproval: ["*"] }]);
    expect(all.tools.every((t) => t.requiresApproval)).toBe(true);
  });

  it("a server that is down, or answers garbage, is a problem, not a throw", async () => {
    const { tools, problems } = await mcpToolset(env, scope, [
      { name: "down", url: await deadUrl() },
      { name: "garbage", url: `${env.TEST_MCP_STATELESS_URL}/garbage/list` },
      stateless("partial"),
    ]);
    expect(tools.length).toBeGreaterThan(0);
    expect(tools.every((t) => t.server === "stateless")).toBe(true);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^MCP server 'down' could not be reached/);
    expect(problems[1]).toMatch(/^MCP server 'garbage' answered something that is not MCP/);
  });
});

describe("calling a tool", () => {
  it("returns text content, and structured content as it came (both eras)", async () => {
    expect(await call(stateless("text"), "echo", { message: "hi" })).toEqual({ ok: true, result: { content: ["stateless echo: hi"] } });
    const weather = await call(stateless("structured"), "weather", { city: "Lyon" });
    expect(weather).toEqual({
      ok: true,
      result: { content: [JSON.stringify({ city: "Lyon", temperature: 21.5, conditions: "Sunny" })], structuredContent: { city: "Lyon", temperature: 21.5, conditions: "Sunny" } },
    });
    const image = await call(everything("structured"), "get-tiny-image", {});
    expect(image.ok && (image.result as any).content).toContain("[image image/png]");
    const legacy = await call(everything("structured"), "get-structured-content", { location: "Chicago" });
    expect(legacy.ok && (legacy.result as any).structuredContent).toEqual({ temperature: 36, conditions: "Light rain / drizzle", humidity: 82 });
  });

  it("sends traceparent in _meta; the server sees it", async () => {
    await call(stateless("trace"), "echo", { message: "traced" });
    const stats = await statelessStats("/mcp/trace");
    expect(stats.calls.map((c) => c.traceparent)).toEqual([TRACEPARENT]);
  });

  it("a slow tool times out as a transient error (both eras)", async () => {
    const slow = await call(stateless("slow"), "slow", { ms: 5_000 }, 300);
    expect(slow).toEqual({ ok: false, error: "MCP server 'stateless' did not answer within 300 ms", transient: true, maybeExecuted: true });
    const legacy = await call(everything("slow"), "trigger-long-running-operation", { duration: 5, steps: 1 }, 300);
    expect(legacy).toMatchObject({ ok: false, transient: true, maybeExecuted: true });
    // the connection is still good afterwards
    expect((await call(everything("slow"), "echo", { message: "still there" })).ok).toBe(true);
  });

  it("a server that is not there is a transient error, not a throw", async () => {
    const res = await call({ name: "down", url: await deadUrl() }, "echo", { message: "x" }, 5_000);
    expect(res).toMatchObject({ ok: false, transient: true, maybeExecuted: false });
    expect((res as { error: string }).error).toMatch(/^MCP server 'down' could not be reached/);
  });

  it("a server that stops after the connection was made: a transient error, then a fresh connection once it is back", async () => {
    const spec = stateless("stops");
    expect((await call(spec, "echo", { message: "up" })).ok).toBe(true);
    await fetch(`${env.TEST_MCP_STATELESS_URL}/__down?path=/mcp/stops&down=1`);
    const res = await call(spec, "echo", { message: "down" }, 5_000);
    expect(res).toMatchObject({ ok: false, transient: true });
    expect((res as { error: string }).error).toMatch(/^MCP server 'stateless' could not be reached/);
    const listed = await mcpToolset(env, scope, [{ ...spec, name: "stops" }]);
    expect(listed.tools).toEqual([]);
    expect(listed.problems).toEqual([expect.stringMatching(/^MCP server 'stops' could not be reached: .*; its tools are not available this turn$/)]);
    await fetch(`${env.TEST_MCP_STATELESS_URL}/__down?path=/mcp/stops&down=0`);
    expect((await call(spec, "echo", { message: "back" })).ok).toBe(true);
    expect((await statelessStats("/mcp/stops")).methods["server/discover"]).toBe(2);
  });

  it("garbage answers and isError results are tool errors", async () => {
    const garbage = await call(stateless("g", "garbage-calls"), "echo", { message: "x" });
    expect(garbage).toMatchObject({ ok: false, transient: false });
    expect((garbage as { error: string }).error).toMatch(/^MCP server 'stateless'/);
    const broken = await call(stateless("broken"), "broken", {});
    expect(broken).toEqual({ ok: false, error: "the tool 'broken' of MCP server 'stateless' failed: the broken tool failed on purpose", transient: false, maybeExecuted: true });
    const unknownTool = await call(stateless("broken"), "no_such_tool", {});
    expect(unknownTool).toEqual({ ok: false, error: "MCP server 'stateless' answered with an error: Tool no_such_tool not found (JSON-RPC -32602)", transient: false, maybeExecuted: false });
  });

  it("runs the counter once per call (the side endpoint counts executions)", async () => {
    const key = `once-${crypto.randomUUID()}`;
    const res = await call(stateless("counter"), "counter", { key });
    expect(res).toEqual({ ok: true, result: { content: ["count 1"], structuredContent: { key, count: 1 } } });
    expect(await (await fetch(`${env.TEST_MCP_STATELESS_URL}/__counter?key=${key}`)).json()).toEqual({ count: 1 });
  });
});

describe("credentials", () => {
  beforeAll(async () => {
    const host = new URL(env.TEST_MCP_STATELESS_URL).host;
    expect((await orgFetch(ORG, "/secrets/MCP_TOKEN", json({ value: "mcp-token-value-123", allowedHosts: [host] }))).status).toBe(200);
    expect((await orgFetch(ORG, "/secrets/MCP_KEY", json({ value: "mcp-key-value-456", allowedHosts: [host] }))).status).toBe(200);
    expect((await orgFetch(ORG, "/secrets/ELSEWHERE", json({ value: "elsewhere-value-789", allowedHosts: ["mcp.example.com"] }))).status).toBe(200);
  });

  it("sends header and bearer secrets to a host the secrets allow", async () => {
    const spec: McpServerSpec = { ...stateless("creds-ok"), headers: { "X-Api-Key": "MCP_KEY" }, bearerSecret: "MCP_TOKEN" };
    expect((await call(spec, "echo", { message: "with creds" })).ok).toBe(true);
    const seen = (await statelessStats("/mcp/creds-ok")).calls[0]!.headers;
    expect(seen.authorization).toBe("Bearer mcp-token-value-123");
    expect(seen["x-api-key"]).toBe("mcp-key-value-456");
  });

  it("sends nothing to a host a secret does not allow (neither the list nor the call)", async () => {
    const spec: McpServerSpec = { ...stateless("creds-refused"), headers: { "X-Api-Key": "ELSEWHERE" } };
    const res = await call(spec, "echo", { message: "x" });
    expect(res).toMatchObject({ ok: false, transient: false, maybeExecuted: false });
    expect((res as { error: string }).error).toContain("may not be sent to 127.0.0.1");
    const listed = await mcpToolset(env, scope, [spec]);
    expect(listed.tools).toEqual([]);
    expect(listed.problems[0]).toContain("may not be sent to");
    expect(await statelessStats("/mcp/creds-refused")).toEqual({ methods: {}, calls: [] });
    const missing = await call({ ...stateless("creds-missing"), bearerSecret: "NO_SUCH_SECRET" }, "echo", { message: "x" });
    expect(missing).toMatchObject({ ok: false, error: "MCP server 'stateless' needs the org secret 'NO_SUCH_SECRET', which does not exist", transient: false });
  });

  it("a connection is per credential: another secret value is another connection", async () => {
    const host = new URL(env.TEST_MCP_STATELESS_URL).host;
    const spec: McpServerSpec = { ...stateless("creds-rotate"), bearerSecret: "ROTATING" };
    expect((await orgFetch(ORG, "/secrets/ROTATING", json({ value: "first-value", allowedHosts: [host] }))).status).toBe(200);
    await call(spec, "echo", { message: "1" });
    expect((await orgFetch(ORG, "/secrets/ROTATING", json({ value: "second-value" }))).status).toBe(200);
    await call(spec, "echo", { message: "2" });
    const calls = (await statelessStats("/mcp/creds-rotate")).calls;
    expect(calls.map((c) => c.headers.authorization)).toEqual(["Bearer first-value", "Bearer second-value"]);
  });
});

describe("frontmatter", () => {
  const agent = (fm: string) => parseAgentFile("Agent.md", `---\n${fm}\n---\nYou are an agent.\n`);

  it("accepts the map form, registered names, and agent-level requireApproval", () => {
    const parsed = agent(
      [
        "mcpServers:",
        "  github: registered",
        "  notes:",
        "  local:",
        "    url: http://127.0.0.1:1234/mcp",
        "    headers: { X-Api-Key: LOCAL_KEY }",
        "    tools: [echo, weather]",
        "    requireApproval: [weather]",
        "    timeoutMs: 5000",
        "requireApproval: [github/create_issue]",
      ].join("\n"),
    );
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.agent.frontmatter.mcpServers).toEqual([
      { name: "github", registered: true },
      { name: "notes", registered: true },
      { name: "local", registered: false, url: "http://127.0.0.1:1234/mcp", headers: { "X-Api-Key": "LOCAL_KEY" }, tools: ["echo", "weather"], requireApproval: ["weather"], timeoutMs: 5000 },
    ]);
    expect(parsed.agent.frontmatter.requireApproval).toEqual(["github/create_issue"]);
    expect(parsed.warnings).toEqual([]);
  });

  it("keeps the list form (names and { name, url, secret, tools })", () => {
    const parsed = agent("mcpServers:\n  - github\n  - { name: files, url: https://files.example.com/mcp, secret: FILES_TOKEN, tools: [read] }");
    expect(parsed.ok && parsed.agent.frontmatter.mcpServers).toEqual([
      { name: "github", registered: true },
      { name: "files", registered: false, url: "https://files.example.com/mcp", tools: ["read"], bearerSecret: "FILES_TOKEN" },
    ]);
    const none = agent("description: none");
    expect(none.ok ? none.agent.frontmatter.mcpServers : none.error).toEqual([]);
  });

  it("refuses bad entries with a message and the line", () => {
    const cases: [string, RegExp][] = [
      ["mcpServers:\n  9bad: registered", /mcpServers\.9bad: an MCP server name/],
      ["mcpServers:\n  x:\n    url: not a url", /mcpServers\.x\.url/],
      ["mcpServers:\n  x:\n    url: https://a.example.com\n    headers: { Mcp-Session-Id: S }", /is set by the MCP transport itself/],
      ["mcpServers:\n  x:\n    url: https://a.example.com\n    headers: { X-Key: 'not a secret name' }", /mcpServers\.x\.headers\.X-Key: the value must be an org secret's name/],
      ["mcpServers:\n  x:\n    url: https://a.example.com\n    headers: { 'Bad Header': S }", /'Bad Header' is not a header name/],
      ["mcpServers:\n  x:\n    url: https://a.example.com\n    requireApprovals: [a]", /mcpServers\.x/],
      ["mcpServers:\n  x: 42", /expected "registered"/],
      ["mcpServers:\n  - a\n  - a", /named twice/],
    ];
    for (const [fm, message] of cases) {
      const parsed = agent(fm);
      expect(parsed.ok, fm).toBe(false);
      if (parsed.ok) continue;
      expect(parsed.error.message, fm).toMatch(message);
      expect(parsed.error.line, fm).toBe(2);
    }
  });
});

describe("an agent's servers", () => {
  beforeAll(async () => {
    const put = await orgFetch(ORG, "/mcp-servers/registered-one", json({ url: stateless("registered").url, tools: ["echo", "weather", "counter"], requireApproval: ["counter"], timeoutMs: 4000 }));
    expect(put.status).toBe(200);
  });

  it("resolves registered names (narrowed by the agent), inline servers, and reports unknown names", async () => {
    const parsed = parseAgentFile(
      "Agent.md",
      [
        "---",
        "mcpServers:",
        "  registered-one: { tools: [echo, counter, delete_everything] }",
        "  ghost: registered",
        `  inline: { url: "${everything("inline").url}", tools: [echo] }`,
        "requireApproval: [registered-one/echo, inline__echo]",
        "---",
        "Prompt.",
      ].join("\n"),
    );
    if (!parsed.ok) throw new Error(parsed.error.message);
    const { servers, problems } = await agentMcpServers(env, scope, parsed.agent.frontmatter);
    expect(problems).toEqual(["MCP server 'ghost' is not registered in this org (an admin registers it with PUT /mcp-servers/ghost); its tools are not available"]);
    expect(servers).toEqual([
      { name: "registered-one", url: stateless("registered").url, tools: ["echo", "counter"], requireApproval: ["counter", "echo"], timeoutMs: 4000 },
      { name: "inline", url: everything("inline").url, tools: ["echo"], requireApproval: ["inline__echo", "echo"] },
    ]);
    const { tools } = await mcpToolset(env, scope, servers);
    expect(tools.map((t) => [t.name, t.requiresApproval])).toEqual([
      ["registered-one__echo", true],
      ["registered-one__counter", true],
      ["inline__echo", true],
    ]);
  });

  it("refuses an inline URL the outbound policy forbids", async () => {
    const { servers, problems } = await agentMcpServers(env, scope, { mcpServers: [{ name: "creds-in-url", registered: false, url: "https://u:p@mcp.example.com/" }] });
    expect(servers).toEqual([]);
    expect(problems[0]).toMatch(/^MCP server 'creds-in-url': its url must not contain credentials/);
  });
});

describe("the org registry (/mcp-servers)", () => {
  let devKey = "";
  beforeAll(async () => {
    const dev = await mirrorUser(db(env), "dev", "dev@mcp.test", "dev@mcp.test");
    await addMember(db(env), scope, dev.id);
    await assignUserRole(db(env), scope, dev.id, "developer");
    await grantUserPermission(db(env), scope, dev.id, "/mcp-servers/*", "write");
    await grantUserPermission(db(env), scope, dev.id, "/mcp-servers/*", "read");
    clearPolicyCache();
    devKey = "dev:dev@mcp.test";
  });

  async function audit(prefix: string): Promise<any[]> {
    const res = await orgFetch(ORG, `/audit?actionPrefix=${prefix}`);
    return ((await res.json()) as any).entries;
  }

  it("puts, lists, gets, patches and deletes entries, each write audited", async () => {
    const put = await orgFetch(ORG, "/mcp-servers/docs", json({ url: "https://docs.example.com/mcp", headers: { "X-Api-Key": "MCP_KEY" }, tools: ["search"], description: "docs search" }));
    expect(put.status).toBe(200);
    const stored = ((await put.json()) as any).mcpServer;
    expect(stored).toMatchObject({ name: "docs", url: "https://docs.example.com/mcp", headers: { "X-Api-Key": "MCP_KEY" }, bearerSecret: null, tools: ["search"], requireApproval: [], timeoutMs: null, description: "docs search" });
    const listed = ((await (await orgFetch(ORG, "/mcp-servers")).json()) as any).mcpServers;
    expect(listed.map((s: any) => s.name)).toContain("docs");
    const patched = await orgFetch(ORG, "/mcp-servers/docs", json({ requireApproval: ["search"], timeoutMs: 5000 }, "PATCH"));
    expect(patched.status).toBe(200);
    expect(((await patched.json()) as any).mcpServer).toMatchObject({ url: "https://docs.example.com/mcp", tools: ["search"], requireApproval: ["search"], timeoutMs: 5000 });
    expect(((await (await orgFetch(ORG, "/mcp-servers/docs")).json()) as any).mcpServer.timeoutMs).toBe(5000);
    expect((await orgFetch(ORG, "/mcp-servers/docs", { method: "DELETE" })).status).toBe(204);
    expect((await orgFetch(ORG, "/mcp-servers/docs")).status).toBe(404);
    expect((await orgFetch(ORG, "/mcp-servers/docs", { method: "DELETE" })).status).toBe(404);
    expect((await orgFetch(ORG, "/mcp-servers/docs", json({ timeoutMs: 1000 }, "PATCH"))).status).toBe(404);
    const rows = await eventually(() => audit("mcp_server."), (r) => r.filter((e) => e.resource === "/mcp-servers/docs").length >= 3);
    const docs = rows.filter((e) => e.resource === "/mcp-servers/docs");
    expect(docs.map((e) => e.action)).toEqual(["mcp_server.delete", "mcp_server.patch", "mcp_server.put"]);
    expect(JSON.stringify(docs)).not.toContain("mcp-key-value-456");
  });

  it("validates entries", async () => {
    const cases: [string, unknown, number, RegExp][] = [
      ["bad", { url: "ftp://x.example.com" }, 400, /^url: must be an http\(s\) URL/],
      ["bad", { url: "https://u:p@x.example.com" }, 400, /^url: must not contain credentials/],
      ["9bad", { url: "https://x.example.com" }, 422, /^name:/],
      ["bad", { url: "https://x.example.com", headers: { "Mcp-Session-Id": "MCP_KEY" } }, 422, /^headers: 'Mcp-Session-Id' is set by the MCP transport/],
      ["bad", { url: "https://x.example.com", headers: { "X-Key": "not a name" } }, 422, /^headers: the value of 'X-Key'/],
      ["bad", { url: "https://x.example.com", timeoutMs: 10 }, 422, /^timeoutMs:/],
      ["bad", { url: "https://x.example.com", headers: { "X-Key": "NO_SUCH_SECRET" } }, 422, /^headers: the org has no secret named 'NO_SUCH_SECRET'/],
      ["bad", { url: "https://x.example.com", surprise: true }, 400, /surprise|unrecognized/i],
    ];
    for (const [name, body, status, detail] of cases) {
      const res = await orgFetch(ORG, `/mcp-servers/${name}`, json(body));
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(((await res.json()) as any).detail, JSON.stringify(body)).toMatch(detail);
    }
    expect((await orgFetch(ORG, "/mcp-servers/bad")).status).toBe(404);
  });

  it("naming a secret, or moving a server that carries one, needs `use` on the secret", async () => {
    const asDev = (body: unknown, method = "PUT") => ({ method, headers: { "content-type": "application/json", authorization: `Bearer ${devKey}` }, body: JSON.stringify(body) });
    // without secrets the developer (granted write on /mcp-servers) may register a server
    expect((await orgFetch(ORG, "/mcp-servers/devs", asDev({ url: "https://devs.example.com/mcp" }))).status).toBe(200);
    const named = await orgFetch(ORG, "/mcp-servers/devs", asDev({ url: "https://devs.example.com/mcp", bearerSecret: "MCP_TOKEN" }));
    expect(named.status).toBe(403);
    expect(((await named.json()) as any).detail).toBe("not allowed: use on /secrets/MCP_TOKEN");
    // the owner names it; the developer may change other fields but not the URL
    expect((await orgFetch(ORG, "/mcp-servers/devs", json({ url: "https://devs.example.com/mcp", bearerSecret: "MCP_TOKEN" }))).status).toBe(200);
    expect((await orgFetch(ORG, "/mcp-servers/devs", asDev({ description: "mine" }, "PATCH"))).status).toBe(200);
    expect((await orgFetch(ORG, "/mcp-servers/devs", asDev({ url: "https://steal.example.com/mcp" }, "PATCH"))).status).toBe(403);
    expect((await orgFetch(ORG, "/mcp-servers/devs", asDev({ headers: { "X-Api-Key": "MCP_KEY" } }, "PATCH"))).status).toBe(403);
    const after = ((await (await orgFetch(ORG, "/mcp-servers/devs")).json()) as any).mcpServer;
    expect(after).toMatchObject({ url: "https://devs.example.com/mcp", bearerSecret: "MCP_TOKEN", headers: {}, description: "mine" });
  });

  it("a registry change takes effect for agents in this isolate at once", async () => {
    expect((await orgFetch(ORG, "/mcp-servers/flip", json({ url: stateless("flip").url }))).status).toBe(200);
    const first = await agentMcpServers(env, scope, { mcpServers: [{ name: "flip", registered: true }] });
    expect(first.servers.map((s) => s.url)).toEqual([stateless("flip").url]);
    expect((await orgFetch(ORG, "/mcp-servers/flip", { method: "DELETE" })).status).toBe(204);
    const second = await agentMcpServers(env, scope, { mcpServers: [{ name: "flip", registered: true }] });
    expect(second.servers).toEqual([]);
    expect(second.problems).toHaveLength(1);
  });
});
