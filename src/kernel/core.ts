import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/env.js';
import type { ControlStore } from '../control/store.js';
import type { SnapshotSource } from '../control/snapshot.js';
import type { ControlView } from '../control/view.js';
import type { ApiApp } from '../http/common.js';
import type { Metrics } from '../observability/metrics.js';
import type { RedisGeneration, RedisReset } from '../redis/generation.js';
import type { Keys } from '../redis/keys.js';
import type { DecisionRecord } from './decision.js';
import type { ArmResolver, OutcomeSink, Router, ShadowHook, StrategyKind, StrategyKinds } from './extension-points.js';
import type { OutcomeJob } from './outcome.js';

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
  routes?(app: ApiApp): void | Promise<void>;
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
