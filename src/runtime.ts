import type { Logger } from 'pino';
import type { Config } from './config/env.js';
import { ControlStore } from './control/store.js';
import { SnapshotSource } from './control/snapshot.js';
import { viewOf } from './control/view.js';
import type { Core } from './kernel/core.js';
import { createMetrics } from './observability/metrics.js';
import { connectRedis, redisTarget } from './redis/connection.js';
import { EvictionGuard } from './redis/eviction.js';
import { generationKey, RedisGeneration, type RedisReset } from './redis/generation.js';
import type { Redis } from 'ioredis';
import { createKeys } from './redis/keys.js';
import { checkKeyLayout } from './redis/layout.js';
import { WriteProbe } from './redis/write-probe.js';
import { StrategyKinds } from './kernel/extension-points.js';

/** Creates the shared services (Core); their types, and what a module contributes, are the kernel's (src/kernel/core.ts). */
export async function createCore(config: Config, log: Logger, opts: { defaultMetrics?: boolean } = {}): Promise<Core> {
  const opened: Redis[] = [];
  const open = async (name: string, o: { forBullmq?: boolean; forQueue?: boolean } = {}) => {
    const r = await connectRedis(redisTarget(config), { name, commandTimeoutMs: config.redisCommandTimeoutMs, ...o });
    opened.push(r);
    return r;
  };
  let snapshot: SnapshotSource | undefined;
  try {
    const redis = await open('apportion-api');
    const metrics = createMetrics(opts);
    // Before anything reads or writes: a Redis that may evict keys loses budgets, reservations and markers silently.
    const eviction = new EvictionGuard(redis, {
      allow: config.allowEviction,
      pollMs: config.configPollMs,
      log,
      onPolicy: () => metrics.redisEvictionPolicy.inc(),
      onEvicted: (n) => metrics.redisEvictedKeys.inc(n),
    });
    await eviction.checkAtStart();
    // Before anything reads or writes: a process whose key layout differs from the deployment's refuses to start.
    await checkKeyLayout(redis, config.keyPrefix, config.redisShards);
    const bullRedis = await open('apportion-bull', { forBullmq: true });
    const queueRedis = await open('apportion-queue', { forQueue: true });
    const subscriber = await open('apportion-sub', { forBullmq: true });
    const keys = createKeys(config.keyPrefix, { cluster: config.redisClusterNodes !== undefined, shards: config.redisShards });
    const store = new ControlStore(redis, keys);
    snapshot = new SnapshotSource(store, subscriber, keys, {
      pollMs: config.configPollMs,
      onError: (e) => log.warn({ err: e }, 'control-plane refresh failed; serving the last good state'),
    });
    await snapshot.start();
    const loaded = snapshot;
    const resetHandlers: ((reset: RedisReset) => void | Promise<void>)[] = [];
    const generation = new RedisGeneration(redis, generationKey(config.keyPrefix), {
      pollMs: config.configPollMs,
      onReset: async (reset) => {
        metrics.redisDataLoss.inc();
        log.error(
          { ...reset, prefix: config.keyPrefix },
          'REDIS LOST ITS DATA (generation marker missing or changed): reloading the control plane from Redis and re-creating job schedulers. ' +
            'Whatever was only in Redis since its last persistence point is gone (docs/architecture.md, "When Redis loses its data").',
        );
        await loaded.reload();
        // The stored key layout went with the data: this process's (the deployment's) is stored again.
        await checkKeyLayout(redis, config.keyPrefix, config.redisShards).catch((err: unknown) => log.error({ err }, 'key layout after Redis data loss'));
        for (const fn of resetHandlers) {
          try {
            await fn(reset);
          } catch (err) {
            log.error({ err }, 'recovery step after Redis data loss failed');
          }
        }
        log.warn({ version: loaded.current().version }, 'recovered from Redis data loss');
      },
    });
    await generation.start();
    eviction.start();
    const writes = new WriteProbe(redis, { prefix: config.keyPrefix, timeoutMs: config.redisCommandTimeoutMs, log, onRefused: () => metrics.redisWritesRefused.inc() });
    writes.start();
    return {
      config,
      log,
      redis,
      bullRedis,
      queueRedis,
      keys,
      store,
      snapshot,
      view: () => viewOf(loaded.current()),
      // Empty until the modules register their kinds (the strategies module the built-in ones, src/modules.ts).
      kinds: new StrategyKinds(),
      metrics,
      generation,
      eviction,
      writes,
      onRedisReset: (fn) => void resetHandlers.push(fn),
    };
  } catch (e) {
    // A failed start leaves nothing behind: no connection keeps the process (or a test runner) alive.
    await snapshot?.stop().catch(() => undefined);
    for (const r of opened) r.disconnect();
    throw e;
  }
}

export async function closeCore(core: Core): Promise<void> {
  core.generation.stop();
  core.eviction.stop();
  core.writes.stop();
  await core.snapshot.stop();
  const conns = [core.redis, core.bullRedis, core.queueRedis];
  await Promise.allSettled(conns.map((c) => c.quit()));
  for (const c of conns) c.disconnect();
}
