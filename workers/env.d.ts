// Optional settings that wrangler.toml does not declare, so `wrangler types` cannot see
// them. Set secrets with `wrangler secret put NAME` (production) or in `.dev.vars` (local).
interface Env {
  /** OpenAI API key; enables the `openai` model provider. Secret. */
  OPENAI_API_KEY?: string;
  /** Base URL of an OpenAI-compatible server (Ollama, vLLM, LM Studio), e.g. http://127.0.0.1:11434/v1. */
  OPENAI_BASE_URL?: string;
  /** Model for agents that name none, e.g. `openai:gpt-4o-mini` or `llama3.2`. */
  MODEL_DEFAULT?: string;
}

interface Env {
  /** base64 of 32 random bytes: the master key for org secrets (AES-GCM). Secret; required in production. */
  SHAMAN_SECRETS_KEY?: string;
  /** Authorisation adapter: `builtin` (default, D1) or `permiso`. */
  AUTHZ_PROVIDER?: string;
  /** Permiso's base URL (GraphQL at `{PERMISO_URL}/graphql`) when AUTHZ_PROVIDER=permiso. */
  PERMISO_URL?: string;
  /** Permiso API key (Bearer). Secret. */
  PERMISO_API_KEY?: string;
  /** Ory Kratos public URL (`{KRATOS_URL}/sessions/whoami`). */
  KRATOS_URL?: string;
}

interface Env {
  /** A run that has not finished after this many milliseconds fails as timed out (default 1800000, 30 min). */
  RUN_TIMEOUT_MS?: string;
}

interface Env {
  /** Enables POST /_admin/bootstrap for callers presenting it as a Bearer token. Secret. */
  SHAMAN_BOOTSTRAP_TOKEN?: string;
}

interface Env {
  /** JWK set of private signing keys for internal tokens (`npm run jwks`); the first signs, all verify. Secret; required in production. */
  SHAMAN_JWKS?: string;
}

interface Env {
  /** How long an executor's claim on a turn holds (default 600000, 10 min); a step still running after it is run again. */
  TURN_LEASE_MS?: string;
  /** A step queued this long without being claimed gets its job sent again (default 300000, 5 min). */
  JOB_RESEND_AFTER_MS?: string;
}
