/**
 * The git layer (src/git) against real repositories served by `git http-backend`
 * (test/servers/git.ts), changed through the server's admin API.
 */
import { describe, expect, it } from "vitest";
import { env } from "cloudflare:workers";
import { gitBlobSha } from "../src/agents/snapshot";
import { fetchTree, GitError, remoteHead, type GitErrorCode, type GitTree } from "../src/git/client";
import { validateGitUrl } from "../src/git/url";

const GIT = env.TEST_GIT_URL;
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** A repository name of its own for each test (other test files share the server). */
const unique = (name: string) => `test/${name}-${crypto.randomUUID().slice(0, 8)}`;

async function admin<T = any>(path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${GIT}/__admin/${path}`, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
  const json = await res.json();
  if (!res.ok) throw new Error(`admin ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json as T;
}

async function createRepo(name: string, files: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return admin<{ url: string; head: string }>("repos", { name, files, ...extra });
}

async function gitError(promise: Promise<unknown>, code: GitErrorCode): Promise<GitError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `expected GitError(${code})`).toBeInstanceOf(GitError);
  const gitErr = err as GitError;
  expect({ code: gitErr.code, message: gitErr.message }).toMatchObject({ code });
  expect(gitErr.message.length).toBeGreaterThan(10);
  return gitErr;
}

function byPath(tree: GitTree): Map<string, { sha: string; text: string }> {
  return new Map(tree.files.map((f) => [f.path, { sha: f.sha, text: text(f.bytes) }]));
}

const enc = (s: string) => new TextEncoder().encode(s);

/** A token as sync passes it: with its secret's name and the hosts it may be sent to. */
const cred = (value: string, allowedHosts = ["127.0.0.1"]) => ({ secret: "GIT_TOKEN", allowedHosts, value });

