// The local-only settings: what `npm run dev`, the demo, the bench and the tests give the
// Worker on top of wrangler.toml, whose own [vars] are production-safe (a bare
// `wrangler deploy` ships those). Never put these in wrangler.toml.
//   SHAMAN_ENV=development   anything else (unset, a typo) means production
//   SHAMAN_DEV_ROUTING       org from `X-Shaman-Org` or `/_org/<slug>/` as well as the subdomain
//   SHAMAN_DEV_SEED          POST /_dev/seed (demo data without a git remote)
//   SHAMAN_DEV_IDENTITY      `Authorization: Bearer dev:<email>` acts as that org member
// Development also allows plain-http and private-network remotes and a built-in secrets key.
export const LOCAL_VARS = Object.freeze({
  SHAMAN_ENV: "development",
  SHAMAN_DOMAIN: "localhost",
  SHAMAN_DEV_ROUTING: "true",
  SHAMAN_DEV_SEED: "true",
  SHAMAN_DEV_IDENTITY: "true",
});
