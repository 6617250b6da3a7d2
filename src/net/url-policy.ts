/**
 * The URL policy for anything the platform calls on an org's behalf (external A2A agents
 * in the registry or in `agents.json`, and later MCP servers and push endpoints): an
 * absolute http(s) URL without credentials in it; in production, https only and a public
 * host (no localhost, private, loopback, link-local or internal names). Git remotes follow
 * the same rules (src/git/url.ts). Hosts that resolve to private addresses cannot be
 * checked here (a Worker cannot resolve DNS); a deployed Worker's fetch cannot reach
 * private networks.
 */
import { privateHostReason } from "../git/url";

export interface UrlPolicy {
  /** Local development only: plain http and private-network hosts. */
  allowPrivateNetwork: boolean;
}

export const MAX_OUTBOUND_URL_LENGTH = 2048;

/** Why `raw` may not be called under `policy`, or null when it may. */
export function outboundUrlProblem(raw: string, policy: UrlPolicy): string | null {
  if (raw.length > MAX_OUTBOUND_URL_LENGTH) return `must be at most ${MAX_OUTBOUND_URL_LENGTH} characters`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "not a valid URL";
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return "must be an http(s) URL";
  if (url.hostname === "") return "has no host";
  if (url.username || url.password) return "must not contain credentials: name an org secret instead";
  if (policy.allowPrivateNetwork) return null;
  if (url.protocol !== "https:") return "must use https:// (plain http is only allowed in local development)";
  const reason = privateHostReason(url.hostname);
  return reason ? `the host ${url.hostname} is not allowed: ${reason}` : null;
}
