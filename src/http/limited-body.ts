/**
 * Reading a request body with a hard limit that holds for chunked requests too: a declared
 * Content-Length over the limit is refused before anything is read, and the body is read
 * through a counting loop that cancels the stream as soon as the count passes the limit,
 * so a client streaming gigabytes costs the Worker at most `limit` bytes (plus one chunk).
 * Each route turns `BodyTooLargeError` into a 413 in its own error form.
 */
import { concatBytes } from "../util/bytes";

export class BodyTooLargeError extends Error {
  readonly limit: number;
  constructor(limit: number) {
    super(`request body exceeds ${describeLimit(limit)}`);
    this.name = "BodyTooLargeError";
    this.limit = limit;
  }
}

export function describeLimit(bytes: number): string {
  return bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0 ? `${bytes / 1024 / 1024} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

/**
 * The bytes of a request's or response's body, or throws `BodyTooLargeError` having read
 * at most `limit` + one chunk (a declared Content-Length over the limit reads nothing).
 */
export async function readBodyLimited(message: Request | Response, limit: number): Promise<Uint8Array> {
  const declared = message.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared) > limit) {
    await message.body?.cancel().catch(() => undefined);
    throw new BodyTooLargeError(limit);
  }
  if (message.body === null) return new Uint8Array(0);
  const reader = message.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => undefined);
      throw new BodyTooLargeError(limit);
    }
    chunks.push(value);
  }
  return concatBytes(chunks, total);
}

/** The body as UTF-8 text, with the same limit. */
export async function readTextLimited(req: Request, limit: number): Promise<string> {
  return new TextDecoder().decode(await readBodyLimited(req, limit));
}
