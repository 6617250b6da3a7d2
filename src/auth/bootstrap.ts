/**
 * Bootstrapping an org and its first owner: `POST /_admin/bootstrap` with
 * `Authorization: Bearer $SHAMAN_BOOTSTRAP_TOKEN` (a Worker secret; the route does not
 * exist without it). `npm run bootstrap` calls it. Idempotent: re-running returns the same
 * org and owner (and a new API key if one is asked for).
 */
import { Hono } from "hono";
import { z } from "zod";
import { assignUserRole, ensureDefaultRoles } from "../authz/builtin";
import { db } from "../db/client";
import { ensureOrg, isValidSlug, setOrgRateLimits, setOrgRunLimits } from "../db/orgs";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { sha256Hex } from "../util/bytes";
import { createApiKey } from "./api-keys";
import { addMember, mirrorUser } from "./users";
import { jsonOrNull } from "../http/body";

const BootstrapBody = z.object({
  org: z.object({ slug: z.string().refine(isValidSlug, "invalid subdomain label"), name: z.string().min(1).max(200) }),
  owner: z.object({
    email: z.string().email(),
    /** `kratos` (default): the Kratos identity id; `dev`: the local development identity (email). */
    identityProvider: z.enum(["kratos", "dev"]).default("kratos"),
    identityProviderUserId: z.string().min(1).max(200).optional(),
  }),
  apiKey: z.object({ name: z.string().min(1).max(100), expiresInDays: z.number().int().positive().max(3650).optional() }).optional(),
  rateLimits: z
    .object({
      perPrincipal: z.number().int().positive(),
      perOrg: z.number().int().positive(),
      perClient: z.number().int().positive().optional(),
      windowSeconds: z.number().int().positive().max(86_400),
    })
    .optional(),
  runLimits: z
    .object({
      maxDepth: z.number().int().positive().max(64).optional(),
      maxStepsPerRun: z.number().int().positive().max(10_000).optional(),
      maxCallsPerTurn: z.number().int().positive().max(500).optional(),
      stepTimeoutMs: z.number().int().positive().optional(),
      allowCycles: z.boolean().optional(),
    })
    .strict()
    .optional(),
});

export const adminRoutes = new Hono<AppEnv>();

adminRoutes.post("/bootstrap", async (c) => {
  const expected = c.env.SHAMAN_BOOTSTRAP_TOKEN;
  const given = /^Bearer\s+(\S+)$/i.exec(c.req.header("authorization") ?? "")?.[1];
  // Compare digests so the comparison does not leak the token's length or prefix.
  if (!expected || !given || (await sha256Hex(given)) !== (await sha256Hex(expected))) throw new AppError("NOT_FOUND", "Not found");
  const parsed = BootstrapBody.safeParse(await jsonOrNull(c.req.raw, 64 * 1024));
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new AppError("BAD_REQUEST", `invalid bootstrap body: ${i ? `${i.path.join(".")}: ${i.message}` : "invalid"}`);
  }
  const body = parsed.data;
  if (body.owner.identityProvider === "kratos" && !body.owner.identityProviderUserId) {
    throw new AppError("BAD_REQUEST", "owner.identityProviderUserId (the Kratos identity id) is required for identityProvider kratos");
  }
  const d = db(c.env);
  const org = await ensureOrg(d, body.org);
  await ensureDefaultRoles(d, org);
  if (body.rateLimits) await setOrgRateLimits(d, org, body.rateLimits);
  if (body.runLimits) await setOrgRunLimits(d, org, body.runLimits);
  const providerUserId = body.owner.identityProvider === "dev" ? body.owner.email.toLowerCase() : (body.owner.identityProviderUserId ?? "");
  const owner = await mirrorUser(d, body.owner.identityProvider, providerUserId, body.owner.email.toLowerCase());
  await addMember(d, org, owner.id);
  await assignUserRole(d, org, owner.id, "owner");
  const key = body.apiKey
    ? await createApiKey(d, org, {
        name: body.apiKey.name,
        permissions: [{ resource: "/*", action: "*" }],
        createdBy: owner.id,
        expiresAt: body.apiKey.expiresInDays ? Date.now() + body.apiKey.expiresInDays * 86_400_000 : null,
      })
    : null;
  // The answer may carry a new API key: never stored by any cache.
  return c.json(
    {
      org: { id: org.orgId, slug: org.slug, name: org.name },
      owner: { id: owner.id, email: owner.email },
      ...(key ? { apiKey: { id: key.id, name: key.name, prefix: key.prefix, key: key.key } } : {}),
    },
    200,
    { "cache-control": "no-store", vary: "Authorization" },
  );
});
