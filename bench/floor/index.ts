// Same-runtime baselines for Shaman's orchestration (see wrangler.toml and docs/benchmarks.md).
// Nothing here touches storage: the object is created by being addressed (a new SQLite
// file under `wrangler dev`), and the only work is the queue hop and the RPC back, which
// is what every Shaman run or step pays at least.
import { DurableObject } from "cloudflare:workers";

type Hop = { id: string; hop: number };
type FloorEnv = { FLOOR: DurableObjectNamespace<FloorObject>; BROADCAST: DurableObjectNamespace<BroadcastObject>; JOBS: Queue<Hop> };

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

/**
 * The floor of a live stream (bench/streams.mjs): a bare hibernating Durable Object that
 * accepts WebSockets and broadcasts a schedule of JSON messages (POST body
 * `{"schedule": [[offsetMs, bytes], …]}`: the offsets and sizes of a real run's events),
 * each stamped with the time it was sent (`at`), as Shaman's run object stamps its events.
 * Messages due at the same moment go out in one synchronous stretch, as a run's
 * transition appends several events at once.
 */
export class BroadcastObject extends DurableObject<FloorEnv> {
  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      const pair = new WebSocketPair();
      this.ctx.acceptWebSocket(pair[1]);
      return new Response(null, { status: 101, webSocket: pair[0] });
    }
    // `batch`: the messages due at the same moment go as one JSON array (as Shaman's
    // `?batch=1` sockets get a transition's events in one message).
    const body = (await request.json().catch(() => null)) as { schedule?: unknown; batch?: boolean } | null;
    const batch = body?.batch === true;
    const schedule = Array.isArray(body?.schedule) ? (body.schedule as [number, number][]).slice(0, 100_000) : [];
    const started = Date.now();
    let i = 0;
    while (i < schedule.length) {
      const wait = started + Number(schedule[i]![0]) - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const due = Date.now() - started;
      const sockets = this.ctx.getWebSockets();
      const group: string[] = [];
      for (; i < schedule.length && Number(schedule[i]![0]) <= due; i++) {
        const head = JSON.stringify({ seq: i + 1, at: new Date().toISOString(), type: "bench", data: { text: "" } });
        const frame = JSON.stringify({ seq: i + 1, at: new Date().toISOString(), type: "bench", data: { text: "x".repeat(Math.max(0, Number(schedule[i]![1]) - head.length)) } });
        if (batch) group.push(frame);
        else
          for (const ws of sockets) {
            try {
              ws.send(frame);
            } catch {
              // closing
            }
          }
      }
      if (batch && group.length) {
        const array = `[${group.join(",")}]`;
        for (const ws of sockets) {
          try {
            ws.send(array);
          } catch {
            // closing
          }
        }
      }
    }
    for (const ws of this.ctx.getWebSockets()) {
      try {
        ws.close(1000, "done");
      } catch {
        // closed
      }
    }
    return Response.json({ sockets: this.ctx.getWebSockets().length, count: schedule.length });
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    try {
      ws.close(code >= 3000 && code <= 4999 ? code : 1000, "bye");
    } catch {
      // closed
    }
  }
}

export default {
  async fetch(request: Request, env: FloorEnv): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return new Response("ok");
    // /bcast/<name>: a WebSocket (upgrade), or POST to broadcast to every socket of that object.
    const bcast = /^\/bcast\/([^/]+)$/.exec(url.pathname);
    if (bcast) return env.BROADCAST.get(env.BROADCAST.idFromName(bcast[1]!)).fetch(request);
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
