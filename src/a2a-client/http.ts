/**
 * The fetch the A2A client uses for one remote call: every request obeys the outbound URL
 * policy, carries the call's headers, is bounded in time (REMOTE_REQUEST_TIMEOUT_MS until
 * the whole body is read; for an event stream, until its headers arrive: the stream itself
 * is bounded by the caller's signal) and in size, and never follows a redirect on its own
 * (a credentialed base fetch follows same-origin ones itself, see src/net/outbound.ts).
 * What it saw is written to the call's CallLog, so errors can be classified afterwards.
 */
import { BodyTooLargeError, readBodyLimited } from "../http/limited-body";
import { OutboundError } from "../net/outbound";
import { outboundUrlProblem, type UrlPolicy } from "../net/url-policy";
import { RemoteCallError, type CallLog } from "./errors";

export const REMOTE_REQUEST_TIMEOUT_MS = 15_000;
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

export interface BoundedFetchOptions {
  policy: UrlPolicy;
  /** Headers set on every request (replacing any the SDK set under the same name). */
  headers?: Record<string, string>;
  timeoutMs?: number;
  /** For messages: "the agent 'x'". */
  who: string;
}

const NULL_BODY = new Set([101, 204, 205, 304]);

export function boundedFetch(base: typeof fetch, log: CallLog, opts: BoundedFetchOptions): typeof fetch {
  const timeoutMs = Math.min(opts.timeoutMs ?? REMOTE_REQUEST_TIMEOUT_MS, REMOTE_REQUEST_TIMEOUT_MS);
  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    const problem = outboundUrlProblem(req.url, opts.policy);
    if (problem) throw new RemoteCallError(`${opts.who}: its endpoint ${safeOrigin(req.url)} may not be called: ${problem}`, false);
    const headers = new Headers(req.headers);
    for (const [name, value] of Object.entries(opts.headers ?? {})) headers.set(name, value);

    const controller = new AbortController();
    const callerSignal = req.signal;
    const onCallerAbort = () => controller.abort(callerSignal.reason);
    if (callerSignal.aborted) controller.abort(callerSignal.reason);
    else callerSignal.addEventListener("abort", onCallerAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      log.timedOut = true;
      controller.abort(new Error("timeout"));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      callerSignal.removeEventListener("abort", onCallerAbort);
    };

    let res: Response;
    try {
      res = await base(new Request(req, { headers, signal: controller.signal, redirect: "manual" }));
    } catch (err) {
      done();
      if (timedOut) throw new RemoteCallError(`${opts.who} did not answer in time`, true);
      if (err instanceof OutboundError || err instanceof RemoteCallError || callerSignal.aborted) throw err;
      log.networkError = true;
      throw err;
    }
    log.lastStatus = res.status;
    if (res.ok && (res.headers.get("content-type") ?? "").toLowerCase().startsWith("text/event-stream")) {
      // The stream's length is the caller's business (its signal aborts it); only the wait
      // for its headers was bounded here.
      clearTimeout(timer);
      return res;
    }
    try {
      let body: Uint8Array;
      try {
        body = await readBodyLimited(res, MAX_RESPONSE_BYTES);
      } catch (tooLarge) {
        if (!(tooLarge instanceof BodyTooLargeError)) throw tooLarge;
        log.tooLarge = true;
        throw new RemoteCallError(`${opts.who} answered with more than ${MAX_RESPONSE_BYTES} bytes`, false, { status: res.status });
      }
      return new Response(NULL_BODY.has(res.status) ? null : body, { status: res.status, statusText: res.statusText, headers: res.headers });
    } catch (err) {
      if (timedOut) throw new RemoteCallError(`${opts.who} did not answer in time`, true);
      if (err instanceof RemoteCallError || callerSignal.aborted) throw err;
      log.networkError = true;
      throw err;
    } finally {
      done();
    }
  };
}

export function safeOrigin(raw: string): string {
  try {
    return new URL(raw).origin;
  } catch {
    return "(invalid URL)";
  }
}
