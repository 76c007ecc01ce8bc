import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { newDecisionId, type DecisionRecord } from '../../src/allocation/decisions.js';
import type { ControlView } from '../../src/control/view.js';
import { parseArmStats, type ArmStats } from '../../src/feedback/stats-reader.js';
import { applyOutcome } from '../../src/feedback/processor.js';
import { UNIT_BUCKETS, unitSpec } from '../../src/feedback/units.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { createKeys } from '../../src/redis/keys.js';
import { analyzePhase, checkGuardrails } from '../../src/rollout/analysis.js';
import { experimentArm, experimentArms } from '../../src/rollout/arms.js';
import { srmSequential } from '../../src/stats/srm.js';
import { dropPrefix, testPrefix, testRedis } from '../helpers/env.js';
import { sampleRecord } from '../helpers/write-slots.js';

const prefix = testPrefix('units');
const keys = createKeys(prefix);
const redis = testRedis(prefix, { maxRetriesPerRequest: null });
after(() => dropPrefix(prefix));

const view = () => ({ pipelines: new Map(), raw: { kinds: { experiments: new Map() } } }) as unknown as ControlView;
const deps = { redis, keys, view, arms: [experimentArms(keys, view)], rewardWindowSeconds: 3600, markerGraceSeconds: 60 };
const VARIANTS = [
  { name: 'control', strategy: 'a', weight: 1 },
  { name: 'treatment', strategy: 'b', weight: 1 },
];

function decision(experiment: string, variant: string, unitKey: string | undefined): DecisionRecord {
  return {
    ...sampleRecord(newDecisionId()),
    ...(unitKey !== undefined ? { unitKey } : {}),
    route: { experiment, generation: 1, phase: 0, variant },
  } as DecisionRecord;
}

async function apply(d: DecisionRecord, quality: number, costUsd?: number): Promise<string> {
  return applyOutcome(deps, { decision: d, outcome: { decisionId: d.id, quality, ...(costUsd !== undefined ? { costUsd } : {}) }, receivedAt: Date.now() });
}

async function readArms(experiment: string): Promise<Map<string, ArmStats>> {
  const out = new Map<string, ArmStats>();
  for (const v of VARIANTS) {
    const arm = experimentArm(keys, 'p', experiment, 1, 0, v.name);
    const [summary, agents, buckets] = await Promise.all([redis.hgetall(arm.summary), redis.hgetallBuffer(arm.agents), redis.hgetallBuffer(arm.units.buckets)]);
    out.set(v.name, parseArmStats(summary, agents, buckets));
  }
  return out;
}

/** The same statistics as kept before units were: outcome counts and per-outcome variances. */
const perOutcome = (arms: ReadonlyMap<string, ArmStats>): Map<string, ArmStats> =>
  new Map([...arms].map(([k, a]) => {
    const { units: _u, clustered: _c, ...rest } = a;
    return [k, rest];
  }));

const normal = (u: () => number): number => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
const clip = (x: number): number => Math.min(1, Math.max(0, x));

