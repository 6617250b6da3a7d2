/**
 * The benchmark's local-only route (src/dev/bench.ts, POST /_dev/bench/mcp): refused like a
 * missing route unless SHAMAN_ENV=development and SHAMAN_DEV_BENCH=true; when on, the
 * router and the direct call reach the same tool of both test MCP servers (2025 sessions,
 * stateless 2026-07-28) and answer its result.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../workers/gateway";

const post = (e: Env, body: unknown) =>
  createApp().request("http://localhost/_dev/bench/mcp", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }, e);

const servers = () => [
  ["2025 session", `${env.TEST_MCP_EVERYTHING_URL}/p/dev-bench`, "Echo: hello bench"],
  ["2026 stateless", `${env.TEST_MCP_STATELESS_URL.replace(/\/mcp.*$/, "")}/mcp/dev-bench`, "stateless echo: hello bench"],
] as const;

describe("POST /_dev/bench/mcp", () => {
  it("is a missing route unless development with SHAMAN_DEV_BENCH=true", async () => {
    const body = { mode: "none", url: servers()[1][1], tool: "echo" };
    for (const e of [
      env, // the tests' local vars do not set SHAMAN_DEV_BENCH
      { ...env, SHAMAN_DEV_BENCH: "false" },
      { ...env, SHAMAN_ENV: "production", SHAMAN_DEV_BENCH: "true" },
    ]) {
      const res = await post(e as Env, body);
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
    }
    const on = await post({ ...env, SHAMAN_DEV_BENCH: "true" } as Env, body);
    expect(on.status).toBe(200);
    expect(await on.json()).toEqual({ ok: true, calls: 0, result: null });
  });

  it("calls the same tool through the router and directly, on both protocol generations", async () => {
    const on = { ...env, SHAMAN_DEV_BENCH: "true" } as Env;
    for (const [label, url, text] of servers()) {
      for (const mode of ["router", "direct"]) {
        const res = await post(on, { mode, url, tool: "echo", args: { message: "hello bench" }, calls: 3 });
        expect(res.status, `${label} ${mode}`).toBe(200);
        const out = (await res.json()) as { ok: boolean; calls: number; result: { content: unknown[] } };
        expect(out.ok).toBe(true);
        expect(out.calls).toBe(3);
        expect(JSON.stringify(out.result.content), `${label} ${mode}`).toContain(text);
      }
    }
    const stats = (await (await fetch(`${env.TEST_MCP_STATELESS_URL.replace(/\/mcp.*$/, "")}/__stats?path=/mcp/dev-bench`)).json()) as { methods: Record<string, number> };
    expect(stats.methods["tools/call"]).toBe(6);
  });

  it("answers a server that is down as a 502 with the error, not a 500", async () => {
    const on = { ...env, SHAMAN_DEV_BENCH: "true" } as Env;
    for (const mode of ["router", "direct"]) {
      const res = await post(on, { mode, url: "http://127.0.0.1:9/mcp", tool: "echo", args: { message: "x" } });
      expect(res.status, mode).toBe(502);
      expect(((await res.json()) as { ok: boolean }).ok).toBe(false);
    }
  });
});
