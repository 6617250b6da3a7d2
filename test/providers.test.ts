/**
 * Model providers (src/llm/registry.ts) and the org's model settings (GET/PUT
 * /settings/models): Anthropic and Google through local servers that follow their HTTP
 * APIs (test/servers/anthropic.ts, google.ts), named OpenAI-compatible endpoints, Workers AI
 * through a double of the `AI` binding, aliases, errors naming what is configured, and an
 * agent on `anthropic:` run end to end through the queue.
 */
import { env } from "cloudflare:workers";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { forgetOrgModelSettings, modelConfigFromEnv, orgModelConfig, resolveModel } from "../src/llm/registry";
import { clearSecretCache } from "../src/secrets/cache";
import { eventually, orgFetch, rpc, seedOrg, sendMessage, type SeedResult } from "./helpers";

const ORG = "prov";
const ANTHROPIC_KEY = "sk-ant-org-prov-0123456789";
const GOOGLE_KEY = "AIza-org-prov-0123456789";
const PLATFORM_ANTHROPIC_KEY = "sk-ant-platform-should-not-leave";

let seed: SeedResult;

const json = (body: unknown, method = "PUT", key?: string): RequestInit => ({
  method,
  headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
  body: JSON.stringify(body),
});

const anthropicBase = () => `${env.TEST_ANTHROPIC_URL}/v1`;
const googleBase = () => `${env.TEST_GOOGLE_URL}/v1beta`;

async function putModels(settings: unknown, key?: string): Promise<Response> {
  return orgFetch(ORG, "/settings/models", json(settings, "PUT", key));
}

async function received(server: string): Promise<any[]> {
  return (await (await fetch(`${server}/__requests`)).json()) as any[];
}
async function clearReceived(server: string): Promise<void> {
  await fetch(`${server}/__requests`, { method: "DELETE" });
}
async function script(server: string, key: string, turns: unknown[]): Promise<void> {
  const res = await fetch(`${server}/__scripts`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key, turns }) });
  expect(res.status).toBe(204);
}

/** A tool the model can call; its answer goes back to the model in the next request. */
const weather = tool({
  description: "The weather in a city",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => ({ city, sky: "sunny", celsius: 21 }),
});

beforeAll(async () => {
  seed = await seedOrg(ORG, {
    "Claude/prompt.md": "---\ndescription: runs on Anthropic through an alias\nexposed: true\nmodel: smart\nmaxTokens: 300\n---\nYou are Claude in a test.\n",
  });
  expect(seed.errors).toEqual([]);
  expect(seed.agents).toContain("Claude");
  expect((await orgFetch(ORG, "/secrets/ANTHROPIC_KEY", json({ value: ANTHROPIC_KEY, allowedHosts: ["127.0.0.1"] }))).status).toBe(200);
  expect((await orgFetch(ORG, "/secrets/GEMINI_KEY", json({ value: GOOGLE_KEY, allowedHosts: ["127.0.0.1"] }))).status).toBe(200);
  expect((await orgFetch(ORG, "/secrets/ANTHROPIC_OFFLIST", json({ value: "sk-ant-offlist-0000", allowedHosts: ["api.anthropic.com"] }))).status).toBe(200);
  expect((await orgFetch(ORG, "/secrets/LLM_KEY", json({ value: "llm-org-key-0000", allowedHosts: ["127.0.0.1"] }))).status).toBe(200);
  const res = await putModels({
    defaultModel: "fast",
    aliases: { fast: "google:gemini-2.5-flash", smart: "anthropic:claude-sonnet-4-5" },
    providers: {
      anthropic: { secret: "ANTHROPIC_KEY", baseUrl: anthropicBase() },
      google: { secret: "GEMINI_KEY", baseUrl: googleBase() },
      "local-llm": { kind: "openai-compatible", baseUrl: env.TEST_OPENAI_URL, secret: "LLM_KEY" },
    },
  });
  expect(res.status).toBe(200);
});

