/**
 * Browsers on other origins (src/http/cors.ts, `/settings/cors`): nothing until the org lists
 * an origin; a listed origin gets its own origin back with credentials, on preflights
 * (answered before any credential) and on every answer, errors included; `"*"` is any origin
 * without credentials; one org's list never opens another org.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { eventually, orgFetch, seedOrg, worker } from "./helpers";

const A = "cors-a";
const B = "cors-b";
const DASH = "https://dash.example.com";
const json = (v: unknown) => JSON.stringify(v);

const putCors = (slug: string, body: unknown) => orgFetch(slug, "/settings/cors", { method: "PUT", headers: { "content-type": "application/json" }, body: json(body) });

/** A browser's preflight for an A2A JSON-RPC call with a bearer key: no credential is sent. */
const preflight = (slug: string, origin: string, path = "/a2a/agents/ProcessInvoice") =>
  worker.fetch(`http://${slug}.localhost${path}`, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type, a2a-version" },
  });

/** The call itself, from `origin`: GetTask of a task nobody has (a JSON-RPC error the page must read). */
const getTask = (slug: string, origin: string, headers: Record<string, string> = {}) =>
  orgFetch(slug, "/a2a/agents/ProcessInvoice", {
    method: "POST",
    headers: { origin, "content-type": "application/json", "a2a-version": "1.0", ...headers },
    body: json({ jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: crypto.randomUUID() } }),
  });

beforeAll(async () => {
  await seedOrg(A);
  await seedOrg(B);
});

describe("CORS for the org's browser origins", () => {
  it("answers no origin until the org lists it", async () => {
    const pre = await preflight(A, DASH);
    expect(pre.headers.get("access-control-allow-origin")).toBeNull();
    const call = await getTask(A, DASH);
    expect(call.status).toBe(200);
    expect(call.headers.get("access-control-allow-origin")).toBeNull();
    expect(((await call.json()) as any).error.code).toBe(-32001);
  });

  it("gives a listed origin its own origin back with credentials: preflights before any credential, answers and errors", async () => {
    const put = await putCors(A, { allowedOrigins: [DASH, "http://localhost:5173"] });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({ cors: { allowedOrigins: [DASH, "http://localhost:5173"] } });
    expect(await (await orgFetch(A, "/settings/cors")).json()).toEqual({ cors: { allowedOrigins: [DASH, "http://localhost:5173"] } });

    const pre = await preflight(A, DASH);
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe(DASH);
    expect(pre.headers.get("access-control-allow-credentials")).toBe("true");
    expect(pre.headers.get("access-control-allow-methods")).toContain("POST");
    const allowHeaders = pre.headers.get("access-control-allow-headers")!.toLowerCase();
    for (const h of ["authorization", "content-type", "a2a-version", "last-event-id", "x-session-token"]) expect(allowHeaders).toContain(h);
    expect(pre.headers.get("vary")).toContain("Origin");

    const call = await getTask(A, DASH);
    expect(((await call.json()) as any).error.code).toBe(-32001);
    expect(call.headers.get("access-control-allow-origin")).toBe(DASH);
    expect(call.headers.get("access-control-allow-credentials")).toBe("true");
    expect(call.headers.get("access-control-expose-headers")).toContain("X-Request-Id");
    expect(call.headers.get("vary")).toContain("Origin");

    // A failed authentication is readable by the page too.
    const denied = await getTask(A, DASH, { authorization: "Bearer sk_not_a_key" });
    expect(denied.status).toBe(401);
    expect(denied.headers.get("access-control-allow-origin")).toBe(DASH);
    // Other routes of the org, e.g. a run's WebSocket ticket or the run list, are covered alike.
    const runs = await orgFetch(A, "/usage", { headers: { origin: DASH } });
    expect(runs.status).toBe(200);
    expect(runs.headers.get("access-control-allow-origin")).toBe(DASH);

    // An origin not listed gets nothing, and the preflight is not answered for it.
    for (const other of ["https://evil.example.com", "https://dash.example.com.evil.example", "http://dash.example.com"]) {
      const p = await preflight(A, other);
      expect(p.headers.get("access-control-allow-origin"), other).toBeNull();
      expect((await getTask(A, other)).headers.get("access-control-allow-origin"), other).toBeNull();
    }

    // Another org did not list it: A's list opens nothing there.
    expect((await preflight(B, DASH)).headers.get("access-control-allow-origin")).toBeNull();
    expect((await getTask(B, DASH)).headers.get("access-control-allow-origin")).toBeNull();

    const rows = await eventually(
      async () => ((await (await orgFetch(A, "/audit?action=settings.cors.put")).json()) as { entries: any[] }).entries,
      (r) => r.length > 0,
    );
    expect(rows[0]).toMatchObject({ resource: "/settings/cors", outcome: "success" });
  });

  it("'*' lets any origin call but never with the session cookie", async () => {
    expect((await putCors(B, { allowedOrigins: ["*"] })).status).toBe(200);
    const pre = await preflight(B, "https://anywhere.example.org");
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe("*");
    expect(pre.headers.get("access-control-allow-credentials")).toBeNull();
    const call = await getTask(B, "https://anywhere.example.org");
    expect(call.headers.get("access-control-allow-origin")).toBe("*");
    expect(call.headers.get("access-control-allow-credentials")).toBeNull();
    // Public discovery keeps answering any origin as before.
    const card = await worker.fetch(`http://${B}.localhost/a2a/agents/ProcessInvoice/.well-known/agent-card.json`, { headers: { origin: "https://anywhere.example.org" } });
    expect(card.status).toBe(200);
    expect(card.headers.get("access-control-allow-origin")).toBe("*");
  });

  it("refuses what is not an origin, with a problem naming the field", async () => {
    for (const body of [{ allowedOrigins: ["dash.example.com"] }, { allowedOrigins: ["https://dash.example.com/app"] }, { allowedOrigins: ["HTTPS://DASH.EXAMPLE.COM"] }, { allowedOrigins: "*" }, { other: [] }]) {
      const res = await putCors(A, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
    }
    // Nothing was lost: the last good setting stands.
    expect(await (await orgFetch(A, "/settings/cors")).json()).toEqual({ cors: { allowedOrigins: [DASH, "http://localhost:5173"] } });
  });
});
