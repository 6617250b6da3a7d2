/** Who is calling. The user's credential never leaves the gateway; only this does. */
export interface Grant {
  resource: string;
  action: string;
}

export type Principal =
  | { kind: "user"; id: string; userId: string; email: string | null; via: "kratos" | "dev" }
  /** `createdBy`: the member who made the key; the key never does more than they may now. */
  | { kind: "apiKey"; id: string; keyId: string; name: string; grants: Grant[]; createdBy: string };

/** The id recorded in audit rows and used for rate limits: `user:<id>` or `key:<id>`. */
export function principalId(p: Principal): string {
  return p.kind === "user" ? `user:${p.userId}` : `key:${p.keyId}`;
}
