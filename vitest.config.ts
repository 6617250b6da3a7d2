import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Tests run inside workerd against real local D1, R2, Queues and Durable Objects. Helper
// servers (an OpenAI-compatible model server, …) run in Node, started by globalSetup on
// 127.0.0.1; their URLs reach the Worker as bindings.
export default defineConfig(async () => {
  const migrations = await readD1Migrations("./migrations");
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
            SHAMAN_BOOTSTRAP_TOKEN: "test-bootstrap-token",
            SHAMAN_DEV_IDENTITY: "true",
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
