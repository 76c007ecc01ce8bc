import type { Redis } from 'ioredis';
import { masters } from '../redis/connection.js';
import { namespacePrefix } from '../http/namespace.js';

/** Session ids with cost traces: the costs domain's listing for the console (which never reads cost keys itself). */

/** A literal for a SCAN MATCH pattern. */
const globLiteral = (s: string) => s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);

/**
 * Session ids that have cost traces. There is no time index of sessions, so this walks the keyspace with
 * SCAN (bounded by `scanBudget` keys examined) and returns up to `limit` ids, named sessions before the
 * `trace-…` ids given to traces that named no session.
 * `tenant`: only that tenant's sessions (stored as `<tenant>~<id>`, see costs/module.ts), listed by the ids the
 * tenant's key uses (without the namespace); undefined = every session, by stored id.
 */
export interface SessionList {
  readonly sessions: string[];
  /** True when the walk stopped at its budget or the list was cut at its limit. */
  readonly truncated: boolean;
}

export async function listSessions(redis: Redis, prefix: string, limit = 200, scanBudget = 20_000, tenant?: string): Promise<SessionList> {
  const ns = namespacePrefix(tenant);
  const match = `${globLiteral(`${prefix}:{session:${ns}`)}*}:traces`;
  const head = `${prefix}:{session:${ns}`;
  const found = new Set<string>();
  let examined = 0;
  let unfinished = false;
  // On a cluster every master holds its own part of the keyspace: each is walked, sharing the budget.
  const nodes = masters(redis);
  for (const [i, node] of nodes.entries()) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      examined += 1000;
      for (const k of batch) found.add(k.slice(head.length, k.length - '}:traces'.length));
    } while (cursor !== '0' && examined < scanBudget);
    if (cursor !== '0') unfinished = true;
    if (examined >= scanBudget) {
      if (i < nodes.length - 1) unfinished = true;
      break;
    }
  }
  const named = [...found].sort((a, b) => Number(a.startsWith('trace-')) - Number(b.startsWith('trace-')) || a.localeCompare(b));
  return { sessions: named.slice(0, limit), truncated: unfinished || named.length > limit };
}
