import type { Redis } from 'ioredis';
import { ConfigError } from '../config/env.js';

/** Redis key of a prefix's key-layout settings (a hash: `shards`), written by the first process that starts on it. */
export const layoutKey = (prefix: string): string => `${prefix}:layout`;

/**
 * Settings fixed per deployment because they decide where keys live: stored in Redis by the first process that starts
 * on the prefix (HSETNX), checked by every later one. `APPORTION_REDIS_SHARDS` spreads one second's decision records
 * and the span rollups over that many slots: a process with another count looks for them elsewhere (every outcome for
 * another process's decision was refused as pending), so it refuses to start, naming the variable and the stored value.
 * After a data loss the next process (or the reset handler) stores its value again.
 */
export async function checkKeyLayout(redis: Redis, prefix: string, shards: number): Promise<void> {
  const key = layoutKey(prefix);
  await redis.hsetnx(key, 'shards', String(shards));
  const stored = await redis.hget(key, 'shards');
  if (stored !== null && stored !== String(shards)) {
    throw new ConfigError(
      'APPORTION_REDIS_SHARDS',
      `is ${shards}, but the deployment on key prefix "${prefix}" stores its data with ${stored} (Redis hash ${key}): start every process with APPORTION_REDIS_SHARDS=${stored} (changing it would orphan the decision records and span rollups already written)`,
    );
  }
}
