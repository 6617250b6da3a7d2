/**
 * MCP connections, cached per isolate. One `Client` of the SDK's v2 package
 * (`@modelcontextprotocol/client`) per (org, server URL, credential), made with
 * `versionNegotiation: { mode: "auto" }`: it probes with `server/discover` and speaks the
 * stateless 2026-07-28 revision to a server that offers it, else falls back to the
 * 2025-11-25 `initialize` handshake and its `Mcp-Session-Id` session. Either way the
 * outcome (the session, or the discover result) is kept, so a second call does not
 * negotiate again; a session the server no longer knows (404, or the 400 "no valid
 * session" some servers answer) is re-established once and the request sent again.
 *
 * Requests go through `credentialFetch` for every org secret the server's headers carry
 * (each secret's host list is checked at sending; no cross-origin redirect is followed).
 * The standalone GET stream of the 2025 protocol (server-to-client notifications) is never
 * opened: the fetch answers it locally with 405, which the protocol allows, because a
 * Worker must not keep a stream open across requests and Shaman needs no notifications.
 */
import { Client, ProtocolError, SdkError, SdkErrorCode, SdkHttpError, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { assertCredentialHost, credentialFetch, OutboundError, type CredentialScope } from "../net/outbound";

export type McpEra = "legacy" | "modern";

export interface McpTarget {
  /** Cache key: org, URL and a fingerprint of the credential values. */
  key: string;
  url: string;
  /** Header values (secret values included): sent only through `credentialFetch`. */
  headers: Record<string, string>;
  scopes: CredentialScope[];
}

export interface McpConnection {
  client: Client;
  era: McpEra;
  protocolVersion: string;
  sessionId: string | undefined;
}

const MAX_CONNECTIONS = 256;
const connections = new Map<string, Promise<McpConnection>>();

export function clearMcpConnections(): void {
  for (const pending of connections.values()) void pending.then((c) => c.client.close()).catch(() => undefined);
  connections.clear();
}

/** A fetch carrying the target's credentials, host-checked per secret, without the standalone GET stream. */
function transportFetch(scopes: CredentialScope[]): typeof fetch {
  let send: typeof fetch = (input, init) => fetch(input, init);
  for (const scope of scopes) send = credentialFetch(scope, send);
  return async (input, init) => {
    const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
    if (method === "GET") return new Response(null, { status: 405, statusText: "Method Not Allowed" });
    return send(input, init);
  };
}

async function open(target: McpTarget, timeoutMs: number): Promise<McpConnection> {
  for (const scope of target.scopes) assertCredentialHost(new URL(target.url), scope);
  const transport = new StreamableHTTPClientTransport(new URL(target.url), {
    fetch: transportFetch(target.scopes),
    requestInit: { headers: target.headers },
    // Redirects are handled by credentialFetch (same origin only) or by fetch itself.
    redirectPolicy: "same-origin",
  });
  const client = new Client(
    { name: "shaman", version: "1.0.0" },
    { versionNegotiation: { mode: "auto", probe: { timeoutMs } }, listMaxPages: 10, capabilities: {} },
  );
  // Background errors (a notification that failed, a stream that ended) are not the caller's.
  client.onerror = () => undefined;
  await client.connect(transport, { timeout: timeoutMs });
  const era = client.getProtocolEra() ?? "legacy";
  return { client, era, protocolVersion: client.getNegotiatedProtocolVersion() ?? "", sessionId: transport.sessionId };
}

/** The cached connection for `target`, opened if there is none (or the last one failed). */
export function connection(target: McpTarget, timeoutMs: number): Promise<McpConnection> {
  const hit = connections.get(target.key);
  if (hit) return hit;
  if (connections.size >= MAX_CONNECTIONS) {
    const oldest = connections.keys().next().value;
    if (oldest !== undefined) drop(oldest);
  }
  const pending = open(target, timeoutMs);
  connections.set(target.key, pending);
  pending.catch(() => {
    if (connections.get(target.key) === pending) connections.delete(target.key);
  });
  return pending;
}

function drop(key: string, only?: Promise<McpConnection>): void {
  const current = connections.get(key);
  if (!current || (only && current !== only)) return;
  connections.delete(key);
  void current.then((c) => c.client.close()).catch(() => undefined);
}

/** Whether the server says it no longer knows the session (2025 protocol). */
function deadSession(err: unknown, conn: McpConnection): boolean {
  if (conn.era !== "legacy" || !conn.sessionId) return false;
  if (!(err instanceof SdkHttpError)) return false;
  if (err.status === 404) return true;
  const text = String((err.data as { text?: unknown } | undefined)?.text ?? err.message);
  return err.status === 400 && /session/i.test(text);
}

/**
 * Runs `fn` on the target's connection. A dead session is re-established once and `fn`
 * run again (the server never saw the first request, so nothing runs twice); any other
 * failure that is not the server's own JSON-RPC answer drops the cached connection, so
 * the next call starts afresh.
 */
export async function withConnection<T>(target: McpTarget, timeoutMs: number, fn: (conn: McpConnection) => Promise<T>): Promise<T> {
  const pending = connection(target, timeoutMs);
  const conn = await pending;
  try {
    return await fn(conn);
  } catch (err) {
    if (deadSession(err, conn)) {
      drop(target.key, pending);
      return fn(await connection(target, timeoutMs));
    }
    if (!(err instanceof ProtocolError)) drop(target.key, pending);
    throw err;
  }
}

/** A failure described for the model and the run: never a secret, never a stack. */
export interface McpFailure {
  error: string;
  /** Trying again later may succeed (the server was down, slow, overloaded). */
  transient: boolean;
}

const clip = (text: string, max = 500) => (text.length > max ? `${text.slice(0, max)}…` : text);

/** Whether the server refused the request without running anything (bad params, unknown tool, a 4xx). */
export function refusedBeforeRunning(err: unknown): boolean {
  if (err instanceof ProtocolError) return [-32700, -32600, -32601, -32602].includes(err.code);
  if (err instanceof SdkHttpError) return err.status >= 400 && err.status < 500 && err.status !== 408;
  return false;
}

export function describeMcpError(err: unknown, ctx: { server: string; timeoutMs: number }): McpFailure {
  const where = `MCP server '${ctx.server}'`;
  if (err instanceof OutboundError) return { error: `${where}: ${err.message}`, transient: false };
  if (err instanceof ProtocolError) {
    return { error: `${where} answered with an error: ${clip(err.message)} (JSON-RPC ${err.code})`, transient: false };
  }
  if (err instanceof SdkHttpError) {
    const status = err.status;
    if (status === 401 || status === 403) return { error: `${where} refused the request (HTTP ${status}): check the credentials it is given`, transient: false };
    const transient = status === 408 || status === 429 || status >= 500;
    return { error: `${where} answered HTTP ${status}: ${clip(err.message.trim())}`, transient };
  }
  if (err instanceof SdkError) {
    switch (err.code) {
      case SdkErrorCode.RequestTimeout:
        return { error: `${where} did not answer within ${ctx.timeoutMs} ms`, transient: true };
      case SdkErrorCode.ConnectionClosed:
      case SdkErrorCode.SendFailed:
        return { error: `${where} closed the connection: ${clip(err.message)}`, transient: true };
      case SdkErrorCode.EraNegotiationFailed:
        // The probe failed: the network (transient), or an answer that is not MCP at all.
        if (/unusable reply|unexpected content|not valid json|parse/i.test(err.message)) {
          return { error: `${where} answered something that is not MCP: ${clip(err.message)}`, transient: false };
        }
        return { error: `${where} could not be reached: ${clip(err.message)}`, transient: true };
      case SdkErrorCode.ClientHttpUnexpectedContent:
      case SdkErrorCode.InvalidResult:
        return { error: `${where} answered something that is not MCP: ${clip(err.message)}`, transient: false };
      default:
        return { error: `${where}: ${clip(err.message)}`, transient: false };
    }
  }
  // fetch's own failures (workerd: "Network connection lost.", Node: "fetch failed").
  if (err instanceof TypeError || (err instanceof Error && /network|connection (lost|reset|refused)|fetch failed|econn/i.test(err.message))) {
    return { error: `${where} could not be reached: ${clip(err.message)}`, transient: true };
  }
  if (err instanceof SyntaxError || (err instanceof Error && err.name === "ZodError")) {
    return { error: `${where} answered something that is not MCP`, transient: false };
  }
  if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) {
    return { error: `${where} did not answer within ${ctx.timeoutMs} ms`, transient: true };
  }
  return { error: `${where} failed: ${clip(err instanceof Error ? err.message : String(err))}`, transient: false };
}
