/**
 * Validation of a repository URL given by an org admin, before the platform fetches it.
 * Only public HTTPS hosts are allowed in production; `allowPrivateNetwork` (local
 * development and tests) also lets plain http and private/loopback hosts through.
 *
 * Host names that resolve to a private address cannot be checked here (a Worker cannot
 * resolve DNS); Cloudflare's fetch does not reach private networks from a deployed Worker.
 */
import { GitError } from "./errors";

export { GitError } from "./errors";

export const MAX_GIT_URL_LENGTH = 2048;

const PRIVATE_SUFFIXES = [".localhost", ".local", ".internal"];

export function validateGitUrl(raw: string, opts: { allowPrivateNetwork: boolean }): URL {
  const invalid = (message: string) => new GitError("invalid_url", message);
  const text = raw.trim();
  if (text === "") throw invalid("the repository URL is empty");
  if (text.length > MAX_GIT_URL_LENGTH) {
    throw invalid(`the repository URL is ${text.length} characters long, over the ${MAX_GIT_URL_LENGTH} limit`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid("the repository URL is not a valid URL (expected e.g. https://github.com/acme/agents.git)");
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && opts.allowPrivateNetwork)) {
    throw invalid(
      `the repository URL must use https:// (got ${url.protocol.replace(/:$/, "")}://)` +
        (url.protocol === "http:" ? "; plain http is only allowed in local development" : ""),
    );
  }
  if (url.username !== "" || url.password !== "") {
    throw invalid("the repository URL must not contain credentials: put the token in an org secret instead");
  }
  if (url.search !== "" || url.hash !== "") {
    throw invalid("the repository URL must not contain a query string or a fragment");
  }
  if (url.hostname === "") throw invalid("the repository URL has no host");
  if (!opts.allowPrivateNetwork) {
    const reason = privateHostReason(url.hostname);
    if (reason) throw invalid(`the repository host ${url.hostname} is not allowed: ${reason}`);
  }
  return url;
}

/** Why `hostname` (as normalised by the URL parser) is a local or private host, or null. */
export function privateHostReason(hostname: string): string | null {
  const host = hostname.toLowerCase().replace(/\.+$/, "");
  if (host.startsWith("[")) return privateIPv6Reason(host.slice(1, -1));
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return privateIPv4Reason(host.split(".").map(Number));
  if (host === "localhost" || PRIVATE_SUFFIXES.some((s) => host.endsWith(s))) return "it is a local host name";
  if (!host.includes(".")) return "it is not a public host name";
  return null;
}

const V4_RANGES: Array<[number, number, number, string]> = [
  // [first octets as a 32-bit number, prefix length, unused, reason]
  [0x00000000, 8, 0, "it is in 0.0.0.0/8"],
  [0x0a000000, 8, 0, "it is a private address (10.0.0.0/8)"],
  [0x64400000, 10, 0, "it is a shared address (100.64.0.0/10)"],
  [0x7f000000, 8, 0, "it is a loopback address"],
  [0xa9fe0000, 16, 0, "it is a link-local address"],
  [0xac100000, 12, 0, "it is a private address (172.16.0.0/12)"],
  [0xc0a80000, 16, 0, "it is a private address (192.168.0.0/16)"],
  [0xe0000000, 4, 0, "it is a multicast address"],
  [0xf0000000, 4, 0, "it is a reserved address"],
];

function privateIPv4Reason(octets: number[]): string | null {
  if (octets.length !== 4 || octets.some((o) => !(o >= 0 && o <= 255))) return "it is not a valid IPv4 address";
  const value = ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
  for (const [base, bits, , reason] of V4_RANGES) {
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    if ((value & mask) >>> 0 === base) return reason;
  }
  return null;
}

/** Parses an IPv6 literal (no brackets) into 8 16-bit groups, or null. */
function parseIPv6(text: string): number[] | null {
  let s = text;
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  // a trailing dotted IPv4 part becomes two groups
  const v4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const o = v4[2]!.split(".").map(Number);
    if (o.some((x) => x > 255)) return null;
    s = `${v4[1]}${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const part = (p: string) => (p === "" ? [] : p.split(":").map((g) => (/^[0-9a-f]{1,4}$/i.test(g) ? parseInt(g, 16) : NaN)));
  const head = part(halves[0]!);
  const tail = halves.length === 2 ? part(halves[1]!) : [];
  if ([...head, ...tail].some((g) => Number.isNaN(g))) return null;
  if (halves.length === 1) return head.length === 8 ? head : null;
  const fill = 8 - head.length - tail.length;
  if (fill < 1) return null;
  return [...head, ...new Array<number>(fill).fill(0), ...tail];
}

function privateIPv6Reason(text: string): string | null {
  const g = parseIPv6(text);
  if (!g) return "it is not a valid IPv6 address";
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g as [number, number, number, number, number, number, number, number];
  const zeroPrefix = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0;
  if (zeroPrefix && g5 === 0 && g6 === 0 && (g7 === 0 || g7 === 1)) {
    return g7 === 1 ? "it is a loopback address" : "it is the unspecified address";
  }
  if ((g0 & 0xfe00) === 0xfc00) return "it is a private address (fc00::/7)";
  if ((g0 & 0xffc0) === 0xfe80) return "it is a link-local address (fe80::/10)";
  if ((g0 & 0xff00) === 0xff00) return "it is a multicast address";
  // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d): judge the embedded IPv4 address
  if (zeroPrefix && (g5 === 0xffff || g5 === 0)) {
    const reason = privateIPv4Reason([g6 >> 8, g6 & 0xff, g7 >> 8, g7 & 0xff]);
    if (reason) return `${reason} (IPv4-mapped)`;
  }
  return null;
}
