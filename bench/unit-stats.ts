/**
 * Redis CPU of `apply-outcome.lua` for an experiment decision with unit statistics (the phase's unit bitmap and the
 * arm's unit buckets, docs/rollout.md "Outcomes per unit") against the same outcomes without them (no unit key: the
 * moments, per-agent sums and observation list only), measured in the same run on a private redis-server
 * (`INFO commandstats`: µs per EVALSHA, so nothing else's traffic is counted; and the server's CPU time per outcome,
 * which a loaded machine inflates less).
 *
 *   node --import tsx bench/unit-stats.ts [--n 20000] [--units 2000] [--port 6440]
 *
 * Each decision counts toward its strategy and one experiment arm, as a routed decision does; `--units` distinct unit
 * keys report the outcomes (about n ÷ units each).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { newDecisionId, type DecisionRecord } from '../src/allocation/decisions.js';
import type { ControlView } from '../src/control/view.js';
import { strategyArms } from '../src/feedback/arms.js';
import { applyOutcome } from '../src/feedback/processor.js';
import { createKeys } from '../src/redis/keys.js';
import { experimentArms, experimentSinks } from '../src/rollout/arms.js';
import { flag } from './lib.js';

const n = Number(flag('n', '20000'));
const units = Number(flag('units', '2000'));
const port = Number(flag('port', '6440'));

const dir = mkdtempSync(path.join(tmpdir(), 'apportion-unit-bench-'));
const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
const redis = new Redis({ port, host: '127.0.0.1', retryStrategy: (times) => (times > 50 ? null : 100) });
redis.on('error', () => {}); // refused until the server listens: retried
try {
  await redis.ping();
  const keys = createKeys('bench-units');
  const view = () => ({ pipelines: new Map(), raw: { kinds: { experiments: new Map() } } }) as unknown as ControlView;
  const deps = { redis, keys, view, arms: [strategyArms(keys), experimentArms(keys, view)], sinks: experimentSinks(keys, view), rewardWindowSeconds: 3600, markerGraceSeconds: 60 };
  const decision = (i: number, withUnit: boolean, exp: string): DecisionRecord => ({
    id: newDecisionId(),
    pipeline: 'p',
    pipelineVersion: 1,
    strategy: 's',
    strategyVersion: 1,
    strategyKind: 'uniform',
    reason: 'experiment',
    budgets: { a: 100, b: 200 },
    totalTokens: 300,
    features: {},
    ts: Date.now(),
    ...(withUnit ? { unitKey: `user-${i % units}` } : {}),
    route: { experiment: exp, generation: 1, phase: 0, variant: i % 2 ? 'treatment' : 'control' },
  });
  // usec: time inside EVALSHA (wall clock, so a loaded machine inflates it); cpu: the server process's CPU time
  // (user + sys, INFO cpu), which also counts reading and answering the calls but not time the process waited.
  const usPerCall = async (): Promise<{ calls: number; usec: number; cpu: number }> => {
    const info = (await redis.info('commandstats')) + (await redis.info('cpu'));
    const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(info);
    const cpu = (k: string): number => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? 0);
    return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0), cpu: 1e6 * (cpu('used_cpu_user') + cpu('used_cpu_sys')) };
  };
  const cpuPerCall: Record<string, number[]> = { base: [], unit: [] };
  const run = async (withUnit: boolean, exp: string, record = true): Promise<number> => {
    const before = await usPerCall();
    for (let i = 0; i < n; i += 200) {
      await Promise.all(
        Array.from({ length: Math.min(200, n - i) }, (_, j) => {
          const d = decision(i + j, withUnit, exp);
          return applyOutcome(deps, { decision: d, outcome: { decisionId: d.id, quality: 0.5, costUsd: 0.01, usage: { a: { outputTokens: 50 }, b: { outputTokens: 150 } } }, receivedAt: Date.now() });
        }),
      );
    }
    const after = await usPerCall();
    if (record) cpuPerCall[withUnit ? 'unit' : 'base']!.push((after.cpu - before.cpu) / n);
    return (after.usec - before.usec) / (after.calls - before.calls);
  };
  // Warm-up (script load), then alternate so drift does not favour either side.
  await run(false, 'warm', false);
  const base: number[] = [];
  const unit: number[] = [];
  for (let r = 0; r < 3; r++) {
    base.push(await run(false, `base${r}`));
    unit.push(await run(true, `unit${r}`));
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[1]!;
  console.log(`apply-outcome.lua, ${n} outcomes × 3 rounds, strategy + one experiment arm, ${units} units`);
  console.log(`without unit statistics: ${med(base).toFixed(1)} µs per call (rounds ${base.map((x) => x.toFixed(1)).join(', ')})`);
  console.log(`with unit statistics:    ${med(unit).toFixed(1)} µs per call (rounds ${unit.map((x) => x.toFixed(1)).join(', ')})`);
  console.log(`ratio: ${(med(unit) / med(base)).toFixed(2)}`);
  const cb = cpuPerCall.base!;
  const cu = cpuPerCall.unit!;
  console.log(`server CPU per outcome (user + sys): without ${med(cb).toFixed(1)} µs, with ${med(cu).toFixed(1)} µs, ratio ${(med(cu) / med(cb)).toFixed(2)} (rounds ${cb.map((x) => x.toFixed(1)).join(', ')} / ${cu.map((x) => x.toFixed(1)).join(', ')})`);
} finally {
  redis.disconnect();
  server.kill();
  await new Promise((r) => server.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
