/**
 * Naming an org secret as an outbound credential (of a repository, an external agent, and
 * later MCP servers) is a use of that secret: it needs `use` on `/secrets/{name}` (owners
 * and admins have it; developers do not), and so does moving something that already
 * carries a credential to another URL or branch. Where the secret may then be sent is
 * still limited by its own `allowedHosts` (src/net/outbound.ts), checked when sending.
 */
import type { Context } from "hono";
import { authorize } from "../auth/authorize";
import { db } from "../db/client";
import { AppError } from "../errors";
import type { AppEnv } from "../http/app-env";
import { secretExists } from "../secrets/store";

export async function authorizeCredentialUse(c: Context<AppEnv>, secretName: string, field = "credentialSecret"): Promise<void> {
  await authorize(c, `/secrets/${secretName}`, "use");
  if (!(await secretExists(db(c.env), c.get("org"), secretName))) {
    throw new AppError("UNPROCESSABLE", `${field}: the org has no secret named '${secretName}' (PUT /secrets/${secretName} first)`);
  }
}
