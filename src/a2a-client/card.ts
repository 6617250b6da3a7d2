/**
 * External agents' cards, fetched once per isolate and kept CARD_TTL_MS (a card rarely
 * changes; a changed one is seen within that time). The card is public: it is fetched
 * without any credential or caller token, under the outbound URL policy, bounded like
 * every other request, and read with the SDK's resolver with the v0.3 compatibility
 * layer on (a v0.3 card becomes a v1.0 card whose interfaces say protocolVersion 0.3, so
 * the transport factory picks the v0.3 transport).
 *
 * Where the card is: a target URL ending in `.json` is the card itself; otherwise
 * `<url>/.well-known/agent-card.json` (where Shaman and most multi-agent servers put it),
 * and, when that is 404 and the URL has a path, the origin's `/.well-known/agent-card.json`.
 */
import type { AgentCard } from "@a2a-js/sdk";
import { DefaultAgentCardResolver, type AgentCardResolver } from "@a2a-js/sdk/client";
import type { UrlPolicy } from "../net/url-policy";
import { classify, RemoteCallError, type CallLog } from "./errors";
import { boundedFetch } from "./http";

export const CARD_TTL_MS = 5 * 60_000;
const MAX_CARDS = 500;
const MAX_CARD_REDIRECTS = 3;

interface Entry {
  card: AgentCard;
  expires: number;
}
const cards = new Map<string, Entry>();
const inflight = new Map<string, Promise<AgentCard>>();
const normaliser = new DefaultAgentCardResolver({ legacyCompat: { enabled: true } });

/** Forgets every cached card (tests). */
export function clearCardCache(): void {
  cards.clear();
  inflight.clear();
}

/** Where to look for the card of the agent at `targetUrl`, in order. */
export function cardUrls(targetUrl: string): string[] {
  const u = new URL(targetUrl);
  u.hash = "";
  if (u.pathname.endsWith(".json")) return [u.href];
  const path = u.pathname.endsWith("/") ? u.pathname : `${u.pathname}/`;
  const urls = [new URL(`${path}.well-known/agent-card.json`, u.origin).href];
  if (path !== "/") urls.push(new URL("/.well-known/agent-card.json", u.origin).href);
  return urls;
}

/** The agent's card (normalised to v1.0), from the isolate cache or fetched. */
export async function agentCard(targetUrl: string, policy: UrlPolicy, who: string, timeoutMs?: number): Promise<AgentCard> {
  const key = new URL(targetUrl).href;
  const hit = cards.get(key);
  if (hit && hit.expires > Date.now()) return hit.card;
  let pending = inflight.get(key);
  if (!pending) {
    pending = fetchCard(targetUrl, policy, who, timeoutMs).then(
      (card) => {
        if (cards.size >= MAX_CARDS) {
          const oldest = cards.keys().next();
          if (!oldest.done) cards.delete(oldest.value);
        }
        cards.set(key, { card, expires: Date.now() + CARD_TTL_MS });
        inflight.delete(key);
        return card;
      },
      (err: unknown) => {
        inflight.delete(key);
        throw err;
      },
    );
    inflight.set(key, pending);
  }
  return pending;
}

async function fetchCard(targetUrl: string, policy: UrlPolicy, who: string, timeoutMs?: number): Promise<AgentCard> {
  const candidates = cardUrls(targetUrl);
  for (const [i, first] of candidates.entries()) {
    const log: CallLog = {};
    const get = boundedFetch((input, init) => fetch(input, init), log, { policy, who, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
    let url = first;
    let res: Response;
    try {
      for (let hop = 0; ; hop++) {
        res = await get(url, { headers: { accept: "application/json", "A2A-Version": "1.0" } });
        const location = res.headers.get("location");
        if (res.status < 300 || res.status >= 400 || !location || hop >= MAX_CARD_REDIRECTS) break;
        url = new URL(location, url).href;
      }
    } catch (err) {
      throw classify(err, log, `the agent card of ${who}`, []);
    }
    if (res.status === 404 && i + 1 < candidates.length) continue;
    if (!res.ok) throw classify(new Error("card"), log, `the agent card of ${who}`, []);
    let raw: unknown;
    try {
      raw = await res.json();
    } catch {
      throw new RemoteCallError(`${who}: its agent card (${new URL(url).pathname}) is not JSON`, false, { status: res.status });
    }
    let card: AgentCard;
    try {
      if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw new Error("not an object");
      card = normaliser.normalizeAgentCard(raw);
    } catch {
      throw new RemoteCallError(`${who}: its agent card is not a valid A2A agent card`, false);
    }
    const usable = (card.supportedInterfaces ?? []).some((iface) => typeof iface?.url === "string" && /^(JSONRPC|HTTP\+JSON)$/i.test(iface.protocolBinding ?? ""));
    if (!usable) throw new RemoteCallError(`${who}: its agent card offers no JSON-RPC or HTTP+JSON interface`, false);
    return card;
  }
  throw new RemoteCallError(`${who}: no agent card found`, false);
}

/** An SDK card resolver answering from the cache above (for `ClientFactory.createFromUrl`). */
export class CachedCardResolver implements AgentCardResolver {
  constructor(
    private readonly policy: UrlPolicy,
    private readonly who: string,
    private readonly timeoutMs?: number,
  ) {}
  resolve(baseUrl: string): Promise<AgentCard> {
    return agentCard(baseUrl, this.policy, this.who, this.timeoutMs);
  }
  normalizeAgentCard(card: unknown): AgentCard {
    return normaliser.normalizeAgentCard(card);
  }
}
