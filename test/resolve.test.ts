/** Agent name resolution for agent-to-agent calls, agents.json aliases and the external agent registry. */
import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseAgentsJson, type AliasEntry } from "../src/agents/agents-json";
import { clearResolveCache, resolveAgentCall, type CallerAgent, type ResolvedAgent } from "../src/agents/resolve";
import {
  deleteExternalAgent,
  getExternalAgent,
  listExternalAgents,
  listRepositoryAliases,
  putExternalAgent,
  replaceRepositoryAliases,
} from "../src/db/aliases";
import { db, type Db } from "../src/db/client";
import { ensureOrg, orgBySlug } from "../src/db/orgs";
import * as schema from "../src/db/schema";
import { agents, repositories } from "../src/db/schema";
import type { OrgScope } from "../src/db/scope";
import { AppError } from "../src/errors";
import { seedOrg } from "./helpers";

const d = db(env);

// ---- fixtures --------------------------------------------------------------------------

async function addRepo(scope: OrgScope, name: string, isRoot: boolean): Promise<string> {
  const id = crypto.randomUUID();
  await d.insert(repositories).values({ id, orgId: scope.orgId, name, gitUrl: `test://${scope.slug}/${name}`, branch: "main", isRoot });
  return id;
}

async function addAgents(scope: OrgScope, repositoryId: string, list: [name: string, exposed: boolean][]): Promise<void> {
  await d.insert(agents).values(
    list.map(([name, exposed]) => ({
      orgId: scope.orgId,
      repositoryId,
      name,
      path: `${name}/prompt.md`,
      commitSha: "c0ffee",
      blobSha: `blob-${name}`,
      exposed,
      description: `${name} of ${scope.slug}`,
    })),
  );
}

interface Org {
  scope: OrgScope;
  demo: string;
  tools: string;
  common: string;
}

/**
 * Org layout (the same names in both orgs where marked, to prove isolation):
 *   demo (root, the usual caller's repo): Caller+, Helper-, Prec1-, Prec2-, Exposed+
 *   tools (not root):                     Validate+, Secret-, Prec1+, OnlyTools+
 *   common (root):                        Common+, Prec1+, Prec2+, Prec3+, Validate+, RootPrivate-
 *   zeta (root):                          RootPrivate-
 *   (+ exposed, - private)
 */
async function makeOrg(slug: string): Promise<Org> {
  const scope = await ensureOrg(d, { slug, name: `${slug} Inc.` });
  const demo = await addRepo(scope, "demo", true);
  const tools = await addRepo(scope, "tools", false);
  const common = await addRepo(scope, "common", true);
  const zeta = await addRepo(scope, "zeta", true);
  await addAgents(scope, demo, [["Caller", true], ["Helper", false], ["Prec1", false], ["Prec2", false], ["Exposed", true]]);
  await addAgents(scope, tools, [["Validate", true], ["Secret", false], ["Prec1", true], ["OnlyTools", true]]);
  await addAgents(scope, common, [["Common", true], ["Prec1", true], ["Prec2", true], ["Prec3", true], ["Validate", true], ["RootPrivate", false]]);
  await addAgents(scope, zeta, [["RootPrivate", false]]);
  await replaceRepositoryAliases(d, scope, demo, [
    { alias: "Prec1", kind: "path", target: "tools/Validate", description: "" },
    { alias: "Ext", kind: "external", url: "https://ext.example.com/a2a", credentialSecret: "EXT_TOKEN", description: "an external one" },
    { alias: "ByFile", kind: "path", target: "Helper/prompt.md", description: "" },
    { alias: "ByName", kind: "path", target: "Helper", description: "" },
    { alias: "ToPrivate", kind: "path", target: "tools/Secret", description: "" },
    { alias: "Broken", kind: "path", target: "Gone/prompt.md", description: "" },
  ]);
  for (const name of ["Prec1", "Prec2", "Prec3", "Prec5"]) {
    await putExternalAgent(d, scope, { name, url: `https://registry.example.com/${slug}/${name}`, description: `registry ${name}` });
  }
  return { scope, demo, tools, common };
}

