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
import type { Router, ShadowHook } from './allocation/service.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { connectRedis } from './redis/connection.js';
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
  /** Called after an outcome is applied the first time (e.g. to schedule training). */
  readonly onOutcomeApplied?: (job: OutcomeJob) => void | Promise<void>;
  routes?(app: FastifyInstance): void | Promise<void>;
  /** Starts this module's BullMQ workers and repeatable jobs. */
  startWorkers?(): Promise<readonly Closeable[]>;
  close?(): Promise<void>;
}

export type ModuleFactory = (core: Core, all: () => readonly ModuleParts[]) => ModuleParts | Promise<ModuleParts>;

export async function createCore(config: Config, log: Logger, opts: { defaultMetrics?: boolean } = {}): Promise<Core> {
  const redis = await connectRedis(config.redisUrl, { name: 'apportion-api' });
  const bullRedis = await connectRedis(config.redisUrl, { name: 'apportion-bull', forBullmq: true });
  const queueRedis = await connectRedis(config.redisUrl, { name: 'apportion-queue', forQueue: true });
  const subscriber = await connectRedis(config.redisUrl, { name: 'apportion-sub', forBullmq: true });
  const keys = createKeys(config.keyPrefix);
  const store = new ControlStore(redis, keys);
  const snapshot = new SnapshotSource(store, subscriber, keys, {
    pollMs: config.configPollMs,
    onError: (e) => log.warn({ err: e }, 'control-plane refresh failed; serving the last good state'),
  });
  await snapshot.start();
  return {
    config,
    log,
    redis,
    bullRedis,
    queueRedis,
    keys,
    store,
    snapshot,
    view: () => viewOf(snapshot.current()),
    kinds: new StrategyKinds(),
    metrics: createMetrics(opts),
  };
}

export async function closeCore(core: Core): Promise<void> {
  await core.snapshot.stop();
  const conns = [core.redis, core.bullRedis, core.queueRedis];
  await Promise.allSettled(conns.map((c) => c.quit()));
  for (const c of conns) c.disconnect();
}
