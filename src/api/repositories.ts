/**
 * The org's agent repositories:
 *   GET    /repositories                       list
 *   POST   /repositories                       register (and sync at once unless "sync": false)
 *   GET    /repositories/{id}                  one, with sync status, last error and per-file problems
 *   PATCH  /repositories/{id}                  change URL, branch, root flag, credential, interval
 *   DELETE /repositories/{id}                  remove it, its agents and its snapshots
 *   POST   /repositories/{id}/sync             sync now (`?force=true` re-imports an unchanged head)
 *   POST   /repositories/{id}/webhook-secret   rotate the push-webhook secret (shown once)
 *   GET    /repositories/{id}/agents           its agents, private ones included
 * Permissions: `read`/`write` on `/repositories/{id}` (`/repositories/*` to list and add);
 * `admin` on it (`/repositories/*` when adding) to make it a root repository (its agents
 * answer to unqualified names); `use` on `/secrets/{name}` to name a credential secret, and
 * to change the URL of a repository that carries one.
 */
import { Hono, type Context } from "hono";
import { z } from "zod";
import { actorOf, auditRequest } from "../audit/http";
import { authorize, isAllowed } from "../auth/authorize";
import { repoPrefix } from "../agents/snapshot";
import { config } from "../config";
import { agentsOfRepository } from "../db/agents";
import { db } from "../db/client";
import { deleteRepository, getRepository, insertRepository, listRepositories, updateRepository } from "../db/repositories";
import type { RepositoryRow } from "../db/schema";
import { AppError } from "../errors";
import { GitError } from "../git/errors";
import { validateGitUrl } from "../git/url";
import type { AppEnv } from "../http/app-env";
import { orgBaseUrl } from "../http/org";
import { jsonBody } from "../http/body";
import { syncRepository, type SyncOutcome } from "../repos/sync";
import type { SyncJob } from "../runs/types";
import { deleteSecret, putSecret, SECRET_NAME } from "../secrets/store";
import { authorizeCredentialUse } from "./credentials";

const REPO_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const REPO_ID = /^[0-9a-f-]{36}$/;
const MIN_INTERVAL = 60;
const MAX_INTERVAL = 7 * 86_400;