describe("remoteHead and fetchTree", () => {
  it("reads the head and the files with their git blob shas; sees commits, deletions and force-pushes", async () => {
    const files = {
      "README.md": "# Agents\n",
      "Summarize/prompt.md": "---\ndescription: Summarizes\nexposed: true\n---\nYou summarize.\n",
      "ProcessInvoice/prompt.md": "---\ndescription: Invoices\n---\nYou read invoices.\n",
      "docs/deep/nested/notes.txt": "ünïcødé ✓\n",
      "empty.txt": "",
    };
    const name = unique("agents");
    const repo = await createRepo(name, files);
    expect(repo.url).toBe(`${GIT}/${name}.git`);
    const remote = { url: repo.url, branch: "main" };

    expect(await remoteHead(remote)).toBe(repo.head);
    const tree = await fetchTree(remote);
    expect(tree.commit).toBe(repo.head);
    expect(tree.skipped).toEqual([]);
    expect(tree.files.map((f) => f.path)).toEqual(Object.keys(files).sort());
    for (const file of tree.files) {
      expect(file.bytes).toBeInstanceOf(Uint8Array);
      expect(text(file.bytes)).toBe(files[file.path as keyof typeof files]);
      expect(file.sha).toBe(await gitBlobSha(enc(files[file.path as keyof typeof files])));
    }
    // git's well-known id of the empty blob
    expect(byPath(tree).get("empty.txt")!.sha).toBe("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");

    // a commit that changes one file: only that file's sha changes
    const changed = "---\ndescription: Summarizes better\nexposed: true\n---\nYou summarize well.\n";
    const { head: head2 } = await admin(`repos/${name}/commit`, {
      files: { "Summarize/prompt.md": changed },
    });
    expect(head2).not.toBe(repo.head);
    expect(await remoteHead(remote)).toBe(head2);
    const tree2 = await fetchTree(remote, { commit: head2 });
    expect(tree2.commit).toBe(head2);
    const before = byPath(tree);
    const after = byPath(tree2);
    expect([...after.keys()]).toEqual([...before.keys()]);
    const differing = [...after.keys()].filter((p) => after.get(p)!.sha !== before.get(p)!.sha);
    expect(differing).toEqual(["Summarize/prompt.md"]);
    expect(after.get("Summarize/prompt.md")).toEqual({ sha: await gitBlobSha(enc(changed)), text: changed });

    // a deleted file is gone
    const { head: head3 } = await admin(`repos/${name}/commit`, { files: { "ProcessInvoice/prompt.md": null }, message: "remove" });
    const tree3 = await fetchTree(remote);
    expect(tree3.commit).toBe(head3);
    expect(tree3.files.map((f) => f.path)).toEqual(["README.md", "Summarize/prompt.md", "docs/deep/nested/notes.txt", "empty.txt"]);

    // the remote moved since the caller's expected commit: the current head is fetched
    const stale = await fetchTree(remote, { commit: repo.head });
    expect(stale.commit).toBe(head3);

    // a force-push (history rewritten): new head, exactly the new tree
    const { head: head4 } = await admin(`repos/${name}/force-push`, { files: { "Other/prompt.md": "---\ndescription: x\n---\nNew.\n" } });
    expect(await admin(`repos/${name}/head?branch=main`)).toEqual({ head: head4 });
    expect(await remoteHead(remote)).toBe(head4);
    const tree4 = await fetchTree(remote);
    expect(tree4.commit).toBe(head4);
    expect(tree4.files.map((f) => [f.path, text(f.bytes)])).toEqual([["Other/prompt.md", "---\ndescription: x\n---\nNew.\n"]]);
  });

  it("makes one cheap info/refs request for remoteHead and one upload-pack for fetchTree", async () => {
    const repo = await createRepo(unique("stats"), { "a.md": "a" });
    const name = repo.url.slice(GIT.length + 1, -".git".length);
    const remote = { url: repo.url, branch: "main" };
    await remoteHead(remote);
    expect(await admin(`stats?repo=${encodeURIComponent(name)}`)).toEqual({ "info-refs": 1, "upload-pack": 0, other: 0 });
    await fetchTree(remote);
    expect(await admin(`stats?repo=${encodeURIComponent(name)}`)).toEqual({ "info-refs": 2, "upload-pack": 1, other: 0 });
  });

  it("reads another branch, a name with a slash, and a URL with a trailing slash", async () => {
    const name = unique("branches");
    await createRepo(name, { "main.txt": "main" });
    const dev = await admin(`repos/${name}/commit`, { branch: "feature/dev", files: { "dev.txt": "dev" } });
    const url = `${GIT}/${name}.git/`;
    expect(await remoteHead({ url, branch: "feature/dev" })).toBe(dev.head);
    const tree = await fetchTree({ url, branch: "feature/dev" });
    // a branch created by a commit starts from nothing when it did not exist
    expect(tree.files.map((f) => f.path)).toEqual(["dev.txt"]);
  });

  it("skips files over maxFileBytes, symlinks and submodules, with a message", async () => {
    const big = "x".repeat(3 * 1024 * 1024 + 200 * 1024); // 3.2 MiB
    const repo = await createRepo(unique("big"), {
      "big.bin": big,
      "small.md": "small",
      "link.md": { symlink: "small.md" },
      "vendor/lib": { submodule: "0123456789abcdef0123456789abcdef01234567" },
    });
    const tree = await fetchTree({ url: repo.url, branch: "main" });
    expect(tree.files.map((f) => f.path)).toEqual(["small.md"]);
    expect(tree.skipped).toEqual([
      { path: "big.bin", message: "file is 3.2 MiB, over the 1 MiB limit" },
      { path: "link.md", message: expect.stringContaining("symbolic link") },
      { path: "vendor/lib", message: expect.stringContaining("submodule") },
    ]);
    // a higher limit returns it
    const all = await fetchTree({ url: repo.url, branch: "main" }, { maxFileBytes: 4 * 1024 * 1024 });
    expect(all.files.find((f) => f.path === "big.bin")?.bytes.byteLength).toBe(big.length);
    // too much in total: what unpacks (big files included) is bounded too, at twice maxTotalBytes
    const unpacked = await gitError(fetchTree({ url: repo.url, branch: "main" }, { maxTotalBytes: 1024 * 1024 }), "too_large");
    expect(unpacked.message).toContain("unpacks to more than 2 MiB");
  });

  it("fails with too_large when the files kept add up to more than maxTotalBytes", async () => {
    const files = Object.fromEntries([1, 2, 3].map((i) => [`f${i}.txt`, `${i}`.repeat(30 * 1024)]));
    const repo = await createRepo(unique("total"), files);
    const err = await gitError(fetchTree({ url: repo.url, branch: "main" }, { maxTotalBytes: 64 * 1024 }), "too_large");
    expect(err.message).toContain("add up to more than the 64 KiB limit");
    expect((await fetchTree({ url: repo.url, branch: "main" }, { maxTotalBytes: 100 * 1024 })).files).toHaveLength(3);
    // the download itself is bounded by maxTotalBytes as well
    const download = await gitError(fetchTree({ url: repo.url, branch: "main" }, { maxTotalBytes: 100 }), "too_large");
    expect(download.message).toContain("repository download");
  });

  it("fetches a 500-agent repository (timing printed)", async () => {
    const name = unique("bulk");
    await createRepo(name, {});
    const { head } = await admin(`repos/${name}/bulk`, { count: 500 });
    const remote = { url: `${GIT}/${name}.git`, branch: "main" };
    // workerd's clock only moves on I/O: each measurement ends with a request
    const t0 = Date.now();
    expect(await remoteHead(remote)).toBe(head);
    const t1 = Date.now();
    const tree = await fetchTree(remote);
    await admin(`stats?repo=${encodeURIComponent(name)}`);
    const t2 = Date.now();
    expect(tree.commit).toBe(head);
    expect(tree.files).toHaveLength(500);
    expect(tree.files[0]!.path).toBe("Agent0001/prompt.md");
    expect(text(tree.files[499]!.bytes)).toContain("You are Agent0500");
    for (const f of tree.files.slice(0, 20)) expect(f.sha).toBe(await gitBlobSha(f.bytes));
    console.log(`[git timing] 500 agents: remoteHead ${t1 - t0} ms, fetchTree ${t2 - t1} ms`);
  });
});

