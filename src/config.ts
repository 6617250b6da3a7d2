/** Deployment configuration read from the Worker's vars, parsed once per env object. */
export interface Config {
  /** Orgs are served at `<slug>.<domain>`. */
  domain: string;
  /** True unless SHAMAN_ENV is exactly "development". */
  production: boolean;
  /** Local-only fallbacks for the org: `X-Shaman-Org` header or `/_org/<slug>/` prefix. */
  devRouting: boolean;
  /** Local-only demo seeding route. */
  devSeed: boolean;
  runWaitTimeoutMs: number;
  /** A run still unfinished after this long fails as timed out (the run object's alarm). */
  runTimeoutMs: number;
  /** How long an executor's claim on a turn holds; a step still running after it is presumed lost. */
  turnLeaseMs: number;
  /** A step queued this long without being claimed has lost its job: the run object sends it again. */
  jobResendAfterMs: number;
}

// Env objects are stable per isolate, so parsing once per object is enough.
const cache = new WeakMap<object, Config>();

export function config(env: Env): Config {
  let c = cache.get(env);
  if (c) return c;
  // Fail closed: only the exact value "development" is development; unset or a typo is production.
  const production = env.SHAMAN_ENV !== "development";
  c = {
    domain: (env.SHAMAN_DOMAIN || "localhost").toLowerCase(),
    production,
    devRouting: !production && env.SHAMAN_DEV_ROUTING === "true",
    devSeed: !production && env.SHAMAN_DEV_SEED === "true",
    runWaitTimeoutMs: positiveInt(env.RUN_WAIT_TIMEOUT_MS, 120_000),
    runTimeoutMs: positiveInt(env.RUN_TIMEOUT_MS, 30 * 60_000),
    turnLeaseMs: positiveInt(env.TURN_LEASE_MS, 10 * 60_000),
    jobResendAfterMs: positiveInt(env.JOB_RESEND_AFTER_MS, 5 * 60_000),
  };
  cache.set(env, c);
  return c;
}

function positiveInt(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : fallback;
}