const caller = (repositoryId: string, allowedAgents: CallerAgent["allowedAgents"] = "*", name = "Caller"): CallerAgent => ({
  repositoryId,
  name,
  allowedAgents,
});

async function failure(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  throw new Error("expected the call to fail");
}

function local(r: ResolvedAgent) {
  if (r.kind !== "local") throw new Error(`expected a local agent, got ${JSON.stringify(r)}`);
  return { via: r.via, repo: r.agent.repositoryName, name: r.agent.name, exposed: r.agent.exposed };
}

let A: Org;
let B: Org;

beforeAll(async () => {
  A = await makeOrg("resolve-a");
  B = await makeOrg("resolve-b");
  // Names only org B has: an agent in a root repo, an alias and a registry entry.
  await addAgents(B.scope, B.common, [["OnlyB", true]]);
  await replaceRepositoryAliases(d, B.scope, B.demo, [
    ...(await listRepositoryAliases(d, B.scope, B.demo)),
    { alias: "OnlyBAlias", kind: "external", url: "https://b.example.com/a2a", description: "" },
  ]);
  await putExternalAgent(d, B.scope, { name: "OnlyBExt", url: "https://b.example.com/ext", credentialSecret: "B_TOKEN" });
});

beforeEach(() => clearResolveCache());

// ---- resolution order ------------------------------------------------------------------

describe("resolution order", () => {
  it("an alias of the caller's repository beats its own agent, root repositories and the registry", async () => {
    // Prec1 exists in demo (private), tools, common (root) and the registry: the alias wins.
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo), "Prec1"))).toEqual({ via: "alias", repo: "tools", name: "Validate", exposed: true });
  });

  it("the caller's own repository beats root repositories and the registry, private agents included", async () => {
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo), "Prec2"))).toEqual({ via: "same-repository", repo: "demo", name: "Prec2", exposed: false });
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo), "Helper"))).toEqual({ via: "same-repository", repo: "demo", name: "Helper", exposed: false });
    // The alias of demo does not apply to a caller in tools: there Prec1 is its own agent.
    expect(local(await resolveAgentCall(d, A.scope, caller(A.tools), "Prec1"))).toEqual({ via: "same-repository", repo: "tools", name: "Prec1", exposed: true });
  });

  it("root repositories beat the registry, and only exposed agents of other repositories count", async () => {
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo), "Prec3"))).toEqual({ via: "root-repository", repo: "common", name: "Prec3", exposed: true });
    // From tools, demo's Prec2 (root but private) is passed over for common's exposed one.
    expect(local(await resolveAgentCall(d, A.scope, caller(A.tools), "Prec2"))).toEqual({ via: "root-repository", repo: "common", name: "Prec2", exposed: true });
    // Agents of a non-root repository are not callable un-namespaced from another repository.
    const e = await failure(resolveAgentCall(d, A.scope, caller(A.demo), "OnlyTools"));
    expect(e.code).toBe("NOT_FOUND");
  });

  it("repo-name/Agent picks that repository's exposed agent, whatever root repositories hold", async () => {
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo), "tools/Validate"))).toEqual({ via: "namespaced", repo: "tools", name: "Validate", exposed: true });
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo), "Validate"))).toEqual({ via: "root-repository", repo: "common", name: "Validate", exposed: true });
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo), "tools/OnlyTools"))).toMatchObject({ via: "namespaced", repo: "tools" });
  });

  it("the registry of external agents comes last", async () => {
    const r = await resolveAgentCall(d, A.scope, caller(A.demo), "Prec5");
    expect(r).toEqual({ kind: "external", via: "registry", name: "Prec5", url: "https://registry.example.com/resolve-a/Prec5", credentialSecret: null, description: "registry Prec5" });
  });

  it("returns the full index entry of a local agent", async () => {
    const r = await resolveAgentCall(d, A.scope, caller(A.demo), "Common");
    expect(r).toEqual({
      kind: "local",
      via: "root-repository",
      agent: {
        name: "Common",
        path: "Common/prompt.md",
        repositoryId: A.common,
        repositoryName: "common",
        isRoot: true,
        commitSha: "c0ffee",
        exposed: true,
        description: "Common of resolve-a",
        version: null,
        model: null,
        tags: [],
        card: null,
      },
    });
  });
});

