/** Audit trail (redaction, writing, querying) and encrypted org secrets, against real local D1. */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { auditId, writeAudit, writeAuditMany, type AuditEntry } from "../src/audit/log";
import { queryAudit, type AuditFilter, type AuditView } from "../src/audit/query";
import { redact, redactText, REDACTED } from "../src/audit/redact";
import { db } from "../src/db/client";
import { ensureOrg } from "../src/db/orgs";
import type { OrgScope } from "../src/db/scope";
import { AppError } from "../src/errors";
import { deriveOrgKey, INSECURE_DEV_SECRETS_KEY, secretAad, secretsKeyMaterial } from "../src/secrets/crypto";
import { deleteSecret, listSecrets, putSecret, readSecret } from "../src/secrets/store";

// Slugs get a per-run suffix so the file also passes against a D1 that kept earlier runs.
const run = Math.random().toString(36).slice(2, 8);

function randomKey(): string {
  return btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
}

async function appError(p: Promise<unknown> | (() => unknown)): Promise<AppError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error("expected an AppError");
}

const JWT =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const SK = "sk-proj-Abc123def456ghi789jkl012";
const SHK = "shk_a1b2c3d4_9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c";
const GHP = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
const GLPAT = "glpat-xYz12AbC34dEf56GhI78";
const HEX = "0123456789abcdef0123456789abcdef0123";
const B64 = "q83vEjRWeJq83vEjRWeJq83vEjRWeJ+/ab12Cd==";

