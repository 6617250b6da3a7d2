/**
 * A git smart-HTTP server for tests, the benchmark and the demo: real bare repositories in a
 * temp dir, served by the real `git http-backend` CGI on 127.0.0.1. Code inside workerd
 * cannot run git, so JSON endpoints under `/__admin/` create and change repositories with
 * real git commands (plumbing: one `git fast-import` per change, no work tree):
 *
 *   POST /__admin/repos                    { name, branch?="main", private?: { token }, files? } → { url, head }
 *                                          (recreating an existing name resets it)
 *   POST /__admin/repos/<name>/commit      { branch?, files: { path: content | null }, message? } → { head }
 *   POST /__admin/repos/<name>/force-push  { branch?, files }  → { head }  (a new orphan commit: history rewritten)
 *   POST /__admin/repos/<name>/bulk        { count, branch? } → { head }  (Agent0001/prompt.md … valid agent files)
 *   POST /__admin/repos/<name>/tree-bomb   { fanout, depth, branch? } → { head }  (a commit whose tree holds
 *                                          `fanout` folders, each the same tree of `fanout` folders, `depth`
 *                                          levels down to one file: fanout^depth paths in a pack of depth+2
 *                                          objects; fanout 1 makes a deep tree)
 *   POST /__admin/hold                     { repo, hold: boolean } → hold: the repo's next upload-pack request
 *                                          (counted in stats) waits until released (hold: false); later ones pass
 *   GET  /__admin/repos/<name>/head?branch=main → { head }  (null when the branch does not exist)
 *   POST /__admin/down                     { down: boolean, repo?: name } → every git request (or that repo's) answers 503
 *   GET  /__admin/stats?repo=<name>        → { "info-refs": n, "upload-pack": n, other: n } (of all repos without ?repo)
 *   GET  /not-git/...                      → a 200 text/html page (a URL that is not a git repository)
 *   *    /__moved/<status>/<encodeURIComponent(base)>/<rest>  → <status> with Location <base>/<rest>?<query>
 *                                          (a repository that moved: to this server, or to another origin)
 *   GET  /__admin/auth-seen?repo=<name>    → { count } of git requests for that repo that carried an Authorization header
 *   *    /hang/...                         → never answers (a server that times out)
 *
 * A file's content is a string (UTF-8), null (delete; commit only), or one of
 * `{ base64 }`, `{ symlink: target }`, `{ submodule: commitSha }`.
 *
 * Private repositories require HTTP basic auth whose password is the token (any user name),
 * else 401 with `WWW-Authenticate: Basic realm="git"`. Connection refused: use
 * `http://127.0.0.1:9/x.git`.
 *
 * Plain Node (no TypeScript at run time is needed beyond type stripping): this file uses
 * only erasable syntax and imports only `node:` modules, so Node ≥ 22.18 imports it from
 * an `.mjs` script as is (`import { startGitServer } from "../test/servers/git.ts"`).
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGunzip } from "node:zlib";

export interface GitServer {
  /** Base URL, e.g. http://127.0.0.1:40123 (repositories at `<url>/<name>.git`). */
  url: string;
  /** The directory holding the bare repositories. */
  root: string;
  close(): Promise<void>;
}

export type FileContent = string | null | { base64: string } | { symlink: string } | { submodule: string };

type Kind = "info-refs" | "upload-pack" | "other";
type Counts = Record<Kind, number>;

const HTTP_BACKEND_PATH = "/usr/lib/git-core/git-http-backend";
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/;

class HttpProblem extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

interface Run {
  stdout: string;
}

