/**
 * The A2A wire shapes come from `@a2a-js/sdk` (issue 11 item 10): a v1.0 Task or stream
 * response is exactly what the SDK's own codec writes (`toJSON(fromJSON(x))` gives `x`
 * back, byte for byte), and a v0.3 one is what the SDK's v0.3 compat layer makes of the
 * v1.0 one (its push serializer is the translator it exports). Pure rendering: no Worker.
 */
import { StreamResponse, Task } from "@a2a-js/sdk";
import { V03PushNotificationSerializer } from "@a2a-js/sdk/compat/v0_3/server";
import { describe, expect, it } from "vitest";
import { streamResponsesFor, taskResponse } from "../src/a2a/events";
import { normaliseSend, renderTask } from "../src/a2a/wire";
import type { RunEvent, RunSnapshot } from "../src/runs/types";

const message: RunSnapshot["message"] = {
  messageId: "m1",
  role: "user",
  parts: [
    { kind: "text", text: "hello" },
    { kind: "data", data: { a: 1 }, mediaType: "application/json" },
    { kind: "file", raw: "aGVsbG8=", filename: "hello.txt", mediaType: "text/plain" },
    { kind: "file", url: "https://files.example/report.pdf" },
  ],
  metadata: { from: "test" },
};

function snapshot(over: Partial<RunSnapshot> = {}): RunSnapshot {
  return {
    runId: "run_1",
    contextId: "ctx_1",
    status: "completed",
    output: "the answer",
    error: null,
    createdAt: 0,
    updatedAt: 1_000,
    lastSeq: 9,
    steps: [{ id: "s1", parentId: null }],
    inputs: [],
    message,
    agent: { name: "Echo", commit: "abc" },
    ...over,
  } as RunSnapshot;
}

const runs = {
  completed: snapshot(),
  failed: snapshot({ status: "failed", output: null, error: "it broke" }),
  working: snapshot({ status: "working", output: null }),
};

const ev = (type: string, seq: number, data: Record<string, unknown> = {}, stepId: string | null = null) => ({ type, seq, at: "2026-01-01T00:00:00.000Z", stepId, data }) as unknown as RunEvent;

const events: RunEvent[] = [
  ev("step.started", 2, { turn: 1, attempt: 1 }, "s1"),
  ev("model.delta", 3, { turn: 1, attempt: 1, index: 0, text: "the " }, "s1"),
  ev("model.delta", 4, { turn: 1, attempt: 1, index: 1, text: "answer", last: true }, "s1"),
  ev("run.input_required", 5, { inputs: [{ id: "q1", prompt: "Approve?" }] }),
  ev("run.working", 6),
  ev("step.completed", 7, { output: "the answer" }, "s1"),
  ev("run.completed", 8),
  ev("run.failed", 8, { error: "it broke" }),
  ev("run.canceled", 8, { error: "stopped" }),
];

const json = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;
const v03Of = (response: unknown) => JSON.parse(new V03PushNotificationSerializer().serialize(StreamResponse.fromJSON(response)).body) as unknown;

describe("v1.0: what the SDK's codec writes", () => {
  for (const [name, run] of Object.entries(runs)) {
    for (const historyLength of [undefined, 0, 1]) {
      it(`a ${name} task (historyLength ${historyLength}) is a fixed point of Task.toJSON(Task.fromJSON(…))`, () => {
        const task = json(renderTask("1.0", run, historyLength));
        expect(Task.toJSON(Task.fromJSON(task))).toEqual(task);
        const first = json(taskResponse(run, "1.0", historyLength));
        expect(StreamResponse.toJSON(StreamResponse.fromJSON(first))).toEqual(first);
      });
    }
  }

  it("every stream response is a fixed point of StreamResponse's codec", () => {
    const responses = events.flatMap((e) => streamResponsesFor(e, runs.working, "1.0")).map(json);
    expect(responses).toHaveLength(events.length);
    for (const r of responses) expect(StreamResponse.toJSON(StreamResponse.fromJSON(r))).toEqual(r);
  });

  it("keeps every part of the message, raw bytes and all", () => {
    const task = Task.fromJSON(renderTask("1.0", runs.working));
    expect(task.history[0]!.parts.map((p) => [p.content?.$case, p.filename, p.mediaType])).toEqual([
      ["text", "", ""],
      ["data", "", "application/json"],
      ["raw", "hello.txt", "text/plain"],
      ["url", "", ""],
    ]);
    expect((renderTask("1.0", runs.working).history as { parts: { raw?: string }[] }[])[0]!.parts[2]!.raw).toBe("aGVsbG8=");
  });
});

