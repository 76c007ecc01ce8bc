import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { newDecisionId, type DecisionRecord } from '../../src/allocation/decisions.js';
import type { ControlView } from '../../src/control/view.js';
import { pack, unpack } from 'msgpackr';
import { parseArmStats, type ArmStats } from '../../src/feedback/stats-reader.js';
import { applyOutcome } from '../../src/feedback/processor.js';
import { clusterDf, UNIT_BUCKETS, unitSpec } from '../../src/feedback/units.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { createKeys } from '../../src/redis/keys.js';
import { analyzePhase, checkGuardrails, elasticities, type Observation, type PhaseResult } from '../../src/rollout/analysis.js';
import { experimentArm, experimentArms, experimentSinks } from '../../src/rollout/arms.js';
import { readObservations } from '../../src/rollout/service.js';
import { srmSequential } from '../../src/stats/srm.js';
import { dropPrefix, testPrefix, testRedis } from '../helpers/env.js';
import { sampleRecord } from '../helpers/write-slots.js';

const prefix = testPrefix('units');
const keys = createKeys(prefix);
const redis = testRedis(prefix, { maxRetriesPerRequest: null });
after(() => dropPrefix(prefix));

const view = () => ({ pipelines: new Map(), raw: { kinds: { experiments: new Map() } } }) as unknown as ControlView;
const deps = { redis, keys, view, arms: [experimentArms(keys, view)], sinks: experimentSinks(keys, view), rewardWindowSeconds: 3600, markerGraceSeconds: 60 };
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

/** Agent `a` (budget 100 in the sample record) at its ceiling (98 tokens, truncated or not) or not (50 tokens). */
type Usage = 'hit' | 'truncated' | 'free';
const usageOf = (x: Usage) => ({ a: { outputTokens: x === 'free' ? 50 : 98, ...(x === 'truncated' ? { truncated: true } : {}) } });

async function apply(d: DecisionRecord, quality: number, costUsd?: number, usage?: Usage): Promise<string> {
  return applyOutcome(deps, { decision: d, outcome: { decisionId: d.id, quality, ...(costUsd !== undefined ? { costUsd } : {}), ...(usage ? { usage: usageOf(usage) } : {}) }, receivedAt: Date.now() });
}

async function readObs(experiment: string, variants: readonly { name: string }[] = VARIANTS): Promise<Map<string, Observation[]>> {
  return new Map(await Promise.all(variants.map(async (v) => [v.name, await readObservations(redis, experimentArm(keys, 'p', experiment, 1, 0, v.name).obs)] as const)));
}

/** Observations as written before they carried the unit's bucket. */
const obsPerOutcome = (obs: ReadonlyMap<string, readonly Observation[]>): Map<string, Observation[]> =>
  new Map([...obs].map(([k, list]) => [k, list.map((o): Observation => [o[0], o[1], o[2], o[3], o[4] ?? null, o[5] ?? []])]));

const covers = (ci: readonly [number, number] | null | undefined): boolean => ci !== null && ci !== undefined && ci[0] <= 0 && 0 <= ci[1];
/** The intervals of the three statistics kept per outcome before: ceiling hits, winsorized cost, quality drops. */
function perUnitStatistics(r: PhaseResult, guard: ReturnType<typeof checkGuardrails>) {
  const drops = r.variants.flatMap((v) => [v.agents.a?.truncation?.ci ?? null, v.agents.a?.atCeiling?.ci ?? null]);
  const hit = r.agentComparisons.find((c) => c.agent === 'a')!.ceilingHit;
  const cost = r.comparisons.find((c) => c.metric === 'cost')!;
  return { guard: guard[0]!, hitWelch: hit.welch?.ci, hitSeq: hit.sequential?.ci, costWelch: cost.welch?.ci, costSeq: cost.sequential?.ci, drops };
}

