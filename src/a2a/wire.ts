/**
 * A2A wire shapes for both dialects Shaman speaks: v1.0 (proto JSON: `ROLE_USER`,
 * `TASK_STATE_COMPLETED`, parts as `{text}` / `{data}` / `{url}` / `{raw}`) and v0.3
 * (`kind`-tagged parts, lowercase roles and states). Incoming messages are normalised to
 * `StoredMessage`; outgoing tasks are rendered per dialect: v1.0 as `@a2a-js/sdk`'s own
 * objects written with its `toJSON`, v0.3 typed by the SDK's v0.3 types.
 */
import { z } from "zod";
import { Artifact, Message, Part, Role, SendMessageRequest, Task, TaskState, type TaskStatus } from "@a2a-js/sdk";
import type { LegacyRestTransportHandler } from "@a2a-js/sdk/compat/v0_3/server";
import type { Json, PendingInput, RunSnapshot, RunStatus, StoredMessage, StoredPart } from "../runs/types";

export type Dialect = "1.0" | "0.3";

const JsonValue = z.json();
const Metadata = z.record(z.string(), JsonValue).optional();

// ---- v1.0 ----------------------------------------------------------------------------

const PartV1 = z
  .object({
    text: z.string().optional(),
    // Proto JSON bytes: base64, standard or URL-safe, padded or not.
    raw: z.string().regex(/^[A-Za-z0-9+/_-]*={0,2}$/, "raw: not base64").optional(),
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
  // The SDK's `Role` names (and the v0.3 spellings some clients send).
  role: z.enum(["ROLE_USER", "ROLE_AGENT", "user", "agent"] as const satisfies readonly (keyof typeof Role | "user" | "agent")[]),
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

/** The v1.0 task state names: the SDK's `TaskState` enum. */
type TaskStateName = Exclude<keyof typeof TaskState, "UNRECOGNIZED">;
const TASK_STATE_NAMES = Object.keys(TaskState).filter((k) => Number.isNaN(Number(k)) && k !== "UNRECOGNIZED") as [TaskStateName, ...TaskStateName[]];

/** The v0.3 task state names (the SDK's v0.3 `TaskState`, but `unknown`), as v1.0 states. */
const V03_STATES: Record<Exclude<V03TaskState, "unknown">, TaskState> = {
  submitted: TaskState.TASK_STATE_SUBMITTED,
  working: TaskState.TASK_STATE_WORKING,
  "input-required": TaskState.TASK_STATE_INPUT_REQUIRED,
  completed: TaskState.TASK_STATE_COMPLETED,
  failed: TaskState.TASK_STATE_FAILED,
  canceled: TaskState.TASK_STATE_CANCELED,
  rejected: TaskState.TASK_STATE_REJECTED,
  "auth-required": TaskState.TASK_STATE_AUTH_REQUIRED,
};

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
      .enum([...TASK_STATE_NAMES, ...(Object.keys(V03_STATES) as (keyof typeof V03_STATES)[])])
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
  const v1 = state in V03_STATES ? V03_STATES[state as keyof typeof V03_STATES] : TaskState[state as TaskStateName];
  if (v1 === TaskState.TASK_STATE_UNSPECIFIED) return undefined;
  return (Object.keys(STATE_V1) as RunStatus[]).find((s) => STATE_V1[s] === v1) ?? null;
}

/** The text of a message: its text parts, and its data parts as JSON, one per line. */
export function messageText(m: StoredMessage): string {
  return m.parts
    .map((p) => (p.kind === "text" ? p.text : p.kind === "data" ? JSON.stringify(p.data) : p.url ? `[file ${p.filename ?? p.url}]` : `[file ${p.filename ?? "attached"}]`))
    .join("\n");
}

/** The SDK's v0.3 layer sends data that is not an object as `{value}` with `data_part_compat`: the value it wraps. */
const DATA_PART_COMPAT = "data_part_compat";
function unwrapDataV03(data: Json, metadata: Record<string, Json> | undefined): Json {
  return metadata?.[DATA_PART_COMPAT] === true && data !== null && typeof data === "object" && !Array.isArray(data) && "value" in data ? (data.value ?? null) : data;
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

/** An SDK v1.0 `Part` (read by its codec from a part the schema checked) as a stored part. */
function storedPartV1(p: Part): StoredPart {
  const extra = p.mediaType ? { mediaType: p.mediaType } : {};
  const file = p.filename ? { filename: p.filename } : {};
  const c = p.content;
  if (c?.$case === "text") return { kind: "text", text: c.value, ...extra };
  if (c?.$case === "url") return { kind: "file", ...(c.value ? { url: c.value } : {}), ...file, ...extra };
  if (c?.$case === "raw") {
    const raw = NodeBuffer.from(c.value as Uint8Array).toString("base64");
    return { kind: "file", ...(raw ? { raw } : {}), ...file, ...extra };
  }
  // `data`; `data: null` too, which the codec reads as no content (the schema lets only data be null).
  return { kind: "data", data: c?.$case === "data" ? (c.value as Json) : null, ...extra };
}

export type Normalised = { success: true; data: SendRequest } | { success: false; error: z.ZodError };

export function normaliseSend(dialect: Dialect, params: unknown): Normalised {
  if (dialect === "1.0") {
    const r = SendMessageParamsV1.safeParse(params);
    if (!r.success) return { success: false, error: r.error };
    // The schema has checked it; the SDK's codec reads it into the SDK's own request.
    const req: SendMessageRequest = SendMessageRequest.fromJSON(r.data);
    const m = req.message!;
    const parts = m.parts.map(storedPartV1);
    return {
      success: true,
      data: {
        message: { messageId: m.messageId, role: "user", parts, ...(m.metadata ? { metadata: m.metadata } : {}) },
        contextId: m.contextId || undefined,
        taskId: m.taskId || undefined,
        returnImmediately: req.configuration?.returnImmediately ?? false,
        historyLength: req.configuration?.historyLength,
        ...(r.data.configuration?.taskPushNotificationConfig != null ? { pushConfig: r.data.configuration.taskPushNotificationConfig } : {}),
      },
    };
  }
  const r = SendMessageParamsV03.safeParse(params);
  if (!r.success) return { success: false, error: r.error };
  const m = r.data.message;
  const parts: StoredPart[] = m.parts.map((p) => {
    if (p.kind === "text") return { kind: "text", text: p.text };
    if (p.kind === "data") return { kind: "data", data: unwrapDataV03(p.data as Json, p.metadata) };
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
//
// v1.0 objects are the SDK's own (`Task`, `Message`, `Part`, `Artifact`, `TaskStatus` of
// `@a2a-js/sdk`), written with its generated `toJSON` (proto JSON: enums by name, empty
// strings, `false` and empty lists left out). v0.3 objects are typed by the SDK's v0.3
// types (below), which its compat layer declares but does not export by name.

/** The SDK's v0.3 wire types, read off its v0.3 REST handler's signatures. */
type V03Handler = LegacyRestTransportHandler;
export type V03Task = Awaited<ReturnType<V03Handler["getTask"]>>;
export type V03Message = Parameters<V03Handler["sendMessage"]>[0]["message"];
export type V03Part = V03Message["parts"][number];
export type V03Artifact = NonNullable<V03Task["artifacts"]>[number];
export type V03TaskState = V03Task["status"]["state"];
export type V03StreamEvent = Awaited<ReturnType<V03Handler["sendMessageStream"]>> extends AsyncGenerator<infer E, unknown, unknown> ? E : never;
export type V03StatusUpdate = Extract<V03StreamEvent, { kind: "status-update" }>;
export type V03ArtifactUpdate = Extract<V03StreamEvent, { kind: "artifact-update" }>;
type V03File = Extract<V03Part, { kind: "file" }>["file"];

/** A task state in v1.0 (the SDK's enum) for a run status. */
export const STATE_V1: Record<RunStatus, TaskState> = {
  submitted: TaskState.TASK_STATE_SUBMITTED,
  working: TaskState.TASK_STATE_WORKING,
  input_required: TaskState.TASK_STATE_INPUT_REQUIRED,
  completed: TaskState.TASK_STATE_COMPLETED,
  failed: TaskState.TASK_STATE_FAILED,
  canceled: TaskState.TASK_STATE_CANCELED,
};

/** A task state in v0.3 for a run status. */
export const STATE_V03: Record<RunStatus, V03TaskState> = {
  submitted: "submitted",
  working: "working",
  input_required: "input-required",
  completed: "completed",
  failed: "failed",
  canceled: "canceled",
};

/** workerd's `Buffer` (`nodejs_compat`): the SDK's `Part` holds raw bytes in one and encodes them with it. */
const NodeBuffer = (globalThis as unknown as { Buffer: { from(data: string, encoding: "base64"): Uint8Array; from(data: Uint8Array): { toString(encoding: "base64"): string } } }).Buffer;

/** A stored part as the SDK's v1.0 `Part`. */
export function partV1(p: StoredPart): Part {
  const content: Part["content"] =
    p.kind === "text"
      ? { $case: "text", value: p.text }
      : p.kind === "data"
        ? { $case: "data", value: p.data }
        : p.url
          ? { $case: "url", value: p.url }
          : p.raw
            ? { $case: "raw", value: NodeBuffer.from(p.raw, "base64") }
            : undefined;
  return { content, metadata: undefined, filename: (p.kind === "file" && p.filename) || "", mediaType: p.mediaType ?? "" };
}

/** A stored part as a v0.3 part. Data that is not an object is wrapped the way the SDK's v0.3 layer wraps it. */
export function partV03(p: StoredPart): V03Part {
  if (p.kind === "text") return { kind: "text", text: p.text };
  if (p.kind === "data") {
    return p.data !== null && typeof p.data === "object" && !Array.isArray(p.data)
      ? { kind: "data", data: p.data }
      : { kind: "data", data: { value: p.data }, metadata: { [DATA_PART_COMPAT]: true } };
  }
  const file = { ...(p.url ? { uri: p.url } : {}), ...(p.raw ? { bytes: p.raw } : {}), ...(p.filename ? { name: p.filename } : {}), ...(p.mediaType ? { mimeType: p.mediaType } : {}) };
  return { kind: "file", file: file as V03File };
}

/** A stored message of a task as the SDK's v1.0 `Message`. */
export function messageV1(m: StoredMessage, taskId: string, contextId: string): Message {
  return {
    messageId: m.messageId,
    contextId,
    taskId,
    role: m.role === "user" ? Role.ROLE_USER : Role.ROLE_AGENT,
    parts: m.parts.map(partV1),
    metadata: m.metadata,
    extensions: [],
    referenceTaskIds: [],
  };
}

/** A stored message of a task as a v0.3 message. */
export function messageV03(m: StoredMessage, taskId: string, contextId: string): V03Message {
  return {
    kind: "message",
    messageId: m.messageId,
    contextId,
    taskId,
    role: m.role,
    parts: m.parts.map(partV03),
    ...(m.metadata ? { metadata: m.metadata } : {}),
  };
}

/**
 * The agent's question of a task waiting for input, as its status message: the prompts as
 * text and the pending requests as a data part `{ inputs }` (each with its `requestId`, so a
 * client can name the one it answers). The Task's status and the stream's `input-required`
 * status update carry the same one.
 */
export function inputRequiredMessage(messageId: string, inputs: readonly PendingInput[]): StoredMessage {
  const text = inputs.length ? inputs.map((i) => i.prompt).join("\n\n") : "The task is waiting for input.";
  return { messageId, role: "agent", parts: [{ kind: "text", text }, { kind: "data", data: { inputs: inputs as unknown as Json }, mediaType: "application/json" }] };
}

/** The pieces of a run's Task, in Shaman's own terms (shared by both dialects). */
function taskParts(run: RunSnapshot, historyLength: number | undefined, includeArtifacts: boolean) {
  const taskId = run.runId;
  const answer: StoredMessage | null =
    run.status === "completed" && run.output !== null
      ? { messageId: `${taskId}-answer`, role: "agent", parts: [{ kind: "text", text: run.output }] }
      : run.status === "failed"
        ? { messageId: `${taskId}-error`, role: "agent", parts: [{ kind: "text", text: run.error ?? "the run failed" }] }
        : null;
  let history = [run.message, ...(answer ? [answer] : [])];
  if (historyLength !== undefined) history = historyLength === 0 ? [] : history.slice(-historyLength);
  const result = includeArtifacts && run.status === "completed" && run.output !== null ? run.output : null;
  return {
    taskId,
    history,
    result,
    statusMessage:
      answer && run.status === "failed"
        ? answer
        : run.status === "input_required"
          ? inputRequiredMessage(`${taskId}-input-${run.inputs[0]?.requestId ?? "pending"}`, run.inputs ?? [])
          : null,
    timestamp: new Date(run.updatedAt).toISOString(),
    metadata: { shaman: { agent: run.agent.name, runId: run.runId, commit: run.agent.commit } },
  };
}

/** The v1.0 Task of a run, as the SDK's `Task` object. */
export function taskV1(run: RunSnapshot, historyLength?: number, opts: { includeArtifacts?: boolean } = {}): Task {
  const t = taskParts(run, historyLength, opts.includeArtifacts !== false);
  const status: TaskStatus = {
    state: STATE_V1[run.status],
    message: t.statusMessage ? messageV1(t.statusMessage, t.taskId, run.contextId) : undefined,
    timestamp: t.timestamp,
  };
  const artifacts: Artifact[] =
    t.result !== null
      ? [{ artifactId: `${t.taskId}-result`, name: "result", description: "", parts: [partV1({ kind: "text", text: t.result, mediaType: "text/plain" })], metadata: undefined, extensions: [] }]
      : [];
  return { id: t.taskId, contextId: run.contextId, status, artifacts, history: t.history.map((m) => messageV1(m, t.taskId, run.contextId)), metadata: t.metadata };
}

/** The v0.3 Task of a run. */
export function taskV03(run: RunSnapshot, historyLength?: number, opts: { includeArtifacts?: boolean } = {}): V03Task {
  const t = taskParts(run, historyLength, opts.includeArtifacts !== false);
  const artifacts: V03Artifact[] = t.result !== null ? [{ artifactId: `${t.taskId}-result`, name: "result", parts: [partV03({ kind: "text", text: t.result })] }] : [];
  return {
    kind: "task",
    id: t.taskId,
    contextId: run.contextId,
    status: {
      state: STATE_V03[run.status],
      ...(t.statusMessage ? { message: messageV03(t.statusMessage, t.taskId, run.contextId) } : {}),
      timestamp: t.timestamp,
    },
    artifacts,
    history: t.history.map((m) => messageV03(m, t.taskId, run.contextId)),
    metadata: t.metadata,
  };
}

/** The A2A Task for a run, in the caller's dialect, as JSON (v1.0 through the SDK's `Task.toJSON`). */
export function renderTask(dialect: Dialect, run: RunSnapshot, historyLength?: number, opts: { includeArtifacts?: boolean } = {}): Record<string, unknown> {
  if (dialect === "1.0") return Task.toJSON(taskV1(run, historyLength, opts)) as Record<string, unknown>;
  return taskV03(run, historyLength, opts) as unknown as Record<string, unknown>;
}
