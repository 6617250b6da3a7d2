import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { unstable_readConfig } from "wrangler";
import { defineConfig } from "vitest/config";
import { LOCAL_VARS } from "./scripts/local-vars.mjs";

// Tests run inside workerd against real local D1, R2, Queues and Durable Objects. Helper
// servers (an OpenAI-compatible model server, …) run in Node, started by globalSetup on
// 127.0.0.1; their URLs reach the Worker as bindings.
export default defineConfig(async () => {
  const migrations = await readD1Migrations("./migrations");
  // What `wrangler deploy` would ship (top level and [env.production]), for the test that
  // checks every local-only switch is off there.
  const deployVars = {
    top: unstable_readConfig({ config: "wrangler.toml" }).vars,
    production: unstable_readConfig({ config: "wrangler.toml", env: "production" }).vars,
  };
  return {
    plugins: [
      cloudflareTest(({ inject }) => ({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: migrations,
            TEST_OPENAI_URL: inject<string>("openaiUrl"),
            TEST_PERMISO_URL: inject<string>("permisoUrl"),
            KRATOS_URL: inject<string>("kratosUrl"),
            TEST_GIT_URL: inject<string>("gitUrl"),
            TEST_CAPTURE_URL: inject<string>("captureUrl"),
            TEST_ANTHROPIC_URL: inject<string>("anthropicUrl"),
            TEST_GOOGLE_URL: inject<string>("googleUrl"),
            TEST_A2A_AGENT_URL: inject<string>("a2aAgentUrl"),
            TEST_MCP_EVERYTHING_URL: inject<string>("mcpEverythingUrl"),
            TEST_MCP_STATELESS_URL: inject<string>("mcpStatelessUrl"),
            TEST_PUSH_URL: inject<string>("pushUrl"),
            // A push the receiver never answers fails after this long (default 10 s).
            PUSH_TIMEOUT_MS: "1500",
            SHAMAN_BOOTSTRAP_TOKEN: "test-bootstrap-token",
            // The tests run as local development (wrangler.toml's own vars are production's).
            ...LOCAL_VARS,
            TEST_DEPLOY_VARS: JSON.stringify(deployVars),
            // The lost-job watchdog (5 min by default) would otherwise be the earliest alarm of
            // every run with a queued step; tests that force the alarm mean the run's deadline.
            // test/workflow.test.ts sets short values where it tests the watchdog itself.
            JOB_RESEND_AFTER_MS: String(24 * 3_600_000),
          },
        },
      })),
    ],
    test: {
      globalSetup: ["./test/setup/global-setup.ts"],
      setupFiles: ["./test/setup/apply-migrations.ts"],
      testTimeout: 20_000,
      hookTimeout: 30_000,
    },
  };
});
