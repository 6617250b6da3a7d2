import type { D1Migration } from "cloudflare:test";

declare global {
  namespace Cloudflare {
    interface Env {
      TEST_MIGRATIONS: D1Migration[];
      TEST_OPENAI_URL: string;
      TEST_PERMISO_URL: string;
      TEST_GIT_URL: string;
      /** Base URL of the capturing server (test/servers/capture.ts). */
      TEST_CAPTURE_URL: string;
      /** Base URLs of the Anthropic Messages and Gemini generateContent test servers (test/servers/anthropic.ts, google.ts). */
      TEST_ANTHROPIC_URL: string;
      TEST_GOOGLE_URL: string;
      /** Base URL of the external A2A test agents (test/servers/a2a-agent.ts). */
      TEST_A2A_AGENT_URL: string;
      /** Proxy in front of server-everything (test/servers/mcp-everything.ts). */
      TEST_MCP_EVERYTHING_URL: string;
      /** The stateless 2026-07-28 MCP server (test/servers/mcp-stateless.ts). */
      TEST_MCP_STATELESS_URL: string;
      /** The push notification receiver (test/servers/push-receiver.ts). */
      TEST_PUSH_URL: string;
      /** JSON: wrangler.toml vars a deploy ships, `{ top, production }`. */
      TEST_DEPLOY_VARS: string;
    }
  }
}

declare module "vitest" {
  export interface ProvidedContext {
    /** Base URL (…/v1) of the OpenAI-compatible test server. */
    openaiUrl: string;
    /** Base URL of the fake Permiso (GraphQL at …/graphql, API key "permiso-test-key"). */
    permisoUrl: string;
    /** The demo agent repository, `{ path: content }`. */
    exampleAgents: Record<string, string>;
    /** The Kratos-contract test server. */
    kratosUrl: string;
    /** Base URL of the git smart-HTTP test server (test/servers/git.ts). */
    gitUrl: string;
    /** Base URL of the capturing server (test/servers/capture.ts). */
    captureUrl: string;
    anthropicUrl: string;
    googleUrl: string;
    /** Base URL of the external A2A test agents (test/servers/a2a-agent.ts). */
    a2aAgentUrl: string;
    /** Proxy in front of server-everything: MCP at …/p/<name>. */
    mcpEverythingUrl: string;
    /** The stateless 2026-07-28 MCP server: MCP at …/mcp/<name>. */
    mcpStatelessUrl: string;
    /** The push notification receiver (test/servers/push-receiver.ts). */
    pushUrl: string;
  }
}