describe("aliases", () => {
  it("an external alias yields the URL, the secret's name and the description", async () => {
    expect(await resolveAgentCall(d, A.scope, caller(A.demo), "Ext")).toEqual({
      kind: "external",
      via: "alias",
      name: "Ext",
      url: "https://ext.example.com/a2a",
      credentialSecret: "EXT_TOKEN",
      description: "an external one",
    });
  });

  it("a path alias names an agent file or an agent of the same repository (private ones too)", async () => {
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo), "ByFile"))).toEqual({ via: "alias", repo: "demo", name: "Helper", exposed: false });
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo), "ByName"))).toEqual({ via: "alias", repo: "demo", name: "Helper", exposed: false });
  });

  it("an alias to a private agent of another repository, or to nothing, is an error that says so", async () => {
    const priv = await failure(resolveAgentCall(d, A.scope, caller(A.demo), "ToPrivate"));
    expect(priv.code).toBe("NOT_FOUND");
    expect(priv.message).toContain("private to repo 'tools'");
    expect(priv.details).toMatchObject({ private: ["tools/Secret"] });
    const broken = await failure(resolveAgentCall(d, A.scope, caller(A.demo), "Broken"));
    expect(broken.code).toBe("NOT_FOUND");
    expect(broken.message).toContain("alias 'Broken' points to 'Gone/prompt.md'");
  });

  it("replaceRepositoryAliases replaces the set (past D1's 100 bound parameters) and lists it", async () => {
    const repo = await addRepo(A.scope, "many-aliases", false);
    const many: AliasEntry[] = Array.from({ length: 60 }, (_, i) => ({
      alias: `A${i}`,
      kind: i % 2 ? "path" : "external",
      ...(i % 2 ? { target: `X${i}/prompt.md` } : { url: `https://x.example.com/${i}`, credentialSecret: `S${i}` }),
      description: `n${i}`,
    }));
    await replaceRepositoryAliases(d, A.scope, repo, many);
    const listed = await listRepositoryAliases(d, A.scope, repo);
    expect(listed).toHaveLength(60);
    expect(listed.find((a) => a.alias === "A3")).toEqual({ alias: "A3", kind: "path", target: "X3/prompt.md", description: "n3" });
    expect(listed.find((a) => a.alias === "A4")).toEqual({ alias: "A4", kind: "external", url: "https://x.example.com/4", credentialSecret: "S4", description: "n4" });
    await replaceRepositoryAliases(d, A.scope, repo, [{ alias: "Only", kind: "external", url: "https://only.example.com", description: "" }]);
    expect((await listRepositoryAliases(d, A.scope, repo)).map((a) => a.alias)).toEqual(["Only"]);
    await replaceRepositoryAliases(d, A.scope, repo, []);
    expect(await listRepositoryAliases(d, A.scope, repo)).toEqual([]);
  });
});

