import { AppError } from '../errors/app-error.js';
import { errorResponses, type ApiApp } from '../http/common.js';
import { reloadIfBehind } from '../control/write.js';
import { recheckTenant } from '../tenancy/guard.js';
import type { ModuleParts, Services } from '../kernel/module.js';
import type { RedisClock } from '../redis/clock.js';
import type { Features } from '../kernel/extension-points.js';
import { DecisionStore, decisionPendingMs } from './decisions.js';
import { AllocationBody, AllocationResponse } from './schema.js';
import { AllocationService, type Router, type ShadowHook } from './service.js';

export interface AllocationModule extends ModuleParts {
  readonly service: AllocationService;
  readonly decisions: DecisionStore;
}

/** What the allocation module is given (src/modules.ts). */
export interface AllocationDeps extends Services<'redis' | 'keys' | 'view' | 'kinds' | 'metrics' | 'log' | 'store' | 'snapshot', 'rewardWindowSeconds' | 'redisCommandTimeoutMs'> {
  /** Every module, for their routers and shadow hooks (read once, on the first allocation). */
  readonly all: () => readonly ModuleParts[];
  /** The process's estimate of Redis's clock (records' pending deadlines are on it). */
  readonly clock?: RedisClock;
  /** Loads the token encoder before a request with a `<x>Text` feature is decided (the strategies domain's tokenizerFor). */
  readonly tokenizer?: (features: Features | undefined) => Promise<void> | undefined;
}

/** The data plane's hot path: POST /v1/allocations. */
export function allocationModule(core: AllocationDeps): AllocationModule {
  const { all } = core;
  // Half the command bound: with Redis stalled, an allocation still answers (from the in-memory control plane,
  // `recorded: false`) well within a second; the record's write may still land when Redis answers again, if it does
  // before the decision's pending deadline (decisions.ts).
  const decisions = new DecisionStore(core.redis, core.keys, core.config.rewardWindowSeconds, Math.ceil(core.config.redisCommandTimeoutMs / 2), {
    pendingMs: decisionPendingMs(core.config.redisCommandTimeoutMs),
    ...(core.clock ? { clock: core.clock } : {}),
    // Every dropped record was answered `recorded: false` (counted as unconfirmed, reason timeout) and is now lost.
    onDropped: () => core.metrics.recordsDropped.inc(),
  });
  let routers: readonly Router[] | undefined;
  let shadows: readonly ShadowHook[] | undefined;
  let recordedHooks: readonly ((id: string, recorded: boolean) => void)[] | undefined;
  const service = new AllocationService({
    view: core.view,
    kinds: core.kinds,
    decisions,
    routers: () => (routers ??= all().flatMap((m) => m.routers ?? [])),
    shadows: () => (shadows ??= all().flatMap((m) => m.shadows ?? [])),
    ...(core.tokenizer ? { tokenizer: core.tokenizer } : {}),
    observer: {
      onAllocation: (r) => core.metrics.allocations.inc({ strategy: r.strategy, reason: r.reason }),
      onStrategyError: (id, err) => {
        core.metrics.strategyErrors.inc({ strategy: id });
        core.log.warn({ err, strategy: id }, 'strategy failed; falling back');
      },
      // A write not confirmed in time is the documented `recorded: false` of a loaded Redis (counted, a warning); any
      // other failure of the write stays an error.
      onRecordError: (err) => {
        // Past the write wait, or refused by Redis as past the record's deadline (a stalled store either way).
        const timeout = err instanceof Error && (err.name === 'CommitTimeoutError' || err.name === 'RecordDeadlineError');
        core.metrics.recordsUnconfirmed.inc({ reason: timeout ? 'timeout' : 'error' });
        if (timeout) core.log.warn({ err }, 'decision record not confirmed in time: answered recorded: false');
        else core.log.error({ err }, 'decision record not written: answered recorded: false');
      },
      onRecorded: (id, recorded) => {
        for (const hook of (recordedHooks ??= all().flatMap((m) => (m.onDecisionRecorded ? [m.onDecisionRecorded] : [])))) hook(id, recorded);
      },
    },
  });
  return {
    name: 'allocation',
    service,
    decisions,
    routes(app: ApiApp) {
      app.post(
        '/v1/allocations',
        {
          config: { access: 'client' },
          schema: {
            tags: ['allocations'],
            summary: 'Recommended per-agent budgets for one request',
            body: AllocationBody,
            response: { 200: AllocationResponse, ...errorResponses },
          },
        },
        async (req) => {
          const seen = core.view().version;
          try {
            return await service.allocate(req.body);
          } catch (e) {
            // A pipeline or strategy written through another instance a moment ago, which this process's snapshot
            // has not received yet: decided again once on the reloaded snapshot, the tenant rule included.
            if (!(e instanceof AppError) || (e.code !== 'PIPELINE_NOT_FOUND' && e.code !== 'STRATEGY_NOT_FOUND')) throw e;
            if (!(await reloadIfBehind(core, seen))) throw e;
            recheckTenant(req, core.view());
            return service.allocate(req.body);
          }
        },
      );
    },
  };
}
