/**
 * Outbound credentials (src/net/outbound.ts): host patterns, the check at the moment of
 * sending, and redirects that never carry a credential to another origin. Against the
 * capturing server on 127.0.0.1.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { credentialFetch, hostAllowed, normaliseHostPattern, OutboundError } from "../src/net/outbound";

const capture = env.TEST_CAPTURE_URL;
const capturePort = new URL(capture).port;

async function captured(prefix: string): Promise<Array<{ method: string; path: string; headers: Record<string, string> }>> {
  return (await fetch(`${capture}/__captured?prefix=${encodeURIComponent(prefix)}`)).json();
}

describe("host patterns", () => {
  it("normalises and refuses what is not a host", () => {
    expect(normaliseHostPattern(" GitHub.com ")).toBe("github.com");
    expect(normaliseHostPattern("*.Example.com")).toBe("*.example.com");
    expect(normaliseHostPattern("api.example.com:8443")).toBe("api.example.com:8443");
    expect(normaliseHostPattern("api.example.com:443")).toBe("api.example.com:443");
    expect(normaliseHostPattern("[2001:DB8::1]")).toBe("[2001:db8::1]");
    for (const bad of ["", "https://github.com", "github.com/acme", "user@github.com", "*", "*.com", "a*.example.com", "*.10.0.0.1", "exa mple.com", "x?y"]) {
      expect(() => normaliseHostPattern(bad), bad).toThrow(/not a host pattern/);
    }
  });

  it("matches host, port and subdomains exactly", () => {
    const u = (s: string) => new URL(s);
    expect(hostAllowed(u("https://github.com/acme/x.git"), ["github.com"])).toBe(true);
    expect(hostAllowed(u("https://github.com:8443/x"), ["github.com"])).toBe(true);
    expect(hostAllowed(u("https://api.github.com/x"), ["github.com"])).toBe(false);
    expect(hostAllowed(u("https://github.com.evil.io/x"), ["github.com"])).toBe(false);
    expect(hostAllowed(u("https://evilgithub.com/x"), ["*.github.com"])).toBe(false);
    expect(hostAllowed(u("https://api.github.com/x"), ["*.github.com"])).toBe(true);
    expect(hostAllowed(u("https://github.com/x"), ["*.github.com"])).toBe(false);
    expect(hostAllowed(u("https://api.example.com/x"), ["api.example.com:8443"])).toBe(false);
    expect(hostAllowed(u("https://api.example.com:8443/x"), ["api.example.com:8443"])).toBe(true);
    expect(hostAllowed(u("https://api.example.com/x"), ["api.example.com:443"])).toBe(true);
    expect(hostAllowed(u("http://[::1]:80/x"), ["[::1]"])).toBe(true);
    expect(hostAllowed(u("https://github.com/x"), [])).toBe(false);
  });
});

describe("credentialFetch", () => {
  const scope = (hosts: string[]) => ({ secret: "TOKEN", allowedHosts: hosts });

  it("refuses to send to a host that is not on the list, before any request", async () => {
    const f = credentialFetch(scope(["github.com"]));
    const err = await f(`${capture}/out-host/x`, { headers: { authorization: "Bearer s3cret" } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundError);
    expect((err as OutboundError).code).toBe("credential_host_not_allowed");
    expect((err as Error).message).toContain("TOKEN");
    expect((err as Error).message).not.toContain("s3cret");
    expect(await captured("/out-host")).toEqual([]);
    const none = await credentialFetch(scope([]))(`${capture}/out-host/y`).catch((e: unknown) => e);
    expect((none as Error).message).toMatch(/no allowed hosts/);
    expect(await captured("/out-host")).toEqual([]);
  });

  it("sends to an allowed host", async () => {
    const res = await credentialFetch(scope(["127.0.0.1"]))(`${capture}/out-ok/x`, { headers: { authorization: "Bearer s3cret" } });
    expect(res.status).toBe(404);
    const seen = await captured("/out-ok");
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers.authorization).toBe("Bearer s3cret");
  });

  it("does not follow a redirect to another origin, and follows one within the origin", async () => {
    const f = credentialFetch(scope(["127.0.0.1", "localhost"]));
    // another origin: same address by another name
    const other = `http://localhost:${capturePort}/out-redirect-target/x`;
    const err = await f(`${capture}/__redirect/302?to=${encodeURIComponent(other)}`, { headers: { authorization: "Bearer s3cret" } }).catch((e: unknown) => e);
    expect((err as OutboundError).code).toBe("credential_redirect_refused");
    for (const status of [301, 307, 308]) {
      const e2 = await f(`${capture}/__redirect/${status}?to=${encodeURIComponent(other)}`, { method: "POST", body: "x", headers: { authorization: "Bearer s3cret" } }).catch((e: unknown) => e);
      expect((e2 as OutboundError).code).toBe("credential_redirect_refused");
    }
    expect(await captured("/out-redirect-target")).toEqual([]);
    // same origin: followed, the credential goes along, the body too for 307
    const same = `${capture}/out-redirect-same/y`;
    const res = await f(`${capture}/__redirect/307?to=${encodeURIComponent(same)}`, { method: "POST", body: "payload", headers: { authorization: "Bearer s3cret" } });
    expect(res.status).toBe(404);
    const seen = await captured("/out-redirect-same");
    expect(seen).toHaveLength(1);
    expect(seen[0]!.method).toBe("POST");
    expect(seen[0]!.headers.authorization).toBe("Bearer s3cret");
  });

  it("refuses https to http even on the same host", async () => {
    const calls: string[] = [];
    const fake: typeof fetch = async (input) => {
      const req = input as Request;
      calls.push(req.url);
      return new Response(null, { status: 302, headers: { location: "http://git.example.com/x" } });
    };
    const err = await credentialFetch(scope(["git.example.com"]), fake)("https://git.example.com/x", { headers: { authorization: "Bearer t" } }).catch((e: unknown) => e);
    expect((err as OutboundError).code).toBe("credential_redirect_refused");
    expect((err as Error).message).toMatch(/https to http/);
    expect(calls).toEqual(["https://git.example.com/x"]);
  });
});