describe('unit statistics of experiment arms (real Redis path)', () => {
  it('many outcomes per unit with a unit effect: SRM counts units once each, and the A/A intervals and guardrail hold their level', async () => {
    // 400 units, each assigned by a seeded fair coin, reporting 1 + geometric(mean 12) outcomes with a strong
    // per-unit quality effect (unit sd 0.2, outcome noise 0.05). Tested at α = 1e-5: a correct implementation
    // flags the SRM (Ville's inequality) or excludes 0 from the always-valid A/A interval with probability ≤ 1e-5.
    const u = mulberry32(13);
    const alpha = 1e-5;
    const units = new Map<string, string>();
    const jobs: { d: DecisionRecord; q: number; c: number }[] = [];
    for (let i = 0; i < 400; i++) {
      const key = `user-${i}`;
      const variant = u() < 0.5 ? 'control' : 'treatment';
      units.set(key, variant);
      const effect = 0.2 * normal(u);
      const costEffect = Math.exp(normal(u));
      const n = 1 + Math.floor(Math.log(1 - u()) / Math.log(1 - 1 / 12));
      for (let k = 0; k < n; k++) jobs.push({ d: decision('many', variant, key), q: clip(0.5 + effect + 0.05 * normal(u)), c: 0.01 * costEffect * Math.exp(0.2 * normal(u)) });
    }
    for (let i = 0; i < jobs.length; i += 200) await Promise.all(jobs.slice(i, i + 200).map((j) => apply(j.d, j.q, j.c)));
    const arms = await readArms('many');
    const unitsPer = VARIANTS.map((v) => [...units.values()].filter((x) => x === v.name).length);
    assert.deepEqual(VARIANTS.map((v) => arms.get(v.name)!.units), unitsPer, 'each unit counted once, in its arm');
    assert.equal(VARIANTS.reduce((t, v) => t + arms.get(v.name)!.count, 0), jobs.length);

    const now = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha, arms });
    assert.deepEqual(now.basis, { srm: 'units', variance: 'units' });
    assert.equal(now.srm?.mismatch, false);
    assert.equal(srmSequential(unitsPer, [1, 1], alpha)!.mismatch, false, 'no SRM flag at α = 1e-5 on unit counts');
    for (const metric of ['quality', 'cost'] as const) {
      const ci = now.comparisons.find((c) => c.metric === metric)!.sequential!.ci;
      assert.ok(ci[0] <= 0 && 0 <= ci[1], `${metric}: the always-valid A/A interval [${ci[0]}, ${ci[1]}] covers 0`);
    }
    const guard = checkGuardrails([{ metric: 'quality' }, { metric: 'cost' }], VARIANTS, 'control', arms, alpha);
    assert.ok(guard.every((g) => g.judged && !g.breached), JSON.stringify(guard.map((g) => g.ci)));

    // The same data read as independent outcomes (what the statistics did before): the SRM test and the intervals
    // are fooled. This is what makes the test fail without unit statistics.
    const old = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha, arms: perOutcome(arms) });
    assert.deepEqual(old.basis, { srm: 'outcomes', variance: 'outcomes' });
    const oldFlag = srmSequential(VARIANTS.map((v) => arms.get(v.name)!.count), [1, 1], alpha)!.mismatch;
    const oldExcludes = old.comparisons.some((c) => { const ci = c.sequential!.ci; return ci[0] > 0 || ci[1] < 0; });
    assert.ok(oldFlag && oldExcludes, `per-outcome statistics on this seed: SRM flag ${oldFlag}, an interval excluding 0 ${oldExcludes}`);
  });

  it('one outcome per unit, one unit per bucket: the cluster-robust variance equals the per-outcome one, and so do the intervals', async () => {
    // Units whose buckets differ, 150 per arm, each reporting once.
    const taken = new Set<number>();
    const keysIn: string[] = [];
    for (let i = 0; keysIn.length < 300; i++) {
      const b = unitSpec(`eq-${i}`).bucket;
      if (taken.has(b)) continue;
      taken.add(b);
      keysIn.push(`eq-${i}`);
    }
    assert.ok(taken.size <= UNIT_BUCKETS);
    const u = mulberry32(7);
    await Promise.all(keysIn.map((k, i) => apply(decision('eq', i % 2 ? 'treatment' : 'control', k), u() ** 3, 0.01 * Math.exp(normal(u)))));
    const arms = await readArms('eq');
    for (const v of VARIANTS) {
      const a = arms.get(v.name)!;
      assert.equal(a.units, 150);
      assert.equal(a.clustered?.clusters, 150);
      assert.ok(Math.abs(a.clustered!.quality! / a.quality.variance - 1) < 1e-9, `${v.name} quality: ${a.clustered!.quality} vs ${a.quality.variance}`);
      assert.ok(Math.abs(a.clustered!.cost! / a.cost.variance - 1) < 1e-9, `${v.name} cost: ${a.clustered!.cost} vs ${a.cost.variance}`);
    }
    const now = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms });
    const old = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms: perOutcome(arms) });
    assert.equal(now.basis.variance, 'units');
    now.comparisons.forEach((c, i) => {
      const o = old.comparisons[i]!;
      for (const k of ['welch', 'sequential'] as const) {
        c[k]!.ci.forEach((x, j) => assert.ok(Math.abs(x - o[k]!.ci[j]!) <= 1e-9 * Math.max(1, Math.abs(x)), `${c.metric} ${k}: ${c[k]!.ci} vs ${o[k]!.ci}`));
      }
    });
    assert.deepEqual(now.srm, old.srm, 'one outcome per unit: unit counts are the outcome counts');
  });

  it('an outcome applied twice changes neither the unit count nor the bucket sums; a unit is counted once however many outcomes it reports', async () => {
    const d = decision('once', 'control', 'user-1');
    assert.equal(await apply(d, 0.5, 0.01), 'applied');
    const arm = experimentArm(keys, 'p', 'once', 1, 0, 'control');
    const snap = async () => [await redis.hget(arm.summary, 'units'), await redis.hgetallBuffer(arm.units.buckets)];
    const first = await snap();
    assert.equal(await apply(d, 0.5, 0.01), 'duplicate');
    assert.deepEqual(await snap(), first);
    assert.equal(await apply(decision('once', 'control', 'user-1'), 0.7), 'applied');
    const [units] = await snap();
    assert.equal(units, '1');
    // The bitmap lives as long as an outcome of the phase can still be applied (the marker deadline: window + 1 s + grace).
    const ttl = await redis.ttl(arm.units.bitmap);
    assert.ok(ttl > 3600 && ttl <= 3600 + 1 + 60 + 1, `bitmap TTL ${ttl}`);
    const a = (await readArms('once')).get('control')!;
    assert.equal(a.count, 2);
    assert.equal(a.clustered?.clusters, 1);
    assert.equal(a.clustered?.quality, undefined, 'one cluster: no cluster-robust variance');
  });

  it('statistics written before unit buckets existed: the variance falls back to per-outcome, and the results say so', async () => {
    const u = mulberry32(11);
    for (let i = 0; i < 40; i++) await apply(decision('legacy', i % 2 ? 'treatment' : 'control', `legacy-${i}`), u());
    // As written before the upgrade: no buckets, no unit counts.
    for (const v of VARIANTS) {
      const arm = experimentArm(keys, 'p', 'legacy', 1, 0, v.name);
      await redis.del(arm.units.buckets, arm.units.bitmap);
      await redis.hdel(arm.summary, 'units');
    }
    const before = await readArms('legacy');
    assert.deepEqual(analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms: before }).basis, { srm: 'outcomes', variance: 'outcomes' });
    for (let i = 0; i < 40; i++) await apply(decision('legacy', i % 2 ? 'treatment' : 'control', `legacy-${i}`), u());
    const arms = await readArms('legacy');
    assert.equal(arms.get('control')!.count, 40);
    assert.equal(arms.get('control')!.units, 20, 'units are counted from the upgrade on');
    assert.equal(arms.get('control')!.clustered, undefined, 'buckets that miss outcomes are not used');
    assert.deepEqual(analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms }).basis, { srm: 'units', variance: 'outcomes' });
  });
});
