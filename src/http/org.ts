/**
 * Subdomain routing: `acme.<domain>` selects the org `acme`. In local development only,
 * clients that cannot resolve `*.localhost` may name the org with an `X-Shaman-Org`
 * header or a `/_org/<slug>/` path prefix; production ignores both.
 */
import type { Context, MiddlewareHandler } from "hono";
import { config, type Config } from "../config";
import { db } from "../db/client";
import { orgBySlug } from "../db/orgs";
import { AppError } from "../errors";
import type { AppEnv } from "./app-env";

export const DEV_ORG_HEADER = "x-shaman-org";

/** The org label of a hostname under the configured domain, or null (apex, other host). */
export function orgLabelOf(hostname: string, domain: string): string | null {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  if (!host.endsWith(`.${domain}`)) return null;
  const label = host.slice(0, -(domain.length + 1));
  return label && !label.includes(".") ? label : null;
}

export function orgSlugFor(req: Request, url: URL, cfg: Config, pathOrg: string | undefined): string | null {
  const fromHost = orgLabelOf(url.hostname, cfg.domain);
  if (!cfg.devRouting) return pathOrg === undefined ? fromHost : null;
  const fallback = pathOrg ?? req.headers.get(DEV_ORG_HEADER)?.toLowerCase() ?? null;
  if (fromHost && fallback && fallback !== fromHost) return null;
  return fromHost ?? fallback;
}

/** The URL prefix of the org's routes as the caller reached them (`https://acme.<domain>` or `…/_org/acme`). */
export function orgBaseUrl(c: Context<AppEnv>): string {
  const url = new URL(c.req.url);
  const org = c.req.param("org");
  return `${url.protocol}//${url.host}${org ? `/_org/${org}` : ""}`;
}

export function resolveOrg(): MiddlewareHandler<AppEnv> {
  return async function orgResolver(c, next) {
    const slug = orgSlugFor(c.req.raw, new URL(c.req.url), config(c.env), c.req.param("org"));
    const org = slug ? await orgBySlug(db(c.env), slug) : null;
    if (!org) throw new AppError("NOT_FOUND", "Organization not found");
    c.set("org", org);
    await next();
  };
}
