/**
 * The org scope every data access needs. It can only be made from an org row that was
 * read from D1 (`scopeOf`), so a query can never run "for no org" or for an id typed in
 * by a caller: the type system carries the tenancy boundary.
 */
import type { OrgRow, OrgSettings } from "./schema";

declare const orgScopeBrand: unique symbol;

export interface OrgScope {
  readonly orgId: string;
  readonly slug: string;
  readonly name: string;
  /** The org's settings as read with the scope (so per-request policy needs no extra query). */
  readonly settings: OrgSettings;
  readonly [orgScopeBrand]: true;
}

export function scopeOf(org: Pick<OrgRow, "id" | "slug" | "name"> & { settings?: OrgSettings | null }): OrgScope {
  return { orgId: org.id, slug: org.slug, name: org.name, settings: org.settings ?? {} } as OrgScope;
}
