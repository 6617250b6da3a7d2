/**
 * Which browser origins may call the org's API (src/http/cors.ts), `settings.cors`:
 *   GET /settings/cors
 *   PUT /settings/cors  { allowedOrigins: ["https://dash.example.com", …] | ["*"] }
 * PUT replaces the whole setting and is audited (src/api/org-setting.ts).
 */
import { CorsSchema, corsSettingsFrom } from "../http/cors";
import { orgSettingRoutes } from "./org-setting";

export const corsSettingsRoutes = orgSettingRoutes({
  key: "cors",
  schema: CorsSchema,
  from: corsSettingsFrom,
  normalise: (cors) => ({ ...cors, allowedOrigins: [...new Set(cors.allowedOrigins)] }),
});
