import type { Cluster, Redis } from 'ioredis';
import { isCluster, masters } from './connection.js';

/**
 * The master that holds `key`'s slot (on one Redis, the client itself). On a cluster, the slot is asked of the
 * cluster (CLUSTER KEYSLOT) and looked up in the client's slot map; while the map is being refreshed (a failover, a
 * reshard) every master is returned, so a walk over them still finds the keys.
 */
export async function slotOwners(redis: Redis, key: string): Promise<Redis[]> {
  if (!isCluster(redis)) return [redis];
  const cluster = redis as unknown as Cluster;
  const slot = Number(await cluster.cluster('KEYSLOT', key));
  const owner = cluster.slots[slot]?.[0];
  const node = owner === undefined ? undefined : cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === owner);
  return node ? [node] : masters(redis);
}

export interface UnlinkTaggedOptions {
  /** Keys left in place (a tombstone). */
  readonly keep?: ReadonlySet<string>;
  /** Asked before each batch is deleted: false stops the walk (e.g. the object was re-created meanwhile). */
  readonly proceed?: () => Promise<boolean>;
  /** SCAN's COUNT hint, and so the most keys one UNLINK names. Default 500. */
  readonly batch?: number;
}

/**
 * Deletes every key matching `pattern`, where every such key carries one hash tag (so they all live in one slot,
 * `sampleKey`'s): SCAN MATCH on the master holding that slot, UNLINK (memory freed off the main thread) of each
 * batch found, in one command (one slot). `pattern` must be a literal prefix followed by `*`: ids and key prefixes
 * hold no glob characters (ID_PATTERN, APPORTION_KEY_PREFIX). SCAN returns every key that exists for the whole
 * walk; one written during it may be missed, which the callers' tombstones and repeated purges account for.
 * Returns how many keys were deleted and whether the walk ran to the end.
 */
export async function unlinkTagged(redis: Redis, sampleKey: string, pattern: string, opts: UnlinkTaggedOptions = {}): Promise<{ unlinked: number; complete: boolean }> {
  const batch = opts.batch ?? 500;
  let unlinked = 0;
  for (const node of await slotOwners(redis, sampleKey)) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', batch);
      cursor = next;
      const doomed = opts.keep ? found.filter((k) => !opts.keep!.has(k)) : found;
      if (doomed.length === 0) continue;
      if (opts.proceed && !(await opts.proceed())) return { unlinked, complete: false };
      // Through the client, not the node: a key whose slot moved meanwhile is followed (MOVED/ASK).
      unlinked += await redis.unlink(...doomed);
    } while (cursor !== '0');
  }
  return { unlinked, complete: true };
}
