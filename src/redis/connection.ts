import { Redis, type Command, type RedisOptions } from 'ioredis';

/** Default bound on one request-path Redis command, in ms (`APPORTION_REDIS_COMMAND_TIMEOUT_MS`). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 1000;

export interface RedisConnectionOptions {
  /** BullMQ workers need `maxRetriesPerRequest: null`; request-path connections fail fast instead. */
  readonly forBullmq?: boolean;
  /** BullMQ producers: no offline queue, plain (non auto-pipelined) commands, as BullMQ recommends for Queue. */
  readonly forQueue?: boolean;
  /** Connection name shown by CLIENT LIST. */
  readonly name?: string;
  /**
   * Request-path connections only (not `forBullmq`): a command that has no answer after this many ms is
   * rejected ("Command timed out"). Default 1000. This is what bounds a request when Redis is connected but
   * does not answer (stalled, paused, swapping): no offline queue only helps when the socket is down.
   */
  readonly commandTimeoutMs?: number;
}

/**
 * Opens an ioredis connection and waits until it is ready. Request-path connections use auto-pipelining
 * (concurrent requests share round trips), no offline queue and a command timeout, so a command fails
 * instead of hanging both when Redis is unreachable and when it is reachable but does not answer:
 * reservations must fail closed, allocations must fall back, outcome intake must answer 503.
 *
 * BullMQ connections get no command timeout: workers use blocking commands and wait out outages.
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
  if (!opts.forBullmq) boundCommands(redis, opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
  // An error event without a listener crashes the process; reconnection is handled by retryStrategy.
  redis.on('error', () => undefined);
  await redis.connect();
  return redis;
}

/**
 * ioredis's `commandTimeout`, but measured the way a caller feels it: the timer fires in the timers phase and
 * the command is failed from the check phase (setImmediate), after the poll phase has read whatever replies
 * arrived. With ioredis's own option, an event loop busy for longer than the bound (a synchronous module load,
 * a long GC) failed commands whose answers were already in the socket: a slow process mistaken for a stalled
 * Redis. Every command goes through sendCommand, including those of pipelines, MULTI and auto-pipelining.
 */
function boundCommands(redis: Redis, ms: number): void {
  const send = redis.sendCommand.bind(redis) as (command: Command, ...rest: unknown[]) => unknown;
  const bounded = (command: Command, ...rest: unknown[]): unknown => {
    const out = send(command, ...rest);
    if (command.isSettled) return out;
    const timer = setTimeout(
      () =>
        setImmediate(() => {
          if (!command.isSettled) command.reject(new Error(`Command timed out (no answer from Redis within ${ms} ms)`));
        }),
      ms,
    );
    const clear = () => clearTimeout(timer);
    command.promise.then(clear, clear);
    return out;
  };
  redis.sendCommand = bounded as typeof redis.sendCommand;
}
