/**
 * Holdouts over a rollout's life, against a real server (`apportion serve`, real Redis): how many held-out
 * units get a promoted strategy over a ramp, a promote and a rollback of other experiments.
 *
 *   node --import tsx bench/holdout.ts [--units 1000] [--coverage 0.1]
 *
 * On the seeded support-triage pipeline (default support-estimate): a holdout, an A/B (estimate vs static)
 * that ramps and is then promoted (static becomes the default), and an A/B (estimate vs priority-pool) that
 * is rolled back. After each stage every unit allocates once. Baseline from the same run: the strategy the
 * units outside every experiment get, i.e. what held-out units would get if the holdout followed the live
 * default (as it did before: 25 of 25 held-out units got the promoted strategy in the issue's audit).
 */
import { ApportionClient } from '@apportion/sdk';
import { flag, spawnServer } from './lib.js';

const nUnits = Number(flag('units', '1000'));
const coverage = Number(flag('coverage', '0.1'));
const P = 'support-triage';

const server = await spawnServer({ APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
try {
  const c = new ApportionClient({ url: server.url, key: server.adminKey });
  const put = async (id: string, body: object) => {
    await c.request('PUT', `/v1/experiments/${id}`, body);
    await c.request('POST', `/v1/experiments/${id}/start`);
  };
  await put('bench-holdout', { pipeline: P, type: 'holdout', coverage });
  await put('bench-ramp', {
    pipeline: P,
    variants: [
      { name: 'control', strategy: 'support-estimate', weight: 1 },
      { name: 'static', strategy: 'support-static', weight: 1 },
    ],
    coverage: 0.4,
    ramp: { steps: [{ share: 0.25, minSamples: 0 }, { share: 1 }] },
  });
  await put('bench-kill', {
    pipeline: P,
    variants: [
      { name: 'control', strategy: 'support-estimate', weight: 1 },
      { name: 'pool', strategy: 'support-priority-pool', weight: 1 },
    ],
    coverage: 0.3,
  });

  const units = Array.from({ length: nUnits }, (_, i) => `unit-${i}`);
  interface Answer {
    reason: string;
    strategy: string;
  }
  const sweep = async (): Promise<Map<string, Answer>> => {
    const out = new Map<string, Answer>();
    for (let i = 0; i < units.length; i += 50) {
      const batch = units.slice(i, i + 50);
      const got = await Promise.all(batch.map((u) => c.request<Answer>('POST', '/v1/allocations', { pipeline: P, unitKey: u, features: { taskType: 'refund' } })));
      batch.forEach((u, j) => out.set(u, got[j]!));
    }
    return out;
  };

  const first = await sweep();
  const held = new Set([...first].filter(([, a]) => a.reason === 'holdout').map(([u]) => u));
  const promoted = new Set<string>();
  const rows: string[] = [];
  const stage = async (name: string) => {
    const answers = await sweep();
    let bad = 0;
    let moved = 0;
    for (const u of held) {
      const a = answers.get(u)!;
      if (a.reason !== 'holdout') moved++;
      if (promoted.has(a.strategy)) bad++;
    }
    const outside = [...answers.values()].filter((a) => a.reason === 'default');
    const live = outside.filter((a) => promoted.has(a.strategy)).length;
    rows.push(
      `  after ${name.padEnd(9)} held-out units with a promoted strategy: ${bad} of ${held.size} (left the holdout: ${moved}); ` +
        `baseline, units outside every experiment on the live default: ${promoted.size ? `${live} of ${outside.length} got the promoted strategy` : 'nothing promoted yet'}`,
    );
    return bad;
  };

  let total = 0;
  const ramped = await c.request<{ action: string }>('POST', '/v1/experiments/bench-ramp/evaluate');
  if (ramped.action !== 'ramped') throw new Error(`expected a ramp step, got ${JSON.stringify(ramped)}`);
  total += await stage('a ramp');
  await c.request('POST', '/v1/experiments/bench-ramp/promote', { variant: 'static' });
  promoted.add('support-static');
  total += await stage('a promote');
  await c.request('POST', '/v1/experiments/bench-kill/rollback', { reason: 'bench' });
  total += await stage('a rollback');
  const h = await c.request<{ state: { phase: number; holdoutPhases?: { phase: number; held: string; exposedDefault: string; cause: string }[] } }>('GET', '/v1/experiments/bench-holdout');

  console.log(`${nUnits} units, holdout ${coverage * 100} % of support-triage (${held.size} held out); ramp, promote (support-static), rollback of other experiments`);
  for (const r of rows) console.log(r);
  console.log(`  holdout phases: ${(h.state.holdoutPhases ?? []).map((p) => `${p.phase}: held ${p.held}, exposed ${p.exposedDefault} (${p.cause})`).join('; ')}`);
  console.log(`held-out units that got a promoted strategy over the three stages: ${total} (target 0)`);
  if (total !== 0) process.exitCode = 1;
} finally {
  await server.close();
}
