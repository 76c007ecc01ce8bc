import type { Redis } from 'ioredis';
import { masters } from '../redis/connection.js';
import { namespacePrefix } from '../http/namespace.js';

/** Session ids with cost traces: the costs domain's listing for the console (which never reads cost keys itself). */

/** A literal for a SCAN MATCH pattern. */
const globLiteral = (s: string) => s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);

/**
 * Session ids that have cost traces. There is no time index of sessions, so this walks the keyspace with
 * SCAN (bounded by `scanBudget` keys examined, shared equally by a cluster's masters) and returns up to `limit` ids,
 * named sessions before the
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
  let unfinished = false;
  // On a cluster every master holds its own part of the keyspace: each is walked with an equal share of the budget,
  // so a master with many keys cannot use it up before the others are reached (it did: a busy first master left the
  // sessions of the other two unlisted).
  const nodes = masters(redis);
  const share = Math.max(1000, Math.ceil(scanBudget / nodes.length));
  for (const node of nodes) {
    let cursor = '0';
    let examined = 0;
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      examined += 1000;
      for (const k of batch) found.add(k.slice(head.length, k.length - '}:traces'.length));
    } while (cursor !== '0' && examined < share);
    if (cursor !== '0') unfinished = true;
  }
  const named = [...found].sort((a, b) => Number(a.startsWith('trace-')) - Number(b.startsWith('trace-')) || a.localeCompare(b));
  return { sessions: named.slice(0, limit), truncated: unfinished || named.length > limit };
}