describe("v0.3: what the SDK's v0.3 layer makes of the v1.0 shapes", () => {
  for (const [name, run] of Object.entries(runs)) {
    it(`a ${name} task`, () => {
      // The SDK leaves out empty lists; Shaman's v0.3 task always has both.
      const sdk = v03Of({ task: renderTask("1.0", run) }) as Record<string, unknown>;
      expect(renderTask("0.3", run)).toEqual({ artifacts: [], history: [], ...sdk });
    });
  }

  it("stream events (final also on input-required, where Shaman's stream ends)", () => {
    for (const e of events) {
      const ours = streamResponsesFor(e, runs.working, "0.3");
      const sdk = streamResponsesFor(e, runs.working, "1.0").map(v03Of);
      expect(ours, e.type).toEqual(e.type === "run.input_required" ? sdk.map((s) => ({ ...(s as object), final: true })) : sdk);
    }
  });

  it("data that is not an object is wrapped the SDK's way", () => {
    const run = snapshot({ message: { messageId: "m2", role: "user", parts: [{ kind: "data", data: [1, 2] }] } });
    expect((renderTask("0.3", run).history as { parts: unknown[] }[])[0]!.parts[0]).toEqual({ kind: "data", data: { value: [1, 2] }, metadata: { data_part_compat: true } });
    expect(renderTask("0.3", run)).toEqual({ artifacts: [], history: [], ...(v03Of({ task: renderTask("1.0", run) }) as object) });
  });

  it("data the SDK's v0.3 layer wrapped is unwrapped on the way in; an object named value without the flag is kept", () => {
    // What the SDK's v0.3 layer sends for a v1.0 data part holding a list.
    const wrapped = v03Of({ message: { messageId: "m3", role: "ROLE_USER", parts: [{ data: [1, 2] }, { data: { value: 3 } }] } }) as { parts: unknown[] };
    expect(wrapped.parts[0]).toEqual({ kind: "data", data: { value: [1, 2] }, metadata: { data_part_compat: true } });
    const sent = normaliseSend("0.3", { message: wrapped });
    expect(sent.success && sent.data.message.parts).toEqual([
      { kind: "data", data: [1, 2] },
      { kind: "data", data: { value: 3 } },
    ]);
  });
});

describe("v1.0 SendMessage params: checked by the schema, read by the SDK's codec", () => {
  it("every kind of part, data null included; raw bytes stored as standard base64", () => {
    const sent = normaliseSend("1.0", {
      message: {
        messageId: "m4",
        contextId: "",
        role: "ROLE_USER",
        parts: [{ text: "hi", mediaType: "text/plain" }, { data: null }, { raw: "-_8", filename: "b.bin" }, { url: "https://x.example/a", filename: "a" }],
        metadata: { k: "v" },
      },
      configuration: { historyLength: 2, returnImmediately: true },
    });
    expect(sent).toEqual({
      success: true,
      data: {
        message: {
          messageId: "m4",
          role: "user",
          parts: [
            { kind: "text", text: "hi", mediaType: "text/plain" },
            { kind: "data", data: null },
            { kind: "file", raw: "+/8=", filename: "b.bin" },
            { kind: "file", url: "https://x.example/a", filename: "a" },
          ],
          metadata: { k: "v" },
        },
        contextId: undefined,
        taskId: undefined,
        returnImmediately: true,
        historyLength: 2,
      },
    });
  });

  it("raw that is not base64 is refused (a -32602 on the wire)", () => {
    const sent = normaliseSend("1.0", { message: { messageId: "m5", role: "ROLE_USER", parts: [{ raw: "not base64!" }] } });
    expect(sent.success).toBe(false);
    expect(!sent.success && sent.error.issues[0]?.message).toBe("raw: not base64");
  });
});
