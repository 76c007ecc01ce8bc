import type { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './config/env.js';
import { ControlStore } from './control/store.js';
import { SnapshotSource } from './control/snapshot.js';
import { viewOf, type ControlView } from './control/view.js';
import type { ArmResolver } from './feedback/arms.js';
import type { OutcomeJob } from './feedback/queue.js';
import type { OutcomeSink } from './feedback/processor.js';
import type { DecisionRecord } from './allocation/decisions.js';
import type { Router, ShadowHook } from './allocation/service.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { connectRedis, redisTarget } from './redis/connection.js';
import { generationKey, RedisGeneration, type RedisReset } from './redis/generation.js';
import { createKeys, type Keys } from './redis/keys.js';
import { StrategyKinds } from './strategies/registry.js';
import type { StrategyKind } from './strategies/types.js';

/** Shared services every domain module builds on. Created once per process (or per test). */
export interface Core {
  readonly config: Config;
  readonly log: Logger;
  /** Request-path connection: auto-pipelined, fails fast when Redis is unreachable. */
  readonly redis: Redis;
  /** Connection for BullMQ workers (BullMQ duplicates it for blocking calls); waits out Redis outages. */
  readonly bullRedis: Redis;
  /**
   * Connection for BullMQ producers on the request path (Queue.add): no offline queue, so an add fails at
   * once when Redis is unreachable and the caller can answer 503 instead of hanging.
   */
  readonly queueRedis: Redis;
  readonly keys: Keys;
  readonly store: ControlStore;
  readonly snapshot: SnapshotSource;
  readonly view: () => ControlView;
  readonly kinds: StrategyKinds;
  readonly metrics: Metrics;
  /** Detects that Redis lost its data (src/redis/generation.ts). */
  readonly generation: RedisGeneration;
  /**
   * Adds work to run after Redis lost its data, once the control plane has been reloaded (re-create job
   * schedulers, re-seed). Handlers run in the order added; a failing one is logged and the rest still run.
   */
  onRedisReset(fn: (reset: RedisReset) => void | Promise<void>): void;
}

export interface Closeable {
  close(): Promise<void>;
}

/**
 * What a domain module contributes. The api process uses `routes`; the worker process `workers`;
 * both use the hooks, so allocation and outcome processing behave the same wherever they run.
 */
export interface ModuleParts {
  readonly name: string;
  readonly routers?: readonly Router[];
  readonly shadows?: readonly ShadowHook[];
  readonly arms?: readonly ArmResolver[];
  readonly sinks?: readonly OutcomeSink[];
  readonly strategyKinds?: readonly StrategyKind<never>[];
  /** Queues shown on the dashboard and sampled for /metrics. */
  readonly queues?: readonly Queue[];
  /** Called for each decision record an SDK in local mode shipped, once it is stored (e.g. to register it for the default reward). */
  readonly onDecisionIngested?: (record: DecisionRecord) => void;
  /** Called after an outcome is applied the first time (e.g. to schedule training). */
  readonly onOutcomeApplied?: (job: OutcomeJob) => void | Promise<void>;
  routes?(app: FastifyInstance): void | Promise<void>;
  /** Starts this module's BullMQ workers and repeatable jobs. */
  startWorkers?(): Promise<readonly Closeable[]>;
  /**
   * (Re)creates this module's BullMQ job schedulers (idempotent upserts). Called by startWorkers, and again by a
   * worker process after Redis lost its data, which deletes the schedulers with everything else.
   */
  schedulers?(): Promise<void>;
  close?(): Promise<void>;
}

export type ModuleFactory = (core: Core, all: () => readonly ModuleParts[]) => ModuleParts | Promise<ModuleParts>;

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
    const bullRedis = await open('apportion-bull', { forBullmq: true });
    const queueRedis = await open('apportion-queue', { forQueue: true });
    const subscriber = await open('apportion-sub', { forBullmq: true });
    const keys = createKeys(config.keyPrefix, { cluster: config.redisClusterNodes !== undefined, shards: config.redisShards });
    const store = new ControlStore(redis, keys);
    const metrics = createMetrics(opts);
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
      kinds: new StrategyKinds(),
      metrics,
      generation,
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
  await core.snapshot.stop();
  const conns = [core.redis, core.bullRedis, core.queueRedis];
  await Promise.allSettled(conns.map((c) => c.quit()));
  for (const c of conns) c.disconnect();
}
