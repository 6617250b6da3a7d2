/**
 * A task's events as Server-Sent Events (SendStreamingMessage, SubscribeToTask, and the
 * HTTP+JSON `:stream` / `:subscribe`), lossless:
 * - every SSE event's `id` is the run event's seq (the Task's is the seq it reflects), so a
 *   client that reconnects with `Last-Event-ID` gets exactly what it missed, for the whole
 *   life of the run (the log is the run object's, kept with the run), then live events;
 * - the run object hands the gateway its log after a seq and then each new event as it is
 *   appended (`GET /stream`, NDJSON, one synchronous replay-and-register: no polling, no gap,
 *   no duplicate); any number of subscribers read the same log, in the same order;
 * - the stream ends when the task reaches a terminal state, or an interrupted one
 *   (input-required) that happens while streaming or was the last thing replayed. A feed
 *   that ends early (the object restarted, or cut a reader that fell behind) is opened again
 *   after the last seq seen.
 */
import type { Context } from "hono";
import { ORG_HEADER } from "../../durable-objects/run-object";
import type { AppEnv } from "../http/app-env";
import { runStub } from "../runs/stub";
import { TERMINAL_RUN_STATUSES, type RunEvent, type RunSnapshot, type RunStatus } from "../runs/types";
import { JSONRPC, JsonRpcError, type JsonRpcId } from "./jsonrpc";
import { statusOf, streamResponsesFor, taskResponse } from "./events";
import type { Dialect } from "./wire";

export interface TaskStreamOptions {
  runId: string;
  orgId: string;
  dialect: Dialect;
  binding: "jsonrpc" | "rest";
  /** JSON-RPC: each SSE data is a JSON-RPC response with this id. */
  rpcId?: JsonRpcId;
  /** Replay after this seq (the `Last-Event-ID` header, as a number or as sent); without it the Task comes first. */
  lastEventId?: number | string;
  /** The Task's history length (the first event). */
  historyLength?: number;
  /**
   * The Task to send first, as the caller already has it (SendStreamingMessage: the snapshot
   * the run's start returned); the events after its `lastSeq` follow, so nothing the run did
   * in between is missed. Without it the Task is the run's state when the stream opens.
   */
  snapshot?: RunSnapshot;
}

/** Idle streams get an SSE comment this often, so proxies keep them open. */
const KEEPALIVE_MS = 15_000;
/** Feeds opened again in a row without a new event before the stream gives up (the client resumes). */
const MAX_REOPENS = 3;

const encoder = new TextEncoder();

/** A `Last-Event-ID` as a seq: a non-negative integer, else null. */
export function parseLastEventId(value: string | number | null | undefined): number | null {
  if (value === null || value === undefined) return null;
  const text = String(value).trim();
  return /^\d{1,15}$/.test(text) ? Number(text) : null;
}

export async function taskEventStream(c: Context<AppEnv>, opts: TaskStreamOptions): Promise<Response> {
  const after = parseLastEventId(opts.lastEventId);
  const given = after === null ? (opts.snapshot ?? null) : null;
  const first = await openFeed(c.env, opts, after ?? given?.lastSeq ?? null);
  if (!first) throw new JsonRpcError(JSONRPC.TASK_NOT_FOUND, "Task not found");

  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  const wrap = (payload: unknown) =>
    JSON.stringify(opts.binding === "jsonrpc" ? { jsonrpc: "2.0", id: opts.rpcId ?? null, result: payload } : payload);
  let closed = false;
  const send = async (id: number, payload: unknown) => {
    if (!closed) await writer.write(encoder.encode(`id: ${id}\ndata: ${wrap(payload)}\n\n`));
  };
  const keepalive = setInterval(() => {
    if (!closed) writer.write(encoder.encode(": keep-alive\n\n")).catch(() => undefined);
  }, KEEPALIVE_MS);

  const pump = async () => {
    let feed: Feed | null = first;
    let snapshot: RunSnapshot | null = null;
    let lastSeq = after ?? 0;
    /** The run's status when the current feed opened: a finished run's feed ends after its replay. */
    let feedStatus: RunStatus | null = null;
    /** An interruption was the last thing replayed: the stream ends once the replay does. */
    let interruptedAtEnd = false;
    let reopens = 0;
    try {
      while (feed && !closed) {
        const progressBefore = lastSeq;
        for await (const line of feed.lines) {
          if (closed) break;
          const item = JSON.parse(line) as { type: string; snapshot?: RunSnapshot };
          if (item.type === "snapshot") {
            feedStatus = item.snapshot!.status;
            if (snapshot) continue; // a reopened feed: the first snapshot still names the task
            snapshot = item.snapshot!;
            if (after === null) {
              const task = given ?? snapshot;
              lastSeq = task.lastSeq;
              await send(task.lastSeq, taskResponse(task, opts.dialect, opts.historyLength));
              if (TERMINAL_RUN_STATUSES.has(task.status)) return;
            }
            continue;
          }
          if (item.type === "live") {
            feed.live = true;
            if (interruptedAtEnd || (feedStatus && TERMINAL_RUN_STATUSES.has(feedStatus))) return;
            continue;
          }
          const event = item as unknown as RunEvent;
          if (!snapshot || event.seq <= lastSeq) continue;
          lastSeq = event.seq;
          const responses = streamResponsesFor(event, snapshot, opts.dialect);
          for (const r of responses) await send(event.seq, r);
          const next = statusOf(event, snapshot);
          if (responses.length) interruptedAtEnd = false;
          if (next && TERMINAL_RUN_STATUSES.has(next)) return;
          if (next === "input_required") {
            if (feed.live) return;
            interruptedAtEnd = true;
          }
        }
        if (closed) return;
        // The feed ended before the task did: open it again after the last seq seen.
        reopens = lastSeq > progressBefore ? 0 : reopens + 1;
        if (reopens > MAX_REOPENS) return;
        feed = await openFeed(c.env, opts, lastSeq);
      }
    } catch (err) {
      if (!closed) console.error(`a2a stream of ${opts.runId} ended early: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      clearInterval(keepalive);
      feed?.cancel();
      if (!closed) {
        closed = true;
        await writer.close().catch(() => undefined);
      }
    }
  };
  // A client that goes away makes the next write fail; the pump then stops and lets go of the feed.
  writer.closed.catch(() => {
    closed = true;
  });
  void pump().catch(() => undefined);

  return new Response(readable, {
    headers: {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    },
  });
}

interface Feed {
  lines: AsyncIterable<string>;
  live: boolean;
  cancel(): void;
}

/** Opens the run object's NDJSON feed (snapshot first, events after `after`); null when the run is not this org's. */
async function openFeed(env: Env, opts: TaskStreamOptions, after: number | null): Promise<Feed | null> {
  const url = new URL("https://run.internal/stream?snapshot=1");
  if (after !== null) url.searchParams.set("after", String(after));
  const res = await runStub(env, opts.runId).fetch(new Request(url, { headers: { [ORG_HEADER]: opts.orgId } }));
  if (res.status === 404) {
    await res.body?.cancel();
    return null;
  }
  if (!res.ok || !res.body) throw new Error(`the run's event feed answered ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  async function* lines(): AsyncGenerator<string> {
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line) yield line;
      }
    }
  }
  return {
    lines: lines(),
    live: false,
    cancel: () => void reader.cancel().catch(() => undefined),
  };
}