describe("private repositories", () => {
  it("needs the token, and never shows it", async () => {
    const token = "ghp_SuperSecretToken1234567890";
    const repo = await createRepo(unique("private"), { "a.md": "secret agent" }, { private: { token } });
    const remote = { url: repo.url, branch: "main" };

    const noToken = await gitError(remoteHead(remote), "auth");
    expect(noToken.message).toMatch(/requires authentication/);
    await gitError(fetchTree(remote), "auth");

    const wrong = await gitError(remoteHead({ ...remote, credential: cred("wrong-token-value") }), "auth");
    expect(wrong.message).toMatch(/rejected the token/);
    expect(wrong.message).not.toContain("wrong-token-value");

    expect(await remoteHead({ ...remote, credential: cred(token) })).toBe(repo.head);
    const tree = await fetchTree({ ...remote, credential: cred(token) });
    expect(tree.files.map((f) => text(f.bytes))).toEqual(["secret agent"]);

    // every failure with the token set keeps it out of the message and the stack
    const basic = btoa(`x-access-token:${token}`);
    const failures = await Promise.all([
      gitError(remoteHead({ ...remote, credential: cred(token), branch: "nope" }), "branch_not_found"),
      gitError(fetchTree({ ...remote, credential: cred(token) }, { maxTotalBytes: 3 }), "too_large"),
      gitError(remoteHead({ url: `${GIT}/missing-${crypto.randomUUID()}.git`, branch: "main", credential: cred(token) }), "not_found"),
      gitError(remoteHead({ url: "http://127.0.0.1:9/x.git", branch: "main", credential: cred(token) }), "unreachable"),
    ]);
    for (const e of failures) {
      for (const s of [e.message, String(e.stack), JSON.stringify(e)]) {
        expect(s).not.toContain(token);
        expect(s).not.toContain(basic);
      }
    }
  });
});

