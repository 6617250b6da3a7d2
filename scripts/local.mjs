// Helpers shared by the local scripts (dev, demo, bench): start `wrangler dev`, seed the
// demo org, talk HTTP with a Host header (Node's fetch cannot resolve *.localhost).
import { spawn, spawnSync } from "node:child_process";
import { LOCAL_VARS } from "./local-vars.mjs";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { dirname, join, relative, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "..");
// Run wrangler's JS entry with this very Node (22, from the `node` package under npm run),
// not through the `.bin` shim, whose `env node` may find an older system Node.
const WRANGLER_JS = join(ROOT, "node_modules", "wrangler", "bin", "wrangler.js");
const wranglerArgs = (args) => [WRANGLER_JS, ...args];
const QUIET_ENV = {
  ...process.env,
  PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH ?? ""}`,
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_SEND_METRICS: "false",
};

export function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

export async function portIsFree(port) {
  return new Promise((res) => {
    const srv = createServer();
    srv.once("error", () => res(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => res(true)));
  });
}

/** Applies the D1 migrations to the local database under `persistTo` (or wrangler's default). */
export function migrateLocal(persistTo, config = "wrangler.toml") {
  const args = ["d1", "migrations", "apply", "DB", "--local", "--config", config, ...(persistTo ? ["--persist-to", persistTo] : [])];
  const r = spawnSync(process.execPath, wranglerArgs(args), { cwd: ROOT, env: QUIET_ENV, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`wrangler d1 migrations apply failed:\n${r.stdout}\n${r.stderr}`);
}

/**
 * Starts `wrangler dev` and resolves once /healthz answers. `stop()` ends the whole
 * process group (wrangler starts workerd children).
 */
export async function startWrangler({ port, persistTo, config = "wrangler.toml", inherit = false, vars = {}, remember = false }) {
  // Shaman itself gets the local-only settings; wrangler.toml's own are the production ones.
  if (config === "wrangler.toml") vars = { ...LOCAL_VARS, ...vars };
  const args = ["dev", "--config", config, "--port", String(port), "--ip", "127.0.0.1", "--show-interactive-dev-session=false"];
  if (persistTo) args.push("--persist-to", persistTo);
  for (const [k, v] of Object.entries({ SHAMAN_BOOTSTRAP_TOKEN: LOCAL_BOOTSTRAP_TOKEN, ...vars })) args.push("--var", `${k}:${v}`);
  const child = spawn(process.execPath, wranglerArgs(args), { cwd: ROOT, env: QUIET_ENV, detached: true, stdio: inherit ? "inherit" : ["ignore", "pipe", "pipe"] });
  if (remember) rememberLocalServer(port);
  let log = "";
  if (!inherit) {
    child.stdout.on("data", (d) => (log += d));
    child.stderr.on("data", (d) => (log += d));
  }
  let exited = false;
  child.on("exit", () => (exited = true));
  const stop = () =>
    new Promise((res) => {
      if (exited) return res();
      child.once("exit", () => res());
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        res();
      }
      setTimeout(() => {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {}
        res();
      }, 5000).unref();
    });
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (exited) throw new Error(`wrangler dev exited early:\n${log}`);
    try {
      const r = await http({ port, path: "/healthz" });
      if (r.status === 200) break;
    } catch {}
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`wrangler dev did not become ready:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { child, stop, log: () => log };
}

/** One HTTP request to 127.0.0.1:port with an explicit Host (so `acme.localhost` routing is real). */
export function http({ port, path, method = "GET", host = "localhost", body, headers = {} }) {
  return new Promise((resolvePromise, reject) => {
    const data = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method,
        headers: {
          host: `${host}:${port}`,
          ...(data !== undefined ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) } : {}),
          ...headers,
        },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (text += c));
        res.on("end", () => {
          let json;
          try {
            json = JSON.parse(text);
          } catch {}
          resolvePromise({ status: res.statusCode, headers: res.headers, text, json });
        });
      },
    );
    req.on("error", reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

export function readTree(dir) {
  const root = resolve(ROOT, dir);
  const files = {};
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else files[relative(root, p).split("\\").join("/")] = readFileSync(p, "utf8");
    }
  };
  walk(root);
  return files;
}

export const DEMO_ORG = { slug: "acme", name: "Acme Corp", owner: "owner@acme.test" };

/** A bootstrap token for a local wrangler this script starts (`--var SHAMAN_BOOTSTRAP_TOKEN:…`). */
export const LOCAL_BOOTSTRAP_TOKEN = `local-${crypto.randomUUID()}`;

