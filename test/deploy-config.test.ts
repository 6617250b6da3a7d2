/**
 * Safe by default: what `wrangler deploy` ships (wrangler.toml's top-level vars, and
 * [env.production]) turns every local-only convenience off, and only the exact value
 * SHAMAN_ENV=development turns them on. The vars come from wrangler's own config reader at
 * test start (vitest.config.ts), so editing wrangler.toml is what this test judges.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../workers/gateway";
import { config } from "../src/config";
import { devIdentityEnabled } from "../src/auth/middleware";
import { secretsKeyMaterial } from "../src/secrets/crypto";
import { validateGitUrl } from "../src/git/url";
import { LOCAL_VARS } from "../scripts/local-vars.mjs";
import { bootstrapOrg } from "./helpers";

const deployed = JSON.parse((env as unknown as { TEST_DEPLOY_VARS: string }).TEST_DEPLOY_VARS) as Record<"top" | "production", Record<string, string>>;

/** The env a deploy would see: the test env without any local-only setting, plus the deployed vars. */
function deployEnv(vars: Record<string, string>): Env {
  const e: Record<string, unknown> = { ...env };
  for (const k of Object.keys(LOCAL_VARS)) delete e[k];
  delete e.SHAMAN_SECRETS_KEY;
  return { ...e, ...vars } as unknown as Env;
}

beforeAll(async () => {
  await bootstrapOrg("deploycfg", "owner@deploycfg.test");
});

describe("the deployable configuration", () => {
  it("sets no local-only switch and is not development", () => {
    for (const [which, vars] of Object.entries(deployed)) {
      expect(vars.SHAMAN_ENV, which).not.toBe("development");
      for (const k of Object.keys(LOCAL_VARS).filter((k) => k.startsWith("SHAMAN_DEV_"))) {
        expect(vars[k] ?? "false", `${which} ${k}`).not.toBe("true");
      }
      expect(vars.SHAMAN_DOMAIN, which).not.toBe("localhost");
    }
  });

  for (const which of ["top", "production"] as const) {
    it(`${which}: production behaviour throughout`, async () => {
      const e = deployEnv(deployed[which]!);
      const cfg = config(e);
      expect(cfg.production).toBe(true);
      expect(cfg.devRouting).toBe(false);
      expect(cfg.devSeed).toBe(false);
      expect(devIdentityEnabled(e)).toBe(false);
      // no built-in secrets key
      expect(() => secretsKeyMaterial(e)).toThrow(/SHAMAN_SECRETS_KEY/);
      // no plain-http or private-network remotes
      expect(() => validateGitUrl("http://127.0.0.1:9/x.git", { allowPrivateNetwork: !cfg.production })).toThrow();

      const app = createApp();
      const host = `deploycfg.${cfg.domain}`;
      // the seed route does not exist
      expect((await app.request(`https://${cfg.domain}/_dev/seed`, { method: "POST", body: "{}" }, e)).status).toBe(404);
      // the dev identity is refused like any unknown credential
      const dev = await app.request(`https://${host}/a2a/agents`, { headers: { authorization: "Bearer dev:owner@deploycfg.test" } }, e);
      expect(dev.status).toBe(401);
      // the org comes from the subdomain only: no header or path fallback
      const viaHeader = await app.request(`https://${cfg.domain}/a2a/agents`, { headers: { "x-shaman-org": "deploycfg" } }, e);
      expect(viaHeader.status).toBe(404);
      const viaPath = await app.request(`https://${cfg.domain}/_org/deploycfg/a2a/agents`, {}, e);
      expect(viaPath.status).toBe(404);
    });
  }
});

describe("SHAMAN_ENV fails closed", () => {
  it("treats anything but the exact value 'development' as production", () => {
    for (const value of [undefined, "", "Development", "dev", "developement", "staging", "production"]) {
      const e = { ...env, SHAMAN_ENV: value, SHAMAN_DEV_ROUTING: "true", SHAMAN_DEV_SEED: "true", SHAMAN_DEV_IDENTITY: "true" } as unknown as Env;
      const cfg = config(e);
      expect(cfg.production, String(value)).toBe(true);
      expect(cfg.devRouting || cfg.devSeed || devIdentityEnabled(e), String(value)).toBe(false);
    }
    const local = { ...env, SHAMAN_ENV: "development" } as unknown as Env;
    expect(config(local).production).toBe(false);
    expect(devIdentityEnabled(local)).toBe(true);
  });
});
