import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { BudgetAlert } from './alerts.js';
import type { BudgetKeys } from './keys.js';
import type { ReservationService } from './reservations.js';
import { WORKER_RUN_RETRY_MS } from '../redis/workers.js';

export const BUDGETS_QUEUE = 'budgets';

export type BudgetJob = { kind: 'sweep' } | { kind: 'alert'; alert: BudgetAlert };

export function createBudgetsQueue(connection: Redis, prefix: string): Queue<BudgetJob> {
  return new Queue<BudgetJob>(BUDGETS_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: { removeOnComplete: 1000, removeOnFail: 5000 },
  });
}

export interface BudgetWorkerDeps {
  readonly connection: Redis;
  readonly prefix: string;
  readonly redis: Redis;
  readonly keys: BudgetKeys;
  readonly reservations: ReservationService;
  readonly webhook: string | undefined;
  readonly log: Logger;
  readonly onExpired: (n: number) => void;
  readonly onDelivery: (ok: boolean) => void;
}

/**
 * Expires overdue reservations of every tenant on budget-tenants (the sweeper); reservations are also expired
 * lazily when touched. A listed tenant without budgets (a budget PUT whose script never ran) has no deadlines:
 * visiting it costs one read and changes nothing.
 */
export async function sweep(deps: Pick<BudgetWorkerDeps, 'redis' | 'keys' | 'reservations'>): Promise<number> {
  const tenants = await deps.redis.smembers(deps.keys.tenants());
  let n = 0;
  for (const t of tenants) n += await deps.reservations.expireDue(t);
  return n;
}

async function deliver(url: string, alert: BudgetAlert): Promise<void> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(alert),
    signal: AbortSignal.timeout(5000),
  });
  if (!res.ok) throw new Error(`webhook answered ${res.status}`);
}

export function startBudgetWorker(deps: BudgetWorkerDeps): Worker<BudgetJob> {
  const worker = new Worker<BudgetJob>(
    BUDGETS_QUEUE,
    async (job: Job<BudgetJob>) => {
      const data = job.data;
      if (data.kind === 'sweep') {
        const n = await sweep(deps);
        if (n > 0) deps.onExpired(n);
        return n;
      }
      if (!deps.webhook) return 'no-webhook';
      try {
        await deliver(deps.webhook, data.alert);
        deps.onDelivery(true);
      } catch (e) {
        deps.onDelivery(false);
        throw e;
      }
      return 'delivered';
    },
    { connection: deps.connection, prefix: deps.prefix, concurrency: 4, runRetryDelay: WORKER_RUN_RETRY_MS },
  );
  worker.on('error', (err) => deps.log.error({ err }, 'budgets worker error'));
  return worker;
}
