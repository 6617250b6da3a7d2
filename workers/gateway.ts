/**
 * The gateway: one Hono app. Org routes are served at `<org>.<domain>` (and, in local
 * development only, under `/_org/<org>/`).
 */
import { Hono, type MiddlewareHandler } from "hono";
import { requestId } from "hono/request-id";
import { a2aRoutes } from "../src/a2a/routes";
import { cardRoutes } from "../src/a2a/cards";
import { adminRoutes } from "../src/auth/bootstrap";
import { corsSettingsRoutes } from "../src/api/cors-settings";
import { authenticate } from "../src/auth/middleware";
import { orgCors } from "../src/http/cors";
import { devRoutes } from "../src/dev/seed";
import { devBenchRoutes } from "../src/dev/bench";
import { AppError, problemResponse } from "../src/errors";
import type { AppEnv } from "../src/http/app-env";
import { resolveOrg } from "../src/http/org";
import { jwksRoutes } from "../src/http/jwks";
import { clientRateLimit, rateLimit } from "../src/http/rate-limit";
import { runRoutes } from "../src/runs/routes";
import { pushDeliveryRoutes } from "../src/push/routes";
import { wsTicketRoutes } from "../src/runs/ws-ticket";
import { apiKeyRoutes } from "../src/api/api-keys";
import { auditRoutes } from "../src/api/audit";
import { externalAgentRoutes } from "../src/api/external-agents";
import { mcpServerRoutes } from "../src/api/mcp-servers";
import { modelSettingsRoutes } from "../src/api/model-settings";
import { repositoryRoutes } from "../src/api/repositories";
import { webhookRoutes } from "../src/repos/webhooks";
import { secretRoutes } from "../src/api/secrets";
import { usageRoutes, usageSettingsRoutes } from "../src/api/usage";
import { discoverySettingsRoutes } from "../src/api/discovery-settings";
import { auditRequest } from "../src/audit/http";
import { recordAnonymousDenial } from "../src/audit/denials";

/**
 * Refused requests of a known org go to its audit trail: a known principal's refusal (403)
 * one row each; anonymous refusals (bad or missing credentials, bad webhook signatures)
 * one row per client address and minute, with a count (src/audit/denials.ts).
 */
const auditDenials: MiddlewareHandler<AppEnv> = async (c, next) => {
  await next();
  const err = c.error;
  if (err instanceof AppError && (err.code === "UNAUTHORIZED" || err.code === "FORBIDDEN")) {
    const path = new URL(c.req.url).pathname.replace(/^\/_org\/[^/]+/, "");
    if (err.code === "UNAUTHORIZED" && c.get("principal") === null) {
      recordAnonymousDenial(c, path, err.message);
      return;
    }
    auditRequest(c, {
      action: "auth.denied",
      resource: path,
      outcome: "denied",
      input: { method: c.req.method },
      error: err.message,
    });
  }
};

export function createApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.use(requestId({ headerName: "x-request-id" }));
  app.use(async function principal(c, next) {
    c.set("principal", null);
    await next();
  });

  app.onError((err, c) => {
    const rid = c.get("requestId") ?? "";
    if (err instanceof AppError) return problemResponse(err, rid);
    // Anything else is a bug or an outage: log it, answer without internals.
    console.error(`request ${rid} failed:`, err instanceof Error ? (err.stack ?? err.message) : String(err));
    return problemResponse(new AppError("INTERNAL", "internal error"), rid);
  });
  app.notFound((c) => problemResponse(new AppError("NOT_FOUND", "Not found"), c.get("requestId") ?? ""));

  app.get("/healthz", (c) => c.json({ ok: true }));
  app.route("/", jwksRoutes);
  app.route("/_dev", devRoutes);
  app.route("/_dev", devBenchRoutes);
  app.route("/_admin", adminRoutes);

  // Every org route: org from the subdomain, the caller, their rate limit, then the route's own check.
  const org = new Hono<AppEnv>();
  org.use(resolveOrg());
  org.use(auditDenials);
  // Webhooks prove themselves with a signature, not a user credential: before authenticate().
  org.route("/webhooks", webhookRoutes);
  // Per client address, before any credential is looked at (Kratos, D1): floods of bad
  // credentials stop here, in a bucket that is not the org's.
  org.use(clientRateLimit());
  // Browsers on the origins the org allows (src/http/cors.ts): preflights end here.
  org.use(orgCors());
  // Discovery (agent cards, the root card, the directory) is public unless the caller brings
  // a credential or the org requires one: it authenticates itself then (src/a2a/cards.ts).
  org.route("/", cardRoutes);
  // A browser's WebSocket with a run ticket (src/runs/ws-ticket.ts); without one it falls through.
  org.route("/runs", wsTicketRoutes);
  org.use(authenticate());
  org.use(rateLimit());
  org.route("/a2a", a2aRoutes);
  org.route("/runs", runRoutes);
  org.route("/runs", pushDeliveryRoutes);
  org.route("/api-keys", apiKeyRoutes);
  org.route("/secrets", secretRoutes);
  org.route("/audit", auditRoutes);
  org.route("/repositories", repositoryRoutes);
  org.route("/external-agents", externalAgentRoutes);
  org.route("/mcp-servers", mcpServerRoutes);
  org.route("/usage", usageRoutes);
  org.route("/settings", usageSettingsRoutes);
  org.route("/settings/models", modelSettingsRoutes);
  org.route("/settings/discovery", discoverySettingsRoutes);
  org.route("/settings/cors", corsSettingsRoutes);

  app.route("/_org/:org", org);
  app.route("/", org);
  return app;
}
