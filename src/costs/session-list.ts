import type { Redis } from 'ioredis';
import { namespacePrefix } from '../http/namespace.js';
import type { CostKeys } from './keys.js';

/** Session ids with cost traces: the costs domain's listing for the console (which never reads cost keys itself). */
export interface SessionList {
  readonly sessions: string[];
  /** True when there are more sessions than were listed. */
  readonly truncated: boolean;
}

/**
 * Session ids that have cost traces, from the session indexes span ingest writes (src/costs/keys.ts): named
 * sessions first, then the `trace-…` ids given to traces that named no session, each newest (last written) first;
 * up to `limit` ids, sessions last written more than the span retention ago left out (their traces are gone).
 * `tenant`: only that tenant's sessions (stored as `<tenant>~<id>`, see costs/module.ts), listed by the ids the
 * tenant's key uses (without the namespace); undefined = every session, by stored id.
 *
 * Until 2026-12-04 this was a SCAN of the keyspace bounded at 20,000 keys examined: in a Redis with more keys (a day
 * of decision records is 86,400 buckets) it listed whichever sessions the walk met, a different subset each time,
 * and none at all when it met none. Sessions written before the indexes existed are not listed until their next
 * span (they are still opened by id).
 */
export async function listSessions(redis: Redis, ck: CostKeys, retentionSeconds: number, limit = 200, tenant?: string, now = Date.now()): Promise<SessionList> {
  const since = now - retentionSeconds * 1000;
  const indexes = (bare: boolean) => (tenant === undefined ? Array.from({ length: ck.shards }, (_, i) => ck.sessionIndex(i, bare)) : [ck.tenantSessionIndex(tenant, bare)]);
  /** The `want` newest ids of the indexes (and whether there were more), newest first. */
  const newest = async (keys: readonly string[], want: number): Promise<{ ids: string[]; more: boolean }> => {
    if (want <= 0) return { ids: [], more: (await Promise.all(keys.map((k) => redis.zcount(k, since, '+inf')))).some((n) => n > 0) };
    const pages = await Promise.all(keys.map((k) => redis.zrevrangebyscore(k, '+inf', since, 'WITHSCORES', 'LIMIT', 0, want + 1)));
    const all: [string, number][] = pages.flatMap((flat) => {
      const out: [string, number][] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, Number(flat[i + 1])]);
      return out;
    });
    all.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    return { ids: all.slice(0, want).map(([id]) => id), more: all.length > want };
  };
  const named = await newest(indexes(false), limit);
  const bare = await newest(indexes(true), limit - named.ids.length);
  const cut = namespacePrefix(tenant).length;
  return { sessions: [...named.ids, ...bare.ids].map((id) => id.slice(cut)), truncated: named.more || bare.more };
}
