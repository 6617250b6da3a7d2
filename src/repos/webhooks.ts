/**
 * Push webhooks: `POST /webhooks/git/{repositoryId}` on the org's subdomain. No user
 * credential: the delivery proves itself with the repository's webhook secret, in one of
 *   X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>   (GitHub, Gitea)
 *   X-Gitlab-Token: <secret>                                      (GitLab)
 *   X-Shaman-Signature-256: sha256=<hex HMAC-SHA256(secret, body)> (any other sender)
 * A valid delivery for the repository's branch queues a sync and answers 202; a push to
 * another branch is acknowledged and ignored. Deliveries are idempotent: a sync of an
 * unchanged head does nothing. A missing repository, another org's, and a bad signature
 * all answer the same 401 after the same work (one D1 read, one decryption, one HMAC), so
 * the route tells an outsider nothing, not even by its timing.
 *
 * Limits: an unverified delivery counts only against a bucket of its own per client
 * address (`webhook:<address>`), never against the org's budget; the org's budget is
 * charged (as `webhook:<repository id>`) once the signature verifies. Cheap checks (the
 * id's form, a signature header, a declared length) come before the body is read, and the
 * body is read through a counting loop that stops at MAX_BODY_BYTES (413).
 */
import { Hono } from "hono";
import { db } from "../db/client";
import { getRepository } from "../db/repositories";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { BodyTooLargeError, readBodyLimited } from "../http/limited-body";
import { chargeOrg, clientRateLimit } from "../http/rate-limit";
import type { SyncJob } from "../runs/types";
import { decryptSecret, encryptSecret, secretsKeyMaterial } from "../secrets/crypto";
import { readSecret } from "../secrets/store";
import { sha256Hex, timingSafeEqual, toHex } from "../util/bytes";

const MAX_BODY_BYTES = 5 * 1024 * 1024;
const REPO_ID = /^[0-9a-f-]{36}$/;

export const webhookRoutes = new Hono<AppEnv>();

// Deliveries are anonymous until verified: a bucket of their own per client address,
// before any D1 read or HMAC; never the org's budget.
webhookRoutes.use(clientRateLimit("webhook"));

const SIGNATURE_HEADERS = ["x-hub-signature-256", "x-gitlab-token", "x-shaman-signature-256"];

const refused = () => new AppError("UNAUTHORIZED", "missing or invalid webhook signature");

async function hmacHex(secret: string, body: Uint8Array): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return toHex(await crypto.subtle.sign("HMAC", key, body));
}

/** Constant-time comparison of the digests, so neither content nor length leaks. */
async function same(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([sha256Hex(a), sha256Hex(b)]);
  return timingSafeEqual(x, y);
}

export type WebhookSender = "github" | "gitlab" | "generic";

/** Which sender's proof the request carries and whether it is valid for `secret`. */
export async function verifyDelivery(headers: Headers, body: Uint8Array, secret: string): Promise<WebhookSender | null> {
  const github = headers.get("x-hub-signature-256");
  if (github !== null) return (await same(github.trim().toLowerCase(), `sha256=${await hmacHex(secret, body)}`)) ? "github" : null;
  const gitlab = headers.get("x-gitlab-token");
  if (gitlab !== null) return (await same(gitlab, secret)) ? "gitlab" : null;
  const generic = headers.get("x-shaman-signature-256");
  if (generic !== null) return (await same(generic.trim().toLowerCase(), `sha256=${await hmacHex(secret, body)}`)) ? "generic" : null;
  return null;
}

/**
 * A stand-in secret for a delivery to no repository: an encryption made once per isolate and
 * org, decrypted on every such delivery, so it costs what reading a real secret costs.
 */
const standIns = new Map<string, Promise<string>>();
async function standInSecret(env: Env, orgId: string): Promise<string> {
  const material = secretsKeyMaterial(env);
  let sealed = standIns.get(orgId);
  if (!sealed) {
    if (standIns.size > 1000) standIns.clear();
    sealed = encryptSecret(material, orgId, "webhook.stand-in", crypto.randomUUID());
    standIns.set(orgId, sealed);
  }
  return decryptSecret(material, orgId, "webhook.stand-in", await sealed);
}

webhookRoutes.post("/git/:repositoryId", async (c) => {
  const id = c.req.param("repositoryId");
  // Cheap checks first: no signature header or a malformed id is refused before the body.
  if (!SIGNATURE_HEADERS.some((h) => c.req.header(h) !== undefined) || !REPO_ID.test(id)) throw refused();
  let body: Uint8Array;
  try {
    body = await readBodyLimited(c.req.raw, MAX_BODY_BYTES);
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw new AppError("PAYLOAD_TOO_LARGE", `webhook body exceeds ${MAX_BODY_BYTES / 1024 / 1024} MiB`, { limitBytes: MAX_BODY_BYTES });
    throw err;
  }

  const org = c.get("org");
  const d = db(c.env);
  const repo = await getRepository(d, org, id);
  // The same reads for a missing repository as for a real one: its secret's row (absent),
  // then a decryption and an HMAC with a stand-in.
  const secretName = repo?.webhookSecret ?? `webhook.${id}`;
  const stored = await readSecret(d, c.env, org.orgId, secretName);
  const secret = repo && stored !== null ? stored : await standInSecret(c.env, org.orgId);
  const sender = await verifyDelivery(c.req.raw.headers, body, secret);
  if (!repo || stored === null || !sender) throw refused();
  // Verified: now it is the org's traffic.
  const limited = await chargeOrg(c, `webhook:${repo.id}`);
  if (limited) return limited;
  c.set("principal", `webhook:${repo.id}`);

  const event = c.req.header("x-github-event") ?? c.req.header("x-gitea-event") ?? c.req.header("x-gitlab-event") ?? "push";
  if (event === "ping") return c.json({ status: "pong", repository: repo.id });
  let payload: { ref?: unknown } = {};
  try {
    payload = body.byteLength ? (JSON.parse(new TextDecoder().decode(body)) as { ref?: unknown }) : {};
  } catch {
    // A form-encoded or empty body: still a valid "something changed" signal.
  }
  const ref = typeof payload.ref === "string" ? payload.ref : null;
  if (ref && ref !== `refs/heads/${repo.branch}`) {
    return c.json({ status: "ignored", reason: `push to ${ref}, this repository follows refs/heads/${repo.branch}` }, 202);
  }
  await c.env.JOBS.send({ kind: "sync", orgId: org.orgId, repositoryId: repo.id, trigger: "webhook" } satisfies SyncJob);
  return c.json({ status: "queued", repository: repo.id, sender }, 202);
});
