/** Request bodies: JSON parsed and validated with zod; bad input is a 400 problem naming the field. */
import type { Context } from "hono";
import type { z } from "zod";
import { AppError } from "../errors";
import type { AppEnv } from "./app-env";
import { BodyTooLargeError, readTextLimited } from "./limited-body";

/** The org API's body limit. */
export const MAX_BODY_BYTES = 256 * 1024;

export async function jsonBody<S extends z.ZodType>(c: Context<AppEnv>, schema: S): Promise<z.infer<S>> {
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/(?:[\w.+-]*\+)?json\b/i.test(type)) {
    throw new AppError("UNSUPPORTED_MEDIA_TYPE", "expected a JSON body (Content-Type: application/json)");
  }
  const text = await textWithin(c.req.raw, MAX_BODY_BYTES);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new AppError("BAD_REQUEST", "the body is not valid JSON");
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 10).map((i) => ({ path: i.path.join("."), message: i.message }));
    const first = issues[0];
    throw new AppError("BAD_REQUEST", `invalid body${first ? `: ${first.path ? `${first.path}: ` : ""}${first.message}` : ""}`, { issues });
  }
  return parsed.data;
}

/** The body as JSON, null when it is not JSON; 413 past `limit` bytes (counted as read). */
export async function jsonOrNull(req: Request, limit: number): Promise<unknown> {
  const text = await textWithin(req, limit);
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The body as text, or a 413 problem (AppError) once more than `limit` bytes arrive. */
export async function textWithin(req: Request, limit: number): Promise<string> {
  try {
    return await readTextLimited(req, limit);
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw new AppError("PAYLOAD_TOO_LARGE", err.message, { limitBytes: err.limit });
    throw err;
  }
}
