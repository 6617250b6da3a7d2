/**
 * Push webhooks: `POST /webhooks/git/{repositoryId}` on the org's subdomain. No user
 * credential: the delivery proves itself with the repository's webhook secret, in one of
 *   X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>   (GitHub, Gitea)
 *   X-Gitlab-Token: <secret>                                      (GitLab)
 *   X-Shaman-Signature-256: sha256=<hex HMAC-SHA256(secret, body)> (any other sender)
 * A valid delivery for the repository's branch queues a sync and answers 202; a push to
 * another branch is acknowledged and ignored. Deliveries are idempotent: a sync of an
 * unchanged head does nothing. A missing repository, another org's, and a bad signature
 * all answer the same 401, so the route tells an outsider nothing.
 */
import { Hono } from "hono";
import { db } from "../db/client";
import { getRepository } from "../db/repositories";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { rateLimit } from "../http/rate-limit";
import type { SyncJob } from "../runs/types";
import { readSecret } from "../secrets/store";
import { sha256Hex, timingSafeEqual, toHex } from "../util/bytes";

const MAX_BODY_BYTES = 5 * 1024 * 1024;
const REPO_ID = /^[0-9a-f-]{36}$/;

export const webhookRoutes = new Hono<AppEnv>();

// Deliveries are anonymous until verified: limited per client address and per org like
// any other caller, before any D1 read or HMAC.
webhookRoutes.use(rateLimit());

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

webhookRoutes.post("/git/:repositoryId", async (c) => {
  const id = c.req.param("repositoryId");
  const length = Number(c.req.header("content-length") ?? "0");
  if (length > MAX_BODY_BYTES) throw new AppError("PAYLOAD_TOO_LARGE", `webhook body exceeds ${MAX_BODY_BYTES / 1024 / 1024} MiB`);
  const body = new Uint8Array(await c.req.arrayBuffer());
  if (body.byteLength > MAX_BODY_BYTES) throw new AppError("PAYLOAD_TOO_LARGE", `webhook body exceeds ${MAX_BODY_BYTES / 1024 / 1024} MiB`);

  const org = c.get("org");
  const d = db(c.env);
  const repo = REPO_ID.test(id) ? await getRepository(d, org, id) : null;
  const secret = repo?.webhookSecret ? await readSecret(d, c.env, org.orgId, repo.webhookSecret) : null;
  if (!repo || !secret) {
    // Same work as a real check, so timing does not tell a missing repository apart.
    await verifyDelivery(c.req.raw.headers, body, "no-such-repository");
    throw refused();
  }
  const sender = await verifyDelivery(c.req.raw.headers, body, secret);
  if (!sender) throw refused();
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
