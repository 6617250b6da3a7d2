/**
 * A2A wire shapes for both dialects Shaman speaks: v1.0 (proto JSON: `ROLE_USER`,
 * `TASK_STATE_COMPLETED`, parts as `{text}` / `{data}` / `{url}` / `{raw}`) and v0.3
 * (`kind`-tagged parts, lowercase roles and states). Incoming messages are normalised to
 * `StoredMessage`; outgoing tasks are rendered per dialect.
 */
import { z } from "zod";
import type { Json, RunSnapshot, RunStatus, StoredMessage, StoredPart } from "../runs/types";

export type Dialect = "1.0" | "0.3";

const JsonValue = z.json();
const Metadata = z.record(z.string(), JsonValue).optional();

// ---- v1.0 ----------------------------------------------------------------------------

const PartV1 = z
  .object({
    text: z.string().optional(),
    raw: z.string().optional(),
    url: z.string().optional(),
    data: JsonValue.optional(),
    metadata: Metadata,
    filename: z.string().optional(),
    mediaType: z.string().optional(),
  })
  .refine((p) => [p.text, p.raw, p.url, p.data].filter((v) => v !== undefined).length === 1, {
    message: "a part must have exactly one of text, raw, url or data",
  });

const MessageV1 = z.object({
  messageId: z.string().min(1).max(200),
  contextId: z.string().max(200).optional(),
  taskId: z.string().max(200).optional(),
  role: z.enum(["ROLE_USER", "ROLE_AGENT", "user", "agent"]),
  parts: z.array(PartV1).min(1).max(100),
  metadata: Metadata,
  extensions: z.array(z.string()).optional(),
  referenceTaskIds: z.array(z.string()).optional(),
});

export const SendMessageParamsV1 = z.object({
  tenant: z.string().optional(),
  message: MessageV1,
  configuration: z
    .object({
      acceptedOutputModes: z.array(z.string()).optional(),
      taskPushNotificationConfig: z.unknown().optional(),
      historyLength: z.number().int().min(0).optional(),
      returnImmediately: z.boolean().optional(),
    })
    .optional(),
  metadata: Metadata,
});

// ---- v0.3 ----------------------------------------------------------------------------

const PartV03 = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("text"), text: z.string(), metadata: Metadata }),
  z.object({ kind: z.literal("data"), data: JsonValue, metadata: Metadata }),
  z.object({
    kind: z.literal("file"),
    file: z.object({ uri: z.string().optional(), bytes: z.string().optional(), mimeType: z.string().optional(), name: z.string().optional() }),
    metadata: Metadata,
  }),
]);

const MessageV03 = z.object({
  kind: z.literal("message").optional(),
  messageId: z.string().min(1).max(200),
  contextId: z.string().max(200).optional(),
  taskId: z.string().max(200).optional(),
  role: z.enum(["user", "agent"]),
  parts: z.array(PartV03).min(1).max(100),
  metadata: Metadata,
  extensions: z.array(z.string()).optional(),
  referenceTaskIds: z.array(z.string()).optional(),
});

export const SendMessageParamsV03 = z.object({
  message: MessageV03,
  configuration: z
    .object({
      acceptedOutputModes: z.array(z.string()).optional(),
      historyLength: z.number().int().min(0).optional(),
      blocking: z.boolean().optional(),
      pushNotificationConfig: z.unknown().optional(),
    })
    .optional(),
  metadata: Metadata,
});

export const GetTaskParams = z.object({
  id: z.string().min(1).max(200),
  historyLength: z.number().int().min(0).optional(),
  tenant: z.string().optional(),
  metadata: Metadata,
});

/** A task id parameter (`CancelTask`, `SubscribeToTask`; v0.3 `tasks/cancel`, `tasks/resubscribe`). */
export const TaskIdParams = z.object({
  id: z.string().min(1).max(200),
  tenant: z.string().optional(),
  metadata: Metadata,
});

export const TASK_STATES_V1 = [
  "TASK_STATE_SUBMITTED",
  "TASK_STATE_WORKING",
  "TASK_STATE_INPUT_REQUIRED",
  "TASK_STATE_COMPLETED",
  "TASK_STATE_FAILED",
  "TASK_STATE_CANCELED",
  "TASK_STATE_REJECTED",
  "TASK_STATE_AUTH_REQUIRED",
] as const;

/**
 * `ListTasks` params (spec §3.1.4): every field optional; `pageSize` 1–100 (default 50),
 * `status` a task state (either version's spelling), `statusTimestampAfter` an RFC 3339
 * time. The HTTP+JSON binding sends them as query strings: `coerce` turns those into
 * numbers and booleans first, so both bindings are checked by the same schema.
 */
