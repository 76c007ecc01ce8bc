import type { FastifyRequest } from 'fastify';
import { errorResponses, ErrorBody, type ApiApp } from '../http/common.js';
import type { Closeable, ModuleParts, Services } from '../kernel/module.js';
import type { BudgetAlert } from './alerts.js';
import { createBudgetsQueue, startBudgetWorker } from './jobs.js';
import { budgetKeys } from './keys.js';
import { BudgetLedger } from './ledger.js';
import { budgetOverview, type BudgetOverview } from './overview.js';
import { ReservationService } from './reservations.js';
import type { RedisClock } from '../redis/clock.js';
import {
  Balance,
  BalancesQuery,
  BalancesResponse,
  BudgetOpBody,
  BudgetOpParams,
  BudgetOpResponse,
  BudgetPutBody,
  CommitBody,
  Committed,
  DryRunAnswer,
  ExtendBody,
  Extended,
  Released,
  ReleaseBody,
  ReservationGranted,
  ReservationParams,
  ReservationView,
  ReserveBody,
  BudgetDeleteQuery,
  DeletedBalance,
  DrawBody,
  DrawDryRun,
  DrawGranted,
} from './schema.js';

export interface BudgetsModule extends ModuleParts {
  readonly ledger: BudgetLedger;
  readonly reservations: ReservationService;
  /**
   * Tenants with budgets, their live reservations and newest alerts, at most `limit` of each; `tenant`: that tenant
   * only. What the console lists.
   */
  overview(limit: number, tenant?: string): Promise<BudgetOverview>;
}

/** What the budgets module is given (src/modules.ts). */
export interface BudgetsDeps extends Services<'redis' | 'bullRedis' | 'keys' | 'metrics' | 'log', 'idempotencyTtlSeconds' | 'budgetAlertWebhook' | 'reservationSweepMs'> {
  /** The process's estimate of Redis's clock (reservation deadlines are on it); without it the service keeps its own. */
  readonly clock?: RedisClock;
}

const conflict = { 409: ErrorBody, 503: ErrorBody } as const;

/** Release and extend need no body: a bare POST validates as `{}`. */
const emptyBodyIsObject = async (req: FastifyRequest) => {
  if (req.body === undefined || req.body === null) req.body = {};
};