/** Where `npm run dev` leaves the port and bootstrap token of the server it runs, for `npm run bootstrap`. */
export const LOCAL_SERVER_FILE = resolve(ROOT, ".wrangler", "local-server.json");

function rememberLocalServer(port) {
  try {
    mkdirSync(dirname(LOCAL_SERVER_FILE), { recursive: true });
    writeFileSync(LOCAL_SERVER_FILE, JSON.stringify({ port, bootstrapToken: LOCAL_BOOTSTRAP_TOKEN, pid: process.pid }), { mode: 0o600 });
  } catch {}
}

/**
 * A local git smart-HTTP server (real bare repositories served by `git http-backend`, see
 * test/servers/git.ts) with the demo agents in `acme/agents.git`: the demo org syncs its
 * agents from it exactly as from GitHub. Returns the server and the repository URL.
 */
export async function startDemoGit(files = readTree("examples/agents"), name = "acme/agents") {
  const { startGitServer } = await import("../test/servers/git.ts");
  const git = await startGitServer();
  const res = await fetch(`${git.url}/__admin/repos`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name, files }) });
  if (!res.ok) throw new Error(`creating the demo git repository failed: ${res.status} ${await res.text()}`);
  const { url, head } = await res.json();
  return { git, url, head };
}

/** Adds a repository holding `files` to a git server from `startDemoGit`; returns its URL. */
export async function addGitRepo(git, name, files) {
  const res = await fetch(`${git.url}/__admin/repos`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name, files }) });
  if (!res.ok) throw new Error(`creating the git repository ${name} failed: ${res.status} ${await res.text()}`);
  return (await res.json()).url;
}

/** Registers `gitUrl` as a repository of the org (root by default) and checks that its first sync succeeded. */
export async function registerRepository(port, { slug = DEMO_ORG.slug, apiKey, name, gitUrl, isRoot = true }) {
  const r = await http({ port, host: `${slug}.localhost`, path: "/repositories", method: "POST", headers: { authorization: `Bearer ${apiKey}` }, body: { name, gitUrl, branch: "main", isRoot } });
  if (r.status !== 201) throw new Error(`registering the repository ${name} failed: ${r.status} ${r.text}`);
  if (r.json.sync?.status !== "synced") throw new Error(`syncing the repository ${name} failed: ${JSON.stringify(r.json.sync)}`);
  return { repository: r.json.repository, sync: r.json.sync };
}

/**
 * Creates the demo org `acme` (owner `owner@acme.test`, reachable locally as
 * `Bearer dev:owner@acme.test`, and an owner API key), registers `repoUrl` (a git
 * repository) as its root repository and lets Shaman sync it. Returns the API key, the
 * repository and the sync outcome.
 */
export async function seedDemo(port, { slug = DEMO_ORG.slug, rateLimits, runLimits, repoUrl }) {
  const boot = await http({
    port,
    path: "/_admin/bootstrap",
    method: "POST",
    headers: { authorization: `Bearer ${LOCAL_BOOTSTRAP_TOKEN}` },
    body: { org: { slug, name: slug === DEMO_ORG.slug ? DEMO_ORG.name : slug }, owner: { email: `owner@${slug}.test`, identityProvider: "dev" }, apiKey: { name: "local demo" }, ...(rateLimits ? { rateLimits } : {}), ...(runLimits ? { runLimits } : {}) },
  });
  if (boot.status !== 200) throw new Error(`bootstrapping the demo org failed: ${boot.status} ${boot.text}`);
  const apiKey = boot.json.apiKey.key;
  const call = (path, method, body) => http({ port, host: `${slug}.localhost`, path, method, headers: { authorization: `Bearer ${apiKey}` }, body });
  let r = await call("/repositories", "POST", { name: "agents", gitUrl: repoUrl, branch: "main", isRoot: true });
  if (r.status === 409) {
    // Kept local state (npm run dev): the repository exists; point it at this run's git server.
    const existing = (await call("/repositories", "GET")).json.repositories.find((x) => x.name === "agents");
    if (!existing) throw new Error(`registering the demo repository failed: ${r.status} ${r.text}`);
    await call(`/repositories/${existing.id}`, "PATCH", { gitUrl: repoUrl, branch: "main", isRoot: true });
    r = await call(`/repositories/${existing.id}/sync?force=true`, "POST", {});
  } else if (r.status !== 201) throw new Error(`registering the demo repository failed: ${r.status} ${r.text}`);
  if (r.json.sync?.status !== "synced") throw new Error(`syncing the demo repository failed: ${JSON.stringify(r.json.sync)}`);
  return { apiKey, repository: r.json.repository, sync: r.json.sync, webhook: r.json.webhook };
}
