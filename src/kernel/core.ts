import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/env.js';
import type { ControlStore } from '../control/store.js';
import type { SnapshotSource } from '../control/snapshot.js';
import type { ControlView } from '../control/view.js';
import type { Metrics } from '../observability/metrics.js';
import type { EvictionGuard } from '../redis/eviction.js';
import type { RedisGeneration, RedisReset } from '../redis/generation.js';
import type { Keys } from '../redis/keys.js';
import type { WriteProbe } from '../redis/write-probe.js';
import type { StrategyKinds } from './extension-points.js';

/**
 * The shared services of a process, created once per process (or per test) by src/runtime.ts. No domain module is
 * handed the whole of it: each declares the part it uses (`Services`, src/kernel/module.ts), and src/modules.ts gives it just that
 * (`servicesOf`).
 */
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
  /** Watches Redis's maxmemory-policy and evicted keys (src/redis/eviction.ts); its `problem` makes /readyz 503. */
  readonly eviction: EvictionGuard;
  /** Whether Redis takes writes, probed every few seconds (src/redis/write-probe.ts); its `problem` makes /readyz 503. */
  readonly writes: WriteProbe;
  /**
   * Adds work to run after Redis lost its data, once the control plane has been reloaded (re-create job
   * schedulers, re-seed). Handlers run in the order added; a failing one is logged and the rest still run.
   */
  onRedisReset(fn: (reset: RedisReset) => void | Promise<void>): void;
}