describe("credentials go only where their secret allows", () => {
  const CAPTURE = env.TEST_CAPTURE_URL;
  const token = "ghp_ScopedToken_0123456789abcdef";
  const basic = btoa(`x-access-token:${token}`);
  const gitPort = new URL(GIT).port;
  const moved = (status: number, to: string, rest: string) => `${GIT}/__moved/${status}/${encodeURIComponent(to)}${rest}`;
  const authSeen = async (name: string) => (await admin<{ count: number }>(`auth-seen?repo=${encodeURIComponent(name)}`)).count;
  const captured = async (prefix: string) => (await (await fetch(`${CAPTURE}/__captured?prefix=${encodeURIComponent(prefix)}`)).json()) as any[];
  const noToken = (e: GitError) => {
    for (const s of [e.message, String(e.stack), JSON.stringify(e)]) {
      expect(s).not.toContain(token);
      expect(s).not.toContain(basic);
    }
  };

  it("a host that is not in the secret's allowedHosts gets no request at all", async () => {
    const name = unique("scoped");
    const repo = await createRepo(name, { "a.md": "a" }, { private: { token } });
    const remote = { url: repo.url, branch: "main", credential: cred(token, ["github.com"]) };
    const refused = await gitError(remoteHead(remote), "credential_refused");
    expect(refused.message).toContain("GIT_TOKEN");
    expect(refused.message).toContain("127.0.0.1");
    noToken(refused);
    noToken(await gitError(fetchTree(remote), "credential_refused"));
    // no allowed hosts at all: sent nowhere
    const nowhere = await gitError(remoteHead({ ...remote, credential: cred(token, []) }), "credential_refused");
    expect(nowhere.message).toMatch(/no allowed hosts/);
    expect(await admin(`stats?repo=${encodeURIComponent(name)}`)).toEqual({ "info-refs": 0, "upload-pack": 0, other: 0 });
    expect(await authSeen(name)).toBe(0);
  });

  it("a redirect to another origin is refused before the token goes there; one within the origin is followed", async () => {
    const name = unique("moved");
    const repo = await createRepo(name, { "a.md": "moved agent" }, { private: { token } });
    const path = repo.url.slice(GIT.length);

    // to the capturing server (same address, another port: another origin, though its host is allowed)
    const prefix = `/git-moved-${crypto.randomUUID().slice(0, 8)}`;
    for (const status of [301, 302, 307, 308]) {
      const e = await gitError(remoteHead({ url: moved(status, `${CAPTURE}${prefix}`, path), branch: "main", credential: cred(token) }), "credential_refused");
      expect(e.message).toContain(`redirected to ${CAPTURE}`);
      expect(e.message).toContain("GIT_TOKEN");
      noToken(e);
    }
    expect(await captured(prefix)).toEqual([]);
    // to the same server by another name (localhost is allowed too: the origin is what differs)
    const viaLocalhost = moved(302, `http://localhost:${gitPort}`, path);
    const e2 = await gitError(fetchTree({ url: viaLocalhost, branch: "main", credential: cred(token, ["127.0.0.1", "localhost"]) }), "credential_refused");
    expect(e2.message).toContain(`http://localhost:${gitPort}`);
    expect(await authSeen(name)).toBe(0);

    // within the origin: followed with the token, and the pack comes from where it moved
    const sameOrigin = { url: moved(302, GIT, path), branch: "main", credential: cred(token) };
    expect(await remoteHead(sameOrigin)).toBe(repo.head);
    const tree = await fetchTree(sameOrigin);
    expect(tree.files.map((f) => text(f.bytes))).toEqual(["moved agent"]);
    expect(await admin(`stats?repo=${encodeURIComponent(name)}`)).toMatchObject({ "info-refs": 2, "upload-pack": 1 });
    expect(await authSeen(name)).toBe(3);

    // without a token, redirects are followed as fetch does (nothing to leak): the capture
    // server gets the request, without any Authorization
    const publicPrefix = `/git-public-${crypto.randomUUID().slice(0, 8)}`;
    await gitError(remoteHead({ url: moved(302, `${CAPTURE}${publicPrefix}`, "/x.git"), branch: "main" }), "not_found");
    const seen = await captured(publicPrefix);
    expect(seen).toHaveLength(1);
    expect(seen[0].headers.authorization).toBeUndefined();
  });
});

