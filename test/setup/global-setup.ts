import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { TestProject } from "vitest/node";
import { startA2AAgents } from "../servers/a2a-agent";
import { startAnthropic } from "../servers/anthropic";
import { startCapture } from "../servers/capture";
import { startGitServer } from "../servers/git";
import { startGoogle } from "../servers/google";
import { startKratos } from "../servers/kratos";
import { startMcpEverything } from "../servers/mcp-everything";
import { startMcpStateless } from "../servers/mcp-stateless";
import { startOpenAICompatible } from "../servers/openai-compatible";
import { startPermiso } from "../servers/permiso";
import { startPushReceiver } from "../servers/push-receiver";

/** The demo agent repository as `{ path: content }`, for tests (workerd has no filesystem). */
function readTree(root: string): Record<string, string> {
  const files: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else files[relative(root, path)] = readFileSync(path, "utf8");
    }
  };
  walk(root);
  return files;
}

// Runs in Node before the workerd pool starts: helper servers on 127.0.0.1.
export default async function setup(project: TestProject) {
  const openai = await startOpenAICompatible();
  project.provide("openaiUrl", openai.url);
  const permiso = await startPermiso({ apiKey: "permiso-test-key" });
  project.provide("permisoUrl", permiso.url);
  project.provide("exampleAgents", readTree("examples/agents"));
  const kratos = await startKratos();
  project.provide("kratosUrl", kratos.url);
  const git = await startGitServer();
  project.provide("gitUrl", git.url);
  const capture = await startCapture();
  project.provide("captureUrl", capture.url);
  const anthropic = await startAnthropic();
  project.provide("anthropicUrl", anthropic.url);
  const google = await startGoogle();
  project.provide("googleUrl", google.url);
  const a2aAgents = await startA2AAgents({ elsewhereUrl: capture.url });
  project.provide("a2aAgentUrl", a2aAgents.url);
  const [mcpEverything, mcpStateless] = await Promise.all([startMcpEverything(), startMcpStateless()]);
  project.provide("mcpEverythingUrl", mcpEverything.url);
  project.provide("mcpStatelessUrl", mcpStateless.url);
  const pushReceiver = await startPushReceiver();
  project.provide("pushUrl", pushReceiver.url);
  return async () => {
    await pushReceiver.close();
    await mcpEverything.close();
    await mcpStateless.close();
    await a2aAgents.close();
    await capture.close();
    await anthropic.close();
    await google.close();
    await openai.close();
    await permiso.close();
    await kratos.close();
    await git.close();
  };
}
