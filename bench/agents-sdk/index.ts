import { Agent, getAgentByName, routeAgentRequest } from "agents";
import { generateText } from "ai";
import { MockLanguageModelV4 } from "ai/test";

type BenchEnv = { BenchAgent: DurableObjectNamespace<BenchAgent> };

const result = () => ({
  content: [{ type: "text" as const, text: "ok" }],
  finishReason: { unified: "stop" as const, raw: "stop" },
  usage: {
    inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
    outputTokens: { total: 1, text: 1, reasoning: 0 },
  },
  warnings: [],
});

/** An instant mock model (the agent-per-request baseline). */
const model = new MockLanguageModelV4({ doGenerate: async () => result() });

/** The same mock model answering after 500 ms, like Shaman's `offline:default@500ms` (the fan-out peer). */
const FANOUT_MODEL_MS = 500;
const slowModel = new MockLanguageModelV4({
  doGenerate: async () => {
    await new Promise((r) => setTimeout(r, FANOUT_MODEL_MS));
    return result();
  },
});

const MAX_FANOUT = 500;

export class BenchAgent extends Agent<BenchEnv> {
  override async onRequest(request: Request): Promise<Response> {
    const { text } = await generateText({ model, prompt: (await request.text()) || "hi" });
    return Response.json({ text });
  }

  /** A child of the fan-out: one `generateText` on the 500 ms mock model. */
  async answer(prompt: string): Promise<string> {
    const { text } = await generateText({ model: slowModel, prompt });
    return text;
  }

  /**
   * The fan-out parent (Shaman's Fan100 peer): one model turn deciding to call, `n` NEW
   * agents (fresh names, so each is a new Durable Object with its own SQLite file) called
   * over RPC in parallel, each running `generateText` on the 500 ms model, then one model
   * turn joining their answers: the same three model turns in sequence as Shaman's run.
   */
  async fanOut(n: number, prompt: string): Promise<{ children: number; ms: number }> {
    const started = Date.now();
    await generateText({ model: slowModel, prompt });
    const answers = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const child = await getAgentByName(this.env.BenchAgent, `${this.name}-child-${i}`);
        return child.answer(prompt);
      }),
    );
    await generateText({ model: slowModel, prompt: `${prompt}\n${answers.join("\n")}` });
    return { children: answers.length, ms: Date.now() - started };
  }
}

export default {
  async fetch(request: Request, env: BenchEnv): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return new Response("ok");
    // /fanout/<new name>?n=100: a new parent agent fanning out to n new agents.
    const fan = /^\/fanout\/([^/]+)$/.exec(url.pathname);
    if (fan) {
      const n = Math.min(MAX_FANOUT, Math.max(1, Number(url.searchParams.get("n") ?? 100) || 100));
      const parent = await getAgentByName(env.BenchAgent, fan[1]!);
      return Response.json(await parent.fanOut(n, "Benchmark the platform, please."));
    }
    return (await routeAgentRequest(request, env)) ?? new Response("not found", { status: 404 });
  },
} satisfies ExportedHandler<BenchEnv>;
