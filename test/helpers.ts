import { exports } from "cloudflare:workers";
import { inject } from "vitest";

export const worker = exports.default;

export function exampleAgents(): Record<string, string> {
  return inject("exampleAgents");
}

export interface SeedResult {
  org: { id: string; slug: string };
  /** An owner API key of the org (grants `/*` `*`). */
  apiKey: string;
  ownerId: string;
  repository: { id: string; name: string };
  commit: string;
  agents: string[];
  errors: { path: string; message: string; line?: number }[];
  warnings: { path: string; message: string; line?: number }[];
}

export const BOOTSTRAP_TOKEN = "test-bootstrap-token";

/** API keys of the orgs seeded in this isolate: `orgFetch` sends them unless told otherwise. */
const orgKeys = new Map<string, string>();

export async function bootstrapOrg(slug: string, ownerEmail = `owner@${slug}.test`) {
  const res = await worker.fetch("http://localhost/_admin/bootstrap", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${BOOTSTRAP_TOKEN}` },
    body: JSON.stringify({ org: { slug, name: `${slug} Inc.` }, owner: { email: ownerEmail, identityProvider: "dev" }, apiKey: { name: "tests" } }),
  });
  if (res.status !== 200) throw new Error(`bootstrap failed: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { org: { id: string; slug: string }; owner: { id: string }; apiKey: { key: string } };
  orgKeys.set(slug, body.apiKey.key);
  return body;
}

/** Creates an org (owner, API key) with a repository snapshot through the local seed route. */
export async function seedOrg(slug: string, files: Record<string, string> = exampleAgents(), repo = "demo"): Promise<SeedResult> {
  const boot = await bootstrapOrg(slug);
  const res = await worker.fetch("http://localhost/_dev/seed", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ org: { slug, name: `${slug} Inc.` }, repository: { name: repo, isRoot: true }, files }),
  });
  if (res.status !== 200) throw new Error(`seed failed: ${res.status} ${await res.text()}`);
  return { ...((await res.json()) as Omit<SeedResult, "apiKey" | "ownerId">), apiKey: boot.apiKey.key, ownerId: boot.owner.id };
}

/** A request to an org's subdomain, authenticated with the org's test API key unless `init` sets its own. */
export function orgFetch(slug: string, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const key = orgKeys.get(slug);
  const ownCredential = headers.has("authorization") || headers.has("x-session-token") || headers.has("cookie");
  if (key && !ownCredential) headers.set("authorization", `Bearer ${key}`);
  return worker.fetch(`http://${slug}.localhost${path}`, { ...init, headers });
}

export function keyOf(slug: string): string | undefined {
  return orgKeys.get(slug);
}

export async function rpc(slug: string, agent: string, body: unknown, headers: Record<string, string> = { "A2A-Version": "1.0" }) {
  const res = await orgFetch(slug, `/a2a/agents/${agent}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

export function sendMessage(text: string, configuration: Record<string, unknown> = {}, id: string | number = 1) {
  return {
    jsonrpc: "2.0",
    id,
    method: "SendMessage",
    params: { message: { messageId: crypto.randomUUID(), role: "ROLE_USER", parts: [{ text }] }, configuration },
  };
}

/** Collects a WebSocket's messages until it closes (or `timeoutMs`). */
export function collect(ws: WebSocket, timeoutMs = 10_000): Promise<{ messages: any[]; closeCode: number | null }> {
  const messages: any[] = [];
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ messages, closeCode: null }), timeoutMs);
    ws.addEventListener("message", (e) => {
      messages.push(JSON.parse(e.data as string));
    });
    ws.addEventListener("close", (e) => {
      clearTimeout(timer);
      resolve({ messages, closeCode: e.code });
    });
  });
}

/** Polls `fn` until `ok` holds or `ms` pass, and returns the last value (work done after a response: audit rows, queued syncs). */
export async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}
