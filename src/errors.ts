/**
 * Typed application errors. Routes throw `AppError`; one handler turns it into an HTTP
 * problem body (RFC 9457). Another org's resource is always NOT_FOUND, never FORBIDDEN.
 */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  PAYMENT_REQUIRED: 402,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNPROCESSABLE: 422,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

const TITLES: Record<ErrorCode, string> = {
  BAD_REQUEST: "Bad Request",
  UNAUTHORIZED: "Unauthorized",
  PAYMENT_REQUIRED: "Payment Required",
  FORBIDDEN: "Forbidden",
  NOT_FOUND: "Not Found",
  METHOD_NOT_ALLOWED: "Method Not Allowed",
  CONFLICT: "Conflict",
  PAYLOAD_TOO_LARGE: "Payload Too Large",
  UNSUPPORTED_MEDIA_TYPE: "Unsupported Media Type",
  UNPROCESSABLE: "Unprocessable Content",
  RATE_LIMITED: "Too Many Requests",
  INTERNAL: "Internal Server Error",
  UNAVAILABLE: "Service Unavailable",
};

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = "AppError";
    this.code = code;
    this.details = details;
  }
  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export const notFound = (what = "Resource") => new AppError("NOT_FOUND", `${what} not found`);

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  requestId: string;
  [extra: string]: unknown;
}

/** RFC 9457 problem body for an error; internal errors never expose their message or stack. */
export function problemBody(err: AppError, requestId: string): ProblemBody {
  return {
    type: `urn:shaman:error:${err.code.toLowerCase()}`,
    title: TITLES[err.code],
    status: err.status,
    detail: err.message,
    code: err.code,
    requestId,
    ...(err.details ?? {}),
  };
}

export function problemResponse(err: AppError, requestId: string, headers?: HeadersInit): Response {
  const h = new Headers(headers);
  h.set("content-type", "application/problem+json");
  if (err.code === "UNAUTHORIZED" && !h.has("www-authenticate")) h.set("www-authenticate", 'Bearer realm="shaman"');
  return new Response(JSON.stringify(problemBody(err, requestId)), { status: err.status, headers: h });
}
