/**
 * Push notification configs of A2A tasks (`TaskPushNotificationConfig`), stored in D1 per
 * (org, task, id). A config says where to POST the task's updates (`url`, under the
 * outbound URL policy) and what to send with them: the client's `token` (header
 * `X-A2A-Notification-Token`, for the receiver to check) and `authentication` (header
 * `Authorization: <scheme> <credentials>`). Credentials of the form `secret:<NAME>` name
 * an org secret: its value is read only when a push is sent, through `credentialFetch`,
 * so it goes only to the secret's allowed hosts; naming it needs `use` on the secret.
 *
 * The token and literal credentials are stored encrypted with the org's key (as org
 * secrets are: AES-GCM, AAD naming the org, task and config), and no read gives them back:
 * they let whoever holds them forge pushes to the client's receiver, and anyone who may
 * read the task may read its configs. Get and List show the URL, the scheme and a secret
 * reference, never a token or a literal credential.
 */
import { and, asc, count, eq } from "drizzle-orm";
import { z } from "zod";
import { db } from "../db/client";
import { orgSecrets } from "../db/schema";
import type { OrgScope } from "../db/scope";
import type { Dialect } from "../a2a/wire";
import { config as appConfig } from "../config";
import { hostAllowed } from "../net/outbound";
import { outboundUrlProblem } from "../net/url-policy";
import { decryptSecret, encryptSecret, secretsKeyMaterial } from "../secrets/crypto";
import { SECRET_NAME } from "../secrets/store";
import { pushConfigs, type PushConfigRow } from "./schema";

export const MAX_CONFIGS_PER_TASK = 10;
export const CONFIG_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** An HTTP auth scheme name (an RFC 9110 token). */
const SCHEME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/;
/** Header-safe text: visible ASCII and spaces (no CR/LF, nothing a header cannot carry). */
const HEADER_TEXT = /^[\x20-\x7e]+$/;
const SECRET_REF = /^secret:(.+)$/;

export type PushErrorCode = "task_not_found" | "config_not_found" | "invalid_config" | "too_many_configs";

/**
 * What the push functions throw for a caller's mistake. For A2A: `task_not_found` and
 * `config_not_found` are TaskNotFoundError (-32001; REST 404), `invalid_config` and
 * `too_many_configs` are InvalidParams (-32602; REST 400). Another org's task, or one the
 * caller may not read, is `task_not_found` exactly like a missing one.
 */
export class PushError extends Error {
  readonly code: PushErrorCode;
  constructor(code: PushErrorCode, message: string) {
    super(message);
    this.name = "PushError";
    this.code = code;
  }
}

/** A config as the platform shows it (never the token or a literal credential). */
export interface PushConfig {
  id: string;
  taskId: string;
  url: string;
  /** Whether a token is sent (its value is never shown). */
  hasToken: boolean;
  authentication: { scheme: string; secret: string | null; hasCredentials: boolean } | null;
  dialect: Dialect;
  createdBy: string | null;
  createdAt: number;
  updatedAt: number;
}

/** A config as given by a client, either version's shape (normalised by `parsePushConfigInput`). */
export interface PushConfigInput {
  id?: string | undefined;
  url: string;
  token?: string | undefined;
  authentication?: { scheme: string; credentials?: string | undefined } | undefined;
}

const Auth = z
  .object({
    // v1.0: one scheme; v0.3: a list (the first is used).
    scheme: z.string().optional(),
    schemes: z.array(z.string()).max(8).optional(),
    credentials: z.string().max(8192).optional(),
  })
  .passthrough();

const Input = z
  .object({
    id: z.string().max(200).optional(),
    url: z.string().min(1, "url is required"),
    token: z.string().max(1024).optional(),
    authentication: Auth.nullable().optional(),
  })
  .passthrough();

/**
 * Normalises a config given in either version's shape: v1.0 `TaskPushNotificationConfig`
 * (`{ id?, taskId, url, token?, authentication?: { scheme, credentials } }`) or v0.3
 * (`{ taskId, pushNotificationConfig: { id?, url, token?, authentication?: { schemes, credentials? } } }`,
 * or the inner object alone). Throws PushError `invalid_config`.
 */
