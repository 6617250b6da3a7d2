// Optional model provider settings of the platform (src/llm/registry.ts). Each is unset by
// default; set secrets with `wrangler secret put NAME` (production) or in `.dev.vars` (local).
interface Env {
  /** Anthropic API key of the platform; enables `anthropic:` models for every org. Secret. */
  ANTHROPIC_API_KEY?: string;
  /** Anthropic endpoint for the platform's key (default https://api.anthropic.com/v1), e.g. an AI Gateway URL. */
  ANTHROPIC_BASE_URL?: string;
  /** Google Gemini API key of the platform; enables `google:` models for every org. Secret. */
  GOOGLE_GENERATIVE_AI_API_KEY?: string;
  /** Gemini endpoint for the platform's key (default https://generativelanguage.googleapis.com/v1beta). */
  GOOGLE_GENERATIVE_AI_BASE_URL?: string;
  /** Workers AI (`[ai] binding = "AI"` in wrangler.toml): enables `workers-ai:` models. */
  AI?: Ai;
}
