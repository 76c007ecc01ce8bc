import type { Redis } from 'ioredis';
import { masters } from '../../src/redis/connection.js';

/** Every key matching `pattern` (on every master) that has no expiry: what would be kept forever. */
export async function keysWithoutTtl(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  for (const node of masters(redis)) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      for (const k of found) if ((await redis.pttl(k)) === -1) out.push(k);
    } while (cursor !== '0');
  }
  return out.sort();
}