describe("limits: a repository cannot make the sync hold or walk without bound", () => {
  it("a tree that reaches the same subtree at a million paths fails quickly with too_many_files", async () => {
    const name = unique("bomb");
    await createRepo(name, {});
    const { head } = await admin(`repos/${name}/tree-bomb`, { fanout: 10, depth: 6 });
    const err = await gitError(fetchTree({ url: `${GIT}/${name}.git`, branch: "main" }), "too_many_files");
    expect(err.message).toMatch(/more than 20,000 files/);
    expect(err.commit).toBe(head);
    // the entries cap holds when files do not reach theirs
    const entries = await gitError(fetchTree({ url: `${GIT}/${name}.git`, branch: "main" }, { maxEntries: 5_000, maxFiles: 1_000_000 }), "too_many_files");
    expect(entries.message).toMatch(/more than 5,000 entries/);
  });

  it("a tree nested too deep fails with too_deep, naming where", async () => {
    const name = unique("deep");
    await createRepo(name, {});
    const { head } = await admin(`repos/${name}/tree-bomb`, { fanout: 1, depth: 40 });
    const err = await gitError(fetchTree({ url: `${GIT}/${name}.git`, branch: "main" }), "too_deep");
    expect(err.message).toContain("more than 32 levels deep");
    expect(err.message).toContain("d000/d000/");
    expect(err.commit).toBe(head);
    // within the limit it is read
    const ok = await fetchTree({ url: `${GIT}/${name}.git`, branch: "main" }, { maxDepth: 40 });
    expect(ok.files.map((f) => f.path)).toEqual([`${"d000/".repeat(40)}prompt.md`]);
  });

  it("too many files, or one object too large, fail with a clear error", async () => {
    const name = unique("many");
    await createRepo(name, {});
    await admin(`repos/${name}/bulk`, { count: 30 });
    const remote = { url: `${GIT}/${name}.git`, branch: "main" };
    expect((await gitError(fetchTree(remote, { maxFiles: 20 }), "too_many_files")).message).toMatch(/more than 20 files/);
    expect((await fetchTree(remote, { maxFiles: 30 })).files).toHaveLength(30);
    const big = await createRepo(unique("object"), { "big.bin": "y".repeat(300 * 1024), "small.md": "s" });
    const e = await gitError(fetchTree({ url: big.url, branch: "main" }, { maxObjectBytes: 256 * 1024 }), "too_large");
    expect(e.message).toContain("an object of 300 KiB, over the 256 KiB limit");
  });

  it("identical folders at several paths are all returned (the tree is parsed once, its files listed at each path)", async () => {
    const same = "---\ndescription: twin\n---\nSame.\n";
    const repo = await createRepo(unique("twins"), { "One/prompt.md": same, "Two/prompt.md": same, "Three/sub/prompt.md": same });
    const tree = await fetchTree({ url: repo.url, branch: "main" });
    expect(tree.files.map((f) => f.path)).toEqual(["One/prompt.md", "Three/sub/prompt.md", "Two/prompt.md"]);
    const bomb = unique("small-bomb");
    await createRepo(bomb, {});
    await admin(`repos/${bomb}/tree-bomb`, { fanout: 3, depth: 3 });
    const t = await fetchTree({ url: `${GIT}/${bomb}.git`, branch: "main" });
    expect(t.files).toHaveLength(27);
    expect(new Set(t.files.map((f) => f.sha)).size).toBe(1);
  });
});

describe("errors", () => {
  it("classifies unreachable, down, not found, not git and missing branch", async () => {
    const repo = await createRepo(unique("errors"), { "a.md": "a" });
    const name = repo.url.slice(GIT.length + 1, -".git".length);

    const refused = await gitError(remoteHead({ url: "http://127.0.0.1:9/x.git", branch: "main" }), "unreachable");
    expect(refused.message).toContain("127.0.0.1:9");
    await gitError(fetchTree({ url: "http://127.0.0.1:9/x.git", branch: "main" }), "unreachable");

    // an outage (HTTP 503) is `unreachable` too: try again later
    await admin("down", { down: true, repo: name });
    try {
      const down = await gitError(remoteHead({ url: repo.url, branch: "main" }), "unreachable");
      expect(down.status).toBe(503);
      expect(down.message).toContain("HTTP 503");
      await gitError(fetchTree({ url: repo.url, branch: "main" }), "unreachable");
    } finally {
      await admin("down", { down: false, repo: name });
    }
    expect(await remoteHead({ url: repo.url, branch: "main" })).toBe(repo.head);

    const missing = await gitError(remoteHead({ url: `${GIT}/no/such-repo.git`, branch: "main" }), "not_found");
    expect(missing.message).toContain("no/such-repo.git");
    expect(missing.status).toBe(404);

    const html = await gitError(remoteHead({ url: `${GIT}/not-git/acme/agents.git`, branch: "main" }), "not_git");
    expect(html.message).toContain("text/html");
    await gitError(fetchTree({ url: `${GIT}/not-git/acme/agents.git`, branch: "main" }), "not_git");

    const branch = await gitError(remoteHead({ url: repo.url, branch: "release" }), "branch_not_found");
    expect(branch.message).toContain('"release"');
    expect(branch.message).toContain("main");
    await gitError(fetchTree({ url: repo.url, branch: "release" }), "branch_not_found");

    const empty = await createRepo(unique("empty"), {});
    const none = await gitError(remoteHead({ url: empty.url, branch: "main" }), "branch_not_found");
    expect(none.message).toContain("empty repository");

    await gitError(remoteHead({ url: "not a url", branch: "main" }), "invalid_url");
    await gitError(remoteHead({ url: "https://user:secret@example.com/a.git", branch: "main" }), "invalid_url");

    const slow = await gitError(remoteHead({ url: `${GIT}/hang/acme.git`, branch: "main" }, { timeoutMs: 300 }), "unreachable");
    expect(slow.message).toContain("did not answer within 0.3 s");
    const controller = new AbortController();
    const aborted = remoteHead({ url: `${GIT}/hang/acme.git`, branch: "main" }, { signal: controller.signal });
    controller.abort();
    expect((await gitError(aborted, "unreachable")).message).toContain("aborted");
  });
});