describe("redact", () => {
  it("redacts values under secret-ish keys at any depth, keeping other fields", () => {
    const out = redact({
      user: "ada",
      password: "hunter2",
      nested: {
        apiKey: "abc",
        api_key: { value: "abc" },
        Authorization: "whatever",
        cookie: "sid=1",
        client_secret: "s",
        refresh_token: "t",
        private_key: "k",
        credentials: ["a"],
        session: "x",
        list: [{ "X-Api-Key": "v", ok: 1 }],
      },
      usage: { inputTokens: 12, outputTokens: 3 },
    });
    expect(out).toEqual({
      user: "ada",
      password: REDACTED,
      nested: {
        apiKey: REDACTED,
        api_key: REDACTED,
        Authorization: REDACTED,
        cookie: REDACTED,
        client_secret: REDACTED,
        refresh_token: REDACTED,
        private_key: REDACTED,
        credentials: REDACTED,
        session: REDACTED,
        list: [{ "X-Api-Key": REDACTED, ok: 1 }],
      },
      usage: { inputTokens: 12, outputTokens: 3 },
    });
  });

  it("masks credential-looking strings inside nested values under innocent keys", () => {
    const input = {
      headers: { note: `Bearer ${SK}` },
      deep: { a: [{ b: { c: `call with ${JWT} please` } }] },
      keys: [SK, SHK, GHP, GLPAT, "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", HEX, B64],
      url: "https://x-access-token:ghs_abcdefghijklmnopqrstuv@github.com/acme/agents.git",
      ordinary: "ProcessInvoice read 3 lines from /repos/acme/agents/ProcessInvoice/prompt.md",
      id: "7b0b7a0e-3f7c-4c8e-9a43-1c1f3a7d9e21",
      commit: "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
    };
    const out = redact(input) as Record<string, unknown>;
    const text = JSON.stringify(out);
    for (const secret of [SK, SHK, GHP, GLPAT, JWT, HEX, B64, "github_pat_11ABCDEFG", "ghs_abcdefghijklmnopqrstuv"]) {
      expect(text).not.toContain(secret);
    }
    expect(out.headers).toEqual({ note: `Bearer ${REDACTED}` });
    expect(text).toContain(`call with ${REDACTED} please`);
    expect(out.keys).toEqual(Array(7).fill(REDACTED));
    expect(out.url).toBe(`https://${REDACTED}@github.com/acme/agents.git`);
    // Ordinary text, ids and commit hashes survive.
    expect(out.ordinary).toBe(input.ordinary);
    expect(out.id).toBe(input.id);
    expect(out.commit).toBe(input.commit);
  });

  it("masks credentials in free text", () => {
    const msg = `fetch failed: Authorization: Bearer ${JWT}; retried with api_key=${SK} and token: "abc" for ${SHK} (ada@example.com)`;
    const out = redactText(msg);
    for (const secret of [JWT, SK, SHK, '"abc"']) expect(out).not.toContain(secret);
    expect(out).toContain("fetch failed");
    expect(out).toContain("ada@example.com");
    expect(redactText("Basic setup done")).toBe("Basic setup done");
    expect(redactText(`Basic ${btoa("ada:hunter2")}`)).toBe(`Basic ${REDACTED}`);
    expect(redactText("password=hunter2&user=ada")).toBe(`password=${REDACTED}&user=ada`);
  });

  it("truncates long strings, deep nesting, long arrays and wide objects", () => {
    const long = "word ".repeat(1_000);
    const s = redact(long) as string;
    expect(s.length).toBeLessThan(1_100);
    expect(s).toMatch(/…\[truncated 5000 chars\]$/);

    // Text beyond the scan limit (4,000 chars) is dropped before masking; a token cut there
    // is too short for its pattern, so the partial word must go. Masked JWTs shrink the
    // kept text below 1,000 chars, so nothing else would hide the fragment.
    const jwts = `${JWT} `.repeat(Math.floor(3_990 / (JWT.length + 1)));
    const cutText = `${jwts}${"a ".repeat((3_990 - jwts.length) / 2)}${SK} more words`;
    expect(cutText.indexOf(SK)).toBe(3_990);
    const tail = redactText(cutText);
    expect(tail).not.toContain("sk-proj");
    expect(tail).not.toContain("eyJ");
    expect(tail).toMatch(/\[REDACTED\] …\[truncated \d+ chars\]$/);

    let deep: Record<string, unknown> = { leaf: true };
    for (let i = 0; i < 20; i++) deep = { d: deep };
    expect(JSON.stringify(redact(deep))).toContain("[max depth]");
    expect(JSON.stringify(redact(deep))).not.toContain("leaf");

    const arr = redact(Array.from({ length: 500 }, (_, i) => i)) as unknown[];
    expect(arr.length).toBe(51);
    expect(arr[50]).toBe("[450 more items]");

    const wide = redact(Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i]))) as Record<string, unknown>;
    expect(Object.keys(wide).length).toBe(101);

    // The whole copy is bounded, however the size is spread.
    const big = Array.from({ length: 50 }, () => Array.from({ length: 50 }, () => "y".repeat(900)));
    expect(JSON.stringify(redact(big)).length).toBeLessThan(40_000);
  });

  it("copes with cycles, errors, dates, binaries and non-JSON values", () => {
    const cyclic: Record<string, unknown> = { name: "a" };
    cyclic.self = cyclic;
    const err = Object.assign(new Error(`boom with ${SK}`), { code: "E_X" });
    const out = redact({ cyclic, err, at: new Date(0), bin: new Uint8Array(7), n: 10n, f: () => 1, u: undefined, nan: NaN });
    expect(out).toEqual({
      cyclic: { name: "a", self: "[circular]" },
      err: { name: "Error", message: `boom with ${REDACTED}`, code: "E_X" },
      at: "1970-01-01T00:00:00.000Z",
      bin: "[binary 7 bytes]",
      n: "10",
      nan: null,
    });
  });
});

