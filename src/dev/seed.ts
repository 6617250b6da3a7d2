/**
 * Local development only: `POST /_dev/seed` creates an org and imports a set of files as
 * a repository snapshot, so the demo runs without a git server. Refused unless
 * SHAMAN_DEV_SEED=true and SHAMAN_ENV is not production (see src/config.ts).
 */
import { Hono } from "hono";
import { z } from "zod";
import { config } from "../config";
import { db } from "../db/client";
import { ensureOrg, isValidSlug } from "../db/orgs";
import { ensureRepository } from "../db/repositories";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { contentCommitId, importSnapshot } from "../repos/import";
import { jsonOrNull } from "../http/body";

const SeedBody = z.object({
  org: z.object({ slug: z.string().refine(isValidSlug, "invalid subdomain label"), name: z.string().min(1).max(200) }),
  repository: z.object({ name: z.string().regex(/^[A-Za-z0-9._-]{1,100}$/), isRoot: z.boolean().default(true) }),
  files: z.record(z.string().min(1).max(500), z.string().max(1_000_000)),
});

export const devRoutes = new Hono<AppEnv>();

devRoutes.post("/seed", async (c) => {
  if (!config(c.env).devSeed) throw new AppError("NOT_FOUND", "Not found");
  const parsed = SeedBody.safeParse(await jsonOrNull(c.req.raw, 32 * 1024 * 1024));
  if (!parsed.success) {
    throw new AppError("BAD_REQUEST", `invalid seed body: ${parsed.error.issues[0]?.message ?? "invalid"}`);
  }
  const { org: orgInput, repository, files } = parsed.data;
  const d = db(c.env);
  const org = await ensureOrg(d, orgInput);
  const repo = await ensureRepository(d, org, {
    name: repository.name,
    gitUrl: `seed://${orgInput.slug}/${repository.name}`,
    branch: "main",
    isRoot: repository.isRoot,
  });
  const encoder = new TextEncoder();
  const bytes = new Map(Object.entries(files).map(([path, text]) => [path, encoder.encode(text)]));
  const commit = await contentCommitId(bytes);
  // The seed route exists in local development only, where local agent URLs are fine.
  const result = await importSnapshot(d, c.env.SNAPSHOTS, org, repo, commit, bytes, [], { urlPolicy: { allowPrivateNetwork: true } });
  return c.json({ org: { id: org.orgId, slug: org.slug }, repository: { id: repo.id, name: repo.name }, ...result });
});
