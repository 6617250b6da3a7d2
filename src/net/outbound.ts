/**
 * Outbound requests that carry an org credential. A secret used as a credential names the
 * hosts it may be sent to (`allowedHosts`, set when the secret is put); every request that
 * carries it goes through `credentialFetch`, which checks the host at the moment of
 * sending, and follows redirects itself: only to the same origin (so never to another
 * host, and never from https to http), re-checking each hop. Git sync uses it now; MCP
 * servers, external agents, `agents.json` aliases, push notifications and org provider
 * keys go through the same door.
 *
 * Host patterns:
 *   github.com         that host, any port
 *   api.example.com:8443  that host on that port only
 *   *.example.com      any subdomain of example.com (not example.com itself)
 *   203.0.113.7, [2001:db8::1]  IP literals
 */

export const MAX_ALLOWED_HOSTS = 32;
const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export type OutboundErrorCode = "credential_host_not_allowed" | "credential_redirect_refused" | "too_many_redirects";

export class OutboundError extends Error {
  readonly code: OutboundErrorCode;
  constructor(code: OutboundErrorCode, message: string) {
    super(message);
    this.name = "OutboundError";
    this.code = code;
  }
}

/** A credential's identity and where it may go. Never holds the value itself. */
export interface CredentialScope {
  /** The org secret's name, for messages. */
  secret: string;
  /** Normalised host patterns (see `normaliseHostPattern`); empty means nowhere. */
  allowedHosts: readonly string[];
}

/**
 * Checks and normalises one host pattern (lower case, IDNA, IPv6 in brackets, explicit
 * port kept). Throws an Error with a message for the user when it is not a host pattern.
 */
export function normaliseHostPattern(raw: string): string {
  const text = raw.trim().toLowerCase();
  const bad = (why: string) => new Error(`'${raw}' is not a host pattern: ${why} (expected e.g. github.com, *.example.com or api.example.com:8443)`);
  if (text === "") throw bad("it is empty");
  if (text.length > 260) throw bad("it is too long");
  if (/[/?#@\s\\]/.test(text) || text.includes("://")) throw bad("give a host name only, without scheme, path or credentials");
  let wildcard = false;
  let rest = text;
  if (rest.startsWith("*.")) {
    wildcard = true;
    rest = rest.slice(2);
  }
  if (rest.includes("*")) throw bad("'*' is only allowed as the whole first label ('*.example.com')");
  let url: URL;
  try {
    url = new URL(`https://${rest}`);
  } catch {
    throw bad("it is not a valid host name");
  }
  if (url.pathname !== "/" || url.username || url.password || url.search || url.hash) throw bad("give a host name only");
  const host = url.hostname.replace(/\.$/, "");
  if (host === "") throw bad("it has no host");
  if (wildcard) {
    if (host.startsWith("[") || /^\d+(\.\d+){3}$/.test(host)) throw bad("a wildcard needs a domain name, not an IP address");
    if (host.split(".").length < 2) throw bad("a wildcard must cover a domain with at least two labels ('*.example.com', not '*.com')");
  }
  // An explicit port that equals the default (443) is dropped by the URL parser; keep it.
  const port = url.port || (/:443$/.test(rest) ? "443" : "");
  return `${wildcard ? "*." : ""}${host}${port ? `:${port}` : ""}`;
}

/** Normalises a list of host patterns (deduplicated, at most MAX_ALLOWED_HOSTS). */
export function normaliseHostList(raw: readonly string[]): string[] {
  if (raw.length > MAX_ALLOWED_HOSTS) throw new Error(`at most ${MAX_ALLOWED_HOSTS} hosts per secret`);
  return [...new Set(raw.map(normaliseHostPattern))];
}

function defaultPort(protocol: string): string {
  return protocol === "http:" ? "80" : protocol === "https:" ? "443" : "";
}

function splitPattern(p: string): { host: string; port: string | null } {
  if (p.startsWith("[")) {
    const close = p.indexOf("]");
    return { host: p.slice(0, close + 1), port: p[close + 1] === ":" ? p.slice(close + 2) : null };
  }
  const i = p.lastIndexOf(":");
  return i >= 0 ? { host: p.slice(0, i), port: p.slice(i + 1) } : { host: p, port: null };
}

/** Whether `url`'s host (and port) is covered by one of `patterns`. */
export function hostAllowed(url: URL, patterns: readonly string[]): boolean {
  const host = url.hostname.toLowerCase().replace(/\.$/, "");
  const port = url.port || defaultPort(url.protocol);
  return patterns.some((pattern) => {
    const want = splitPattern(pattern);
    if (want.port !== null && want.port !== port) return false;
    if (want.host.startsWith("*.")) return host.endsWith(want.host.slice(1)) && host.length > want.host.length - 1;
    return host === want.host;
  });
}

/** Throws unless a request to `url` may carry the credential. */
export function assertCredentialHost(url: URL, scope: CredentialScope): void {
  if (hostAllowed(url, scope.allowedHosts)) return;
  const where = url.port ? `${url.hostname}:${url.port}` : url.hostname;
  throw new OutboundError(
    "credential_host_not_allowed",
    scope.allowedHosts.length === 0
      ? `the secret '${scope.secret}' has no allowed hosts, so it is sent nowhere: set its allowedHosts (PATCH /secrets/${scope.secret}) to include ${where}`
      : `the secret '${scope.secret}' may not be sent to ${where} (allowed hosts: ${scope.allowedHosts.join(", ")})`,
  );
}

/**
 * A fetch for requests that carry the credential described by `scope` (the caller puts
 * the credential in the request, e.g. an Authorization header, or a library does). Each
 * request's host is checked before it is sent; redirects are followed here, only within
 * the same origin and at most MAX_REDIRECTS times, each hop checked again. A redirect to
 * another origin (another host or port, or https to http) is refused with an error rather
 * than followed with or without the credential.
 */
export function credentialFetch(scope: CredentialScope, base: typeof fetch = (input, init) => fetch(input, init)): typeof fetch {
  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    let req = new Request(input, init);
    for (let hop = 0; ; hop++) {
      const url = new URL(req.url);
      assertCredentialHost(url, scope);
      const sent = req.clone();
      const res = await base(new Request(sent, { redirect: "manual" }));
      const location = res.headers.get("location");
      if (!REDIRECT_STATUSES.has(res.status) || location === null) return res;
      await res.body?.cancel().catch(() => undefined);
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        return res;
      }
      if (next.origin !== url.origin) {
        throw new OutboundError(
          "credential_redirect_refused",
          `${url.origin} redirected to ${next.origin}: a request carrying the secret '${scope.secret}' does not follow a redirect to another origin` +
            (url.protocol === "https:" && next.protocol === "http:" ? " or from https to http" : ""),
        );
      }
      if (hop + 1 >= MAX_REDIRECTS) throw new OutboundError("too_many_redirects", `more than ${MAX_REDIRECTS} redirects from ${url.origin}`);
      // As fetch does: 303 (and 301/302 after a POST) become a GET without a body.
      const toGet = res.status === 303 || ((res.status === 301 || res.status === 302) && req.method === "POST");
      req = toGet
        ? new Request(next, { method: req.method === "HEAD" ? "HEAD" : "GET", headers: withoutBodyHeaders(req.headers), redirect: "manual", signal: req.signal })
        : new Request(next, { method: req.method, headers: req.headers, body: req.body, redirect: "manual", signal: req.signal });
    }
  };
}

function withoutBodyHeaders(headers: Headers): Headers {
  const h = new Headers(headers);
  for (const name of ["content-type", "content-length", "content-encoding", "content-language", "content-location"]) h.delete(name);
  return h;
}