describe("audit log", () => {
  let a: OrgScope;
  let b: OrgScope;
  beforeAll(async () => {
    a = await ensureOrg(db(env), { slug: `audit-a-${run}`, name: "Audit A" });
    b = await ensureOrg(db(env), { slug: `audit-b-${run}`, name: "Audit B" });
  });

  it("makes time-ordered, sortable ids, strictly increasing within a millisecond", () => {
    // 35 ms vs 36 ms crosses a base36 digit: without padding "z…" would sort after "10…".
    expect(auditId(35) < auditId(36)).toBe(true);
    expect(auditId(1_000) < auditId(1_700_000_000_000)).toBe(true);
    const ids = Array.from({ length: 100 }, () => auditId(5_000));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(100);
    expect(auditId()).toMatch(/^[0-9a-z]{22}$/);
  });

  it("writes a redacted summary with absent keys omitted, and reads it back", async () => {
    const runId = crypto.randomUUID();
    await writeAudit(db(env), a.orgId, {
      actor: "user:u1",
      userId: "u1",
      runId,
      stepId: "s1",
      action: "tool.execute",
      resource: "/tools/http",
      outcome: "error",
      durationMs: 12.4,
      requestId: "req-1",
      input: { url: "https://api.example.com", headers: { authorization: `Bearer ${SK}` } },
      error: new Error(`401 for token ${SHK}`),
    });
    const { entries } = await queryAudit(db(env), a, { runId });
    expect(entries).toHaveLength(1);
    const e = entries[0]!;
    expect(e).toMatchObject({
      orgId: a.orgId,
      actor: "user:u1",
      userId: "u1",
      runId,
      stepId: "s1",
      action: "tool.execute",
      resource: "/tools/http",
      outcome: "error",
      durationMs: 12,
      requestId: "req-1",
    });
    expect(new Date(e.at).toISOString()).toBe(e.at);
    expect(e.summary).toEqual({
      input: { url: "https://api.example.com", headers: { authorization: REDACTED } },
      error: { name: "Error", message: `401 for token ${REDACTED}` },
    });
    const raw = await env.DB.prepare("SELECT summary FROM audit_log WHERE id = ?").bind(e.id).first<{ summary: string }>();
    expect(raw?.summary).not.toContain(SK);
    expect(raw?.summary).not.toContain(SHK);
  });

  describe("queries", () => {
    const runId = crypto.randomUUID();
    const base = 1_800_000_000_000;
    const all: AuditEntry[] = [];
    const ids: string[] = [];
    let p: OrgScope;

    beforeAll(async () => {
      p = await ensureOrg(db(env), { slug: `audit-p-${run}`, name: "Audit P" });
      const actions = ["auth.login", "auth.denied", "secret.put", "agent.call"] as const;
      const outcomes = ["success", "denied", "error"] as const;
      for (let i = 0; i < 120; i++) {
        all.push({
          actor: i % 2 === 0 ? "user:even" : "key:odd",
          userId: i % 5 === 0 ? "u5" : null,
          runId: i % 10 === 0 ? runId : null,
          action: actions[i % 4]!,
          resource: `/agents/A${i % 3}`,
          outcome: outcomes[i % 3]!,
          input: { i },
          at: base + i * 1_000,
        });
      }
      await writeAuditMany(db(env), p.orgId, all);
      // The same run id and actions in another org must never show up in p's results.
      await writeAuditMany(
        db(env),
        b.orgId,
        all.slice(0, 30).map((e) => ({ ...e, input: { other: true } })),
      );
      const rows = await env.DB.prepare("SELECT id FROM audit_log WHERE org_id = ? ORDER BY id").bind(p.orgId).all<{ id: string }>();
      ids.push(...rows.results.map((r) => r.id));
    });

    async function everything(filter: AuditFilter, scope = p, limit = 200): Promise<AuditView[]> {
      const out: AuditView[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 20; pages++) {
        const page = await queryAudit(db(env), scope, filter, { limit, ...(cursor ? { cursor } : {}) });
        out.push(...page.entries);
        if (!page.nextCursor) return out;
        cursor = page.nextCursor;
      }
      throw new Error("too many pages");
    }

    const indexesOf = (entries: AuditView[]) => entries.map((e) => (e.summary as { input: { i: number } }).input.i);
    const expected = (pred: (e: AuditEntry, i: number) => boolean) =>
      all.flatMap((e, i) => (pred(e, i) ? [i] : [])).reverse();

    it("stores all entries of a batch, in time order", async () => {
      expect(ids).toHaveLength(120);
      const rows = await env.DB.prepare("SELECT at FROM audit_log WHERE org_id = ? ORDER BY id").bind(p.orgId).all<{ at: number }>();
      expect(rows.results.map((r) => r.at)).toEqual(all.map((e) => e.at));
    });

    it("pages newest first with cursors, without duplicates or gaps", async () => {
      const seen: AuditView[] = [];
      const sizes: number[] = [];
      let cursor: string | undefined;
      for (;;) {
        const page = await queryAudit(db(env), p, {}, { limit: 50, ...(cursor ? { cursor } : {}) });
        sizes.push(page.entries.length);
        seen.push(...page.entries);
        if (!page.nextCursor) break;
        expect(page.nextCursor).toMatch(/^[A-Za-z0-9_-]+$/);
        cursor = page.nextCursor;
      }
      expect(sizes).toEqual([50, 50, 20]);
      expect(seen.map((e) => e.id)).toEqual([...ids].reverse());
      expect(indexesOf(seen)).toEqual(expected(() => true));
      expect(seen[0]!.at).toBe(new Date(base + 119_000).toISOString());
    });

    it("uses a default page size of 50 and a next cursor only when more exist", async () => {
      const first = await queryAudit(db(env), p, {});
      expect(first.entries).toHaveLength(50);
      expect(first.nextCursor).not.toBeNull();
      const exact = await queryAudit(db(env), p, { runId }, { limit: 12 });
      expect(exact.entries).toHaveLength(12);
      expect(exact.nextCursor).toBeNull();
    });

    it("filters by action, action prefix, actor, user, run, resource, outcome and time", async () => {
      expect(indexesOf(await everything({ action: "secret.put" }))).toEqual(expected((e) => e.action === "secret.put"));
      expect(indexesOf(await everything({ actionPrefix: "auth." }))).toEqual(expected((e) => e.action.startsWith("auth.")));
      expect(indexesOf(await everything({ actor: "key:odd" }))).toEqual(expected((e) => e.actor === "key:odd"));
      expect(indexesOf(await everything({ userId: "u5" }))).toEqual(expected((e) => e.userId === "u5"));
      expect(indexesOf(await everything({ runId }))).toEqual(expected((e) => e.runId === runId));
      expect(indexesOf(await everything({ resource: "/agents/A1" }))).toEqual(expected((e) => e.resource === "/agents/A1"));
      expect(indexesOf(await everything({ outcome: "denied" }))).toEqual(expected((e) => e.outcome === "denied"));
      expect(indexesOf(await everything({ from: base + 100_000 }))).toEqual(expected((_, i) => i >= 100));
      expect(indexesOf(await everything({ to: base + 5_000 }))).toEqual(expected((_, i) => i < 5));
      expect(indexesOf(await everything({ from: base + 10_000, to: base + 20_000 }, p, 3))).toEqual(
        expected((_, i) => i >= 10 && i < 20),
      );
      // Combined filters, paged in small steps.
      expect(indexesOf(await everything({ actionPrefix: "auth.", outcome: "success", actor: "user:even" }, p, 2))).toEqual(
        expected((e) => e.action.startsWith("auth.") && e.outcome === "success" && e.actor === "user:even"),
      );
      // A prefix is a prefix, not a pattern.
      expect(await everything({ actionPrefix: "auth_" })).toEqual([]);
    });

    it("never returns another org's entries", async () => {
      const mine = await everything({ runId });
      expect(mine.every((e) => e.orgId === p.orgId)).toBe(true);
      const theirs = await everything({ runId }, b);
      expect(theirs).toHaveLength(3);
      expect(theirs.every((e) => e.orgId === b.orgId && (e.summary as { input: unknown }).input !== undefined)).toBe(true);
      expect(theirs.map((e) => e.summary)).toEqual(Array(3).fill({ input: { other: true } }));
      // A cursor from one org's page does not reveal the other org's rows.
      const page = await queryAudit(db(env), p, {}, { limit: 1 });
      const cross = await everything({}, b);
      const crossFromCursor = await queryAudit(db(env), b, {}, { limit: 200, cursor: page.nextCursor! });
      expect(crossFromCursor.entries.every((e) => e.orgId === b.orgId)).toBe(true);
      expect(cross.some((e) => e.orgId === p.orgId)).toBe(false);
    });

    it("rejects bad cursors and bad parameters with 400", async () => {
      for (const cursor of ["!!!", "", "bm90LWFuLWlk", btoa("0".repeat(21) + "Z"), "a".repeat(65)]) {
        const err = await appError(queryAudit(db(env), p, {}, { cursor }));
        expect(err.status).toBe(400);
        expect(err.message).toBe("invalid cursor");
      }
      for (const limit of [0, 201, 1.5, Number.NaN]) {
        expect((await appError(queryAudit(db(env), p, {}, { limit }))).status).toBe(400);
      }
      expect((await appError(queryAudit(db(env), p, { from: -1 }))).status).toBe(400);
      expect((await appError(queryAudit(db(env), p, { outcome: "maybe" as "error" }))).status).toBe(400);
    });
  });

  it("writes large batches in several statements (over 100 bound parameters)", async () => {
    const runId = crypto.randomUUID();
    const entries: AuditEntry[] = Array.from({ length: 400 }, (_, i) => ({
      actor: "system",
      runId,
      action: "step.run",
      resource: `/runs/${runId}`,
      outcome: "success",
      input: { i },
    }));
    await writeAuditMany(db(env), a.orgId, entries);
    const count = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE org_id = ? AND run_id = ?")
      .bind(a.orgId, runId)
      .first<{ n: number }>();
    expect(count?.n).toBe(400);
    // Same-millisecond entries keep their batch order, newest (last written) first.
    const page = await queryAudit(db(env), a, { runId }, { limit: 200 });
    expect(indexesOfRun(page.entries)).toEqual(Array.from({ length: 200 }, (_, i) => 399 - i));
  });
});