describe("private agents", () => {
  it("a private agent of another repository is refused, and the error says it is private", async () => {
    // Helper is private in demo (a root repository); the caller is in tools.
    const e = await failure(resolveAgentCall(d, A.scope, caller(A.tools), "Helper"));
    expect(e.code).toBe("NOT_FOUND");
    expect(e.message).toContain("root repositories (found in 'demo' but it is private)");
    expect(e.details).toMatchObject({ private: ["demo/Helper"] });
    // Private in two root repositories: both are named.
    const two = await failure(resolveAgentCall(d, A.scope, caller(A.tools), "RootPrivate"));
    expect(two.details).toMatchObject({ private: ["common/RootPrivate", "zeta/RootPrivate"] });
  });

  it("namespaced: private agents of another repository are refused, those of the caller's own are not", async () => {
    const e = await failure(resolveAgentCall(d, A.scope, caller(A.demo), "tools/Secret"));
    expect(e.code).toBe("NOT_FOUND");
    expect(e.message).toContain("namespaced 'tools/Secret' (found, but it is private to repo 'tools')");
    expect(local(await resolveAgentCall(d, A.scope, caller(A.tools), "tools/Secret"))).toEqual({ via: "namespaced", repo: "tools", name: "Secret", exposed: false });
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo), "demo/Helper"))).toEqual({ via: "namespaced", repo: "demo", name: "Helper", exposed: false });
  });

  it("an exposed agent may call a private agent of its repository (demo seeded through the import)", async () => {
    const seed = await seedOrg("resolve-seeded");
    const scope = await orgBySlug(d, "resolve-seeded");
    if (!scope) throw new Error("no org");
    const processInvoice: CallerAgent = { repositoryId: seed.repository.id, name: "ProcessInvoice", allowedAgents: ["ValidateData"] };
    const r = await resolveAgentCall(d, scope, processInvoice, "ValidateData");
    expect(local(r)).toEqual({ via: "same-repository", repo: seed.repository.name, name: "ValidateData", exposed: false });
    expect(r.kind === "local" && r.agent.commitSha).toBe(seed.commit);
    expect((await failure(resolveAgentCall(d, scope, processInvoice, "Summarize"))).code).toBe("FORBIDDEN");
  });
});

describe("allowedAgents", () => {
  it("a list allows exactly the names it holds, as written", async () => {
    const c = caller(A.demo, ["Helper", "tools/Validate", "Ext"]);
    expect(local(await resolveAgentCall(d, A.scope, c, "Helper")).name).toBe("Helper");
    expect(local(await resolveAgentCall(d, A.scope, c, "tools/Validate")).repo).toBe("tools");
    expect((await resolveAgentCall(d, A.scope, c, "Ext")).kind).toBe("external");
    const e = await failure(resolveAgentCall(d, A.scope, c, "Validate"));
    expect(e.code).toBe("FORBIDDEN");
    expect(e.message).toBe("agent 'Caller' may not call 'Validate': not in its allowedAgents");
  });

  it("an empty list allows nothing, not even a name that does not exist (checked before resolving)", async () => {
    for (const name of ["Helper", "Prec5", "NoSuchAgent"]) {
      expect((await failure(resolveAgentCall(d, A.scope, caller(A.demo, []), name))).code).toBe("FORBIDDEN");
    }
  });

  it('"*" allows any name', async () => {
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo, "*"), "Helper")).name).toBe("Helper");
  });

  it("calling itself needs its own name in the list", async () => {
    expect((await failure(resolveAgentCall(d, A.scope, caller(A.demo, ["Helper"]), "Caller"))).code).toBe("FORBIDDEN");
    expect(local(await resolveAgentCall(d, A.scope, caller(A.demo, ["Caller"]), "Caller"))).toMatchObject({ via: "same-repository", name: "Caller" });
  });
});