/** Scoped budgets, atomic reservations, the expiry sweeper and threshold alerts. */
export function budgetsModule(core: BudgetsDeps): BudgetsModule {
  const keys = budgetKeys(core.keys.prefix);
  const queue = createBudgetsQueue(core.bullRedis, core.keys.bullPrefix());
  const retentionMs = core.config.idempotencyTtlSeconds * 1000;
  const onAlerts = (alerts: readonly BudgetAlert[]) => {
    for (const a of alerts) {
      core.metrics.budgetAlerts.inc({ threshold: a.type === 'budget.overrun' ? 'overrun' : String(a.threshold) });
      if (a.type === 'budget.overrun') core.log.warn({ alert: a }, 'budget overrun: spend charged beyond what the overage policy allows');
      else core.log.info({ alert: a }, 'budget threshold crossed');
      if (core.config.budgetAlertWebhook) {
        queue
          .add('alert', { kind: 'alert', alert: a }, { attempts: 8, backoff: { type: 'exponential', delay: 1000 } })
          .catch((err: unknown) => core.log.warn({ err, alert: a }, 'budget alert not queued (it stays in the tenant alert stream)'));
      }
    }
  };
  const reservations = new ReservationService({
    redis: core.redis,
    keys,
    retentionMs,
    onAlerts,
    onResult: (op, result) => core.metrics.reservations.inc({ op, result }),
    ...(core.clock ? { clock: core.clock } : {}),
    onClockOffset: (offsetMs, large) => {
      core.metrics.redisClockOffset.set(offsetMs);
      if (large) core.log.warn({ offsetMs }, 'API host clock differs from the Redis server clock; reservation deadlines are corrected for it, but sync the clocks (NTP)');
    },
  });
  const ledger = new BudgetLedger({ redis: core.redis, keys, idempotencyTtlMs: retentionMs, onAlerts });

  return {
    name: 'budgets',
    ledger,
    reservations,
    overview: (limit, tenant) => budgetOverview(core.redis, keys, limit, tenant),
    queues: [queue],
    routes(app: ApiApp) {
      app.put(
        '/v1/budgets',
        {
          schema: {
            tags: ['budgets'],
            summary: 'Create a scope’s budget, or change its allocation, overage policy or period',
            body: BudgetPutBody,
            response: { 200: Balance, 201: Balance, ...errorResponses, ...conflict },
          },
        },
        async (req, reply) => {
          const { created, ...balance } = await ledger.put(req.body);
          return reply.status(created ? 201 : 200).send(balance);
        },
      );
      app.delete(
        '/v1/budgets',
        {
          schema: {
            tags: ['budgets'],
            summary: 'Delete a scope’s budget (409 while reservations hold amounts at it); answers its last balance',
            querystring: BudgetDeleteQuery,
            response: { 200: DeletedBalance, ...errorResponses, ...conflict },
          },
        },
        async (req) => ledger.delete(req.query),
      );
      app.post(
        '/v1/budgets/:op',
        {
          schema: {
            tags: ['budgets'],
            summary: 'Ledger operation on a scope: fund, debit (the scope and its budgeted ancestors), reset, freeze, unfreeze',
            params: BudgetOpParams,
            body: BudgetOpBody,
            response: { 200: BudgetOpResponse, ...errorResponses, ...conflict },
          },
        },
        async (req) => ledger.op(req.params.op, req.body),
      );
      app.get(
        '/v1/balances',
        {
          config: { access: 'client' },
          schema: {
            tags: ['budgets'],
            summary: 'Balances of a scope and the budgeted scopes below it (informational: reserve, don’t read)',
            querystring: BalancesQuery,
            response: { 200: BalancesResponse, ...errorResponses, 503: ErrorBody },
          },
        },
        async (req) => {
          const q = req.query;
          return { scope: q.scope, balances: await ledger.balances(q.scope, q.unit) };
        },
      );
      app.post(
        '/v1/reservations',
        {
          config: { access: 'client' },
          schema: {
            tags: ['reservations'],
            summary: 'Reserve an amount at every budgeted scope of the chain, atomically (or 409 naming the scope)',
            body: ReserveBody,
            response: { 201: ReservationGranted, 200: DryRunAnswer, ...errorResponses, ...conflict },
          },
        },
        async (req, reply) => {
          const r = await reservations.reserve(req.body);
          return reply.status('dryRun' in r ? 200 : 201).send(r);
        },
      );
      app.get(
        '/v1/reservations/:id',
        {
          config: { access: 'client' },
          schema: { tags: ['reservations'], summary: 'One reservation', params: ReservationParams, response: { 200: ReservationView, ...errorResponses, 503: ErrorBody } },
        },
        async (req) => reservations.get(req.params.id),
      );
      app.post(
        '/v1/reservations/:id/draws',
        {
          config: { access: 'client' },
          schema: {
            tags: ['reservations'],
            summary: 'Draw part of an ACTIVE reservation’s hold for a sub-agent (a child reservation; commit/release/extend it by its id)',
            params: ReservationParams,
            body: DrawBody,
            response: { 201: DrawGranted, 200: DrawDryRun, ...errorResponses, ...conflict },
          },
        },
        async (req, reply) => {
          const r = await reservations.draw(req.params.id, req.body);
          return reply.status('dryRun' in r ? 200 : 201).send(r);
        },
      );
      app.post(
        '/v1/reservations/:id/commit',
        {
          config: { access: 'client' },
          schema: {
            tags: ['reservations'],
            summary: 'Charge the actual amount (overage per the scopes’ policies); the rest goes back',
            params: ReservationParams,
            body: CommitBody,
            response: { 200: Committed, ...errorResponses, ...conflict },
          },
        },
        async (req) => {
          const b = req.body;
          return reservations.commit(req.params.id, b.amount, b.idempotencyKey);
        },
      );
      app.post(
        '/v1/reservations/:id/release',
        {
          config: { access: 'client' },
          preValidation: emptyBodyIsObject,
          schema: {
            tags: ['reservations'],
            summary: 'Give the whole reserved amount back',
            params: ReservationParams,
            body: ReleaseBody,
            response: { 200: Released, ...errorResponses, ...conflict },
          },
        },
        async (req) => reservations.release(req.params.id, req.body?.idempotencyKey),
      );
      app.post(
        '/v1/reservations/:id/extend',
        {
          config: { access: 'client' },
          preValidation: emptyBodyIsObject,
          schema: {
            tags: ['reservations'],
            summary: 'Move the deadline to now + ttlMs (at most 10 times)',
            params: ReservationParams,
            body: ExtendBody,
            response: { 200: Extended, ...errorResponses, ...conflict },
          },
        },
        async (req) => {
          const b = (req.body ?? {});
          return reservations.extend(req.params.id, b.ttlMs, b.idempotencyKey);
        },
      );
    },
    async startWorkers(): Promise<readonly Closeable[]> {
      const worker = startBudgetWorker({
        connection: core.bullRedis,
        prefix: core.keys.bullPrefix(),
        redis: core.redis,
        keys,
        reservations,
        webhook: core.config.budgetAlertWebhook,
        log: core.log,
        onExpired: (n) => core.metrics.reservationsExpired.inc(n),
        onDelivery: (ok) => core.metrics.budgetAlertDeliveries.inc({ result: ok ? 'ok' : 'failed' }),
      });
      await this.schedulers!();
      await worker.waitUntilReady();
      return [worker];
    },
    async schedulers() {
      await queue.upsertJobScheduler('sweep-reservations', { every: core.config.reservationSweepMs }, { name: 'sweep', data: { kind: 'sweep' } });
    },
    async close() {
      await queue.close();
    },
  };
}