export const ListTasksParams = z
  .object({
    tenant: z.string().optional(),
    contextId: z.string().min(1).max(200).optional(),
    status: z
      .enum([...TASK_STATES_V1, "submitted", "working", "input-required", "completed", "failed", "canceled", "rejected", "auth-required", "TASK_STATE_UNSPECIFIED"])
      .optional(),
    pageSize: z.number().int().min(1).max(100).optional(),
    pageToken: z.string().max(500).optional(),
    historyLength: z.number().int().min(0).optional(),
    statusTimestampAfter: z.iso.datetime({ offset: true }).optional(),
    includeArtifacts: z.boolean().optional(),
    metadata: Metadata,
  })
  .strict();

export type ListTasksRequest = z.infer<typeof ListTasksParams>;

/** The run status a `ListTasks` status filter means (null: a state no run of Shaman is ever in). */
export function runStatusOf(state: NonNullable<ListTasksRequest["status"]>): RunStatus | null | undefined {
  switch (state) {
    case "TASK_STATE_UNSPECIFIED":
      return undefined;
    case "TASK_STATE_SUBMITTED":
    case "submitted":
      return "submitted";
    case "TASK_STATE_WORKING":
    case "working":
      return "working";
    case "TASK_STATE_INPUT_REQUIRED":
    case "input-required":
      return "input_required";
    case "TASK_STATE_COMPLETED":
    case "completed":
      return "completed";
    case "TASK_STATE_FAILED":
    case "failed":
      return "failed";
    case "TASK_STATE_CANCELED":
    case "canceled":
      return "canceled";
    default:
      return null;
  }
}

/** The text of a message: its text parts, and its data parts as JSON, one per line. */
export function messageText(m: StoredMessage): string {
  return m.parts
    .map((p) => (p.kind === "text" ? p.text : p.kind === "data" ? JSON.stringify(p.data) : p.url ? `[file ${p.filename ?? p.url}]` : `[file ${p.filename ?? "attached"}]`))
    .join("\n");
}

export interface SendRequest {
  message: StoredMessage;
  contextId: string | undefined;
  taskId: string | undefined;
  returnImmediately: boolean;
  historyLength: number | undefined;
  /** A push notification config given with the message (v1.0 `taskPushNotificationConfig`, v0.3 `pushNotificationConfig`). */
  pushConfig?: unknown;
}

export type Normalised = { success: true; data: SendRequest } | { success: false; error: z.ZodError };

export function normaliseSend(dialect: Dialect, params: unknown): Normalised {
  if (dialect === "1.0") {
    const r = SendMessageParamsV1.safeParse(params);
    if (!r.success) return { success: false, error: r.error };
    const m = r.data.message;
    const parts: StoredPart[] = m.parts.map((p) => {
      const extra = p.mediaType ? { mediaType: p.mediaType } : {};
      if (p.text !== undefined) return { kind: "text", text: p.text, ...extra };
      if (p.data !== undefined) return { kind: "data", data: p.data as Json, ...extra };
      return { kind: "file", ...(p.url ? { url: p.url } : {}), ...(p.raw ? { raw: p.raw } : {}), ...(p.filename ? { filename: p.filename } : {}), ...extra };
    });
    return {
      success: true,
      data: {
        message: { messageId: m.messageId, role: "user", parts, ...(m.metadata ? { metadata: m.metadata } : {}) },
        contextId: m.contextId || undefined,
        taskId: m.taskId || undefined,
        returnImmediately: r.data.configuration?.returnImmediately ?? false,
        historyLength: r.data.configuration?.historyLength,
        ...(r.data.configuration?.taskPushNotificationConfig != null ? { pushConfig: r.data.configuration.taskPushNotificationConfig } : {}),
      },
    };
  }
  const r = SendMessageParamsV03.safeParse(params);
  if (!r.success) return { success: false, error: r.error };
  const m = r.data.message;
  const parts: StoredPart[] = m.parts.map((p) => {
    if (p.kind === "text") return { kind: "text", text: p.text };
    if (p.kind === "data") return { kind: "data", data: p.data as Json };
    return {
      kind: "file",
      ...(p.file.uri ? { url: p.file.uri } : {}),
      ...(p.file.bytes ? { raw: p.file.bytes } : {}),
      ...(p.file.name ? { filename: p.file.name } : {}),
      ...(p.file.mimeType ? { mediaType: p.file.mimeType } : {}),
    };
  });
  return {
    success: true,
    data: {
      message: { messageId: m.messageId, role: "user", parts, ...(m.metadata ? { metadata: m.metadata } : {}) },
      contextId: m.contextId || undefined,
      taskId: m.taskId || undefined,
      // v0.3 clients wait unless they say otherwise.
      returnImmediately: r.data.configuration?.blocking === false,
      historyLength: r.data.configuration?.historyLength,
      ...(r.data.configuration?.pushNotificationConfig != null ? { pushConfig: r.data.configuration.pushNotificationConfig } : {}),
    },
  };
}