describe("not found", () => {
  it("lists every step tried", async () => {
    const e = await failure(resolveAgentCall(d, A.scope, caller(A.demo), "Nope"));
    expect(e.code).toBe("NOT_FOUND");
    expect(e.message).toBe(
      "agent 'Nope' not found; tried: alias in agents.json of repo 'demo', repository 'demo', root repositories (none had it), namespaced 'repo/Agent' (not a namespaced name), external agent registry",
    );
    expect(e.details?.tried).toHaveLength(5);
  });

  it("says whether the repository or the agent of a namespaced name is missing", async () => {
    const noRepo = await failure(resolveAgentCall(d, A.scope, caller(A.demo), "nope/Validate"));
    expect(noRepo.message).toContain("namespaced 'nope/Validate' (no repository 'nope')");
    const noAgent = await failure(resolveAgentCall(d, A.scope, caller(A.demo), "tools/Nope"));
    expect(noAgent.message).toContain("namespaced 'tools/Nope' (repository 'tools' has no agent 'Nope')");
    expect(noAgent.details?.tried).toHaveLength(5);
  });

  it("refuses names that cannot name an agent", async () => {
    for (const name of ["", "a/b/c", "9lives", "demo/", "has space"]) {
      expect((await failure(resolveAgentCall(d, A.scope, caller(A.demo), name))).code).toBe("UNPROCESSABLE");
    }
  });
});

// ---- tenancy ---------------------------------------------------------------------------

describe("tenant isolation", () => {
  it("another org's agents, aliases and registry are invisible", async () => {
    for (const name of ["OnlyB", "OnlyBAlias", "OnlyBExt"]) {
      const e = await failure(resolveAgentCall(d, A.scope, caller(A.demo), name));
      expect(e.code).toBe("NOT_FOUND");
    }
    // B resolves its own names.
    expect(local(await resolveAgentCall(d, B.scope, caller(B.demo), "OnlyB")).repo).toBe("common");
    expect((await resolveAgentCall(d, B.scope, caller(B.demo), "OnlyBAlias")).kind).toBe("external");
    expect(await resolveAgentCall(d, B.scope, caller(B.demo), "OnlyBExt")).toMatchObject({ via: "registry", credentialSecret: "B_TOKEN" });
  });

  it("same-named agents resolve within the caller's org only (also through the cache)", async () => {
    for (const name of ["Prec3", "tools/Validate", "Prec1", "Prec5"]) {
      const a = await resolveAgentCall(d, A.scope, caller(A.demo), name);
      const b = await resolveAgentCall(d, B.scope, caller(B.demo), name);
      if (a.kind === "local" && b.kind === "local") {
        expect([A.demo, A.tools, A.common]).toContain(a.agent.repositoryId);
        expect([B.demo, B.tools, B.common]).toContain(b.agent.repositoryId);
      } else if (a.kind === "external" && b.kind === "external") {
        expect(a.url).toContain("/resolve-a/");
        expect(b.url).toContain("/resolve-b/");
      } else throw new Error("same kind expected");
    }
  });

  it("a caller whose repository belongs to another org resolves nothing", async () => {
    const e = await failure(resolveAgentCall(d, A.scope, caller(B.demo), "Prec3"));
    expect(e.code).toBe("NOT_FOUND");
    expect(e.message).toContain("repository of the calling agent");
  });

  it("aliases cannot be written into, or listed from, another org's repository", async () => {
    await replaceRepositoryAliases(d, A.scope, B.demo, [{ alias: "Intruder", kind: "external", url: "https://evil.example.com", description: "" }]);
    const ofB = await listRepositoryAliases(d, B.scope, B.demo);
    expect(ofB.map((a) => a.alias)).toContain("OnlyBAlias");
    expect(ofB.map((a) => a.alias)).not.toContain("Intruder");
    expect(await listRepositoryAliases(d, A.scope, B.demo)).toEqual([]);
  });

  it("the registry functions only see the scope's org", async () => {
    expect(await getExternalAgent(d, A.scope, "OnlyBExt")).toBeNull();
    expect((await listExternalAgents(d, A.scope)).map((x) => x.name)).not.toContain("OnlyBExt");
    expect(await deleteExternalAgent(d, A.scope, "OnlyBExt")).toBe(false);
    expect(await getExternalAgent(d, B.scope, "OnlyBExt")).toMatchObject({ url: "https://b.example.com/ext", credentialSecret: "B_TOKEN" });
  });
});

