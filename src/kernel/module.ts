import type { Queue } from 'bullmq';
import type { Config } from '../config/env.js';
import type { ApiApp } from '../http/common.js';
import type { Core } from './core.js';
import type { DecisionRecord } from './decision.js';
import type { ArmResolver, OutcomeSink, Router, ShadowHook, StrategyKind } from './extension-points.js';
import type { OutcomeJob } from './outcome.js';

/**
 * What a domain module is given and what it contributes. Domains import this file, never src/kernel/core.ts: no
 * domain names the whole of Core (.dependency-cruiser.cjs, "no-core-locator"), each names the part it uses.
 */

/** The services of Core other than its settings. */
export type CoreService = Exclude<keyof Core, 'config'>;

/**
 * What a domain module is handed from Core: the services `S` it names, and `config` with only the settings `C` it
 * reads. Each module declares its own (e.g. `AllocationDeps = Services<'redis' | 'keys', 'rewardWindowSeconds'>`,
 * plus any other domain's service it asks, passed explicitly); src/modules.ts builds exactly that from Core
 * (`servicesOf`), so a module that starts using another service or setting says so in its type and in the wiring.
 * docs/architecture.md, "What each module is given", lists them.
 */
export type Services<S extends CoreService, C extends keyof Config = never> = Pick<Core, S> & { readonly config: Pick<Config, C> };

/** Builds a module's `Services` from Core: an object with only the named services and settings. */
export function servicesOf<S extends CoreService, C extends keyof Config = never>(core: Core, services: readonly S[], settings: readonly C[] = []): Services<S, C> {
  const config: { -readonly [K in C]?: Config[K] } = {};
  for (const k of settings) config[k] = core.config[k];
  const out: { -readonly [K in S]?: Core[K] } = {};
  for (const k of services) out[k] = core[k];
  return { ...(out as Pick<Core, S>), config: Object.freeze(config as Pick<Config, C>) };
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
  /**
   * Called on the allocation path once a decision's record write settled: `recorded` true when it is written, false
   * when the allocation answered `recorded: false` (e.g. to register the decision for the default reward only with its record).
   */
  readonly onDecisionRecorded?: (decisionId: string, recorded: boolean) => void;
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
