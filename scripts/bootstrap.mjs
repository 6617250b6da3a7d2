// `npm run bootstrap -- --org acme --name "Acme Corp" --owner-email ana@acme.com --kratos-id <identity id>`
//
// Creates an org, its default roles and its first owner (and, with --api-key, an owner API
// key, printed once) through `POST /_admin/bootstrap` of a running Shaman.
//   --url URL            the Shaman to talk to (default: the local `npm run dev` server)
//   --token TOKEN        its SHAMAN_BOOTSTRAP_TOKEN (default: $SHAMAN_BOOTSTRAP_TOKEN, or
//                        the token of the local `npm run dev` server)
//   --dev                owner signs in with the local development identity (dev:<email>)
//   --api-key NAME       also create an owner API key called NAME
//   --expires-days N     expiry of that key
// Re-running is safe: the org and owner are found again, not duplicated.
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { http, LOCAL_SERVER_FILE } from "./local.mjs";

const { values: a } = parseArgs({
  options: {
    url: { type: "string" },
    token: { type: "string" },
    org: { type: "string" },
    name: { type: "string" },
    "owner-email": { type: "string" },
    "kratos-id": { type: "string" },
    dev: { type: "boolean", default: false },
    "api-key": { type: "string" },
    "expires-days": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

function usage(message) {
  if (message) console.error(`error: ${message}\n`);
  console.error(readFileSync(new URL(import.meta.url), "utf8").split("\nimport")[0].replace(/^\/\/ ?/gm, ""));
  process.exit(message ? 2 : 0);
}
if (a.help) usage();
if (!a.org) usage("--org is required (the org's subdomain label)");
if (!a["owner-email"]) usage("--owner-email is required");
if (!a.dev && !a["kratos-id"]) usage("--kratos-id (the owner's Kratos identity id) is required unless --dev");

const local = existsSync(LOCAL_SERVER_FILE) ? JSON.parse(readFileSync(LOCAL_SERVER_FILE, "utf8")) : null;
const token = a.token ?? process.env.SHAMAN_BOOTSTRAP_TOKEN ?? (a.url ? undefined : local?.bootstrapToken);
if (!token) usage("no bootstrap token: pass --token or set SHAMAN_BOOTSTRAP_TOKEN (or start `npm run dev` first)");
const body = {
  org: { slug: a.org, name: a.name ?? a.org },
  owner: { email: a["owner-email"], identityProvider: a.dev ? "dev" : "kratos", ...(a["kratos-id"] ? { identityProviderUserId: a["kratos-id"] } : {}) },
  ...(a["api-key"] ? { apiKey: { name: a["api-key"], ...(a["expires-days"] ? { expiresInDays: Number(a["expires-days"]) } : {}) } } : {}),
};

let res;
try {
  if (a.url) {
    const r = await fetch(new URL("/_admin/bootstrap", a.url), {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    const text = await r.text();
    res = { status: r.status, text, json: (() => { try { return JSON.parse(text); } catch { return null; } })() };
  } else {
    if (!local) usage("no --url given and no local server found (start `npm run dev`, or pass --url)");
    res = await http({ port: local.port, path: "/_admin/bootstrap", method: "POST", headers: { authorization: `Bearer ${token}` }, body });
  }
} catch (err) {
  console.error(`error: could not reach Shaman: ${err.message}`);
  process.exit(1);
}
if (res.status !== 200) {
  console.error(`error: bootstrap failed (${res.status}): ${res.json?.detail ?? res.text}`);
  process.exit(1);
}
const out = res.json;
console.log(`org:    ${out.org.slug} (${out.org.name}), id ${out.org.id}`);
console.log(`owner:  ${out.owner.email}, user id ${out.owner.id}`);
if (out.apiKey) console.log(`API key '${out.apiKey.name}' (shown once, store it now):\n  ${out.apiKey.key}`);
