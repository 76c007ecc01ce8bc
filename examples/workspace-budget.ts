/**
 * The worked example of shared workspace budgets: a $50 workspace with per-agent budgets for the planner
 * ($20), the executor ($30) and the reviewer ($10). The agent budgets sum to $60 > $50: each agent is
 * capped by its own budget AND by the workspace, so the agents together can never spend more than $50.
 *
 *   node --import tsx examples/workspace-budget.ts
 *
 * Against a running server: APPORTION_URL=http://127.0.0.1:3000 APPORTION_KEY=<admin key> node --import tsx …
 * Without APPORTION_URL it starts Apportion in this process (Redis from REDIS_URL, a throwaway key prefix).
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { loadConfig } from '../src/config/env.js';
import { dropPrefix } from '../src/redis/prefix.js';
import { ApportionClient, ApportionHttpError, ReservationsClient } from '@apportion/sdk';
import { start, type Running } from '../src/server.js';

const USD = 100_000_000; // USD_MICROCENTS per dollar
const usd = (microcents: number) => `$${(microcents / USD).toFixed(2)}`;
const WORKSPACE = 'tenant:acme-corp/workspace:project-alpha';

async function main(): Promise<void> {
  let running: Running | undefined;
  let url = process.env.APPORTION_URL;
  const prefix = `example-${randomBytes(3).toString('hex')}`;
  if (!url) {
    running = await start(
      loadConfig({ ...process.env, APPORTION_KEY_PREFIX: prefix, PORT: '0', APPORTION_SEED_EXAMPLES: 'false', LOG_LEVEL: 'warn' }),
      pino({ level: 'warn' }),
      { api: true, workers: true },
    );
    url = running.url!;
  }
  const admin = new ApportionClient({ url, ...(process.env.APPORTION_KEY ? { key: process.env.APPORTION_KEY } : {}) });
  const budgets = new ReservationsClient(admin);
  try {
    // 1. The hierarchy: workspace hard cap, per-agent budgets below it.
    await admin.request('PUT', '/v1/budgets', { scope: WORKSPACE, unit: 'USD_MICROCENTS', allocated: 50 * USD });
    for (const [agent, dollars] of [['planner', 20], ['executor', 30], ['reviewer', 10]] as const) {
      // The planner may commit above its reservation while the budgets have money left (README example).
      const policy = agent === 'planner' ? { overagePolicy: 'ALLOW_IF_AVAILABLE' } : {};
      await admin.request('PUT', '/v1/budgets', { scope: `${WORKSPACE}/agent:${agent}`, unit: 'USD_MICROCENTS', allocated: dollars * USD, ...policy });
    }
    console.log('budgets: workspace $50; planner $20 (ALLOW_IF_AVAILABLE), executor $30, reviewer $10 (sum $60 > $50: the workspace caps them)');

    // 2. Every call reserves its estimate first ("reserve, don't read"), then commits what it really cost.
    const call = async (agent: string, estimate: number, actual: number): Promise<string> => {
      try {
        const r = await budgets.reserve({ scope: `${WORKSPACE}/agent:${agent}`, unit: 'USD_MICROCENTS', amount: estimate });
        const c = await budgets.commit(r.id, actual);
        // A commit is never refused: what was used is charged; an overage the policy did not allow is an overrun.
        const over = c.charged > estimate ? ` (over the reservation; overrun ${usd(c.overrun)})` : `, ${usd(c.released)} back`;
        return `${agent.padEnd(8)} reserved ${usd(estimate)} → charged ${usd(c.charged)}${over}`;
      } catch (e) {
        if (e instanceof ApportionHttpError && e.statusCode === 409) {
          const d = (e.body as { details?: { scope?: string; remaining?: number } }).details ?? {};
          // Design for denial: degrade (cheaper model, cached answer) or stop.
          return `${agent.padEnd(8)} DENIED ${usd(estimate)}: ${e.code} at ${d.scope} (remaining ${usd(d.remaining ?? 0)}) → fall back to a cheaper model`;
        }
        throw e;
      }
    };
    // The planner finishes under its budget; the executor runs many steps concurrently.
    console.log(await call('planner', 15 * USD, 14 * USD));
    const steps = await Promise.all(Array.from({ length: 7 }, () => call('executor', 5 * USD, 4.5 * USD)));
    steps.forEach((s) => console.log(s)); // six fit the executor's $30; the seventh is denied at its own scope
    // The reviewer has all of its $10, but the workspace has only $9 left: the workspace denies.
    console.log(await call('reviewer', 10 * USD, 9 * USD));
    console.log(await call('reviewer', 8 * USD, 8 * USD));
    // The planner's call costs more than it estimated: allowed, the workspace still has $1.
    console.log(await call('planner', 0.5 * USD, 0.9 * USD));

    // 3. Balances (informational only).
    console.log(`\n${'scope'.padEnd(58)} allocated  remaining   reserved      spent`);
    for (const b of await budgets.balances(WORKSPACE, 'USD_MICROCENTS')) {
      console.log(`${b.scope.padEnd(58)} ${usd(b.allocated).padStart(9)} ${usd(b.remaining).padStart(10)} ${usd(b.reserved).padStart(10)} ${usd(b.spent).padStart(10)}`);
    }
    const ws = (await budgets.balances(WORKSPACE, 'USD_MICROCENTS')).find((b) => b.scope === WORKSPACE)!;
    if (ws.spent > ws.allocated) throw new Error('overspent: this must never happen');
    console.log(`\nworkspace spent ${usd(ws.spent)} of ${usd(ws.allocated)}: never more, however the agents interleave.`);
  } finally {
    if (running) {
      // Throwaway prefix: delete what the example wrote.
      await running.close();
      await dropPrefix(running.core.config.redisUrl, prefix);
    }
  }
}

await main();
