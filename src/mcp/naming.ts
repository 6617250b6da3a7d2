/**
 * Model-facing names of MCP tools: `<server>__<tool>`, restricted to what every provider
 * accepts (`^[a-zA-Z0-9_-]{1,64}$`). Characters outside that set become `_`; a name that
 * had to be changed or shortened, or that two tools would share, gets a suffix made from
 * a hash of the exact server and tool names, so names stay unique and the same from turn
 * to turn (they do not depend on the order servers answer in).
 */

export const MODEL_TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const MAX = 64;

/** FNV-1a (32 bit) as 8 hex digits: short, stable, synchronous. */
function hash8(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

function sanitize(text: string): string {
  return text.replace(/[^a-zA-Z0-9_-]/g, "_");
}

function withSuffix(base: string, server: string, tool: string): string {
  const suffix = `_${hash8(`${server}\u0000${tool}`)}`;
  return base.slice(0, MAX - suffix.length) + suffix;
}

/**
 * Names for `(server, tool)` pairs, in the order given. The pairs are assumed distinct
 * (a server lists each tool once; server names are unique per agent).
 */
export function namespaceTools(pairs: readonly { server: string; tool: string }[]): string[] {
  const bases = pairs.map(({ server, tool }) => {
    const raw = `${server}__${tool}`;
    const clean = sanitize(raw);
    return { clean, exact: clean === raw && clean.length <= MAX && clean.length > 0 };
  });
  const counts = new Map<string, number>();
  for (const b of bases) counts.set(b.clean.slice(0, MAX), (counts.get(b.clean.slice(0, MAX)) ?? 0) + 1);
  const names = bases.map((b, i) => {
    const { server, tool } = pairs[i]!;
    return b.exact && counts.get(b.clean) === 1 ? b.clean : withSuffix(b.clean, server, tool);
  });
  // A suffixed name could still meet another tool's plain name (vanishingly rare): suffix again.
  const seen = new Set<string>();
  return names.map((name, i) => {
    let n = name;
    for (let k = 1; seen.has(n); k++) n = withSuffix(name, pairs[i]!.server, `${pairs[i]!.tool}\u0000${k}`);
    seen.add(n);
    return n;
  });
}