// ---- registry, cache, round trips --------------------------------------------------------

describe("external agent registry", () => {
  it("put upserts, get/list read, delete removes (and resolution follows)", async () => {
    const scope = (await ensureOrg(d, { slug: "resolve-registry", name: "R" })) as OrgScope;
    const repo = await addRepo(scope, "r", true);
    const first = await putExternalAgent(d, scope, { name: "Weather", url: "https://w1.example.com", description: "v1" });
    expect(first).toMatchObject({ name: "Weather", url: "https://w1.example.com", credentialSecret: null, description: "v1" });
    await putExternalAgent(d, scope, { name: "Weather", url: "https://w2.example.com", credentialSecret: "W_TOKEN" });
    expect(await getExternalAgent(d, scope, "Weather")).toMatchObject({ url: "https://w2.example.com", credentialSecret: "W_TOKEN", description: "" });
    expect((await listExternalAgents(d, scope)).map((x) => x.name)).toEqual(["Weather"]);
    expect(await resolveAgentCall(d, scope, caller(repo), "Weather")).toMatchObject({ via: "registry", url: "https://w2.example.com" });
    expect(await deleteExternalAgent(d, scope, "Weather")).toBe(true);
    expect(await deleteExternalAgent(d, scope, "Weather")).toBe(false);
    // The delete cleared this isolate's cache, so resolution sees it at once.
    expect((await failure(resolveAgentCall(d, scope, caller(repo), "Weather"))).code).toBe("NOT_FOUND");
  });

  it("validates names, URLs and secret names", async () => {
    const bad = [
      { name: "9bad", url: "https://x.example.com" },
      { name: "Good", url: "ftp://x.example.com" },
      { name: "Good", url: "not a url" },
      { name: "Good", url: "https://x.example.com", credentialSecret: "has space" },
    ];
    for (const input of bad) {
      const e = await failure(putExternalAgent(d, A.scope, input));
      expect(e.code).toBe("UNPROCESSABLE");
    }
    expect(await getExternalAgent(d, A.scope, "Good")).toBeNull();
  });
});

describe("cache and round trips", () => {
  it("resolves with one D1 round trip, and serves a repeat from the isolate cache", async () => {
    const counter = { n: 0 };
    const counted = countingDb(counter);
    await resolveAgentCall(counted, A.scope, caller(A.demo), "Prec3");
    expect(counter.n).toBe(1);
    await resolveAgentCall(counted, A.scope, caller(A.demo), "Prec3");
    expect(counter.n).toBe(1);
    // The key holds the caller's repository: another repository resolves afresh.
    await resolveAgentCall(counted, A.scope, caller(A.tools), "Prec3");
    expect(counter.n).toBe(2);
    await failure(resolveAgentCall(counted, A.scope, caller(A.demo), "tools/Nope"));
    expect(counter.n).toBe(3);
    // Refused by allowedAgents: no D1 access at all.
    await failure(resolveAgentCall(counted, A.scope, caller(A.demo, []), "Prec2"));
    expect(counter.n).toBe(3);
  });

  it("a cached resolution lives until the cache is cleared", async () => {
    const scope = (await ensureOrg(d, { slug: "resolve-cache", name: "C" })) as OrgScope;
    const repo = await addRepo(scope, "r", true);
    await addAgents(scope, repo, [["Temp", false]]);
    expect(local(await resolveAgentCall(d, scope, caller(repo), "Temp")).name).toBe("Temp");
    await d.delete(agents).where(and(eq(agents.orgId, scope.orgId), eq(agents.name, "Temp")));
    expect(local(await resolveAgentCall(d, scope, caller(repo), "Temp")).name).toBe("Temp");
    clearResolveCache();
    expect((await failure(resolveAgentCall(d, scope, caller(repo), "Temp"))).code).toBe("NOT_FOUND");
  });
});

