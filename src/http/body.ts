/** Request bodies: JSON parsed and validated with zod; bad input is a 400 problem naming the field. */
import type { Context } from "hono";
import type { z } from "zod";
import { AppError } from "../errors";
import type { AppEnv } from "./app-env";

const MAX_BODY_BYTES = 256 * 1024;

export async function jsonBody<S extends z.ZodType>(c: Context<AppEnv>, schema: S): Promise<z.infer<S>> {
  const type = c.req.header("content-type") ?? "";
  if (!/^application\/(?:[\w.+-]*\+)?json\b/i.test(type)) {
    throw new AppError("UNSUPPORTED_MEDIA_TYPE", "expected a JSON body (Content-Type: application/json)");
  }
  const text = await c.req.text();
  if (text.length > MAX_BODY_BYTES) throw new AppError("PAYLOAD_TOO_LARGE", `request body exceeds ${MAX_BODY_BYTES / 1024} KiB`);
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
