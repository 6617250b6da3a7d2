// `npm run jwks` prints a new key set for internal tokens (one Ed25519 private key, with a
// kid), ready for `npx wrangler secret put SHAMAN_JWKS --env production`.
//
//   --add          read the current keys from stdin (the public set that
//                  /.well-known/jwks.json serves is enough) and print a set with a new
//                  private key FIRST (it signs) and the old keys as public halves only
//                  (they still verify): step 1 of a rotation
//   --remove KID   read a set from stdin (the output of --add) and print it without key
//                  KID: the last step of a rotation, once every token signed by KID expired
//
// The output holds a PRIVATE key: pipe it to wrangler or keep it in your secret store, never
// in git. Rotation step by step: docs/deployment.md, "Internal tokens and key rotation".
//   npm run --silent jwks | npx wrangler secret put SHAMAN_JWKS --env production
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { exportJWK, generateKeyPair } from "jose";

const { values: a } = parseArgs({
  options: {
    add: { type: "boolean", default: false },
    remove: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

function usage(message) {
  if (message) console.error(`error: ${message}\n`);
  console.error(readFileSync(new URL(import.meta.url), "utf8").split("\nimport")[0].replace(/^\/\/ ?/gm, ""));
  process.exit(message ? 2 : 0);
}
if (a.help) usage();
if (a.add && a.remove) usage("--add and --remove are separate steps of a rotation: use one at a time");

function readSet() {
  let text;
  try {
    text = readFileSync(0, "utf8");
  } catch {
    usage("expected the current key set on stdin");
  }
  let set;
  try {
    set = JSON.parse(text);
  } catch {
    usage("stdin is not JSON (expected a key set)");
  }
  if (!set || !Array.isArray(set.keys) || set.keys.length === 0) usage('stdin is not a key set ({"keys": [...]})');
  for (const key of set.keys) {
    if (typeof key?.kid !== "string" || !key.kid) usage("every key of the current set needs a kid");
  }
  return set;
}

async function newKey() {
  const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const jwk = await exportJWK(privateKey);
  const date = new Date().toISOString().slice(0, 10);
  const suffix = Buffer.from(crypto.getRandomValues(new Uint8Array(4))).toString("hex");
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d, kid: `shaman-${date}-${suffix}`, alg: "EdDSA", use: "sig" };
}

let keys;
if (a.remove) {
  const set = readSet();
  keys = set.keys.filter((k) => k.kid !== a.remove);
  if (keys.length === set.keys.length) usage(`no key ${a.remove} in the set (kids: ${set.keys.map((k) => k.kid).join(", ")})`);
  if (keys.length === 0) usage("that would leave no key: add a new one first (--add)");
  if (typeof keys[0].d !== "string") usage(`the first remaining key (${keys[0].kid}) has no private part: give the output of --add, not the public set`);
} else if (a.add) {
  const set = readSet();
  // Old keys only verify from now on: keep their public members only (no d).
  const publicHalf = ({ kty, crv, x, y, kid, alg }) => ({ kty, crv, x, ...(y ? { y } : {}), kid, ...(alg ? { alg } : {}), use: "sig" });
  keys = [await newKey(), ...set.keys.map(publicHalf)];
} else {
  keys = [await newKey()];
}
process.stdout.write(`${JSON.stringify({ keys })}\n`);
console.error(`key set: ${keys.map((k, i) => `${k.kid}${i === 0 ? " (signs)" : ""}`).join(", ")}`);
