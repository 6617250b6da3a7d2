import { Agent, routeAgentRequest } from "agents";
import { generateText } from "ai";
import { MockLanguageModelV4 } from "ai/test";

type BenchEnv = { BenchAgent: DurableObjectNamespace<BenchAgent> };

const model = new MockLanguageModelV4({
  doGenerate: async () => ({
    content: [{ type: "text", text: "ok" }],
    finishReason: { unified: "stop", raw: "stop" },
    usage: {
      inputTokens: { total: 1, noCache: 1, cacheRead: 0, cacheWrite: 0 },
      outputTokens: { total: 1, text: 1, reasoning: 0 },
    },
    warnings: [],
  }),
});

export class BenchAgent extends Agent<BenchEnv> {
  override async onRequest(request: Request): Promise<Response> {
    const { text } = await generateText({ model, prompt: (await request.text()) || "hi" });
    return Response.json({ text });
  }
}

export default {
  async fetch(request: Request, env: BenchEnv): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return new Response("ok");
    return (await routeAgentRequest(request, env)) ?? new Response("not found", { status: 404 });
  },
} satisfies ExportedHandler<BenchEnv>;
