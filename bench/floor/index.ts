// Same-runtime baselines for Shaman's orchestration (see wrangler.toml and docs/benchmarks.md).
// Nothing here touches storage: the object is created by being addressed (a new SQLite
// file under `wrangler dev`), and the only work is the queue hop and the RPC back, which
// is what every Shaman run or step pays at least.
import { DurableObject } from "cloudflare:workers";

type Hop = { id: string; hop: number };
type FloorEnv = { FLOOR: DurableObjectNamespace<FloorObject>; JOBS: Queue<Hop> };

/** How long an object waits for the consumer before giving up (a lost message shows as a 5xx). */
const WAIT_MS = 30_000;
const MAX_HOPS = 100;

export class FloorObject extends DurableObject<FloorEnv> {
  private hops = 0;
  private wake: ((err?: Error) => void) | null = null;

  /** Sends `hops` queue messages one after another (each after the consumer reported the
   * previous one back) and resolves when the last one has been reported. */
  async roundTrips(hops: number): Promise<number> {
    if (this.wake) throw new Error("already running");
    const started = Date.now();
    this.hops = hops;
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => this.wake?.(new Error(`no report within ${WAIT_MS} ms`)), WAIT_MS);
      this.wake = (err) => {
        clearTimeout(timer);
        this.wake = null;
        if (err) reject(err);
        else resolve();
      };
    });
    await this.env.JOBS.send({ id: this.ctx.id.toString(), hop: 1 });
    await done;
    return Date.now() - started;
  }

  /** The consumer's call back: queues the next hop, or wakes the waiting request. */
  async report(hop: number): Promise<void> {
    if (!this.wake) return; // a redelivery after the request answered
    if (hop < this.hops) await this.env.JOBS.send({ id: this.ctx.id.toString(), hop: hop + 1 });
    else this.wake();
  }
}

export default {
  async fetch(request: Request, env: FloorEnv): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return new Response("ok");
    // /floor/<name>: one round trip; /chain/<name>?hops=10: that many in sequence.
    const match = /^\/(floor|chain)\/([^/]+)$/.exec(url.pathname);
    if (!match) return new Response("not found", { status: 404 });
    const hops = match[1] === "floor" ? 1 : Math.min(MAX_HOPS, Math.max(1, Number(url.searchParams.get("hops") ?? 10) || 10));
    // A fresh name per request makes a new object, as Shaman makes one per run.
    const stub = env.FLOOR.get(env.FLOOR.idFromName(match[2]!));
    const ms = await stub.roundTrips(hops);
    return Response.json({ hops, ms });
  },

  async queue(batch: MessageBatch<Hop>, env: FloorEnv): Promise<void> {
    // Like Shaman's executor: a batch's messages are handled concurrently.
    await Promise.all(
      batch.messages.map(async (message) => {
        try {
          await env.FLOOR.get(env.FLOOR.idFromString(message.body.id)).report(message.body.hop);
          message.ack();
        } catch {
          message.retry();
        }
      }),
    );
  },
} satisfies ExportedHandler<FloorEnv, Hop>;
