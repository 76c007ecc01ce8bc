import { Redis } from 'ioredis';

/** Deletes every key under `<prefix>:` (SCAN + UNLINK; never KEYS). For tests, benchmarks and `simulate --local`. */
export async function dropPrefix(redisUrl: string, prefix: string): Promise<void> {
  const r = new Redis(redisUrl);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await r.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
}
