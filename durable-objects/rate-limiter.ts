/** Rate-limit state per org (skeleton; filled in by the rate-limit work). */
import { DurableObject } from "cloudflare:workers";

export class RateLimiter extends DurableObject<Env> {}