export function parsePushConfigInput(raw: unknown): PushConfigInput {
  let value = raw;
  if (value && typeof value === "object" && "pushNotificationConfig" in value) value = (value as { pushNotificationConfig: unknown }).pushNotificationConfig;
  const r = Input.safeParse(value);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new PushError("invalid_config", `invalid push notification config: ${first ? `${first.path.join(".") || "config"}: ${first.message}` : "malformed"}`);
  }
  const { id, url, token, authentication } = r.data;
  let auth: PushConfigInput["authentication"];
  if (authentication) {
    const scheme = authentication.scheme ?? authentication.schemes?.[0];
    const credentials = authentication.credentials === "" ? undefined : authentication.credentials;
    if (scheme === undefined || scheme === "") {
      if (credentials !== undefined) throw new PushError("invalid_config", "authentication.scheme is required with credentials (e.g. Bearer)");
    } else auth = { scheme, ...(credentials !== undefined ? { credentials } : {}) };
  }
  return { ...(id ? { id } : {}), url, ...(token ? { token } : {}), ...(auth ? { authentication: auth } : {}) };
}

/** Checks a normalised input (URL policy, header-safe values, names); returns the secret it names, if any. */
function check(env: Env, input: PushConfigInput): { secret: string | null } {
  if (input.id !== undefined && !CONFIG_ID.test(input.id)) {
    throw new PushError("invalid_config", "id: 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit");
  }
  const problem = outboundUrlProblem(input.url, { allowPrivateNetwork: !appConfig(env).production });
  if (problem) throw new PushError("invalid_config", `url: ${problem}`);
  if (input.token !== undefined && !HEADER_TEXT.test(input.token)) throw new PushError("invalid_config", "token: printable ASCII only (it is sent in a header)");
  const auth = input.authentication;
  if (!auth) return { secret: null };
  if (!SCHEME.test(auth.scheme)) throw new PushError("invalid_config", "authentication.scheme: an HTTP authentication scheme name such as Bearer or Basic");
  if (auth.credentials === undefined) return { secret: null };
  const ref = SECRET_REF.exec(auth.credentials);
  if (ref) {
    const name = ref[1]!;
    if (!SECRET_NAME.test(name)) throw new PushError("invalid_config", `authentication.credentials: '${name}' is not a secret name`);
    return { secret: name };
  }
  if (!HEADER_TEXT.test(auth.credentials)) throw new PushError("invalid_config", "authentication.credentials: printable ASCII only (it is sent in a header)");
  return { secret: null };
}

/** The AAD name a config's encrypted field is bound to (org is bound by the key itself). */
function sealedName(runId: string, id: string, field: "token" | "credentials"): string {
  return `push:${runId}:${id}:${field}`;
}

