/**
 * POST /v1/allocations throughput and latency against the same server's no-op route.
 *
 *   node --import tsx bench/allocate.ts [--duration 10] [--connections 64] [--scenarios experiments,learned|none]
 *
 * Always measures, on one freshly started server: the no-op route (baseline), then allocations with the
 * example pipeline's `estimate` strategy (its default). Each extra scenario (bench/scenarios/<name>.ts, exporting
 * `setup(client) → { path, bodies }`) gets its own fresh server, where the no-op route and `estimate` are measured
 * again before the scenario, so every ratio compares numbers from the same run.
 */
import { readdirSync } from 'node:fs';
import { ApportionClient } from '../src/sdk/client.js';
import { cannon, flag, fmt, spawnServer, type BenchServer, type CannonResult } from './lib.js';

const duration = Number(flag('duration', '10'));
const connections = Number(flag('connections', '64'));
/** Default: every scenario in bench/scenarios/; `--scenarios none` for the baseline only. */
const scenarios = flag('scenarios', readdirSync(new URL('./scenarios/', import.meta.url)).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).join(','))
  .split(',')
  .filter((s) => s && s !== 'none');

const TASKS = ['refund', 'technical', 'billing', 'other'];
/** Varied, realistic requests: features differ per request, so no cache can hide the work. */
export function estimateBodies(n = 512): object[] {
  return Array.from({ length: n }, (_, i) => ({
    pipeline: 'support-triage',
    unitKey: `user-${i}`,
    features: { messageCount: 1 + ((i * 7) % 60), documentTokens: (i * 997) % 40_000, taskType: TASKS[i % TASKS.length]! },
  }));
}

async function measure(server: BenchServer, path: string, bodies: readonly object[]): Promise<CannonResult> {
  const o = { url: server.url, path, bodies, key: server.clientKey, connections };
  await cannon({ ...o, durationSec: 2 }); // warm-up: JIT, connection pools
  return cannon({ ...o, durationSec: duration });
}

async function baseline(server: BenchServer): Promise<{ noop: CannonResult; estimate: CannonResult }> {
  const noop = await measure(server, '/bench/noop', [{ pipeline: 'support-triage' }]);
  console.log(`noop route          ${fmt(noop)}`);
  const estimate = await measure(server, '/v1/allocations', estimateBodies());
  console.log(`allocate (estimate) ${fmt(estimate)}`);
  console.log(`ratio estimate/noop = ${(estimate.rps / noop.rps).toFixed(3)}  (target ≥ 0.6)`);
  return { noop, estimate };
}

async function main(): Promise<void> {
  console.log(`bench/allocate: ${connections} connections, ${duration} s per measurement`);
  {
    const server = await spawnServer();
    try {
      await baseline(server);
    } finally {
      await server.close();
    }
  }
  for (const name of scenarios) {
    console.log(`\n--- scenario ${name} (fresh server) ---`);
    const server = await spawnServer();
    try {
      const { estimate } = await baseline(server);
      const mod = (await import(`./scenarios/${name}.ts`)) as {
        setup(client: ApportionClient): Promise<{ path: string; bodies: object[] }>;
      };
      const { path, bodies } = await mod.setup(new ApportionClient({ url: server.url, key: server.adminKey }));
      const r = await measure(server, path, bodies);
      console.log(`allocate (${name}) ${fmt(r)}`);
      console.log(`ratio ${name}/estimate = ${(r.rps / estimate.rps).toFixed(3)}`);
    } finally {
      await server.close();
    }
  }
}

await main();
