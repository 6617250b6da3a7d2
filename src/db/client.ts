import { drizzle, type DrizzleD1Database } from "drizzle-orm/d1";
import * as schema from "./schema";

export type Db = DrizzleD1Database<typeof schema>;

// A drizzle client is a thin wrapper; keep one per D1 binding object for the isolate's life.
const clients = new WeakMap<D1Database, Db>();

export function db(env: { DB: D1Database }): Db {
  let client = clients.get(env.DB);
  if (!client) {
    client = drizzle(env.DB, { schema });
    clients.set(env.DB, client);
  }
  return client;
}