export function toView(row: PushConfigRow): PushConfig {
  return {
    id: row.id,
    taskId: row.runId,
    url: row.url,
    hasToken: row.tokenCiphertext !== null,
    authentication: row.authScheme ? { scheme: row.authScheme, secret: row.authSecret, hasCredentials: row.authSecret !== null || row.authCiphertext !== null } : null,
    dialect: row.dialect === "0.3" ? "0.3" : "1.0",
    createdBy: row.createdBy,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

/**
 * Stores (creates or replaces, by id) a config of a task the caller was allowed to
 * configure. `mayUseSecret` is asked when the config names an org secret.
 */
export async function storeConfig(
  env: Env,
  scope: OrgScope,
  opts: { runId: string; input: PushConfigInput; dialect: Dialect; principal: string | null; fromSeq: number; mayUseSecret: (name: string) => Promise<boolean> },
): Promise<PushConfig> {
  const { runId, input } = opts;
  const { secret } = check(env, input);
  const d = db(env);
  if (secret) {
    const row = await d.query.orgSecrets.findFirst({ columns: { allowedHosts: true }, where: and(eq(orgSecrets.orgId, scope.orgId), eq(orgSecrets.name, secret)) });
    // A secret the caller may not use answers like a missing one.
    if (!row || !(await opts.mayUseSecret(secret))) {
      throw new PushError("invalid_config", `authentication.credentials: the org has no secret named '${secret}' that you may use`);
    }
    if (!hostAllowed(new URL(input.url), row.allowedHosts ?? [])) {
      throw new PushError("invalid_config", `authentication.credentials: the secret '${secret}' may not be sent to ${new URL(input.url).host} (set its allowedHosts)`);
    }
  }
  const id = input.id ?? crypto.randomUUID();
  const existing = await d
    .select({ id: pushConfigs.id })
    .from(pushConfigs)
    .where(and(eq(pushConfigs.orgId, scope.orgId), eq(pushConfigs.runId, runId)));
  if (!existing.some((r) => r.id === id) && existing.length >= MAX_CONFIGS_PER_TASK) {
    throw new PushError("too_many_configs", `a task has at most ${MAX_CONFIGS_PER_TASK} push notification configs`);
  }
  const material = secretsKeyMaterial(env);
  const tokenCiphertext = input.token !== undefined ? await encryptSecret(material, scope.orgId, sealedName(runId, id, "token"), input.token) : null;
  const literal = input.authentication?.credentials !== undefined && !secret ? input.authentication.credentials : undefined;
  const authCiphertext = literal !== undefined ? await encryptSecret(material, scope.orgId, sealedName(runId, id, "credentials"), literal) : null;
  const now = Date.now();
  const values = {
    url: input.url,
    tokenCiphertext,
    authScheme: input.authentication?.scheme ?? null,
    authCiphertext,
    authSecret: secret,
    dialect: opts.dialect,
    fromSeq: opts.fromSeq,
    createdBy: opts.principal,
    updatedAt: now,
  };
  const [row] = await d
    .insert(pushConfigs)
    .values({ orgId: scope.orgId, runId, id, createdAt: now, ...values })
    .onConflictDoUpdate({ target: [pushConfigs.orgId, pushConfigs.runId, pushConfigs.id], set: values })
    .returning();
  if (!row) throw new Error("push config not stored");
  return toView(row);
}

export async function readConfig(env: Env, scope: OrgScope, runId: string, id: string): Promise<PushConfig | null> {
  if (!CONFIG_ID.test(id)) return null;
  const [r] = await db(env)
    .select()
    .from(pushConfigs)
    .where(and(eq(pushConfigs.orgId, scope.orgId), eq(pushConfigs.runId, runId), eq(pushConfigs.id, id)));
  return r ? toView(r) : null;
}

export async function readConfigs(env: Env, scope: OrgScope, runId: string): Promise<PushConfig[]> {
  const rows = await db(env)
    .select()
    .from(pushConfigs)
    .where(and(eq(pushConfigs.orgId, scope.orgId), eq(pushConfigs.runId, runId)))
    .orderBy(asc(pushConfigs.createdAt), asc(pushConfigs.id));
  return rows.map(toView);
}

export async function removeConfig(env: Env, scope: OrgScope, runId: string, id: string): Promise<boolean> {
  if (!CONFIG_ID.test(id)) return false;
  const gone = await db(env)
    .delete(pushConfigs)
    .where(and(eq(pushConfigs.orgId, scope.orgId), eq(pushConfigs.runId, runId), eq(pushConfigs.id, id)))
    .returning({ id: pushConfigs.id });
  return gone.length > 0;
}

/**
 * Removes every config of a task (the push object, when the task has ended and its
 * retention is over: the configs of a finished task have nothing left to send, and a config
 * kept would make a later push object start its pushes over).
 */
export async function removeTaskConfigs(env: Env, orgId: string, runId: string): Promise<void> {
  await db(env)
    .delete(pushConfigs)
    .where(and(eq(pushConfigs.orgId, orgId), eq(pushConfigs.runId, runId)));
}

/** Whether a task has any config (for `notifyPush`: most tasks have none). */
export async function anyConfig(env: Env, orgId: string, runId: string): Promise<boolean> {
  const [r] = await db(env)
    .select({ n: count() })
    .from(pushConfigs)
    .where(and(eq(pushConfigs.orgId, orgId), eq(pushConfigs.runId, runId)));
  return (r?.n ?? 0) > 0;
}

/** What the push object needs to send one config's pushes: the decrypted token and credentials. */
export interface DeliveryTarget {
  id: string;
  fromSeq: number;
  url: string;
  dialect: Dialect;
  updatedAt: number;
  token: string | null;
  authScheme: string | null;
  /** Literal credentials (decrypted). */
  credentials: string | null;
  /** Or the org secret to read them from, through credentialFetch. */
  secret: string | null;
}

/** The configs of a task with their secrets decrypted: for the push object only, never an API. */
export async function deliveryTargets(env: Env, orgId: string, runId: string): Promise<DeliveryTarget[]> {
  const rows = await db(env)
    .select()
    .from(pushConfigs)
    .where(and(eq(pushConfigs.orgId, orgId), eq(pushConfigs.runId, runId)));
  if (rows.length === 0) return [];
  const material = secretsKeyMaterial(env);
  return Promise.all(
    rows.map(async (r) => ({
      id: r.id,
      fromSeq: r.fromSeq,
      url: r.url,
      dialect: r.dialect === "0.3" ? ("0.3" as const) : ("1.0" as const),
      updatedAt: r.updatedAt,
      token: r.tokenCiphertext ? await decryptSecret(material, orgId, sealedName(runId, r.id, "token"), r.tokenCiphertext) : null,
      authScheme: r.authScheme,
      credentials: r.authCiphertext ? await decryptSecret(material, orgId, sealedName(runId, r.id, "credentials"), r.authCiphertext) : null,
      secret: r.authSecret,
    })),
  );
}