function indexesOfRun(entries: AuditView[]): number[] {
  return entries.map((e) => (e.summary as { input: { i: number } }).input.i);
}

describe("org secrets", () => {
  let a: OrgScope;
  let b: OrgScope;
  const key = randomKey();
  const envWithKey = { ...env, SHAMAN_SECRETS_KEY: key } as Env;
  beforeAll(async () => {
    a = await ensureOrg(db(env), { slug: `secrets-a-${run}`, name: "Secrets A" });
    b = await ensureOrg(db(env), { slug: `secrets-b-${run}`, name: "Secrets B" });
  });

  async function rawRow(orgId: string, name: string) {
    return env.DB.prepare("SELECT * FROM org_secrets WHERE org_id = ? AND name = ?")
      .bind(orgId, name)
      .first<{ ciphertext: string; key_version: number; created_at: number; updated_at: number }>();
  }

  it("round-trips a value, encrypted at rest with a fresh IV each time", async () => {
    const value = "github-token-PLAINTEXT-ünïcödé-🔑";
    const info = await putSecret(db(env), envWithKey, a, "GIT_TOKEN", value);
    expect(info.name).toBe("GIT_TOKEN");
    expect(await readSecret(db(env), envWithKey, a.orgId, "GIT_TOKEN")).toBe(value);

    const row = await rawRow(a.orgId, "GIT_TOKEN");
    expect(row).not.toBeNull();
    const dump = JSON.stringify(row);
    expect(dump).not.toContain("PLAINTEXT");
    expect(dump).not.toContain(btoa("github-token-PLAINTEXT"));
    expect(row!.key_version).toBe(1);
    // iv (12) + ciphertext + tag (16), base64.
    const bytes = atob(row!.ciphertext).length;
    expect(bytes).toBe(12 + new TextEncoder().encode(value).length + 16);

    // Upsert replaces the value, keeps createdAt, and uses a new IV even for the same value.
    await putSecret(db(env), envWithKey, a, "GIT_TOKEN", value);
    const again = await rawRow(a.orgId, "GIT_TOKEN");
    expect(again!.ciphertext).not.toBe(row!.ciphertext);
    expect(again!.created_at).toBe(row!.created_at);
    await putSecret(db(env), envWithKey, a, "GIT_TOKEN", "second");
    expect(await readSecret(db(env), envWithKey, a.orgId, "GIT_TOKEN")).toBe("second");

    expect(await readSecret(db(env), envWithKey, a.orgId, "MISSING")).toBeNull();
    // The org boundary: b has no such secret.
    expect(await readSecret(db(env), envWithKey, b.orgId, "GIT_TOKEN")).toBeNull();
  });

  it("lists names and times only, and deletes", async () => {
    await putSecret(db(env), envWithKey, a, "b.list", "value-one-XYZ");
    await putSecret(db(env), envWithKey, a, "a-list", "value-two-XYZ");
    await putSecret(db(env), envWithKey, b, "other-org", "value-three-XYZ");
    const list = await listSecrets(db(env), a);
    const names = list.map((s) => s.name);
    expect(names).toEqual([...names].sort());
    expect(names).toEqual(expect.arrayContaining(["a-list", "b.list"]));
    expect(names).not.toContain("other-org");
    for (const s of list) expect(Object.keys(s).sort()).toEqual(["allowedHosts", "createdAt", "name", "updatedAt"]);
    expect(JSON.stringify(list)).not.toContain("XYZ");

    expect(await deleteSecret(db(env), b, "a-list")).toBe(false);
    expect(await deleteSecret(db(env), a, "a-list")).toBe(true);
    expect(await deleteSecret(db(env), a, "a-list")).toBe(false);
    expect(await readSecret(db(env), envWithKey, a.orgId, "a-list")).toBeNull();
    expect((await listSecrets(db(env), a)).map((s) => s.name)).not.toContain("a-list");
  });

  it("validates names and sizes", async () => {
    for (const name of ["", "1abc", "has space", "a/b", "x".repeat(129), "ünï"]) {
      expect((await appError(putSecret(db(env), envWithKey, a, name, "v"))).status).toBe(400);
    }
    await putSecret(db(env), envWithKey, a, "x".repeat(128), "ok");
    await putSecret(db(env), envWithKey, a, "big", "v".repeat(64 * 1024));
    expect(await readSecret(db(env), envWithKey, a.orgId, "big")).toBe("v".repeat(64 * 1024));
    expect((await appError(putSecret(db(env), envWithKey, a, "big", "v".repeat(64 * 1024 + 1)))).status).toBe(413);
    // Multi-byte characters count as bytes.
    expect((await appError(putSecret(db(env), envWithKey, a, "big", "é".repeat(32 * 1024 + 1)))).status).toBe(413);
  });

  it("refuses a ciphertext copied to another org or another name, or altered", async () => {
    await putSecret(db(env), envWithKey, a, "MOVE_ME", "top-secret");
    const { ciphertext } = (await rawRow(a.orgId, "MOVE_ME"))!;
    const insert = (orgId: string, name: string, text: string) =>
      env.DB.prepare("INSERT OR REPLACE INTO org_secrets (org_id, name, ciphertext) VALUES (?, ?, ?)").bind(orgId, name, text).run();

    await insert(b.orgId, "MOVE_ME", ciphertext);
    expect((await appError(readSecret(db(env), envWithKey, b.orgId, "MOVE_ME"))).code).toBe("INTERNAL");

    await insert(a.orgId, "MOVED", ciphertext);
    expect((await appError(readSecret(db(env), envWithKey, a.orgId, "MOVED"))).code).toBe("INTERNAL");

    const bytes = Uint8Array.from(atob(ciphertext), (c) => c.charCodeAt(0));
    for (const at of [0, 12, bytes.length - 1]) {
      const tampered = bytes.slice();
      tampered[at]! ^= 1;
      await insert(a.orgId, "MOVE_ME", btoa(String.fromCharCode(...tampered)));
      expect((await appError(readSecret(db(env), envWithKey, a.orgId, "MOVE_ME"))).code).toBe("INTERNAL");
    }
    await insert(a.orgId, "MOVE_ME", "not base64!");
    expect((await appError(readSecret(db(env), envWithKey, a.orgId, "MOVE_ME"))).code).toBe("INTERNAL");
    await insert(a.orgId, "MOVE_ME", ciphertext);
    expect(await readSecret(db(env), envWithKey, a.orgId, "MOVE_ME")).toBe("top-secret");

    // Another master key cannot read it.
    const otherKey = { ...env, SHAMAN_SECRETS_KEY: randomKey() } as Env;
    expect((await appError(readSecret(db(env), otherKey, a.orgId, "MOVE_ME"))).code).toBe("INTERNAL");
  });

  it("derives a different key per org (not just a different AAD)", async () => {
    // Encrypt with org a's key but org b's AAD: only a per-org key stops b from reading it.
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const sealed = new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: secretAad(b.orgId, "FORGED") },
        await deriveOrgKey(key, a.orgId),
        new TextEncoder().encode("forged"),
      ),
    );
    const stored = btoa(String.fromCharCode(...iv, ...sealed));
    await env.DB.prepare("INSERT OR REPLACE INTO org_secrets (org_id, name, ciphertext) VALUES (?, ?, ?)")
      .bind(b.orgId, "FORGED", stored)
      .run();
    expect((await appError(readSecret(db(env), envWithKey, b.orgId, "FORGED"))).code).toBe("INTERNAL");
    // Sanity: the same construction with b's own key is what the store accepts.
    const good = new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: secretAad(b.orgId, "FORGED") },
        await deriveOrgKey(key, b.orgId),
        new TextEncoder().encode("genuine"),
      ),
    );
    await env.DB.prepare("UPDATE org_secrets SET ciphertext = ? WHERE org_id = ? AND name = ?")
      .bind(btoa(String.fromCharCode(...iv, ...good)), b.orgId, "FORGED")
      .run();
    expect(await readSecret(db(env), envWithKey, b.orgId, "FORGED")).toBe("genuine");
  });

  it("uses the named insecure key only outside production, and refuses production without a key", async () => {
    const dev = { ...env, SHAMAN_ENV: "development", SHAMAN_SECRETS_KEY: undefined } as Env;
    expect(secretsKeyMaterial(dev)).toBe(INSECURE_DEV_SECRETS_KEY);
    expect(atob(INSECURE_DEV_SECRETS_KEY).length).toBe(32);
    expect(secretsKeyMaterial(envWithKey)).toBe(key);

    const prod = { ...env, SHAMAN_ENV: "production", SHAMAN_SECRETS_KEY: undefined } as Env;
    const err = await appError(() => secretsKeyMaterial(prod));
    expect(err.code).toBe("UNAVAILABLE");
    expect(err.message).toBe("org secrets are not configured (SHAMAN_SECRETS_KEY)");
    expect((await appError(putSecret(db(env), prod, a, "PROD", "v"))).code).toBe("UNAVAILABLE");
    expect((await appError(readSecret(db(env), prod, a.orgId, "GIT_TOKEN"))).code).toBe("UNAVAILABLE");
    expect(await rawRow(a.orgId, "PROD")).toBeNull();

    const prodWithKey = { ...env, SHAMAN_ENV: "production", SHAMAN_SECRETS_KEY: key } as Env;
    await putSecret(db(env), prodWithKey, a, "PROD", "v");
    expect(await readSecret(db(env), prodWithKey, a.orgId, "PROD")).toBe("v");
  });

  it("refuses a master key that is not base64 of 32 bytes", async () => {
    for (const bad of [btoa("too short"), btoa("x".repeat(33)), "%%% not base64 %%%"]) {
      const e = { ...env, SHAMAN_SECRETS_KEY: bad } as Env;
      const err = await appError(putSecret(db(env), e, a, "WRONG_KEY", "v"));
      expect(err.code).toBe("UNAVAILABLE");
      expect(err.message).toMatch(/SHAMAN_SECRETS_KEY .*(32 bytes|base64)/);
      expect((await appError(readSecret(db(env), e, a.orgId, "GIT_TOKEN"))).code).toBe("UNAVAILABLE");
    }
    expect(await rawRow(a.orgId, "WRONG_KEY")).toBeNull();
  });
});