export async function startGitServer(opts: { port?: number } = {}): Promise<GitServer> {
  const root = await mkdtemp(join(tmpdir(), "shaman-git-"));
  const reposDir = join(root, "repos");
  await mkdir(reposDir);
  // Commits and the CGI must not depend on the machine's git config.
  const gitEnv: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: root,
    LANG: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: join(root, "gitconfig"),
    GIT_AUTHOR_NAME: "Shaman Test",
    GIT_AUTHOR_EMAIL: "git@shaman.test",
    GIT_COMMITTER_NAME: "Shaman Test",
    GIT_COMMITTER_EMAIL: "git@shaman.test",
    GIT_TERMINAL_PROMPT: "0",
  };
  const backend = existsSync(HTTP_BACKEND_PATH) ? [HTTP_BACKEND_PATH] : ["git", "http-backend"];

  const tokens = new Map<string, string>(); // private repo name → token
  const downRepos = new Set<string>();
  let allDown = false;
  const stats = new Map<string, Counts>();
  const authSeen = new Map<string, number>();
  const held = new Map<string, { armed: boolean; promise: Promise<void>; release: () => void }>();
  const locks = new Map<string, Promise<unknown>>();
  let tmpCounter = 0;

  const repoPath = (name: string) => join(reposDir, `${name}.git`);

  function checkName(name: unknown): string {
    if (typeof name !== "string" || name.length > 200 || !NAME.test(name) || name.endsWith(".git") || name.split("/").some((s) => s === "." || s === "..")) {
      throw new HttpProblem(400, `invalid repository name ${JSON.stringify(name)}`);
    }
    return name;
  }

  function checkBranch(branch: unknown): string {
    const b = branch ?? "main";
    if (typeof b !== "string" || !/^[A-Za-z0-9_][A-Za-z0-9._\/-]*$/.test(b) || b.includes("..") || b.endsWith(".lock") || b.endsWith("/")) {
      throw new HttpProblem(400, `invalid branch name ${JSON.stringify(branch)}`);
    }
    return b;
  }

  function git(args: string[], input?: string | Buffer, env: Record<string, string> = {}): Promise<Run> {
    return new Promise((resolve, reject) => {
      const child = spawn("git", args, { env: { ...gitEnv, ...env }, stdio: ["pipe", "pipe", "pipe"] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (d: Buffer) => out.push(d));
      child.stderr.on("data", (d: Buffer) => err.push(d));
      child.on("error", reject);
      child.on("close", (code) => {
        if (code === 0) resolve({ stdout: Buffer.concat(out).toString("utf8") });
        else reject(new Error(`git ${args.join(" ")} failed (${code}): ${Buffer.concat(err).toString("utf8").trim()}`));
      });
      child.stdin.on("error", () => {}); // reported through the exit code
      child.stdin.end(input ?? "");
    });
  }

  /** Runs admin operations on one repository one at a time. */
  function serialized<T>(name: string, op: () => Promise<T>): Promise<T> {
    const prev = locks.get(name) ?? Promise.resolve();
    const next = prev.then(op, op);
    const tail = next.catch(() => {});
    locks.set(name, tail);
    void tail.then(() => {
      if (locks.get(name) === tail) locks.delete(name);
    });
    return next;
  }

  async function head(name: string, branch: string): Promise<string | null> {
    try {
      const r = await git(["--git-dir", repoPath(name), "rev-parse", "--verify", "-q", `refs/heads/${branch}^{commit}`]);
      return r.stdout.trim() || null;
    } catch {
      return null;
    }
  }

  function quotePath(path: string): string {
    if (path === "" || path.startsWith("/") || path.split("/").some((s) => s === "" || s === "." || s === ".." || s === ".git")) {
      throw new HttpProblem(400, `invalid file path ${JSON.stringify(path)}`);
    }
    if (!/["\\\n\r\t\0]/.test(path) && !path.startsWith('"')) return path;
    if (path.includes("\0")) throw new HttpProblem(400, "file paths cannot contain NUL");
    return `"${path.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n").replace(/\r/g, "\\r").replace(/\t/g, "\\t")}"`;
  }

  /**
   * One commit on `branch` through `git fast-import`: on top of the branch's head, or (orphan)
   * a root commit holding exactly `files` that replaces the branch.
   */
  async function writeCommit(name: string, branch: string, files: Record<string, FileContent>, message: string, orphan: boolean): Promise<string> {
    const parent = orphan ? null : await head(name, branch);
    const parts: Buffer[] = [];
    const now = Math.floor(Date.now() / 1000);
    const msg = Buffer.from(message.endsWith("\n") ? message : `${message}\n`);
    parts.push(Buffer.from(`commit refs/heads/${branch}\ncommitter Shaman Test <git@shaman.test> ${now} +0000\ndata ${msg.byteLength}\n`), msg);
    if (parent) parts.push(Buffer.from(`from ${parent}\n`));
    else parts.push(Buffer.from("deleteall\n"));
    for (const [path, content] of Object.entries(files)) {
      const p = quotePath(path);
      if (content === null) {
        if (orphan) throw new HttpProblem(400, `force-push files cannot be null (${path})`);
        parts.push(Buffer.from(`D ${p}\n`));
      } else if (typeof content === "object" && "submodule" in content) {
        if (!/^[0-9a-f]{40}$/.test(content.submodule)) throw new HttpProblem(400, `submodule of ${path} must be a commit sha`);
        parts.push(Buffer.from(`M 160000 ${content.submodule} ${p}\n`));
      } else {
        const mode = typeof content === "object" && "symlink" in content ? "120000" : "100644";
        const data =
          typeof content === "string"
            ? Buffer.from(content, "utf8")
            : "symlink" in content
              ? Buffer.from(content.symlink, "utf8")
              : "base64" in content
                ? Buffer.from(content.base64, "base64")
                : null;
        if (!data) throw new HttpProblem(400, `unsupported content for ${path}`);
        parts.push(Buffer.from(`M ${mode} inline ${p}\ndata ${data.byteLength}\n`), data, Buffer.from("\n"));
      }
    }
    parts.push(Buffer.from("\n"));
    await git(["--git-dir", repoPath(name), "fast-import", "--quiet", ...(orphan ? ["--force"] : [])], Buffer.concat(parts));
    const h = await head(name, branch);
    if (!h) throw new Error(`commit on ${name} ${branch} left no head`);
    return h;
  }

  /** A commit whose tree is `depth` levels of `fanout` identical folders over one file (plumbing only). */
  async function treeBomb(name: string, branch: string, fanout: number, depth: number): Promise<string> {
    const gitDir = ["--git-dir", repoPath(name)];
    const blob = (await git([...gitDir, "hash-object", "-w", "--stdin"], "---\ndescription: one of many\nexposed: true\n---\nHi.\n")).stdout.trim();
    let tree = (await git([...gitDir, "mktree"], `100644 blob ${blob}\tprompt.md\n`)).stdout.trim();
    for (let level = 0; level < depth; level++) {
      let listing = "";
      for (let i = 0; i < fanout; i++) listing += `040000 tree ${tree}\td${String(i).padStart(3, "0")}\n`;
      tree = (await git([...gitDir, "mktree"], listing)).stdout.trim();
    }
    const parent = await head(name, branch);
    const commit = (await git([...gitDir, "commit-tree", tree, ...(parent ? ["-p", parent] : []), "-m", `tree bomb ${fanout}^${depth}`])).stdout.trim();
    await git([...gitDir, "update-ref", `refs/heads/${branch}`, commit]);
    return commit;
  }

  function requireRepo(name: string) {
    if (!existsSync(repoPath(name))) throw new HttpProblem(404, `no repository ${name}`);
  }

  function checkFiles(files: unknown, required: boolean): Record<string, FileContent> {
    if (files === undefined && !required) return {};
    if (!files || typeof files !== "object" || Array.isArray(files)) throw new HttpProblem(400, "files must be an object { path: content }");
    return files as Record<string, FileContent>;
  }

  function agentFile(i: number): [string, string] {
    const name = `Agent${String(i).padStart(4, "0")}`;
    return [
      `${name}/prompt.md`,
      `---\ndescription: Benchmark agent number ${i}, answers questions about topic ${i % 37}.\nexposed: true\n---\nYou are ${name}, a helpful assistant for benchmark topic ${i % 37}.\n\nAnswer briefly and precisely. Agent index: ${i}.\n`,
    ];
  }

  async function admin(req: IncomingMessage, url: URL): Promise<{ status: number; body: unknown }> {
    const path = url.pathname;
    const method = req.method ?? "GET";
    const json = async (): Promise<Record<string, unknown>> => {
      const raw = (await readBody(req)).toString("utf8");
      if (raw.trim() === "") return {};
      try {
        const v = JSON.parse(raw) as unknown;
        if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
        return v as Record<string, unknown>;
      } catch {
        throw new HttpProblem(400, "body must be a JSON object");
      }
    };

    if (method === "POST" && path === "/__admin/repos") {
      const body = await json();
      const name = checkName(body.name);
      const branch = checkBranch(body.branch);
      const files = checkFiles(body.files, false);
      const priv = body.private as { token?: unknown } | undefined;
      if (priv !== undefined && (typeof priv !== "object" || typeof priv.token !== "string" || priv.token === "")) {
        throw new HttpProblem(400, "private must be { token: string }");
      }
      const headSha = await serialized(name, async () => {
        await rm(repoPath(name), { recursive: true, force: true });
        await mkdir(repoPath(name), { recursive: true });
        await git(["init", "--bare", "--quiet", `--initial-branch=${branch}`, repoPath(name)]);
        if (priv) tokens.set(name, priv.token as string);
        else tokens.delete(name);
        stats.delete(name);
        downRepos.delete(name);
        return Object.keys(files).length > 0 ? writeCommit(name, branch, files, "initial commit", false) : null;
      });
      return { status: 201, body: { url: `${baseUrl}/${name}.git`, head: headSha } };
    }

    if (method === "POST" && path === "/__admin/down") {
      const body = await json();
      const down = body.down !== false;
      if (body.repo !== undefined) {
        const name = checkName(body.repo);
        if (down) downRepos.add(name);
        else downRepos.delete(name);
      } else {
        allDown = down;
        if (!down) downRepos.clear();
      }
      return { status: 200, body: { down, repo: body.repo ?? null } };
    }

    if (method === "GET" && path === "/__admin/stats") {
      const repo = url.searchParams.get("repo");
      if (repo !== null) return { status: 200, body: stats.get(repo) ?? zero() };
      const total = zero();
      for (const c of stats.values()) for (const k of Object.keys(total) as Kind[]) total[k] += c[k];
      return { status: 200, body: total };
    }

    if (method === "POST" && path === "/__admin/hold") {
      const body = await json();
      const name = checkName(body.repo);
      if (body.hold !== false) {
        if (!held.has(name)) {
          let release = () => {};
          const promise = new Promise<void>((r) => (release = r));
          held.set(name, { armed: true, promise, release });
        }
      } else {
        held.get(name)?.release();
        held.delete(name);
      }
      return { status: 200, body: { repo: name, held: held.has(name) } };
    }

    if (method === "GET" && path === "/__admin/auth-seen") {
      return { status: 200, body: { count: authSeen.get(checkName(url.searchParams.get("repo"))) ?? 0 } };
    }

    const m = /^\/__admin\/repos\/(.+)\/(commit|force-push|bulk|head|tree-bomb)$/.exec(path);
    if (m) {
      const name = checkName(decodeURIComponent(m[1]!));
      const op = m[2]!;
      if (op === "head" && method === "GET") {
        requireRepo(name);
        const branch = checkBranch(url.searchParams.get("branch") ?? undefined);
        return { status: 200, body: { head: await head(name, branch) } };
      }
      if (method !== "POST") throw new HttpProblem(405, "method not allowed");
      const body = await json();
      const branch = checkBranch(body.branch);
      requireRepo(name);
      if (op === "commit") {
        const files = checkFiles(body.files, true);
        const message = typeof body.message === "string" && body.message !== "" ? body.message : "update";
        return { status: 200, body: { head: await serialized(name, () => writeCommit(name, branch, files, message, false)) } };
      }
      if (op === "force-push") {
        const files = checkFiles(body.files, true);
        return { status: 200, body: { head: await serialized(name, () => writeCommit(name, branch, files, "rewritten history", true)) } };
      }
      if (op === "tree-bomb") {
        const { fanout, depth } = body;
        if (typeof fanout !== "number" || !Number.isInteger(fanout) || fanout < 1 || fanout > 1000) throw new HttpProblem(400, "fanout must be an integer from 1 to 1000");
        if (typeof depth !== "number" || !Number.isInteger(depth) || depth < 1 || depth > 500) throw new HttpProblem(400, "depth must be an integer from 1 to 500");
        return { status: 200, body: { head: await serialized(name, () => treeBomb(name, branch, fanout, depth)) } };
      }
      const count = body.count;
      if (typeof count !== "number" || !Number.isInteger(count) || count < 1 || count > 9999) {
        throw new HttpProblem(400, "count must be an integer from 1 to 9999");
      }
      const files: Record<string, string> = {};
      for (let i = 1; i <= count; i++) {
        const [p, c] = agentFile(i);
        files[p] = c;
      }
      return { status: 200, body: { head: await serialized(name, () => writeCommit(name, branch, files, `${count} agents`, false)) } };
    }
    throw new HttpProblem(404, `no admin endpoint ${method} ${path}`);
  }

  function zero(): Counts {
    return { "info-refs": 0, "upload-pack": 0, other: 0 };
  }

  async function serveGit(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const m = /^\/(.+?\.git)(\/.*)?$/.exec(url.pathname);
    const name = m ? m[1]!.slice(0, -".git".length) : null;
    const rest = m?.[2] ?? "";
    const kind: Kind = rest === "/info/refs" ? "info-refs" : rest === "/git-upload-pack" ? "upload-pack" : "other";
    if (name) {
      const c = stats.get(name) ?? zero();
      c[kind]++;
      stats.set(name, c);
      if (req.headers.authorization) authSeen.set(name, (authSeen.get(name) ?? 0) + 1);
      const hold = kind === "upload-pack" ? held.get(name) : undefined;
      if (hold?.armed) {
        hold.armed = false;
        await hold.promise;
      }
    }
    if (allDown || (name !== null && downRepos.has(name))) {
      await drain(req);
      res.writeHead(503, { "content-type": "text/plain", "retry-after": "1" }).end("git server is down (simulated outage)\n");
      return;
    }
    let remoteUser = "";
    const token = name !== null ? tokens.get(name) : undefined;
    if (token !== undefined) {
      const auth = req.headers.authorization ?? "";
      const basic = /^Basic\s+(.+)$/i.exec(auth);
      const decoded = basic ? Buffer.from(basic[1]!, "base64").toString("utf8") : "";
      const colon = decoded.indexOf(":");
      if (colon < 0 || decoded.slice(colon + 1) !== token) {
        await drain(req);
        res.writeHead(401, { "content-type": "text/plain", "www-authenticate": 'Basic realm="git"' }).end("authentication required\n");
        return;
      }
      remoteUser = decoded.slice(0, colon) || "git";
    }
    let body: Buffer = await readBody(req);
    const encoding = (req.headers["content-encoding"] ?? "").toLowerCase();
    if (encoding === "gzip" || encoding === "x-gzip") body = await gunzip(body);
    const env: Record<string, string> = {
      ...gitEnv,
      GIT_PROJECT_ROOT: reposDir,
      GIT_HTTP_EXPORT_ALL: "1",
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ""),
      REQUEST_METHOD: req.method ?? "GET",
      CONTENT_TYPE: req.headers["content-type"] ?? "",
      CONTENT_LENGTH: String(body.byteLength),
      REMOTE_USER: remoteUser,
      REMOTE_ADDR: req.socket.remoteAddress ?? "127.0.0.1",
      SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
      GATEWAY_INTERFACE: "CGI/1.1",
    };
    const gitProtocol = req.headers["git-protocol"];
    if (typeof gitProtocol === "string") env.GIT_PROTOCOL = gitProtocol;
    await runCgi(backend, env, body, res);
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const handle = async () => {
      if (url.pathname.startsWith("/__admin/")) {
        const { status, body } = await admin(req, url);
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
      } else if (url.pathname.startsWith("/__moved/")) {
        const mv = /^\/__moved\/(30[12378])\/([^/]+)(\/.*)?$/.exec(url.pathname);
        await drain(req);
        if (!mv) throw new HttpProblem(400, "expected /__moved/<status>/<encoded base>/<rest>");
        res.writeHead(Number(mv[1]), { location: `${decodeURIComponent(mv[2]!)}${mv[3] ?? ""}${url.search}` }).end();
      } else if (url.pathname.startsWith("/hang/")) {
        await drain(req); // and never answer; close() ends the connection
      } else if (url.pathname === "/not-git" || url.pathname.startsWith("/not-git/")) {
        await drain(req);
        res
          .writeHead(200, { "content-type": "text/html; charset=utf-8" })
          .end("<!doctype html><html><head><title>Welcome</title></head><body><h1>Just a web page</h1></body></html>\n");
      } else {
        await serveGit(req, res, url);
      }
    };
    handle().catch((err: unknown) => {
      const status = err instanceof HttpProblem ? err.status : 500;
      const message = err instanceof Error ? err.message : String(err);
      if (!res.headersSent) res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ error: message }));
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: baseUrl,
    root,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      for (const h of held.values()) h.release();
      await Promise.allSettled([...locks.values()]);
      await rm(root, { recursive: true, force: true });
    },
  };
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function drain(req: IncomingMessage): Promise<void> {
  for await (const _ of req) {
    // discard
  }
}