// ---- rendering -----------------------------------------------------------------------

const STATE_V1: Record<RunStatus, string> = {
  submitted: "TASK_STATE_SUBMITTED",
  working: "TASK_STATE_WORKING",
  input_required: "TASK_STATE_INPUT_REQUIRED",
  completed: "TASK_STATE_COMPLETED",
  failed: "TASK_STATE_FAILED",
  canceled: "TASK_STATE_CANCELED",
};

const STATE_V03: Record<RunStatus, string> = {
  submitted: "submitted",
  working: "working",
  input_required: "input-required",
  completed: "completed",
  failed: "failed",
  canceled: "canceled",
};

function renderPart(dialect: Dialect, p: StoredPart): Record<string, unknown> {
  if (dialect === "1.0") {
    const extra = p.mediaType ? { mediaType: p.mediaType } : {};
    if (p.kind === "text") return { text: p.text, ...extra };
    if (p.kind === "data") return { data: p.data, ...extra };
    return { ...(p.url ? { url: p.url } : {}), ...(p.raw ? { raw: p.raw } : {}), ...(p.filename ? { filename: p.filename } : {}), ...extra };
  }
  if (p.kind === "text") return { kind: "text", text: p.text };
  if (p.kind === "data") return { kind: "data", data: p.data };
  return { kind: "file", file: { ...(p.url ? { uri: p.url } : {}), ...(p.raw ? { bytes: p.raw } : {}), ...(p.filename ? { name: p.filename } : {}), ...(p.mediaType ? { mimeType: p.mediaType } : {}) } };
}

function renderMessage(dialect: Dialect, m: StoredMessage, taskId: string, contextId: string): Record<string, unknown> {
  return {
    ...(dialect === "0.3" ? { kind: "message" } : {}),
    messageId: m.messageId,
    contextId,
    taskId,
    role: dialect === "1.0" ? (m.role === "user" ? "ROLE_USER" : "ROLE_AGENT") : m.role,
    parts: m.parts.map((p) => renderPart(dialect, p)),
    ...(m.metadata ? { metadata: m.metadata } : {}),
  };
}

/** The A2A Task for a run, in the caller's dialect. */
export function renderTask(dialect: Dialect, run: RunSnapshot, historyLength?: number, opts: { includeArtifacts?: boolean } = {}): Record<string, unknown> {
  const taskId = run.runId;
  const answer: StoredMessage | null =
    run.status === "completed" && run.output !== null
      ? { messageId: `${taskId}-answer`, role: "agent", parts: [{ kind: "text", text: run.output }] }
      : run.status === "failed"
        ? { messageId: `${taskId}-error`, role: "agent", parts: [{ kind: "text", text: run.error ?? "the run failed" }] }
        : null;
  let history = [run.message, ...(answer ? [answer] : [])];
  if (historyLength !== undefined) history = historyLength === 0 ? [] : history.slice(-historyLength);
  const artifacts =
    opts.includeArtifacts !== false && run.status === "completed" && run.output !== null
      ? [
          {
            artifactId: `${taskId}-result`,
            name: "result",
            parts: [renderPart(dialect, { kind: "text", text: run.output, ...(dialect === "1.0" ? { mediaType: "text/plain" } : {}) })],
          },
        ]
      : [];
  return {
    ...(dialect === "0.3" ? { kind: "task" } : {}),
    id: taskId,
    contextId: run.contextId,
    status: {
      state: (dialect === "1.0" ? STATE_V1 : STATE_V03)[run.status],
      ...(answer && run.status === "failed" ? { message: renderMessage(dialect, answer, taskId, run.contextId) } : {}),
      timestamp: new Date(run.updatedAt).toISOString(),
    },
    artifacts,
    history: history.map((m) => renderMessage(dialect, m, taskId, run.contextId)),
    metadata: { shaman: { agent: run.agent.name, runId: run.runId, commit: run.agent.commit } },
  };
}