describe("anthropic", () => {
  it("sends the org's key from its secret, round-trips a tool call and reports usage with cache tokens", async () => {
    await clearReceived(env.TEST_ANTHROPIC_URL);
    await script(env.TEST_ANTHROPIC_URL, "anth-tool", [
      { toolCalls: [{ name: "weather", input: { city: "Oslo" } }], usage: { input_tokens: 40, output_tokens: 12 } },
      { text: "Oslo is sunny, 21 °C.", usage: { input_tokens: 100, output_tokens: 20, cache_read_input_tokens: 300, cache_creation_input_tokens: 50 } },
    ]);
    const resolved = resolveModel(await orgModelConfig(env, seed.org.id), "smart");
    expect(resolved).toMatchObject({ id: "anthropic:claude-sonnet-4-5", provider: "anthropic", alias: "smart", offline: false, maxOutputTokens: 64_000 });
    const result = await generateText({ model: resolved.model, prompt: "SCRIPT:anth-tool What is the weather in Oslo?", tools: { weather }, stopWhen: stepCountIs(3), maxRetries: 0 });

    expect(result.text).toBe("Oslo is sunny, 21 °C.");
    expect(result.steps[0]!.toolCalls).toMatchObject([{ toolName: "weather", input: { city: "Oslo" }, toolCallId: "toolu_anth-tool_0_0" }]);
    // the last call's usage: input counts cached reads and writes too, as Anthropic bills them
    expect(result.steps.at(-1)!.usage).toMatchObject({ inputTokens: 450, outputTokens: 20, inputTokenDetails: { noCacheTokens: 100, cacheReadTokens: 300, cacheWriteTokens: 50 } });
    // result.usage sums both calls
    expect(result.usage).toMatchObject({ inputTokens: 490, outputTokens: 32, inputTokenDetails: { noCacheTokens: 140, cacheReadTokens: 300, cacheWriteTokens: 50 } });

    const reqs = await received(env.TEST_ANTHROPIC_URL);
    expect(reqs).toHaveLength(2);
    for (const r of reqs) expect(r.headers).toMatchObject({ "x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01", authorization: null });
    expect(reqs[0].body).toMatchObject({ model: "claude-sonnet-4-5", max_tokens: 64_000, tools: [{ name: "weather", input_schema: { type: "object" } }] });
    // the tool's result went back as a tool_result block for the tool_use id
    const second = reqs[1].body.messages as any[];
    expect(second[1]).toMatchObject({ role: "assistant", content: [{ type: "tool_use", id: "toolu_anth-tool_0_0", name: "weather", input: { city: "Oslo" } }] });
    expect(second[2].content[0]).toMatchObject({ type: "tool_result", tool_use_id: "toolu_anth-tool_0_0" });
    expect(JSON.stringify(second[2].content[0].content)).toContain("sunny");
  });

  it("surfaces Anthropic's error body (a bad key) as the call's error", async () => {
    expect((await orgFetch(ORG, "/secrets/ANTHROPIC_BAD", json({ value: "bad-key", allowedHosts: ["127.0.0.1"] }))).status).toBe(200);
    const cfg = await orgModelConfig(env, seed.org.id);
    const bad = { ...cfg, providers: { ...cfg.providers, anthropic: { ...cfg.providers!.anthropic!, apiKey: "bad-key", keyScope: { secret: "ANTHROPIC_BAD", allowedHosts: ["127.0.0.1"] } } } };
    const err = await generateText({ model: resolveModel(bad, "anthropic:claude-haiku-4-5").model, prompt: "hi", maxRetries: 0 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ statusCode: 401, message: "invalid x-api-key" });
  });

  it("never sends an org key to a host off its list, and never the platform's key in its place", async () => {
    await clearReceived(env.TEST_ANTHROPIC_URL);
    expect((await putModels({ providers: { anthropic: { secret: "ANTHROPIC_OFFLIST", baseUrl: anthropicBase() } } })).status).toBe(200);
    const platformEnv = { ...env, ANTHROPIC_API_KEY: PLATFORM_ANTHROPIC_KEY, ANTHROPIC_BASE_URL: anthropicBase() } as Env;
    const cfg = await orgModelConfig(platformEnv, seed.org.id);
    const err = (() => {
      try {
        resolveModel(cfg, "anthropic:claude-sonnet-4-5");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toMatchObject({ code: "UNPROCESSABLE" });
    expect((err as Error).message).toMatch(/secret 'ANTHROPIC_OFFLIST' may not be sent to the model endpoint 127\.0\.0\.1:\d+ \(allowed hosts: api\.anthropic\.com\)/);

    // an org endpoint without an org key gets no key at all (Anthropic answers 401)
    expect((await putModels({ providers: { anthropic: { baseUrl: anthropicBase() } } })).status).toBe(200);
    const keyless = resolveModel(await orgModelConfig(platformEnv, seed.org.id), "anthropic:claude-sonnet-4-5");
    await expect(generateText({ model: keyless.model, prompt: "hi", maxRetries: 0 })).rejects.toMatchObject({ statusCode: 401 });
    const reqs = await received(env.TEST_ANTHROPIC_URL);
    expect(reqs).toHaveLength(1);
    expect(JSON.stringify(reqs)).not.toContain(PLATFORM_ANTHROPIC_KEY);

    // without org settings for anthropic, the platform's key goes to the platform's endpoint
    expect((await putModels({})).status).toBe(200);
    const platform = resolveModel(await orgModelConfig(platformEnv, seed.org.id), "anthropic:claude-haiku-4-5");
    expect((await generateText({ model: platform.model, prompt: "hello", maxRetries: 0 })).text).toBe("claude claude-haiku-4-5 says: HELLO");
    expect((await received(env.TEST_ANTHROPIC_URL)).at(-1).headers["x-api-key"]).toBe(PLATFORM_ANTHROPIC_KEY);
    await restoreSettings();
  });
});

describe("org keys go through credentialFetch", () => {
  it("a request carrying the org's key does not follow a redirect to another origin", async () => {
    await clearReceived(env.TEST_ANTHROPIC_URL);
    // the endpoint (allowed: 127.0.0.1) redirects to the Anthropic server under another name (localhost)
    const target = env.TEST_ANTHROPIC_URL.replace("127.0.0.1", "localhost");
    const baseUrl = `${env.TEST_CAPTURE_URL}/__redirect/307?to=${target}/v1`;
    expect((await putModels({ providers: { anthropic: { secret: "ANTHROPIC_KEY", baseUrl } } })).status).toBe(200);
    const resolved = resolveModel(await orgModelConfig(env, seed.org.id), "anthropic:claude-sonnet-4-5");
    const err = await generateText({ model: resolved.model, prompt: "hi", maxRetries: 0 }).catch((e: unknown) => e);
    expect(String((err as Error).message ?? err) + String((err as { cause?: unknown }).cause ?? "")).toMatch(/does not follow a redirect to another origin/);
    expect(await received(env.TEST_ANTHROPIC_URL)).toEqual([]);
    await restoreSettings();
  });
});

async function restoreSettings() {
  const res = await putModels({
    defaultModel: "fast",
    aliases: { fast: "google:gemini-2.5-flash", smart: "anthropic:claude-sonnet-4-5" },
    providers: {
      anthropic: { secret: "ANTHROPIC_KEY", baseUrl: anthropicBase() },
      google: { secret: "GEMINI_KEY", baseUrl: googleBase() },
      "local-llm": { kind: "openai-compatible", baseUrl: env.TEST_OPENAI_URL, secret: "LLM_KEY" },
    },
  });
  expect(res.status).toBe(200);
}

describe("google", () => {
  it("sends the org's key, round-trips a function call and reports cached and thinking tokens", async () => {
    await clearReceived(env.TEST_GOOGLE_URL);
    await script(env.TEST_GOOGLE_URL, "gem-tool", [
      { functionCalls: [{ name: "weather", args: { city: "Lima" } }], usage: { promptTokenCount: 30, candidatesTokenCount: 8 } },
      { text: "Lima is sunny.", usage: { promptTokenCount: 1000, cachedContentTokenCount: 600, candidatesTokenCount: 40, thoughtsTokenCount: 25 } },
    ]);
    // the default model is the alias `fast`
    const resolved = resolveModel(await orgModelConfig(env, seed.org.id), undefined, { maxTokens: 2_000 });
    expect(resolved).toMatchObject({ id: "google:gemini-2.5-flash", provider: "google", alias: "fast", maxOutputTokens: 2_000 });
    const result = await generateText({ model: resolved.model, prompt: "SCRIPT:gem-tool Weather in Lima?", tools: { weather }, stopWhen: stepCountIs(3), maxRetries: 0 });

    expect(result.text).toBe("Lima is sunny.");
    expect(result.steps[0]!.toolCalls).toMatchObject([{ toolName: "weather", input: { city: "Lima" } }]);
    expect(result.steps.at(-1)!.usage).toMatchObject({
      inputTokens: 1000,
      outputTokens: 65,
      inputTokenDetails: { cacheReadTokens: 600, noCacheTokens: 400 },
      outputTokenDetails: { reasoningTokens: 25, textTokens: 40 },
    });
    // result.usage sums both calls (the first reported 30 in, 8 out)
    expect(result.usage).toMatchObject({ inputTokens: 1030, outputTokens: 73, inputTokenDetails: { cacheReadTokens: 600 }, outputTokenDetails: { reasoningTokens: 25 } });

    const reqs = await received(env.TEST_GOOGLE_URL);
    expect(reqs.map((r) => r.path)).toEqual(["/v1beta/models/gemini-2.5-flash:generateContent", "/v1beta/models/gemini-2.5-flash:generateContent"]);
    for (const r of reqs) expect(r.headers["x-goog-api-key"]).toBe(GOOGLE_KEY);
    expect(reqs[0].body.tools[0].functionDeclarations[0]).toMatchObject({ name: "weather" });
    const contents = reqs[1].body.contents as any[];
    expect(contents[1]).toMatchObject({ role: "model", parts: [{ functionCall: { name: "weather", args: { city: "Lima" } } }] });
    expect(contents[2].parts[0].functionResponse).toMatchObject({ name: "weather" });
    expect(JSON.stringify(contents[2].parts[0].functionResponse.response)).toContain("sunny");
  });
});

describe("streaming and error bodies", () => {
  it("streams from both servers with usage, and surfaces Gemini's error body", async () => {
    const cfg = await orgModelConfig(env, seed.org.id);
    for (const [spec, expected] of [
      ["smart", "claude claude-sonnet-4-5 says: STREAM ME"],
      ["fast", "gemini gemini-2.5-flash says: STREAM ME"],
    ] as const) {
      const stream = streamText({ model: resolveModel(cfg, spec).model, prompt: "stream me", maxRetries: 0 });
      expect(await stream.text).toBe(expected);
      expect((await stream.usage).inputTokens).toBeGreaterThan(0);
      expect((await stream.usage).outputTokens).toBeGreaterThan(0);
    }
    const bad = { ...cfg, providers: { ...cfg.providers, google: { ...cfg.providers!.google!, apiKey: "bad-key" } } };
    const err = await generateText({ model: resolveModel(bad, "google:gemini-2.5-flash").model, prompt: "hi", maxRetries: 0 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ statusCode: 400, message: "API key not valid. Please pass a valid API key." });
  });
});

describe("OpenAI-compatible endpoints and Workers AI", () => {
  it("a named OpenAI-compatible endpoint gets the org's key over chat completions", async () => {
    const base = env.TEST_OPENAI_URL.replace(/\/v1$/, "");
    await fetch(`${base}/__requests`, { method: "DELETE" });
    const resolved = resolveModel(await orgModelConfig(env, seed.org.id), "local-llm:llama3.2");
    expect(resolved).toMatchObject({ id: "local-llm:llama3.2", provider: "local-llm" });
    expect(resolved).not.toHaveProperty("maxOutputTokens");
    const result = await generateText({ model: resolved.model, prompt: "ping", maxRetries: 0 });
    expect(result.text).toContain("compat-model llama3.2 answers: PING");
    const reqs = (await (await fetch(`${base}/__requests`)).json()) as any[];
    expect(reqs.map((r) => r.authorization)).toEqual(["Bearer llm-org-key-0000"]);
  });

  it("workers-ai runs through the AI binding's run(model, inputs, options), tool calls and usage included", async () => {
    const calls: { model: string; inputs: any; options: any }[] = [];
    // A double of the binding for a function-calling text model
    // (@cf/meta/llama-3.3-70b-instruct-fp8-fast): output { response, tool_calls, usage }.
    const AI = {
      async run(model: string, inputs: any, options?: any) {
        calls.push({ model, inputs, options });
        if (!Array.isArray(inputs?.messages)) throw new Error("AiError: 5006: Error: required properties at '/' are 'messages'");
        if (inputs.stream) throw new Error("this double answers non-streaming requests only");
        const toolTurn = !inputs.messages.some((m: any) => m.role === "tool");
        return toolTurn
          ? { response: "", tool_calls: [{ name: "weather", arguments: { city: "Kyoto" } }], usage: { prompt_tokens: 55, completion_tokens: 9, total_tokens: 64 } }
          : { response: "Kyoto is sunny.", usage: { prompt_tokens: 80, completion_tokens: 6, total_tokens: 86 } };
      },
    };
    const cfg = await orgModelConfig({ ...env, AI } as unknown as Env, seed.org.id);
    const resolved = resolveModel(cfg, "workers-ai:@cf/meta/llama-3.3-70b-instruct-fp8-fast");
    expect(resolved).toMatchObject({ id: "workers-ai:@cf/meta/llama-3.3-70b-instruct-fp8-fast", provider: "workers-ai" });
    const result = await generateText({ model: resolved.model, prompt: "Weather in Kyoto?", tools: { weather }, stopWhen: stepCountIs(3), maxRetries: 0 });
    expect(result.text).toBe("Kyoto is sunny.");
    expect(result.steps[0]!.toolCalls).toMatchObject([{ toolName: "weather", input: { city: "Kyoto" } }]);
    expect(result.steps.at(-1)!.usage).toMatchObject({ inputTokens: 80, outputTokens: 6 });
    expect(result.usage).toMatchObject({ inputTokens: 135, outputTokens: 15 });
    expect(calls).toHaveLength(2);
    expect(calls[0]!.model).toBe("@cf/meta/llama-3.3-70b-instruct-fp8-fast");
    expect(calls[0]!.inputs.tools[0]).toMatchObject({ type: "function", function: { name: "weather" } });
    expect(calls[1]!.inputs.messages.find((m: any) => m.role === "tool").content).toContain("sunny");

    // without the binding, workers-ai is an unknown provider (and says what is configured)
    const unbound = await orgModelConfig(env, seed.org.id);
    expect(() => resolveModel(unbound, "workers-ai:@cf/meta/llama-3.3-70b-instruct-fp8-fast")).toThrow(/unknown model provider 'workers-ai'.*configured providers: anthropic, google, local-llm, offline/);
  });
});

describe("resolution", () => {
  it("unknown providers and aliases fail with an error naming what is configured", async () => {
    const cfg = await orgModelConfig(env, seed.org.id);
    const fail = (spec: string) => {
      try {
        resolveModel(cfg, spec);
      } catch (e) {
        return e as { code: string; message: string };
      }
      throw new Error(`${spec} resolved`);
    };
    const provider = fail("mistral:large");
    expect(provider.code).toBe("UNPROCESSABLE");
    expect(provider.message).toBe(
      "unknown model provider 'mistral' in 'mistral:large': configured providers: anthropic, google, local-llm, offline; " +
        "aliases: fast → google:gemini-2.5-flash, smart → anthropic:claude-sonnet-4-5; default model: fast",
    );
    // a bare name that is no alias goes to the default model's provider
    expect(resolveModel(cfg, "gemini-2.0-flash")).toMatchObject({ id: "google:gemini-2.0-flash", maxOutputTokens: 8_192 });
    // with no default provider, a bare name that is no alias is an unknown alias
    const noDefault = { ...cfg, defaultModel: undefined };
    let err: any;
    try {
      resolveModel(noDefault, "smrt");
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: "UNPROCESSABLE" });
    expect(err.message).toMatch(/^unknown model or alias 'smrt'.*aliases: fast → google:gemini-2\.5-flash, smart → anthropic:claude-sonnet-4-5/);
  });

  it("nothing configured: every agent runs offline; offline: always works", () => {
    const bare = modelConfigFromEnv({ ...env, OPENAI_API_KEY: undefined, OPENAI_BASE_URL: undefined, MODEL_DEFAULT: undefined } as Env);
    expect(resolveModel(bare, "anthropic:claude-sonnet-4-5")).toMatchObject({ id: "offline:claude-sonnet-4-5", offline: true, provider: "offline" });
    expect(resolveModel(bare, undefined)).toMatchObject({ id: "offline:default", offline: true });
  });
});

describe("GET/PUT /settings/models", () => {
  it("validates the settings with problem bodies naming the field", async () => {
    const cases: [unknown, RegExp][] = [
      [{ aliases: { fast: "gemini" } }, /aliases\.fast: 'gemini' is not provider:model/],
      [{ aliases: { fast: "mistral:large" } }, /aliases\.fast: unknown provider 'mistral'/],
      [{ aliases: { anthropic: "google:gemini-2.5-pro" } }, /aliases\.anthropic: an alias may not have a provider's name/],
      [{ providers: { vllm: { baseUrl: "http://127.0.0.1:1/v1" } } }, /providers\.vllm\.kind/],
      [{ providers: { anthropic: { secret: "X", apiKey: "sk-inline" } } }, /providers\.anthropic/],
      [{ providers: { google: { baseUrl: "ftp://example.com" } } }, /providers\.google\.baseUrl: must be an http\(s\) URL/],
      [{ defaultModel: "nosuch" }, /defaultModel: 'nosuch' is neither an alias/],
      [{ models: [] }, /invalid body/],
    ];
    for (const [body, message] of cases) {
      const res = await putModels(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(((await res.json()) as any).detail, JSON.stringify(body)).toMatch(message);
    }
  });

  it("naming a secret needs `use` on it and the secret must exist; the update is audited without values", async () => {
    const keyRes = await orgFetch(ORG, "/api-keys", json({ name: "settings only", permissions: [{ resource: "/settings/models", action: "*" }] }, "POST"));
    expect(keyRes.status).toBe(201);
    const settingsKey = ((await keyRes.json()) as any).apiKey.key as string;
    const named = await putModels({ providers: { google: { secret: "ANTHROPIC_KEY", baseUrl: googleBase() } } }, settingsKey);
    expect(named.status).toBe(403);
    expect(((await named.json()) as any).detail).toBe("not allowed: use on /secrets/ANTHROPIC_KEY");
    // moving a provider that carries a secret to another endpoint is a use of it too
    const moved = await putModels({ providers: { anthropic: { secret: "ANTHROPIC_KEY", baseUrl: `${env.TEST_CAPTURE_URL}/v1` } } }, settingsKey);
    expect(moved.status).toBe(403);
    // unchanged, it is not
    expect((await putModels({ providers: { anthropic: { secret: "ANTHROPIC_KEY", baseUrl: anthropicBase() } } }, settingsKey)).status).toBe(200);
    // without a secret the same key may change the settings
    expect((await putModels({ aliases: { quick: "offline:quick" } }, settingsKey)).status).toBe(200);
    // a developer may neither read nor write them
    const { DEFAULT_ROLES } = await import("../src/authz/builtin");
    const devRes = await orgFetch(ORG, "/api-keys", json({ name: "dev", permissions: DEFAULT_ROLES.developer.grants }, "POST"));
    const devKey = ((await devRes.json()) as any).apiKey.key as string;
    expect((await orgFetch(ORG, "/settings/models", { headers: { authorization: `Bearer ${devKey}` } })).status).toBe(403);

    const missing = await putModels({ providers: { google: { secret: "NO_SUCH_SECRET" } } });
    expect(missing.status).toBe(422);
    expect(((await missing.json()) as any).detail).toMatch(/providers\.google\.secret: the org has no secret named 'NO_SUCH_SECRET'/);

    await restoreSettings();
    const audit = await eventually(
      async () => ((await (await orgFetch(ORG, "/audit?action=settings.models.update")).json()) as any).entries as any[],
      (rows) => rows.some((r) => JSON.stringify(r).includes("quick")),
    );
    expect(audit[0]).toMatchObject({ action: "settings.models.update", resource: "/settings/models", outcome: "success" });
    expect(audit[0].summary.input.settings.providers.anthropic).toMatchObject({ baseUrl: anthropicBase() });
    expect(JSON.stringify(audit)).not.toContain(ANTHROPIC_KEY);
    expect(JSON.stringify(audit)).not.toContain(GOOGLE_KEY);
  });

  it("GET shows the stored settings and what the org can use, never a key", async () => {
    const res = await orgFetch(ORG, "/settings/models");
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body.models.aliases).toEqual({ fast: "google:gemini-2.5-flash", smart: "anthropic:claude-sonnet-4-5" });
    expect(body.effective.providers.map((p: any) => [p.name, p.source, p.usable])).toEqual([
      ["anthropic", "org", true],
      ["google", "org", true],
      ["local-llm", "org", true],
      ["offline", "platform", true],
    ]);
    expect(JSON.stringify(body)).not.toContain(ANTHROPIC_KEY);
    // a provider whose key may not go to its endpoint is reported (and warned about on PUT)
    const put = await putModels({ providers: { anthropic: { secret: "ANTHROPIC_OFFLIST", baseUrl: anthropicBase() } } });
    expect(((await put.json()) as any).warnings[0]).toMatch(/^anthropic: the org's secret 'ANTHROPIC_OFFLIST' may not be sent/);
    await restoreSettings();
  });
});

describe("a run on anthropic", () => {
  it("an agent whose model is an alias of anthropic:… runs end to end through the queue with the org's key", async () => {
    await clearReceived(env.TEST_ANTHROPIC_URL);
    forgetOrgModelSettings();
    clearSecretCache();
    const r = await rpc(ORG, "Claude", sendMessage("hello from the queue"));
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const task = r.body.result.task;
    expect(task.status.state).toBe("TASK_STATE_COMPLETED");
    expect(task.artifacts[0].parts[0].text).toBe("claude claude-sonnet-4-5 says: HELLO FROM THE QUEUE");
    const reqs = await received(env.TEST_ANTHROPIC_URL);
    expect(reqs).toHaveLength(1);
    expect(reqs[0].headers["x-api-key"]).toBe(ANTHROPIC_KEY);
    expect(reqs[0].body).toMatchObject({ model: "claude-sonnet-4-5", max_tokens: 300, system: [{ type: "text", text: "You are Claude in a test." }] });
    const { events } = (await (await orgFetch(ORG, `/runs/${task.id}/events?after=0`)).json()) as any;
    expect(events.find((e: any) => e.type === "model.turn").data).toMatchObject({ model: "anthropic:claude-sonnet-4-5" });
  });
});
