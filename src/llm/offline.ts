/**
 * Shaman's built-in offline model: deterministic, no network, no account. It stands in
 * for a real model when none is configured, so the demo and the tests run anywhere. Its
 * answers say what it is, so nobody mistakes them for an LLM's.
 */
import type {
  LanguageModelV4,
  LanguageModelV4CallOptions,
  LanguageModelV4GenerateResult,
  LanguageModelV4Prompt,
  LanguageModelV4StreamPart,
  ProviderV4,
} from "@ai-sdk/provider";
import { NoSuchModelError } from "@ai-sdk/provider";

export const OFFLINE_PROVIDER = "shaman-offline";

function lastUserText(prompt: LanguageModelV4Prompt): string {
  for (let i = prompt.length - 1; i >= 0; i--) {
    const m = prompt[i];
    if (m?.role === "user") {
      return m.content.map((p) => (p.type === "text" ? p.text : "")).join("").trim();
    }
  }
  return "";
}

function systemText(prompt: LanguageModelV4Prompt): string {
  return prompt
    .filter((m) => m.role === "system")
    .map((m) => (typeof m.content === "string" ? m.content : ""))
    .join("\n")
    .trim();
}

const words = (s: string) => (s.match(/\S+/g) ?? []).length;
const firstSentence = (s: string) => {
  const line = s.replace(/^#+\s*/gm, "").split(/\n\s*\n/)[0]?.replace(/\s+/g, " ").trim() ?? "";
  const m = /^(.{1,200}?[.!?])(\s|$)/.exec(line);
  return (m?.[1] ?? line.slice(0, 200)).trim();
};

/** The deterministic answer for a prompt: a pure function of the prompt's text. */
export function offlineAnswer(modelId: string, prompt: LanguageModelV4Prompt): string {
  const user = lastUserText(prompt);
  const system = systemText(prompt);
  const lines = [
    `[${OFFLINE_PROVIDER}/${modelId}] Deterministic offline answer: no language model was called.`,
    system ? `Instructions: ${firstSentence(system)}` : "Instructions: (none)",
    `Request (${words(user)} words): ${user || "(empty)"}`,
  ];
  return lines.join("\n");
}

function usage(prompt: LanguageModelV4Prompt, text: string) {
  const input = words(JSON.stringify(prompt));
  const output = words(text);
  return {
    inputTokens: { total: input, noCache: input, cacheRead: 0, cacheWrite: 0 },
    outputTokens: { total: output, text: output, reasoning: 0 },
  };
}

export class OfflineLanguageModel implements LanguageModelV4 {
  readonly specificationVersion = "v4" as const;
  readonly provider = OFFLINE_PROVIDER;
  readonly supportedUrls = {};
  constructor(readonly modelId: string) {}

  async doGenerate(options: LanguageModelV4CallOptions): Promise<LanguageModelV4GenerateResult> {
    const text = offlineAnswer(this.modelId, options.prompt);
    return {
      content: [{ type: "text", text }],
      finishReason: { unified: "stop", raw: "stop" },
      usage: usage(options.prompt, text),
      response: { id: `offline-${crypto.randomUUID()}`, modelId: this.modelId, timestamp: new Date() },
      warnings: [],
    };
  }

  async doStream(options: LanguageModelV4CallOptions) {
    const text = offlineAnswer(this.modelId, options.prompt);
    const chunks = text.split(/(?<=\n)/);
    const stream = new ReadableStream<LanguageModelV4StreamPart>({
      start(controller) {
        controller.enqueue({ type: "stream-start", warnings: [] });
        controller.enqueue({ type: "text-start", id: "t0" });
        for (const delta of chunks) controller.enqueue({ type: "text-delta", id: "t0", delta });
        controller.enqueue({ type: "text-end", id: "t0" });
        controller.enqueue({ type: "finish", usage: usage(options.prompt, text), finishReason: { unified: "stop", raw: "stop" } });
        controller.close();
      },
    });
    return { stream };
  }
}

export const offlineProvider: ProviderV4 = {
  specificationVersion: "v4",
  languageModel: (modelId: string) => new OfflineLanguageModel(modelId || "default"),
  embeddingModel: (modelId: string) => {
    throw new NoSuchModelError({ modelId, modelType: "embeddingModel" });
  },
  imageModel: (modelId: string) => {
    throw new NoSuchModelError({ modelId, modelType: "imageModel" });
  },
};