async function readArms(experiment: string, variants: readonly { name: string }[] = VARIANTS): Promise<Map<string, ArmStats>> {
  const out = new Map<string, ArmStats>();
  for (const v of variants) {
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

/** The seed of the many-outcomes ceiling-hit case (a seed on which the per-outcome statistics fail, see there). */
const SEED = Number(process.env.UNIT_HITS_SEED ?? 1);
/** The seed of the probe case (one on which the per-outcome elasticity interval excludes 0, see there). */
const PROBE_SEED = Number(process.env.UNIT_PROBE_SEED ?? 1);

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
    assert.deepEqual({ srm: now.basis.srm, variance: now.basis.variance }, { srm: 'units', variance: 'units' });
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
    assert.deepEqual({ srm: old.basis.srm, variance: old.basis.variance }, { srm: 'outcomes', variance: 'outcomes' });
    const oldFlag = srmSequential(VARIANTS.map((v) => arms.get(v.name)!.count), [1, 1], alpha)!.mismatch;
    const oldExcludes = old.comparisons.some((c) => { const ci = c.sequential!.ci; return ci[0] > 0 || ci[1] < 0; });
    assert.ok(oldFlag && oldExcludes, `per-outcome statistics on this seed: SRM flag ${oldFlag}, an interval excluding 0 ${oldExcludes}`);
  });

  it('many outcomes per unit with a unit effect on ceiling hits, quality and cost: ceiling-hit, winsorized-cost and quality-drop intervals hold their level on units, not per outcome', async () => {
    // 300 units, each reporting 1 + geometric(mean 20) outcomes. Each unit hits agent a's ceiling often (90 %) or
    // rarely (5 %), half of its hits truncated, and has its own quality and cost level, all independent and the same
    // in both arms (A/A), so no interval below should exclude 0; quality does not depend on hits, so no drop either.
    // At α = 1e-5 a correct interval excludes 0 with probability ≤ 1e-5 (always valid: the sequential ones).
    const u = mulberry32(SEED);
    const alpha = 1e-5;
    const jobs: { d: DecisionRecord; q: number; c: number; use: Usage }[] = [];
    for (let i = 0; i < 300; i++) {
      const key = `hits-${i}`;
      const variant = u() < 0.5 ? 'control' : 'treatment';
      const hitP = u() < 0.5 ? 0.9 : 0.05;
      const qEffect = 0.2 * normal(u);
      const cEffect = Math.exp(1.5 * normal(u));
      const n = 1 + Math.floor(Math.log(1 - u()) / Math.log(1 - 1 / 20));
      for (let k = 0; k < n; k++) {
        const use: Usage = u() < hitP ? (u() < 0.5 ? 'truncated' : 'hit') : 'free';
        jobs.push({ d: decision('hits', variant, key), q: clip(0.5 + qEffect + 0.02 * normal(u)), c: 0.01 * cEffect * Math.exp(0.2 * normal(u)), use });
      }
    }
    for (let i = 0; i < jobs.length; i += 200) await Promise.all(jobs.slice(i, i + 200).map((j) => apply(j.d, j.q, j.c, j.use)));
    const arms = await readArms('hits');
    const obs = await readObs('hits');
    assert.equal(VARIANTS.reduce((t, v) => t + (obs.get(v.name)?.length ?? 0), 0), jobs.length);
    const guardrails = [{ metric: 'ceilingHitRate' as const, agent: 'a' }];

    const now = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha, arms, obs, winsorize: 0.99 });
    assert.deepEqual(now.basis, { srm: 'units', variance: 'units', ceilingHit: 'units', observations: 'units' });
    const n = perUnitStatistics(now, checkGuardrails(guardrails, VARIANTS, 'control', arms, alpha));
    assert.ok(n.guard.judged && !n.guard.breached && covers(n.guard.ci), `ceiling-hit guardrail on units: ${JSON.stringify(n.guard)}`);
    for (const [k, ci] of Object.entries({ hitWelch: n.hitWelch, hitSeq: n.hitSeq, costWelch: n.costWelch, costSeq: n.costSeq })) assert.ok(covers(ci), `${k} on units: [${ci}] covers 0`);
    n.drops.forEach((ci, i) => assert.ok(covers(ci), `quality drop ${i} on units: [${ci}] covers 0`));

    // The same data read as before (ceiling hits from the per-agent counts, observations without their unit): each of
    // the three statistics excludes 0, which is what makes this test fail without them on units.
    const oldArms = perOutcome(arms);
    const old = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha, arms: oldArms, obs: obsPerOutcome(obs), winsorize: 0.99 });
    assert.deepEqual(old.basis, { srm: 'outcomes', variance: 'outcomes', ceilingHit: 'outcomes', observations: 'outcomes' });
    const o = perUnitStatistics(old, checkGuardrails(guardrails, VARIANTS, 'control', oldArms, alpha));
    assert.ok(!covers(o.guard.ci) && !covers(o.hitSeq), `per outcome, the ceiling-hit guardrail's interval [${o.guard.ci}] and the comparison's [${o.hitSeq}] exclude 0`);
    assert.ok(!covers(o.costSeq), `per outcome, the winsorized cost interval [${o.costSeq}] excludes 0`);
    assert.ok(o.drops.some((ci) => !covers(ci)), `per outcome, a quality drop interval excludes 0: ${JSON.stringify(o.drops)}`);
  });

  it("a probe's elasticity interval and its critical verdict on units: A/A with many outcomes per unit covers 0 (per outcome it excludes 0 and marks the agent critical)", async () => {
    // A probe cutting agent a to half its budget (the decision records say 100 of 200 tokens) whose cut does nothing to
    // quality (A/A): 300 units, each reporting 1 + geometric(mean 20) outcomes around its own quality level (unit sd
    // 0.2, outcome noise 0.05). At α = 1e-5 the elasticity's Welch interval excludes 0 with probability about 1e-5.
    const u = mulberry32(PROBE_SEED);
    const alpha = 1e-5;
    const variants = [{ name: 'control' }, { name: 'cut.a' }];
    const jobs: { d: DecisionRecord; q: number }[] = [];
    for (let i = 0; i < 300; i++) {
      const key = `probe-${i}`;
      const variant = u() < 0.5 ? 'control' : 'cut.a';
      const effect = 0.2 * normal(u);
      const n = 1 + Math.floor(Math.log(1 - u()) / Math.log(1 - 1 / 20));
      for (let k = 0; k < n; k++) {
        const d = decision('probe-aa', variant, key);
        jobs.push({ d: variant === 'control' ? d : { ...d, meta: { probe: { agent: 'a', baseTokens: 200 } } }, q: clip(0.6 + effect + 0.05 * normal(u)) });
      }
    }
    for (let i = 0; i < jobs.length; i += 200) await Promise.all(jobs.slice(i, i + 200).map((j) => apply(j.d, j.q)));
    const arms = await readArms('probe-aa', variants);
    const obs = await readObs('probe-aa', variants);
    assert.equal(variants.reduce((t, v) => t + arms.get(v.name)!.count, 0), jobs.length);
    const cuts = [{ agent: 'a', variant: 'cut.a' }];

    const [now] = elasticities(cuts, 'control', arms, alpha, obs);
    assert.equal(now!.basis, 'units');
    assert.equal(now!.budgetSource, 'decisions');
    assert.ok(Math.abs(now!.budgetRatio! - 0.5) < 1e-12);
    assert.ok(covers(now!.ci) && now!.critical === false, `on units the A/A elasticity interval [${now!.ci}] covers 0 and the agent is not critical`);
    // It is the quality comparison's Welch interval of the same arms, scaled by the cut.
    const cmp = analyzePhase({ phase: 0, variants: variants.map((v) => ({ ...v, strategy: v.name, weight: 1 })), control: 'control', alpha, arms }).comparisons.find((c) => c.metric === 'quality')!;
    const scale = arms.get('control')!.quality.mean * (now!.budgetRatio! - 1);
    assert.ok(Math.abs(now!.ci![0] - cmp.welch!.ci[1] / scale) < 1e-12 && Math.abs(now!.ci![1] - cmp.welch!.ci[0] / scale) < 1e-12, `${now!.ci} vs ${cmp.welch!.ci} / ${scale}`);

    // The same data read per outcome (statistics kept before unit buckets, and the rule before): the interval excludes
    // 0 and the agent is marked critical, which is what makes this test fail without the unit variance.
    const [old] = elasticities(cuts, 'control', perOutcome(arms), alpha, obs);
    assert.equal(old!.basis, 'outcomes');
    assert.equal(old!.elasticity, now!.elasticity);
    assert.ok(!covers(old!.ci) && old!.critical === true, `per outcome the A/A elasticity interval [${old!.ci}] excludes 0 and marks the agent critical`);
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
    await Promise.all(keysIn.map((k, i) => apply(decision('eq', i % 2 ? 'treatment' : 'control', k), u() ** 3, 0.01 * Math.exp(normal(u)), ((x) => (x < 0.15 ? 'truncated' : x < 0.3 ? 'hit' : 'free'))(u()))));
    const arms = await readArms('eq');
    const obs = await readObs('eq');
    for (const v of VARIANTS) {
      const a = arms.get(v.name)!;
      assert.equal(a.units, 150);
      assert.equal(a.clustered?.clusters, 150);
      assert.ok(Math.abs(a.clustered!.quality!.variance / a.quality.variance - 1) < 1e-9, `${v.name} quality: ${a.clustered!.quality!.variance} vs ${a.quality.variance}`);
      assert.ok(Math.abs(a.clustered!.cost!.variance / a.cost.variance - 1) < 1e-9, `${v.name} cost: ${a.clustered!.cost!.variance} vs ${a.cost.variance}`);
      // And the degrees of freedom are the per-outcome ones, N − 1.
      for (const m of [a.clustered!.quality!, a.clustered!.cost!, a.clustered!.agents!.a!.ceilingHit!]) assert.ok(Math.abs(m.df - 149) < 1e-9, `${v.name}: df ${m.df}`);
    }
    const now = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms });
    const old = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms: perOutcome(arms) });
    assert.equal(now.basis.variance, 'units');
    const same = (a: readonly number[] | null | undefined, b: readonly number[] | null | undefined, what: string): void => {
      assert.ok(a && b, `${what}: both computed`);
      a.forEach((x, j) => assert.ok(Math.abs(x - b[j]!) <= 1e-9 * Math.max(1, Math.abs(x)), `${what}: ${a} vs ${b}`));
    };
    now.comparisons.forEach((c, i) => {
      const o = old.comparisons[i]!;
      for (const k of ['welch', 'sequential'] as const) same(c[k]?.ci, o[k]?.ci, `${c.metric} ${k}`);
    });
    assert.deepEqual(now.srm, old.srm, 'one outcome per unit: unit counts are the outcome counts');
    // A probe's elasticity (treatment as agent a's cut arm, its decisions giving a half of its base budget) too.
    const cut = new Map<string, Observation[]>([['treatment', [[0, null, [], [], [50, 100]]]]]);
    const [en] = elasticities([{ agent: 'a', variant: 'treatment' }], 'control', arms, 0.05, cut);
    const [eo] = elasticities([{ agent: 'a', variant: 'treatment' }], 'control', perOutcome(arms), 0.05, cut);
    assert.deepEqual([en!.basis, eo!.basis], ['units', 'outcomes']);
    same(en!.ci, eo!.ci, 'elasticity');
    assert.equal(en!.critical, eo!.critical);

    // The ceiling-hit rate, the winsorized cost and the quality drops give the same intervals as per outcome.
    for (const v of VARIANTS) assert.equal(arms.get(v.name)!.clustered?.agents?.a?.clusters, 150);
    const guardrails = [{ metric: 'ceilingHitRate' as const, agent: 'a' }];
    const nowAll = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms, obs, winsorize: 0.9 });
    const oldAll = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms: perOutcome(arms), obs: obsPerOutcome(obs), winsorize: 0.9 });
    assert.deepEqual(nowAll.basis, { srm: 'units', variance: 'units', ceilingHit: 'units', observations: 'units' });
    assert.deepEqual(oldAll.basis, { srm: 'outcomes', variance: 'outcomes', ceilingHit: 'outcomes', observations: 'outcomes' });
    const a = perUnitStatistics(nowAll, checkGuardrails(guardrails, VARIANTS, 'control', arms, 0.05));
    const b = perUnitStatistics(oldAll, checkGuardrails(guardrails, VARIANTS, 'control', perOutcome(arms), 0.05));
    assert.equal(a.guard.judged, b.guard.judged);
    assert.equal(a.guard.breached, b.guard.breached);
    same(a.guard.ci, b.guard.ci, 'ceiling-hit guardrail');
    for (const k of ['hitWelch', 'hitSeq', 'costWelch', 'costSeq'] as const) same(a[k], b[k], k);
    a.drops.forEach((ci, i) => same(ci, b.drops[i], `quality drop ${i}`));
  });

  it('few units of very unequal sizes: the reader gives the CR2 variance and its small-sample degrees of freedom, and the interval is wider than CR1\'s', async () => {
    // 12 units per arm in 12 distinct buckets, one of them reporting 40 outcomes and the others 1–3, each unit around
    // its own quality level. CR1 (G/(G − 1) · Σ e_b² / N², on G − 1 degrees of freedom) runs low here: the big unit's
    // residual sum is shrunk by its leverage n_b/N, which CR2 undoes, and G − 1 overstates what 12 so unequal
    // clusters can tell about the variance.
    const sizes = [40, 3, 3, 2, 2, 2, 1, 1, 1, 1, 1, 1];
    const taken = new Set<number>();
    const unitKeys: string[] = [];
    for (let i = 0; unitKeys.length < 2 * sizes.length; i++) {
      const b = unitSpec(`cr2-${i}`).bucket;
      if (taken.has(b)) continue;
      taken.add(b);
      unitKeys.push(`cr2-${i}`);
    }
    const u = mulberry32(21);
    const raw = new Map<string, { q: number[][]; c: number[][] }>(VARIANTS.map((v) => [v.name, { q: [], c: [] }]));
    const jobs: Promise<string>[] = [];
    VARIANTS.forEach((v, vi) => {
      sizes.forEach((size, j) => {
        const key = unitKeys[vi * sizes.length + j]!;
        const level = 0.5 + 0.2 * normal(u);
        const cost = 0.01 * Math.exp(normal(u));
        const qs = Array.from({ length: size }, () => clip(level + 0.05 * normal(u)));
        const cs = qs.map(() => cost * Math.exp(0.1 * normal(u)));
        raw.get(v.name)!.q.push(qs);
        raw.get(v.name)!.c.push(cs);
        qs.forEach((q, k) => jobs.push(apply(decision('cr2', v.name, key), q, cs[k]!)));
      });
    });
    await Promise.all(jobs);
    const arms = await readArms('cr2');
    /** The CR2 variance (as N·V), CR1's, and the outcomes' Σ (y − m)², from the values applied (per unit). */
    const byHand = (units: readonly (readonly number[])[]) => {
      const ys = units.flat();
      const n = ys.length;
      const m = ys.reduce((t, y) => t + y, 0) / n;
      const e = units.map((us) => us.reduce((t, y) => t + y, 0) - m * us.length);
      return {
        cr2: e.reduce((t, x, b) => t + (x * x) / (n - units[b]!.length), 0),
        cr1: ((units.length / (units.length - 1)) * e.reduce((t, x) => t + x * x, 0)) / n,
        ss: ys.reduce((t, y) => t + (y - m) ** 2, 0),
      };
    };
    const before = new Map<string, ArmStats>();
    for (const v of VARIANTS) {
      const a = arms.get(v.name)!;
      const r = raw.get(v.name)!;
      assert.equal(a.clustered?.clusters, sizes.length);
      for (const [metric, units] of [['quality', r.q], ['cost', r.c]] as const) {
        const h = byHand(units);
        const got = a.clustered![metric]!;
        assert.ok(Math.abs(got.variance / h.cr2 - 1) < 1e-9, `${v.name} ${metric}: N·V ${got.variance}, by hand ${h.cr2}`);
        assert.ok(got.variance > 1.5 * h.cr1, `${v.name} ${metric}: CR2 ${got.variance} well above CR1 ${h.cr1}`);
        const df = clusterDf({ n: units.map((x) => x.length), s: units.map((x) => x.reduce((t, y) => t + y, 0)) }, h.ss);
        assert.ok(Math.abs(got.df - df) < 1e-9 && got.df < sizes.length - 2, `${v.name} ${metric}: df ${got.df} (Imbens–Kolesár ${df}; CR1 counted ${sizes.length - 1})`);
      }
      // The same arm as the reader gave it before: CR1 on min(N, G) − 1 degrees of freedom.
      const cr1 = (units: readonly (readonly number[])[]) => ({ variance: byHand(units).cr1, df: sizes.length - 1, clusters: sizes.length });
      before.set(v.name, { ...a, clustered: { ...a.clustered!, quality: cr1(r.q), cost: cr1(r.c) } });
    }
    const now = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms });
    const old = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms: before });
    for (const metric of ['quality', 'cost'] as const) {
      const w = now.comparisons.find((c) => c.metric === metric)!.welch!;
      const o = old.comparisons.find((c) => c.metric === metric)!.welch!;
      assert.equal(w.diff, o.diff);
      assert.ok(w.df < o.df, `${metric}: df ${w.df} < ${o.df}`);
      assert.ok(w.ci[1] - w.ci[0] > 1.3 * (o.ci[1] - o.ci[0]), `${metric}: the interval [${w.ci}] is wider than CR1's [${o.ci}]`);
    }
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
    assert.deepEqual(analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms: before }).basis, { srm: 'outcomes', variance: 'outcomes', ceilingHit: 'outcomes', observations: 'outcomes' });
    for (let i = 0; i < 40; i++) await apply(decision('legacy', i % 2 ? 'treatment' : 'control', `legacy-${i}`), u());
    const arms = await readArms('legacy');
    assert.equal(arms.get('control')!.count, 40);
    assert.equal(arms.get('control')!.units, 20, 'units are counted from the upgrade on');
    assert.equal(arms.get('control')!.clustered, undefined, 'buckets that miss outcomes are not used');
    assert.deepEqual(analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms }).basis, { srm: 'units', variance: 'outcomes', ceilingHit: 'outcomes', observations: 'outcomes' });
    // A probe's elasticity on these arms (treatment as agent a's cut arm): per outcome, and it says so.
    const cut = new Map<string, Observation[]>([['treatment', [[0, null, [], [], [50, 100]]]]]);
    for (const a of [before, arms]) {
      const [e] = elasticities([{ agent: 'a', variant: 'treatment' }], 'control', a, 0.05, cut);
      assert.equal(e!.basis, 'outcomes');
      assert.deepEqual(e!.ci, elasticities([{ agent: 'a', variant: 'treatment' }], 'control', perOutcome(a), 0.05, cut)[0]!.ci);
    }
  });

  it('buckets and observations written before they kept ceiling hits and units: those statistics fall back to per-outcome, and the results say so', async () => {
    const u = mulberry32(5);
    const use = (): Usage => (u() < 0.3 ? 'hit' : 'free');
    for (let i = 0; i < 80; i++) await apply(decision('older', i % 2 ? 'treatment' : 'control', `older-${i}`), u(), 0.01, use());
    // As written before: buckets [n, Σ quality, c_n, Σ cost] without the agents' hits, observations without the bucket.
    for (const v of VARIANTS) {
      const arm = experimentArm(keys, 'p', 'older', 1, 0, v.name);
      for (const [b, packed] of Object.entries(await redis.hgetallBuffer(arm.units.buckets))) {
        await redis.hset(arm.units.buckets, b, pack((unpack(packed) as unknown[]).slice(0, 4)));
      }
      const list = await redis.lrange(arm.obs, 0, -1);
      await redis.del(arm.obs);
      await redis.rpush(arm.obs, ...list.map((l) => JSON.stringify((JSON.parse(l) as unknown[]).slice(0, 6))));
    }
    for (let i = 0; i < 80; i++) await apply(decision('older', i % 2 ? 'treatment' : 'control', `older-${i}`), u(), 0.01, use());
    const arms = await readArms('older');
    const obs = await readObs('older');
    assert.equal(arms.get('control')!.agents.a!.n, 80);
    assert.deepEqual({ ...arms.get('control')!.clustered?.agents }, {}, 'bucket sums that miss some of the agent\'s outcomes are not used');
    const now = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms, obs, winsorize: 0.9 });
    assert.deepEqual(now.basis, { srm: 'units', variance: 'units', ceilingHit: 'outcomes', observations: 'outcomes' });
    const old = analyzePhase({ phase: 0, variants: VARIANTS, control: 'control', alpha: 0.05, arms: perOutcome(arms), obs: obsPerOutcome(obs), winsorize: 0.9 });
    const guardrails = [{ metric: 'ceilingHitRate' as const, agent: 'a' }];
    const a = perUnitStatistics(now, checkGuardrails(guardrails, VARIANTS, 'control', arms, 0.05));
    const b = perUnitStatistics(old, checkGuardrails(guardrails, VARIANTS, 'control', perOutcome(arms), 0.05));
    assert.deepEqual([a.guard.ci, a.hitWelch, a.hitSeq, a.costWelch, a.costSeq, a.drops], [b.guard.ci, b.hitWelch, b.hitSeq, b.costWelch, b.costSeq, b.drops], 'the per-outcome intervals');
  });
});
