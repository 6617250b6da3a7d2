import { exports } from "cloudflare:workers";
import { inject } from "vitest";

export const worker = exports.default;

export function exampleAgents(): Record<string, string> {
  return inject("exampleAgents");
}

export interface SeedResult {
  org: { id: string; slug: string };
  repository: { id: string; name: string };
  commit: string;
  agents: string[];
  errors: { path: string; message: string; line?: number }[];
  warnings: { path: string; message: string; line?: number }[];
}

/** Creates an org with a repository snapshot through the local seed route. */
export async function seedOrg(slug: string, files: Record<string, string> = exampleAgents(), repo = "demo"): Promise<SeedResult> {
  const res = await worker.fetch("http://localhost/_dev/seed", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ org: { slug, name: `${slug} Inc.` }, repository: { name: repo, isRoot: true }, files }),
  });
  if (res.status !== 200) throw new Error(`seed failed: ${res.status} ${await res.text()}`);
  return res.json();
}

export function orgFetch(slug: string, path: string, init?: RequestInit): Promise<Response> {
  return worker.fetch(`http://${slug}.localhost${path}`, init);
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