describe("validateGitUrl", () => {
  const strict = { allowPrivateNetwork: false };
  const local = { allowPrivateNetwork: true };
  const refused = (raw: string, opts = strict) => {
    try {
      validateGitUrl(raw, opts);
    } catch (e) {
      expect(e).toBeInstanceOf(GitError);
      expect((e as GitError).code).toBe("invalid_url");
      return (e as GitError).message;
    }
    throw new Error(`${raw} was accepted`);
  };

  it("accepts public https URLs", () => {
    expect(validateGitUrl("https://github.com/acme/agents.git", strict).href).toBe("https://github.com/acme/agents.git");
    expect(validateGitUrl("  https://gitlab.example.com/group/sub/repo  ", strict).hostname).toBe("gitlab.example.com");
    expect(validateGitUrl("https://8.8.8.8/repo.git", strict).hostname).toBe("8.8.8.8");
    expect(validateGitUrl("https://[2606:4700::1111]/repo.git", strict).hostname).toBe("[2606:4700::1111]");
    expect(validateGitUrl("https://172.32.0.1/r.git", strict).hostname).toBe("172.32.0.1");
  });

  it("refuses bad schemes, credentials, long URLs and junk", () => {
    expect(refused("http://github.com/acme/agents.git")).toMatch(/https/);
    expect(refused("ssh://git@github.com/acme/agents.git")).toMatch(/https/);
    expect(refused("git@github.com:acme/agents.git")).toMatch(/https|valid/);
    expect(refused("file:///etc/passwd", local)).toMatch(/https/);
    expect(refused("https://user:pass@github.com/acme/agents.git")).toMatch(/put the token in an org secret/);
    expect(refused("https://ghp_abc@github.com/acme/agents.git")).toMatch(/org secret/);
    expect(refused(`https://github.com/${"a".repeat(2100)}`)).toMatch(/2048/);
    expect(refused("not a url")).toMatch(/not a valid URL/);
    expect(refused("")).toMatch(/empty/);
    expect(refused("https://github.com/a/b.git?x=1")).toMatch(/query/);
  });

  it("refuses local and private hosts unless allowPrivateNetwork", () => {
    const privateHosts = [
      "localhost",
      "LOCALHOST.",
      "acme.localhost",
      "git.local",
      "git.corp.internal",
      "intranet",
      "0.0.0.0",
      "10.1.2.3",
      "100.64.0.1",
      "100.127.255.254",
      "127.0.0.1",
      "127.1",
      "2130706433",
      "0x7f000001",
      "169.254.169.254",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "[::1]",
      "[::]",
      "[fc00::1]",
      "[fd12:3456::1]",
      "[fe80::1]",
      "[febf::1]",
      "[::ffff:127.0.0.1]",
      "[::ffff:10.0.0.1]",
      "[::ffff:c0a8:101]",
    ];
    for (const host of privateHosts) {
      expect(refused(`https://${host}/repo.git`), host).toMatch(/not allowed/);
    }
    expect(validateGitUrl("https://[::ffff:8.8.8.8]/r.git", strict).hostname).toBe("[::ffff:808:808]");
    expect(validateGitUrl("https://100.128.0.1/r.git", strict).hostname).toBe("100.128.0.1");
    // local development and tests
    expect(validateGitUrl("http://127.0.0.1:8080/acme/agents.git", local).port).toBe("8080");
    expect(validateGitUrl("https://localhost/acme.git", local).hostname).toBe("localhost");
    expect(validateGitUrl(`${GIT}/acme/agents.git`, local).origin).toBe(GIT);
  });
});
