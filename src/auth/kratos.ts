/**
 * Ory Kratos sessions through `@ory/client` (`FrontendApi.toSession`): a session token
 * (`Authorization: Bearer` or `X-Session-Token`) or the browser's session cookie. Positive
 * answers are cached briefly, never beyond the session's expiry; an unreachable Kratos is
 * a 503, never a pass. Negative answers (no such session, expired, inactive) are cached
 * for NEGATIVE_TTL_MS, so a flood of one bad token makes one Kratos call per isolate per
 * period; an unreachable Kratos and a second-factor demand (403) are never cached. Both
 * caches are keyed by a SHA-256 of Kratos's URL and the credential, never the credential.
 */
import { Configuration, FrontendApi, type Session } from "@ory/client";
import { AppError } from "../errors";
import { sha256Hex } from "../util/bytes";

export type KratosCredential = { sessionToken: string } | { cookie: string };

export interface KratosIdentity {
  identityId: string;
  email: string | null;
  name: string | null;
  sessionId: string;
  expiresAt: number | null;
}

const POSITIVE_TTL_MS = 60_000;
const NEGATIVE_TTL_MS = 15_000;
const MAX_CACHED = 10_000;
const TIMEOUT_MS = 3_000;

// Isolate caches: one client per Kratos URL; verified sessions by credential hash.
const clients = new Map<string, FrontendApi>();
const sessions = new Map<string, { identity: KratosIdentity; expires: number }>();
const refused = new Map<string, number>(); // credential hash → until when it is refused without asking

function client(url: string): FrontendApi {
  let api = clients.get(url);
  if (!api) {
    api = new FrontendApi(new Configuration({ basePath: url.replace(/\/+$/, ""), baseOptions: { adapter: "fetch", timeout: TIMEOUT_MS } }));
    clients.set(url, api);
  }
  return api;
}

async function cacheKey(url: string, cred: KratosCredential): Promise<string> {
  const raw = "sessionToken" in cred ? `t\u0000${cred.sessionToken}` : `c\u0000${cred.cookie}`;
  return sha256Hex(`${url}\u0000${raw}`);
}

function identityOf(session: Session): KratosIdentity | null {
  if (!session.active || !session.identity) return null;
  const traits = (session.identity.traits ?? {}) as Record<string, unknown>;
  const email = typeof traits.email === "string" ? traits.email : null;
  const nameTrait = traits.name;
  const name =
    typeof nameTrait === "string"
      ? nameTrait
      : nameTrait && typeof nameTrait === "object"
        ? [(nameTrait as Record<string, unknown>).first, (nameTrait as Record<string, unknown>).last].filter((v) => typeof v === "string").join(" ") || null
        : null;
  const expiresAt = session.expires_at ? Date.parse(session.expires_at) : null;
  if (expiresAt !== null && Number.isFinite(expiresAt) && expiresAt <= Date.now()) return null;
  return { identityId: session.identity.id, email, name, sessionId: session.id, expiresAt: Number.isFinite(expiresAt) ? expiresAt : null };
}

/** The identity behind a Kratos credential; null when Kratos says there is no valid session. */
export async function kratosIdentity(url: string | undefined, cred: KratosCredential): Promise<KratosIdentity | null> {
  if (!url) return null; // Kratos not configured: session credentials cannot be valid
  const key = await cacheKey(url, cred);
  const now = Date.now();
  const hit = sessions.get(key);
  if (hit && hit.expires > now) return hit.identity;
  const refusedUntil = refused.get(key);
  if (refusedUntil !== undefined) {
    if (refusedUntil > now) return null;
    refused.delete(key);
  }
  const refuse = (): null => {
    if (refused.size >= MAX_CACHED) refused.clear();
    refused.set(key, now + NEGATIVE_TTL_MS);
    return null;
  };
  let session: Session;
  try {
    const res =
      "sessionToken" in cred
        ? await client(url).toSession({ xSessionToken: cred.sessionToken })
        : await client(url).toSession({ cookie: cred.cookie });
    session = res.data;
  } catch (err) {
    // @ory/client rejects with an axios error carrying the HTTP response, if there was one.
    const status = (err as { response?: { status?: number } } | null)?.response?.status;
    if (status === 401) return refuse();
    if (status === 403) throw new AppError("FORBIDDEN", "a higher authentication assurance level (second factor) is required");
    throw new AppError("UNAVAILABLE", "the identity service is unavailable; try again");
  }
  const identity = identityOf(session);
  if (!identity) return refuse();
  if (sessions.size > MAX_CACHED) sessions.clear();
  const expires = Math.min(now + POSITIVE_TTL_MS, identity.expiresAt ?? Number.POSITIVE_INFINITY);
  sessions.set(key, { identity, expires });
  return identity;
}

export function clearKratosCache(): void {
  sessions.clear();
  refused.clear();
}
