import { Redis, type RedisOptions } from 'ioredis';

export interface RedisConnectionOptions {
  /** BullMQ workers need `maxRetriesPerRequest: null`; request-path connections fail fast instead. */
  readonly forBullmq?: boolean;
  /** BullMQ producers: no offline queue, plain (non auto-pipelined) commands, as BullMQ recommends for Queue. */
  readonly forQueue?: boolean;
  /** Connection name shown by CLIENT LIST. */
  readonly name?: string;
}

/**
 * Opens an ioredis connection and waits until it is ready. Request-path connections use auto-pipelining
 * (concurrent requests share round trips) and no offline queue, so a command fails at once when Redis is
 * unreachable instead of hanging: reservations must fail closed, allocations must fall back.
 */
export async function connectRedis(url: string, opts: RedisConnectionOptions = {}): Promise<Redis> {
  const base: RedisOptions = {
    lazyConnect: true,
    connectionName: opts.name ?? 'apportion',
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
  };
  const options: RedisOptions = opts.forBullmq
    ? { ...base, maxRetriesPerRequest: null, enableOfflineQueue: true }
    : opts.forQueue
      ? { ...base, maxRetriesPerRequest: 1, enableOfflineQueue: false }
      : { ...base, maxRetriesPerRequest: 1, enableOfflineQueue: false, enableAutoPipelining: true };
  const redis = new Redis(url, options);
  // An error event without a listener crashes the process; reconnection is handled by retryStrategy.
  redis.on('error', () => undefined);
  await redis.connect();
  return redis;
}