/** A drizzle client whose D1 counts round trips (a batch, or one statement run alone). */
function countingDb(counter: { n: number }): Db {
  class Stmt {
    constructor(readonly inner: D1PreparedStatement) {}
    bind(...values: unknown[]) {
      return new Stmt(this.inner.bind(...values));
    }
    all() {
      counter.n++;
      return this.inner.all();
    }
    raw(options?: { columnNames?: boolean }) {
      counter.n++;
      return options?.columnNames ? this.inner.raw({ columnNames: true }) : this.inner.raw();
    }
    run() {
      counter.n++;
      return this.inner.run();
    }
    first(column?: string) {
      counter.n++;
      return column ? this.inner.first(column) : this.inner.first();
    }
  }
  const d1 = {
    prepare: (query: string) => new Stmt(env.DB.prepare(query)),
    batch: (statements: Stmt[]) => {
      counter.n++;
      return env.DB.batch(statements.map((s) => s.inner));
    },
  };
  return drizzle(d1 as unknown as D1Database, { schema });
}

// ---- agents.json -----------------------------------------------------------------------

describe("parseAgentsJson", () => {
  it('reads the wrapped form { "agents": { … } } with both kinds and both shorthands', () => {
    const source = JSON.stringify(
      {
        $schema: "https://example.com/agents.schema.json",
        agents: {
          Translator: { url: "https://translate.example.com/a2a", secret: "TRANSLATE_TOKEN", description: "translates" },
          Check: { path: "tools/ValidateData/prompt.md", description: "validates" },
          Summary: "Summarize",
          Other: "other-repo/Agent",
          Weather: "https://weather.example.com/a2a",
          Plain: "http://plain.example.com",
        },
      },
      null,
      2,
    );
    // production's URL policy (the default): plain http is a problem of that alias only
    const prod = parseAgentsJson("agents.json", source);
    expect(prod.problems).toEqual([{ path: "agents.json", message: expect.stringMatching(/^alias 'Plain': 'url' must use https:\/\//), line: expect.any(Number) }]);
    expect(prod.aliases.map((a) => a.alias)).not.toContain("Plain");
    const r = parseAgentsJson("agents.json", source, { allowPrivateNetwork: true });
    expect(r.problems).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.aliases).toEqual([
      { alias: "Translator", kind: "external", url: "https://translate.example.com/a2a", credentialSecret: "TRANSLATE_TOKEN", description: "translates" },
      { alias: "Check", kind: "path", target: "tools/ValidateData/prompt.md", description: "validates" },
      { alias: "Summary", kind: "path", target: "Summarize", description: "" },
      { alias: "Other", kind: "path", target: "other-repo/Agent", description: "" },
      { alias: "Weather", kind: "external", url: "https://weather.example.com/a2a", description: "" },
      { alias: "Plain", kind: "external", url: "http://plain.example.com", description: "" },
    ]);
  });

  it("reads the bare map too (including an alias called 'agents' written as a target object)", () => {
    const r = parseAgentsJson("agents.json", JSON.stringify({ Weather: "https://w.example.com", agents: { url: "https://agents.example.com" }, Sum: { path: "Summarize.md" } }));
    expect(r.problems).toEqual([]);
    expect(r.aliases.map((a) => [a.alias, a.kind, a.url ?? a.target])).toEqual([
      ["Weather", "external", "https://w.example.com"],
      ["agents", "external", "https://agents.example.com"],
      ["Sum", "path", "Summarize.md"],
    ]);
  });

  it("reports invalid JSON with its line", () => {
    const r = parseAgentsJson("agents.json", '{\n  "agents": {\n    "A": "https://a.example.com"\n    "B": "X"\n  }\n}');
    expect(r.aliases).toEqual([]);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatchObject({ path: "agents.json", line: 4 });
    expect(r.problems[0]?.message).toMatch(/^invalid JSON: /);
    const notObject = parseAgentsJson("agents.json", "[1, 2]");
    expect(notObject.problems[0]?.message).toContain("must be a JSON object");
  });

  it("one bad entry is reported with its alias and line; the others load", () => {
    const source = [
      "{",
      '  "agents": {',
      '    "Good": "https://good.example.com",',
      '    "BadUrl": { "url": "ftp://files.example.com" },',
      '    "Both": { "url": "https://x.example.com", "path": "X" },',
      '    "Neither": { "description": "nothing" },',
      '    "BadPath": "a/b/c",',
      '    "BadSecret": {',
      '      "url": "https://s.example.com",',
      '      "secret": "no spaces allowed"',
      "    },",
      '    "Number": 42,',
      '    "9bad": "X",',
      '    "has space": "X",',
      '    "SecretOnPath": { "path": "X", "secret": "S" },',
      '    "NotAgentFile": "docs/readme.md",',
      '    "Fine": { "path": "./Fine/prompt.md" }',
      "  }",
      "}",
    ].join("\n");
    const r = parseAgentsJson("agents.json", source);
    expect(r.aliases.map((a) => a.alias)).toEqual(["Good", "Fine"]);
    expect(r.aliases[1]).toMatchObject({ target: "Fine/prompt.md" });
    const byAlias = Object.fromEntries(r.problems.map((p) => [/^alias '([^']*)'/.exec(p.message)?.[1], p]));
    expect(Object.keys(byAlias)).toEqual(["BadUrl", "Both", "Neither", "BadPath", "BadSecret", "Number", "9bad", "has space", "SecretOnPath", "NotAgentFile"]);
    expect(byAlias.BadUrl).toMatchObject({ line: 4, message: "alias 'BadUrl': 'url' must be an http(s) URL" });
    expect(byAlias.Both?.message).toContain("both 'url' and 'path'");
    expect(byAlias.Neither?.message).toContain("needs 'url'");
    expect(byAlias.BadSecret).toMatchObject({ line: 10 });
    expect(byAlias.BadSecret?.message).toContain("'secret'");
    expect(byAlias["9bad"]).toMatchObject({ line: 13 });
    expect(byAlias["9bad"]?.message).toContain("invalid alias name");
    expect(byAlias.NotAgentFile?.message).toContain("not an agent file");
  });

  it("a non-http URL is refused in both shapes", () => {
    const r = parseAgentsJson("agents.json", JSON.stringify({ A: { url: "javascript:alert(1)" }, B: "ftp://x.example.com/a2a", C: { url: "file:///etc/passwd" } }));
    expect(r.aliases).toEqual([]);
    expect(r.problems.map((p) => p.message)).toEqual([
      "alias 'A': 'url' must be an http(s) URL",
      expect.stringContaining("alias 'B': path 'ftp://x.example.com/a2a'"),
      "alias 'C': 'url' must be an http(s) URL",
    ]);
  });

  it("unknown fields are warnings (with their line) and the alias still loads", () => {
    const source = '{\n  "agents": {\n    "A": {\n      "url": "https://a.example.com",\n      "timeout": 5\n    }\n  },\n  "version": 2\n}';
    const r = parseAgentsJson("agents.json", source);
    expect(r.problems).toEqual([]);
    expect(r.aliases).toEqual([{ alias: "A", kind: "external", url: "https://a.example.com", description: "" }]);
    expect(r.warnings).toEqual([
      { path: "agents.json", message: "unknown top-level field 'version' (ignored)", line: 8 },
      { path: "agents.json", message: "alias 'A': unknown field 'timeout' (ignored)", line: 5 },
    ]);
  });

  it("an 'agents' key that is not an object is an error", () => {
    const r = parseAgentsJson("agents.json", '{ "agents": [1] }');
    expect(r.aliases).toEqual([]);
    expect(r.problems[0]?.message).toContain("'agents' must be an object");
  });
});
