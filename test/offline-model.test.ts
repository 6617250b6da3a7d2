/**
 * The offline model driving the platform tools (issue 9 contract), and the scripted
 * OpenAI-compatible test server through the real provider path.
 */
import { createOpenAI } from "@ai-sdk/openai";
import { APICallError, generateText, jsonSchema, stepCountIs, streamText, tool, type ModelMessage, type ToolSet } from "ai";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { approvalNeeded, offlineProvider, requestTotal } from "../src/llm/offline";
import { resolveModel } from "../src/llm/registry";

// The platform tools as the contract defines them, without `execute`: the calls come back.
function platformTools(agents: Array<[string, string]> = []): ToolSet {
  const list = agents.length ? `\n\nAgents you may call:\n${agents.map(([n, d]) => `- \`${n}\`: ${d}`).join("\n")}` : "";
  return {
    call_agent: tool({
      description: `Calls another agent of the organisation with an input and returns its result.${list}`,
      inputSchema: jsonSchema<{ agent: string; input: string; context?: string }>({
        type: "object",
        properties: { agent: { type: "string" }, input: { type: "string" }, context: { type: "string" } },
        required: ["agent", "input"],
        additionalProperties: false,
      }),
    }),
    complete_agent_execution: tool({
      description: "Ends this step with its result.",
      inputSchema: jsonSchema<{ result: string; status: "SUCCESS" | "PARTIAL" | "FAILED"; summary?: string }>({
        type: "object",
        properties: { result: { type: "string" }, status: { type: "string", enum: ["SUCCESS", "PARTIAL", "FAILED"] }, summary: { type: "string" } },
        required: ["result", "status"],
        additionalProperties: false,
      }),
    }),
    request_user_input: tool({
      description: "Asks a person and waits for the answer.",
      inputSchema: jsonSchema<{ prompt: string; inputType: "text" | "choice" | "approval"; choices?: string[] }>({
        type: "object",
        properties: {
          prompt: { type: "string" },
          inputType: { type: "string", enum: ["text", "choice", "approval"] },
          choices: { type: "array", items: { type: "string" } },
        },
        required: ["prompt", "inputType"],
        additionalProperties: false,
      }),
    }),
  };
}

const AGENTS: Array<[string, string]> = [
  ["ValidateData", "Checks a JSON document against rules."],
  ["finance/VendorCheck", "Checks a vendor against the approved list."],
];
const APPROVAL_SYSTEM = "You are ProcessInvoice.\nAsk a person to approve invoices above 1,000 EUR.\nAnswer in JSON.";
const BIG_INVOICE = "Invoice INV-7 from ACME GmbH, 3 items.\nTotal: EUR 1,250.00";
const SMALL_INVOICE = "Invoice INV-8 from ACME GmbH, 1 item.\nTotal: EUR 800.00";

const offline = (name = "orchestrator") => offlineProvider.languageModel(name);

/** One turn of the offline model on a conversation. */
async function turn(system: string, messages: ModelMessage[], tools: ToolSet, name?: string) {
  return generateText({ model: offline(name), system, messages, tools });
}

/** The conversation after a turn whose tool calls got these results (by tool call id order). */
function answer(messages: ModelMessage[], result: Awaited<ReturnType<typeof turn>>, outputs: Array<{ type: "json"; value: any } | { type: "error-text"; value: string }>): ModelMessage[] {
  expect(result.toolCalls).toHaveLength(outputs.length);
  return [
    ...messages,
    ...result.response.messages,
    {
      role: "tool",
      content: result.toolCalls.map((c, i) => ({ type: "tool-result" as const, toolCallId: c.toolCallId, toolName: c.toolName, output: outputs[i]! })),
    },
  ];
}

const agentResult = (agent: string, result: string, status = "SUCCESS") => ({ type: "json" as const, value: { agent, status, result } });

describe("offline model with platform tools", () => {
  it("calls every listed agent in one response, with the request as input", async () => {
    const request = "Check invoice INV-1 please.";
    const r = await turn("You are ProcessInvoice.", [{ role: "user", content: request }], platformTools(AGENTS));
    expect(r.steps).toHaveLength(1);
    expect(r.finishReason).toBe("tool-calls");
    expect(r.toolCalls.map((c) => [c.toolName, c.input])).toEqual([
      ["call_agent", { agent: "ValidateData", input: request }],
      ["call_agent", { agent: "finance/VendorCheck", input: request }],
    ]);
    expect(r.toolCalls.map((c) => c.toolCallId)).toEqual(["offline-0-0", "offline-0-1"]);
    // Usage is a deterministic estimate, the same for the same call.
    expect(r.usage.inputTokens).toBeGreaterThan(0);
    expect(r.usage.outputTokens).toBe(Math.ceil(r.toolCalls.reduce((n, c) => n + c.toolName.length + JSON.stringify(c.input).length, 0) / 4));
    const again = await turn("You are ProcessInvoice.", [{ role: "user", content: request }], platformTools(AGENTS));
    expect(again.usage).toEqual(r.usage);
    expect(again.toolCalls).toEqual(r.toolCalls);
  });

  it("calls the agents through streamText too", async () => {
    const r = streamText({ model: offline(), system: "You are ProcessInvoice.", prompt: "Check INV-2.", tools: platformTools(AGENTS) });
    const calls = await r.toolCalls;
    expect(calls.map((c) => c.input)).toEqual([
      { agent: "ValidateData", input: "Check INV-2." },
      { agent: "finance/VendorCheck", input: "Check INV-2." },
    ]);
    expect(await r.finishReason).toBe("tool-calls");
  });

  it("completes from the agents' results with a report naming each agent", async () => {
    const start: ModelMessage[] = [{ role: "user", content: SMALL_INVOICE }];
    const tools = platformTools(AGENTS);
    const first = await turn(APPROVAL_SYSTEM, start, tools);
    const second = await turn(
      APPROVAL_SYSTEM,
      answer(start, first, [agentResult("ValidateData", '{"valid":true}'), agentResult("finance/VendorCheck", "vendor is on the list")]),
      tools,
    );
    // 800 EUR is not above the threshold: no approval asked, it completes.
    expect(second.toolCalls).toHaveLength(1);
    const done = second.toolCalls[0]!;
    expect(done.toolName).toBe("complete_agent_execution");
    expect(done.toolCallId).toBe("offline-1-0");
    const input = done.input as { result: string; status: string; summary: string };
    expect(input.status).toBe("SUCCESS");
    expect(input.summary).toBe("SUCCESS: 2 agents succeeded");
    expect(input.result).toBe(
      [
        "[shaman-offline/orchestrator] Report on: Invoice INV-8 from ACME GmbH, 1 item.",
        "Agents called: 2",
        '- ValidateData (SUCCESS): {"valid":true}',
        "- finance/VendorCheck (SUCCESS): vendor is on the list",
      ].join("\n"),
    );
  });

  it("reports a failed child as PARTIAL, and all children failed as FAILED", async () => {
    const start: ModelMessage[] = [{ role: "user", content: "Check INV-3." }];
    const tools = platformTools(AGENTS);
    const first = await turn("You are ProcessInvoice.", start, tools);
    const partial = await turn(
      "You are ProcessInvoice.",
      answer(start, first, [agentResult("ValidateData", "ok"), { type: "error-text", value: "agent finance/VendorCheck failed: timed out" }]),
      tools,
    );
    const p = partial.toolCalls[0]!.input as { result: string; status: string; summary: string };
    expect(p.status).toBe("PARTIAL");
    expect(p.result).toContain("- finance/VendorCheck (FAILED): agent finance/VendorCheck failed: timed out");
    expect(p.summary).toBe("PARTIAL: 1 of 2 agents succeeded, 1 failed (finance/VendorCheck)");
    const failed = await turn(
      "You are ProcessInvoice.",
      answer(start, first, [agentResult("ValidateData", "bad", "FAILED"), { type: "error-text", value: "agent finance/VendorCheck failed: gone" }]),
      tools,
    );
    expect((failed.toolCalls[0]!.input as { status: string }).status).toBe("FAILED");
  });

  it("asks for approval after calling the agents when the total is above the threshold, then completes", async () => {
    const start: ModelMessage[] = [{ role: "user", content: BIG_INVOICE }];
    const tools = platformTools(AGENTS);
    const first = await turn(APPROVAL_SYSTEM, start, tools);
    expect(first.toolCalls.map((c) => c.toolName)).toEqual(["call_agent", "call_agent"]);
    const afterAgents = answer(start, first, [agentResult("ValidateData", "valid"), agentResult("finance/VendorCheck", "known vendor")]);
    const second = await turn(APPROVAL_SYSTEM, afterAgents, tools);
    expect(second.toolCalls).toHaveLength(1);
    expect(second.toolCalls[0]).toMatchObject({ toolName: "request_user_input", toolCallId: "offline-1-0" });
    const ask = second.toolCalls[0]!.input as { prompt: string; inputType: string };
    expect(ask.inputType).toBe("approval");
    expect(ask.prompt).toBe(
      'Approve this request? Invoice INV-7 from ACME GmbH, 3 items.\nIts total 1250 EUR is above the approval threshold of 1000 EUR ("Ask a person to approve invoices above 1,000 EUR.").',
    );

    const approved = await turn(APPROVAL_SYSTEM, answer(afterAgents, second, [{ type: "json", value: { requestId: "r1", answer: "approved" } }]), tools);
    const a = approved.toolCalls[0]!;
    expect(a.toolName).toBe("complete_agent_execution");
    expect(a.input).toMatchObject({ status: "SUCCESS", summary: "SUCCESS: 2 agents succeeded; approved by a person" });
    expect((a.input as { result: string }).result).toContain("- ValidateData (SUCCESS): valid\n- finance/VendorCheck (SUCCESS): known vendor\nApproval: approved");

    const rejected = await turn(
      APPROVAL_SYSTEM,
      answer(afterAgents, second, [{ type: "json", value: { requestId: "r1", answer: "rejected", comment: "wrong vendor" } }]),
      tools,
    );
    expect(rejected.toolCalls[0]!.input).toMatchObject({
      status: "FAILED",
      summary: "FAILED: 2 agents succeeded; not approved: rejected (wrong vendor)",
    });
    expect((rejected.toolCalls[0]!.input as { result: string }).result).toContain("Approval: rejected (comment: wrong vendor)");
  });

  it("asks first when no agents are listed and the instructions always want approval", async () => {
    const system = "You are Payout.\nAlways ask a person for approval before paying.";
    const r = await turn(system, [{ role: "user", content: "Pay 20 EUR to Bob." }], platformTools());
    expect(r.toolCalls).toHaveLength(1);
    expect(r.toolCalls[0]!.toolName).toBe("request_user_input");
    expect(r.toolCalls[0]!.input).toEqual({
      inputType: "approval",
      prompt: 'Approve this request? Pay 20 EUR to Bob.\nThe instructions ask for approval: "Always ask a person for approval before paying.".',
    });
  });

  it("does not ask when the instructions do not ask, or negate it, or the request has no total", async () => {
    for (const [system, request] of [
      ["You are ProcessInvoice.", BIG_INVOICE],
      ["You are ProcessInvoice. Never ask for approval.", BIG_INVOICE],
      [APPROVAL_SYSTEM, "Invoice INV-9 from ACME, amount unknown."],
      [APPROVAL_SYSTEM, SMALL_INVOICE],
    ] as const) {
      // No agents, nothing to ask: the plain offline answer, as without tools.
      const r = await turn(system, [{ role: "user", content: request }], platformTools());
      expect(r.toolCalls, `${system} / ${request}`).toHaveLength(0);
      expect(r.text).toContain("[shaman-offline/orchestrator] Deterministic offline answer: no language model was called.");
    }
  });

  it("reads thresholds and totals by the documented rule", () => {
    expect(approvalNeeded("Invoices over $500 need a manager's approval.", 'Data: {"subtotal": 400, "total": 520.5}')).toMatchObject({
      rule: { threshold: { amount: 500, currency: "$" } },
      total: 520.5,
    });
    expect(approvalNeeded("Look over the invoice; get approval above 2,000 USD.", "Total due: USD 2,500")).toMatchObject({
      rule: { threshold: { amount: 2000, currency: "USD" } },
      total: 2500,
    });
    expect(approvalNeeded("Look over the invoice; get approval above 2,000 USD.", "Total due: USD 2,000")).toBeUndefined();
    expect(approvalNeeded("You are a clerk.", "Please ask me to approve this first.")).toMatchObject({ rule: { line: "Please ask me to approve this first." } });
    expect(requestTotal("Subtotal: 900\nTax: 90\nTotal: 990")).toBe(990);
    expect(requestTotal("Subtotal: 900")).toBeUndefined();
  });

  it("calls the other tools its instructions name (MCP tools), alongside the agents, with schema-valid arguments, and reports their results", async () => {
    const tools: ToolSet = {
      ...platformTools(AGENTS),
      everything__echo: tool({ description: "Echoes", inputSchema: jsonSchema({ type: "object", properties: { message: { type: "string" } }, required: ["message"] }) }),
      everything__get_sum: tool({ description: "Adds", inputSchema: jsonSchema({ type: "object", properties: { a: { type: "number" }, b: { type: "number", minimum: 2 } }, required: ["a", "b"] }) }),
      other__delete_all: tool({ description: "Not named: never called", inputSchema: jsonSchema({ type: "object", properties: {} }) }),
    };
    const system = "You are VendorCheck.\nLook the vendor up with `echo`, and add with `everything__get_sum`.";
    const start: ModelMessage[] = [{ role: "user", content: "Vendor Globex" }];
    const first = await turn(system, start, tools);
    expect(first.toolCalls.map((c) => [c.toolName, c.input])).toEqual([
      ["call_agent", { agent: "ValidateData", input: "Vendor Globex" }],
      ["call_agent", { agent: "finance/VendorCheck", input: "Vendor Globex" }],
      ["everything__echo", { message: "Vendor Globex" }],
      ["everything__get_sum", { a: 1, b: 2 }],
    ]);
    const second = await turn(
      system,
      answer(start, first, [agentResult("ValidateData", "ok"), agentResult("finance/VendorCheck", "ok"), { type: "json", value: { text: "Echo: Vendor Globex" } }, { type: "error-text", value: "server down" }]),
      tools,
    );
    const done = second.toolCalls[0]!;
    expect(done.toolName).toBe("complete_agent_execution");
    const report = (done.input as { result: string }).result;
    expect(report).toContain("Tools used: 2");
    expect(report).toContain("- everything__echo: ");
    expect(report).toContain("Echo: Vendor Globex");
    expect(report).toContain("- everything__get_sum (error): server down");
  });

  it("answers as before without tools", async () => {
    const r = await generateText({ model: offline("gpt-4o-mini"), system: "You are X. More.", prompt: "hello there" });
    expect(r.text).toBe(
      "[shaman-offline/gpt-4o-mini] Deterministic offline answer: no language model was called.\nInstructions: You are X.\nRequest (2 words): hello there",
    );
    expect(r.usage.outputTokens).toBe(Math.ceil(r.text.length / 4));
  });

  describe("offline:<name>@<N>ms", () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it("answers only after N ms, and its name drops the delay", async () => {
      vi.useFakeTimers();
      const { model, id } = resolveModel({}, "offline:bench@500ms");
      expect(id).toBe("offline:bench@500ms");
      let settled = false;
      const pending = generateText({ model, prompt: "go" }).then((r) => {
        settled = true;
        return r;
      });
      await vi.advanceTimersByTimeAsync(499);
      expect(settled).toBe(false);
      await vi.advanceTimersByTimeAsync(1);
      const r = await pending;
      expect(settled).toBe(true);
      expect(r.text).toContain("[shaman-offline/bench] Deterministic offline answer");
    });

    it("offline:<name>@<N>ms/<M>ms streams a text answer a line every M ms", async () => {
      vi.useFakeTimers();
      const { model, id } = resolveModel({}, "offline:talk@100ms/40ms");
      expect(id).toBe("offline:talk@100ms/40ms");
      const chunks: string[] = [];
      const result = streamText({ model, prompt: "line one\nline two\nline three" });
      const reading = (async () => {
        for await (const delta of result.textStream) chunks.push(delta);
      })();
      await vi.advanceTimersByTimeAsync(100);
      expect(chunks.join("")).toBe("[shaman-offline/talk] Deterministic offline answer: no language model was called.\n");
      await vi.advanceTimersByTimeAsync(40);
      expect(chunks.length).toBe(2);
      await vi.advanceTimersByTimeAsync(40 * 3);
      await reading;
      expect(chunks.join("")).toContain("Request (6 words): line one\nline two\nline three");
      expect(chunks.length).toBe(5);
    });

    it("stops waiting when the call is aborted", async () => {
      vi.useFakeTimers();
      const controller = new AbortController();
      const pending = generateText({ model: offline("slow@60000ms"), prompt: "go", abortSignal: controller.signal, maxRetries: 0 });
      controller.abort(new Error("canceled by the test"));
      await expect(pending).rejects.toThrow("canceled by the test");
    });
  });
});

describe("scripted OpenAI-compatible server", () => {
  const base = () => env.TEST_OPENAI_URL.replace(/\/v1$/, "");
  const chat = () => createOpenAI({ baseURL: env.TEST_OPENAI_URL, apiKey: "sk-test" }).chat("scripted-model");
  async function script(key: string, turns: unknown[]) {
    const res = await fetch(`${base()}/__scripts`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key, turns }) });
    expect(res.status).toBe(204);
  }
  const requestsFor = async (key: string) =>
    ((await (await fetch(`${base()}/__requests`)).json()) as Array<{ messages: unknown[]; stream?: boolean }>).filter((r) =>
      JSON.stringify(r.messages).includes(`SCRIPT:${key}`),
    );

  it("answers a tool call, then text, through the real provider path", async () => {
    const key = `two-${crypto.randomUUID().slice(0, 8)}`;
    await script(key, [{ toolCalls: [{ name: "call_agent", arguments: { agent: "ValidateData", input: "check" } }] }, { text: "all done" }]);
    const seen: unknown[] = [];
    const tools = platformTools([["ValidateData", "Checks data."]]);
    const r = await generateText({
      model: chat(),
      system: `SCRIPT:${key}`,
      prompt: "go",
      tools: { ...tools, call_agent: { ...tools.call_agent!, execute: async (input: unknown) => (seen.push(input), { agent: "ValidateData", status: "SUCCESS", result: "valid" }) } },
      stopWhen: stepCountIs(5),
    });
    expect(r.steps).toHaveLength(2);
    expect(r.steps[0]!.finishReason).toBe("tool-calls");
    expect(r.steps[0]!.toolCalls).toEqual([
      expect.objectContaining({ toolName: "call_agent", toolCallId: `call_${key}_0_0`, input: { agent: "ValidateData", input: "check" } }),
    ]);
    expect(seen).toEqual([{ agent: "ValidateData", input: "check" }]);
    expect(r.steps[1]!.text).toBe("all done");
    expect(r.steps[0]!.usage.inputTokens).toBeGreaterThan(0);
    const sent = await requestsFor(key);
    expect(sent).toHaveLength(2);
    // The second request carried the tool call and its result.
    expect(JSON.stringify(sent[1]!.messages)).toContain(`"tool_call_id":"call_${key}_0_0"`);
  });

  it("streams tool calls too", async () => {
    const key = `stream-${crypto.randomUUID().slice(0, 8)}`;
    await script(key, [
      {
        toolCalls: [
          { id: "c1", name: "call_agent", arguments: { agent: "A", input: "a long input that spans several chunks" } },
          { id: "c2", name: "call_agent", arguments: { agent: "B", input: "b" } },
        ],
      },
    ]);
    const r = streamText({ model: chat(), system: `SCRIPT:${key}`, prompt: "go", tools: platformTools() });
    expect((await r.toolCalls).map((c) => [c.toolCallId, c.input])).toEqual([
      ["c1", { agent: "A", input: "a long input that spans several chunks" }],
      ["c2", { agent: "B", input: "b" }],
    ]);
    expect(await r.finishReason).toBe("tool-calls");
    expect((await requestsFor(key))[0]!.stream).toBe(true);
  });

  it("surfaces a scripted 429 as an APICallError, and `times` lets a later try through", async () => {
    const key = `limited-${crypto.randomUUID().slice(0, 8)}`;
    await script(key, [{ status: 429, times: 1, text: "after the limit" }]);
    const call = () => generateText({ model: chat(), prompt: `SCRIPT:${key}`, maxRetries: 0 });
    const err = await call().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(APICallError.isInstance(err)).toBe(true);
    expect((err as APICallError).statusCode).toBe(429);
    expect((err as APICallError).message).toContain(`scripted HTTP 429 (script '${key}', turn 0)`);
    expect((await call()).text).toBe("after the limit");
  });

  it("answers a repeating turn for every later turn, and names a missing turn", async () => {
    const key = `repeat-${crypto.randomUUID().slice(0, 8)}`;
    await script(key, [{ text: "first" }, { text: "again", repeat: true }]);
    const history = (n: number): ModelMessage[] => [
      { role: "user", content: `SCRIPT:${key}` },
      ...Array.from({ length: n }, (_, i): ModelMessage[] => [
        { role: "assistant", content: `turn ${i}` },
        { role: "user", content: "more" },
      ]).flat(),
    ];
    expect((await generateText({ model: chat(), messages: history(0) })).text).toBe("first");
    expect((await generateText({ model: chat(), messages: history(1) })).text).toBe("again");
    expect((await generateText({ model: chat(), messages: history(4) })).text).toBe("again");

    const short = `short-${crypto.randomUUID().slice(0, 8)}`;
    await script(short, [{ text: "only" }]);
    const err = await generateText({ model: chat(), messages: [{ role: "user", content: `SCRIPT:${short}` }, { role: "assistant", content: "x" }, { role: "user", content: "y" }], maxRetries: 0 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as APICallError).statusCode).toBe(400);
    expect((err as APICallError).message).toContain(`script '${short}' has no turn 1 (it has 1)`);
  });
});