const fields = {
  name: z.string().regex(REPO_NAME, "letters, digits, '.', '_' or '-' (up to 100), starting with a letter or digit"),
  gitUrl: z.string().min(1).max(2048),
  branch: z
    .string()
    .min(1)
    .max(255)
    .regex(/^(?!\/|.*\/\/|.*\.\.|.*@\{|.*\.lock$)[^\s~^:?*[\\\x00-\x1f\x7f]+(?<!\/|\.)$/, "not a valid git branch name"),
  isRoot: z.boolean(),
  credentialSecret: z.string().regex(SECRET_NAME, "not a valid secret name").nullable(),
  syncIntervalSeconds: z.number().int().min(MIN_INTERVAL).max(MAX_INTERVAL),
};

const CreateRepository = z
  .object({
    name: fields.name,
    gitUrl: fields.gitUrl,
    branch: fields.branch.default("main"),
    isRoot: fields.isRoot.default(false),
    credentialSecret: fields.credentialSecret.optional(),
    syncIntervalSeconds: fields.syncIntervalSeconds.default(300),
    sync: z.boolean().default(true),
  })
  .strict();

const UpdateRepository = z
  .object({
    name: fields.name,
    gitUrl: fields.gitUrl,
    branch: fields.branch,
    isRoot: fields.isRoot,
    credentialSecret: fields.credentialSecret,
    syncIntervalSeconds: fields.syncIntervalSeconds,
  })
  .partial()
  .strict();

export const repositoryRoutes = new Hono<AppEnv>();

const notFound = () => new AppError("NOT_FOUND", "Repository not found");

export function repositoryView(c: Context<AppEnv>, r: RepositoryRow) {
  return {
    id: r.id,
    name: r.name,
    gitUrl: r.gitUrl,
    branch: r.branch,
    isRoot: r.isRoot,
    credentialSecret: r.credentialSecret,
    syncIntervalSeconds: r.syncIntervalSeconds,
    syncStatus: r.syncStatus,
    lastCommit: r.lastCommit,
    lastSyncedAt: r.lastSyncedAt ? new Date(r.lastSyncedAt).toISOString() : null,
    lastCheckedAt: r.lastCheckedAt ? new Date(r.lastCheckedAt).toISOString() : null,
    lastError: r.lastError,
    problems: r.syncProblems,
    webhookUrl: `${orgBaseUrl(c)}/webhooks/git/${r.id}`,
    createdAt: new Date(r.createdAt).toISOString(),
  };
}

function checkUrl(c: Context<AppEnv>, raw: string): string {
  try {
    return validateGitUrl(raw, { allowPrivateNetwork: !config(c.env).production }).href;
  } catch (err) {
    if (err instanceof GitError) throw new AppError("BAD_REQUEST", `gitUrl: ${err.message}`);
    throw err;
  }
}


function newWebhookSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const webhookSecretName = (id: string) => `webhook.${id}`;

async function repoFor(c: Context<AppEnv>, action: "read" | "write" | "admin"): Promise<RepositoryRow> {
  const id = c.req.param("id") ?? "";
  await authorize(c, `/repositories/${id}`, action);
  const repo = REPO_ID.test(id) ? await getRepository(db(c.env), c.get("org"), id) : null;
  if (!repo) throw notFound();
  return repo;
}

async function runSync(c: Context<AppEnv>, repo: RepositoryRow, trigger: "api" | "create", force = false): Promise<SyncOutcome> {
  const who = actorOf(c);
  return syncRepository(c.env, c.get("org"), repo.id, { trigger, actor: who.actor, userId: who.userId, requestId: c.get("requestId"), force });
}

repositoryRoutes.get("/", async (c) => {
  await authorize(c, "/repositories/*", "read");
  const all = await listRepositories(db(c.env), c.get("org"));
  const visible = await Promise.all(all.map((r) => isAllowed(c, `/repositories/${r.id}`, "read")));
  return c.json({ repositories: all.filter((_, i) => visible[i]).map((r) => repositoryView(c, r)) });
});

repositoryRoutes.post("/", async (c) => {
  await authorize(c, "/repositories/*", "write");
  const body = await jsonBody(c, CreateRepository);
  const gitUrl = checkUrl(c, body.gitUrl);
  if (body.isRoot) await authorize(c, "/repositories/*", "admin");
  if (body.credentialSecret) await authorizeCredentialUse(c, body.credentialSecret);
  const org = c.get("org");
  const d = db(c.env);
  const id = crypto.randomUUID();
  const row = await insertRepository(d, org, id, {
    name: body.name,
    gitUrl,
    branch: body.branch,
    isRoot: body.isRoot,
    credentialSecret: body.credentialSecret ?? null,
    syncIntervalSeconds: body.syncIntervalSeconds,
    webhookSecret: webhookSecretName(id),
  });
  if (!row) throw new AppError("CONFLICT", `the org already has a repository named '${body.name}' or one for ${gitUrl} on branch ${body.branch}`);
  const secret = newWebhookSecret();
  await putSecret(d, c.env, org, webhookSecretName(id), secret);
  auditRequest(c, {
    action: "repository.create",
    resource: `/repositories/${id}`,
    outcome: "success",
    input: { name: body.name, gitUrl, branch: body.branch, isRoot: body.isRoot, credentialSecret: body.credentialSecret ?? null },
  });
  const sync = body.sync ? await runSync(c, row, "create") : null;
  const current = (await getRepository(d, org, id)) ?? row;
  return c.json({ repository: repositoryView(c, current), webhook: { url: `${orgBaseUrl(c)}/webhooks/git/${id}`, secret }, ...(sync ? { sync } : {}) }, 201);
});

repositoryRoutes.get("/:id", async (c) => c.json({ repository: repositoryView(c, await repoFor(c, "read")) }));

repositoryRoutes.patch("/:id", async (c) => {
  const repo = await repoFor(c, "write");
  const patch = await jsonBody(c, UpdateRepository);
  const changes: Parameters<typeof updateRepository>[3] = { ...patch };
  if (patch.gitUrl !== undefined) changes.gitUrl = checkUrl(c, patch.gitUrl);
  const moved = (changes.gitUrl !== undefined && changes.gitUrl !== repo.gitUrl) || (patch.branch !== undefined && patch.branch !== repo.branch);
  // Root-ness decides which agents answer to unqualified names: an admin's call, either way.
  if (patch.isRoot !== undefined && patch.isRoot !== repo.isRoot) await authorize(c, `/repositories/${repo.id}`, "admin");
  // A credential goes wherever the repository points: naming one, or moving a repository
  // that carries one, is a use of the secret.
  const credential = patch.credentialSecret !== undefined ? patch.credentialSecret : repo.credentialSecret;
  const named = patch.credentialSecret !== undefined && patch.credentialSecret !== repo.credentialSecret;
  const urlChanged = changes.gitUrl !== undefined && changes.gitUrl !== repo.gitUrl;
  if (credential && (named || urlChanged)) {
    await authorizeCredentialUse(c, credential);
  }
  let updated: RepositoryRow | null;
  try {
    updated = await updateRepository(db(c.env), c.get("org"), repo.id, { ...changes, ...(moved ? { nextSyncAt: 0 } : {}) });
  } catch (err) {
    if (err instanceof Error && /UNIQUE/i.test(err.message + String((err as { cause?: unknown }).cause ?? ""))) {
      throw new AppError("CONFLICT", "another repository of the org has that name, or that URL and branch");
    }
    throw err;
  }
  if (!updated) throw notFound();
  auditRequest(c, { action: "repository.update", resource: `/repositories/${repo.id}`, outcome: "success", input: patch });
  if (updated.isRoot !== repo.isRoot) {
    // Which exposed names this repository may hold changes with its root flag; a forced
    // re-import settles it (name conflicts between root repositories are per-file problems).
    const job: SyncJob = { kind: "sync", orgId: c.get("org").orgId, repositoryId: repo.id, trigger: "api", force: true };
    c.executionCtx.waitUntil(c.env.JOBS.send(job).catch((e: unknown) => console.error(`queueing the re-import of ${repo.id}: ${String(e)}`)));
  }
  return c.json({ repository: repositoryView(c, updated) });
});

repositoryRoutes.delete("/:id", async (c) => {
  const repo = await repoFor(c, "write");
  const org = c.get("org");
  const d = db(c.env);
  if (!(await deleteRepository(d, org, repo.id))) throw notFound();
  if (repo.webhookSecret) await deleteSecret(d, org, repo.webhookSecret);
  auditRequest(c, { action: "repository.delete", resource: `/repositories/${repo.id}`, outcome: "success", input: { name: repo.name, gitUrl: repo.gitUrl } });
  // The snapshots go after the response; nothing refers to them any more.
  c.executionCtx.waitUntil(deletePrefix(c.env.SNAPSHOTS, repoPrefix(org.orgId, repo.id)).catch((e: unknown) => console.error(`deleting snapshots of ${repo.id}: ${String(e)}`)));
  return c.body(null, 204);
});

repositoryRoutes.post("/:id/sync", async (c) => {
  const repo = await repoFor(c, "write");
  const outcome = await runSync(c, repo, "api", c.req.query("force") === "true");
  if (outcome.status === "busy") throw new AppError("CONFLICT", "a sync of this repository is already running; try again shortly");
  const current = (await getRepository(db(c.env), c.get("org"), repo.id)) ?? repo;
  return c.json({ repository: repositoryView(c, current), sync: outcome });
});

repositoryRoutes.post("/:id/webhook-secret", async (c) => {
  const repo = await repoFor(c, "admin");
  const secret = newWebhookSecret();
  const name = repo.webhookSecret ?? webhookSecretName(repo.id);
  await putSecret(db(c.env), c.env, c.get("org"), name, secret);
  if (!repo.webhookSecret) await updateRepository(db(c.env), c.get("org"), repo.id, { webhookSecret: name });
  auditRequest(c, { action: "repository.webhook_rotate", resource: `/repositories/${repo.id}`, outcome: "success" });
  return c.json({ webhook: { url: `${orgBaseUrl(c)}/webhooks/git/${repo.id}`, secret } });
});

repositoryRoutes.get("/:id/agents", async (c) => {
  const repo = await repoFor(c, "read");
  const rows = await agentsOfRepository(db(c.env), c.get("org"), [repo.id]);
  return c.json({
    agents: rows
      .map((a) => ({ name: a.name, path: a.path, exposed: a.exposed, description: a.description, model: a.model, commit: a.commitSha, blobSha: a.blobSha }))
      .sort((a, b) => a.name.localeCompare(b.name)),
  });
});

async function deletePrefix(bucket: R2Bucket, prefix: string): Promise<void> {
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix, ...(cursor ? { cursor } : {}), limit: 1000 });
    if (page.objects.length) await bucket.delete(page.objects.map((o) => o.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
}