function gunzip(data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const z = createGunzip();
    z.on("data", (d: Buffer) => chunks.push(d));
    z.on("end", () => resolve(Buffer.concat(chunks)));
    z.on("error", reject);
    z.end(data);
  });
}

/** Runs a CGI program and streams its answer: parses the header block (incl. `Status:`), then pipes the body. */
function runCgi(command: string[], env: Record<string, string>, body: Buffer, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(command[0]!, command.slice(1), { env, stdio: ["pipe", "pipe", "pipe"] });
    let head: Buffer = Buffer.alloc(0);
    let headerDone = false;
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    child.stdout.on("data", (d: Buffer) => {
      if (headerDone) {
        if (!res.write(d)) {
          child.stdout.pause();
          res.once("drain", () => child.stdout.resume());
        }
        return;
      }
      head = Buffer.concat([head, d]);
      let end = head.indexOf("\r\n\r\n");
      let sep = 4;
      if (end < 0) {
        end = head.indexOf("\n\n");
        sep = 2;
      }
      if (end < 0) return;
      headerDone = true;
      let status = 200;
      let statusText = "OK";
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString("latin1").split(/\r?\n/)) {
        const colon = line.indexOf(":");
        if (colon <= 0) continue;
        const key = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (key.toLowerCase() === "status") {
          const sm = /^(\d{3})\s*(.*)$/.exec(value);
          if (sm) {
            status = Number(sm[1]);
            statusText = sm[2] || statusText;
          }
        } else {
          headers[key] = value;
        }
      }
      res.writeHead(status, statusText, headers);
      const restBody = head.subarray(end + sep);
      if (restBody.byteLength > 0) res.write(restBody);
    });
    child.on("error", (err) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" }).end(`git http-backend failed: ${err.message}\n`);
      else res.destroy();
      resolve();
    });
    child.on("close", (code) => {
      if (!headerDone) {
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" }).end(`git http-backend failed (${code}): ${stderr.trim()}\n`);
      } else {
        res.end();
      }
      resolve();
    });
    child.stdin.on("error", () => {});
    child.stdin.end(body);
  });
}
