import { createRedisClient, masters, type RedisTargetLike } from './connection.js';

/**
 * Deletes every key under `<prefix>:` (SCAN + UNLINK; never KEYS), on every master of a cluster. For tests,
 * benchmarks and `simulate --local`.
 */
export async function dropPrefix(target: RedisTargetLike, prefix: string): Promise<void> {
  const r = createRedisClient(target, { lazyConnect: true });
  r.on('error', () => undefined);
  try {
    await r.connect();
    const nodes = masters(r);
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
        cursor = next;
        if (!keys.length) continue;
        // On a cluster one UNLINK per key (pipelined): the keys of one batch live in many slots.
        if (nodes.length > 1) await keys.reduce((p, k) => p.unlink(k), node.pipeline()).exec();
        else await node.unlink(...keys);
      } while (cursor !== '0');
    }
  } finally {
    r.disconnect();
  }
}
