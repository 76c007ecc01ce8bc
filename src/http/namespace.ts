/**
 * A tenant's trace, session and reservation ids live in its namespace: `<tenant>~<id>`. Tenant names cannot contain
 * `~` (TENANT_PATTERN, ./tenancy.ts), so no tenant can name an id inside another's namespace; operator keys write
 * trace and session ids as given. The one place that knows the separator.
 */
const SEP = '~';

/** `id` inside `tenant`'s namespace; `id` itself for the operator (`tenant` null or undefined). */
export function namespaced(tenant: string | null | undefined, id: string): string {
  return tenant === null || tenant === undefined ? id : `${tenant}${SEP}${id}`;
}

/** The namespace prefix of `tenant` (`<tenant>~`), or '' for the operator. */
export function namespacePrefix(tenant: string | null | undefined): string {
  return namespaced(tenant, '');
}

/** The tenant an id was namespaced under and the id inside it; tenant null for an operator's id. */
export function splitNamespace(id: string): { tenant: string | null; local: string } {
  const i = id.indexOf(SEP);
  return i > 0 ? { tenant: id.slice(0, i), local: id.slice(i + 1) } : { tenant: null, local: id };
}
