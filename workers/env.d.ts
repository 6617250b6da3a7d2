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
