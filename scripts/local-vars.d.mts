/** The local-only settings (see local-vars.mjs). */
export declare const LOCAL_VARS: Readonly<Record<"SHAMAN_ENV" | "SHAMAN_DOMAIN" | "SHAMAN_DEV_ROUTING" | "SHAMAN_DEV_SEED" | "SHAMAN_DEV_IDENTITY", string>>;
