/**
 * Ory Kratos cannot run here, so tests use this server, which follows the contract of
 * Kratos's `GET /sessions/whoami` exactly: the session token in `X-Session-Token` (or
 * `Authorization: Bearer`), or the browser session in `Cookie: ory_kratos_session=…`;
 * 200 with a Session, 401 with Kratos's error body for a missing, expired or revoked
 * session, 403 when the session needs a second factor (AAL2).
 * Test control: POST /__sessions adds (or replaces) a session, `unavailable: true` makes
 * its whoami answer 503 as an outage would; GET /__stats counts whoami calls (all of
 * them, and with `?token=…` those that carried that token, so test files sharing the
 * server do not disturb each other's counts).
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

interface FakeSession {
  token: string;
  identityId: string;
  email: string;
  expiresAt?: string;
  active?: boolean;
  aal2Required?: boolean;
  /** Answer this session's whoami with 503 (an outage seen by this token only). */
  unavailable?: boolean;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const c of req) chunks.push(c as Uint8Array);
  return Buffer.concat(chunks).toString("utf8");
}

const error401 = (reason: string) => ({
  error: { code: 401, status: "Unauthorized", reason, message: "The request could not be authorized" },
});

export async function startKratos(): Promise<{ url: string; close(): Promise<void> }> {
  const sessions = new Map<string, FakeSession>();
  let whoamiCalls = 0;
  const callsByToken = new Map<string, number>();
  const server: Server = createServer(async (req, res) => {
    const json = (status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    if (req.method === "POST" && req.url === "/__sessions") {
      const s = JSON.parse(await readBody(req)) as FakeSession;
      sessions.set(s.token, s);
      return json(201, { ok: true });
    }
    if (req.method === "DELETE" && req.url?.startsWith("/__sessions/")) {
      sessions.delete(decodeURIComponent(req.url.slice("/__sessions/".length)));
      return json(200, { ok: true });
    }
    if (req.method === "GET" && (req.url === "/__stats" || req.url?.startsWith("/__stats?"))) {
      const token = new URL(req.url, "http://kratos").searchParams.get("token");
      return json(200, { whoamiCalls, ...(token !== null ? { tokenCalls: callsByToken.get(token) ?? 0 } : {}) });
    }
    if (req.method !== "GET" || !req.url?.startsWith("/sessions/whoami")) return json(404, { error: { code: 404, status: "Not Found", message: "not found" } });
    whoamiCalls++;
    const header = (name: string) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    let token = header("x-session-token");
    const auth = header("authorization");
    if (!token && auth?.toLowerCase().startsWith("bearer ")) token = auth.slice(7).trim();
    if (!token) {
      const cookie = header("cookie") ?? "";
      const m = /(?:^|;\s*)ory_kratos_session=([^;]+)/.exec(cookie);
      if (m?.[1]) token = decodeURIComponent(m[1]);
    }
    if (token) callsByToken.set(token, (callsByToken.get(token) ?? 0) + 1);
    const s = token ? sessions.get(token) : undefined;
    if (s?.unavailable) return json(503, { error: { code: 503, status: "Service Unavailable", message: "upstream unavailable" } });
    if (!s) return json(401, error401("No valid session credentials found in the request."));
    const expires = s.expiresAt ?? new Date(Date.now() + 3_600_000).toISOString();
    if (s.active === false || Date.parse(expires) <= Date.now()) return json(401, error401("The session is inactive or has expired."));
    if (s.aal2Required) {
      return json(403, {
        error: {
          id: "session_aal2_required",
          code: 403,
          status: "Forbidden",
          reason: "An active session was found but it does not fulfil the Authenticator Assurance Level.",
          message: "Session does not fulfil the required AAL",
        },
      });
    }
    const now = new Date().toISOString();
    return json(200, {
      id: `sess-${s.token.slice(0, 8)}`,
      active: true,
      expires_at: expires,
      authenticated_at: now,
      authenticator_assurance_level: "aal1",
      authentication_methods: [{ method: "password", aal: "aal1", completed_at: now }],
      issued_at: now,
      identity: {
        id: s.identityId,
        schema_id: "default",
        schema_url: "",
        state: "active",
        traits: { email: s.email },
        metadata_public: null,
        created_at: now,
        updated_at: now,
      },
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
