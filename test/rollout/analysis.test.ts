import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { quantile } from 'simple-statistics';
import type { ArmStats } from '../../src/feedback/stats-reader.js';
import { analyzePhase, checkGuardrails, elasticities, type Observation } from '../../src/rollout/analysis.js';
import { fromWelford } from '../../src/stats/moments.js';

/** An arm from summary numbers (as parseArmStats would return it). */
function arm(n: number, q: number, qsd: number, cost: number, csd: number, agents: Record<string, { hits: number; allocated: number }> = {}): ArmStats {
  return {
    count: n,
    quality: fromWelford(n, q, qsd * qsd * (n - 1)),
    cost: { ...fromWelford(n, cost, csd * csd * (n - 1)), total: n * cost },
    agents: Object.fromEntries(
      Object.entries(agents).map(([k, a]) => [k, { n, utilization: 0.5, ceilingHitRate: a.hits / n, truncationRate: 0, qualityWhenHit: null, meanConsumed: 0, meanAllocated: a.allocated }]),
    ),
  };
}

const variants = [
  { name: 'control', strategy: 'a', weight: 1 },
  { name: 'b', strategy: 'b', weight: 1 },
];

describe('guardrail orientation (pure)', () => {
  it('quality: lower is worse; cost and ceiling hits: higher is worse', () => {
    const arms = new Map([
      ['control', arm(2000, 0.8, 0.1, 0.010, 0.002, { reasoner: { hits: 200, allocated: 1000 } })],
      ['b', arm(2000, 0.7, 0.1, 0.008, 0.002, { reasoner: { hits: 900, allocated: 1000 } })],
    ]);
    const checks = checkGuardrails(
      [
        { metric: 'quality', maxRegression: 0.05 },
        { metric: 'cost', maxRegression: 0 },
        { metric: 'ceilingHitRate', agent: 'reasoner', maxRegression: 0.1 },
        { metric: 'quality', maxRegression: 0.2, relative: true },
      ],
      variants,
      'control',
      arms,
      0.05,
    );
    const [q, c, h, qRel] = checks;
    assert.equal(q!.breached, true, 'quality fell by 0.1 > 0.05');
    assert.ok(Math.abs(q!.regression! - 0.1) < 1e-12);
    assert.equal(c!.breached, false, 'cheaper is not a cost regression');
    assert.ok(c!.regression! < 0);
    assert.equal(h!.breached, true, 'ceiling hits rose from 10 % to 45 %');
    assert.equal(qRel!.breached, false, 'a 12.5 % quality drop is within a 20 % relative tolerance');
    assert.ok(Math.abs(qRel!.tolerance! - 0.16) < 1e-12);
  });
  it('waits for minSamples per arm', () => {
    const arms = new Map([
      ['control', arm(20, 0.8, 0.1, 0.01, 0.001)],
      ['b', arm(20, 0.1, 0.1, 0.01, 0.001)],
    ]);
    const [g] = checkGuardrails([{ metric: 'quality' }], variants, 'control', arms, 0.05);
    assert.equal(g!.judged, false);
    assert.equal(g!.breached, false);
  });
});

describe('phase analysis (pure)', () => {
  it('Holm across goal metrics, SRM, winsorized cost and truncation drop from observations', () => {
    const obs = (q: number, hitEvery: number, n: number, bigCost = false): Observation[] =>
      Array.from({ length: n }, (_, i) => [q - (i % hitEvery === 0 ? 0.2 : 0) + ((i % 5) - 2) * 0.01, bigCost && i === 0 ? 1000 : 0.01 + (i % 3) * 0.001, i % (2 * hitEvery) === 0 ? ['reasoner'] : [], i % hitEvery === 0 ? ['reasoner'] : []] as const);
    const arms = new Map([
      ['control', arm(500, 0.8, 0.1, 0.011, 0.001, { reasoner: { hits: 50, allocated: 1000 } })],
      ['b', arm(520, 0.82, 0.1, 2.0, 40, { reasoner: { hits: 52, allocated: 1200 } })],
    ]);
    const r = analyzePhase({ phase: 0, variants, control: 'control', alpha: 0.05, arms, obs: new Map([['control', obs(0.8, 10, 500)], ['b', obs(0.82, 10, 520, true)]]), winsorize: 0.99 });
    assert.equal(r.comparisons.length, 2);
    const [q, c] = r.comparisons;
    assert.ok(q!.pHolm! >= q!.welch!.pValue && c!.pHolm! >= c!.welch!.pValue);
    assert.ok(Math.min(q!.pHolm!, c!.pHolm!) === Math.min(1, 2 * Math.min(q!.welch!.pValue, c!.welch!.pValue)));
    const b = r.variants.find((v) => v.variant === 'b')!;
    assert.ok(b.cost.winsorizedMean! < 0.02, `the 1000 $ outlier is capped: ${b.cost.winsorizedMean}`);
    assert.ok(Math.abs(c!.welch!.diff) < 0.01, 'cost comparison uses winsorized moments');
    assert.equal(b.agents.reasoner!.truncation!.nHit, 26, 'truncations are a subset of the ceiling hits');
    const t = b.agents.reasoner!.atCeiling!;
    assert.equal(t.nHit, 52);
    assert.ok(Math.abs(t.drop! - 0.2) < 0.03, `drop ${t.drop}`); // 0.2 plus the noise pattern's share
    assert.ok(r.srm && r.srm.pValue > 0.5);
    const ac = r.agentComparisons.find((x) => x.agent === 'reasoner' && x.variant === 'b')!;
    assert.equal(ac.budgetDiff, 200);
    assert.ok(Math.abs(ac.ceilingHit.welch!.diff) < 1e-12, '10 % vs 10 % ceiling hits');
    assert.ok(ac.ceilingHit.sequential!.ci[0] < 0 && ac.ceilingHit.sequential!.ci[1] > 0);
  });
  it('elasticity: a 50 % cut costing 25 % of quality is 0.5, and ranks first', () => {
    const arms = new Map([
      ['control', arm(4000, 0.8, 0.1, 0.01, 0.001, { reasoner: { hits: 0, allocated: 4000 }, formatter: { hits: 0, allocated: 400 } })],
      ['cut.reasoner', arm(4000, 0.6, 0.1, 0.01, 0.001, { reasoner: { hits: 0, allocated: 2000 }, formatter: { hits: 0, allocated: 400 } })],
      ['cut.formatter', arm(4000, 0.8, 0.1, 0.01, 0.001, { reasoner: { hits: 0, allocated: 4000 }, formatter: { hits: 0, allocated: 200 } })],
    ]);
    const e = elasticities(
      [
        { agent: 'reasoner', variant: 'cut.reasoner' },
        { agent: 'formatter', variant: 'cut.formatter' },
      ],
      'control',
      arms,
      0.05,
    );
    assert.ok(Math.abs(e[0]!.elasticity! - 0.5) < 1e-9);
    assert.equal(e[0]!.rank, 1);
    assert.equal(e[0]!.critical, true);
    assert.equal(e[1]!.critical, false);
    assert.ok(e[1]!.ci![0] < 0 && e[1]!.ci![1] > 0);
    assert.deepEqual(e.map((x) => x.basis), ['outcomes', 'outcomes'], 'arms without unit buckets: per-outcome variances, and it says so');
  });
  it('elasticity on units: the cluster-robust variance widens the interval; an arm whose outcomes all come from one unit is not measured', () => {
    const base = arm(4000, 0.8, 0.1, 0.01, 0.001, { reasoner: { hits: 0, allocated: 4000 } });
    const cut = arm(4000, 0.77, 0.1, 0.01, 0.001, { reasoner: { hits: 0, allocated: 2000 } });
    const cuts = [{ agent: 'reasoner', variant: 'cut.reasoner' }];
    const perOutcome = elasticities(cuts, 'control', new Map([['control', base], ['cut.reasoner', cut]]), 0.05)[0]!;
    // Units with 20 outcomes each and a unit effect: the effective per-outcome variance 20× the per-outcome one.
    const units = (a: ArmStats, clusters: number, v?: number): ArmStats => ({ ...a, clustered: { ...(v !== undefined ? { quality: { variance: v, df: clusters - 1, clusters } } : {}), clusters } });
    const onUnits = elasticities(cuts, 'control', new Map([['control', units(base, 200, 0.2)], ['cut.reasoner', units(cut, 200, 0.2)]]), 0.05)[0]!;
    assert.equal(perOutcome.elasticity, onUnits.elasticity);
    assert.deepEqual([perOutcome.basis, onUnits.basis], ['outcomes', 'units']);
    assert.equal(perOutcome.critical, true, `per outcome: [${perOutcome.ci}]`);
    assert.equal(onUnits.critical, false, `on units: [${onUnits.ci}]`);
    assert.ok(onUnits.ci![1] - onUnits.ci![0] > 4 * (perOutcome.ci![1] - perOutcome.ci![0]));
    const one = elasticities(cuts, 'control', new Map([['control', units(base, 200, 0.2)], ['cut.reasoner', units(cut, 1)]]), 0.05)[0]!;
    assert.equal(one.critical, null);
    assert.equal(one.ci, null);
    assert.match(one.unavailable!, /needs outcomes from at least 2 units \(unit buckets\) in control and in cut\.reasoner \(has 200 and 1\)/);
  });
});

describe('an arm whose outcomes all come from one unit (pure)', () => {
  it('gives no interval for its quality, cost or ceiling-hit comparisons; two units or more do', () => {
    const agents = { reasoner: { hits: 100, allocated: 1000 } };
    const control = arm(400, 0.8, 0.1, 0.01, 0.001, agents);
    const b = arm(400, 0.78, 0.1, 0.012, 0.001, agents);
    const units = (a: ArmStats, clusters: number, v?: number): ArmStats => ({
      ...a,
      clustered: {
        ...(v !== undefined ? { quality: { variance: v, df: clusters - 1, clusters }, cost: { variance: v / 100, df: clusters - 1, clusters } } : {}),
        clusters,
        agents: { reasoner: { ...(v !== undefined ? { ceilingHit: { variance: 0.2, df: clusters - 1, clusters } } : {}), clusters } },
      },
    });
    const run = (bArm: ArmStats) => analyzePhase({ phase: 0, variants, control: 'control', alpha: 0.05, arms: new Map([['control', units(control, 200, 0.05)], ['b', bArm]]) });
    // One unit: the per-outcome variance would make 400 outcomes of one user look like 400 users.
    const one = run(units(b, 1));
    assert.deepEqual(one.comparisons.map((c) => [c.metric, c.welch, c.sequential, c.pHolm]), [['quality', null, null, null], ['cost', null, null, null]]);
    assert.equal(one.agentComparisons[0]!.ceilingHit.welch, null);
    // Two units: an interval (wide, on 1 degree of freedom), not none.
    const two = run(units(b, 2, 0.05));
    assert.ok(two.comparisons.every((c) => c.welch !== null), 'two units give an interval');
    assert.notEqual(two.agentComparisons[0]!.ceilingHit.welch, null);
    // Without unit buckets (a phase written before they were kept) the per-outcome interval is still given.
    const legacy = analyzePhase({ phase: 0, variants, control: 'control', alpha: 0.05, arms: new Map([['control', control], ['b', b]]) });
    assert.ok(legacy.comparisons.every((c) => c.welch !== null));
  });
});

describe('guardrails watched continuously (simulation through checkGuardrails)', () => {
  /** Bernoulli-ish quality around 0.7 for control and 0.7 − shift for the variant; checks every 10 outcomes per arm. */
  function falseRollbacks(shift: number, tolerance: number, seed: number): number {
    let s = seed >>> 0;
    const u = () => {
      s = (s + 0x6d2b79f5) | 0;
      let t = Math.imul(s ^ (s >>> 15), 1 | s);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const sims = 300;
    let rolled = 0;
    for (let k = 0; k < sims; k++) {
      const m = [
        { n: 0, mean: 0, m2: 0 },
        { n: 0, mean: 0, m2: 0 },
      ];
      for (let i = 1; i <= 1500; i++) {
        for (const [j, p] of [[0, 0.7], [1, 0.7 - shift]] as const) {
          const x = u() < p ? 1 : 0;
          const a = m[j]!;
          a.n++;
          const d = x - a.mean;
          a.mean += d / a.n;
          a.m2 += d * (x - a.mean);
        }
        if (i % 10) continue;
        const arms = new Map([
          ['control', arm(m[0]!.n, m[0]!.mean, Math.sqrt(m[0]!.m2 / (m[0]!.n - 1)), 0, 0)],
          ['b', arm(m[1]!.n, m[1]!.mean, Math.sqrt(m[1]!.m2 / (m[1]!.n - 1)), 0, 0)],
        ]);
        if (checkGuardrails([{ metric: 'quality', maxRegression: tolerance }], variants, 'control', arms, 0.05)[0]!.breached) {
          rolled++;
          break;
        }
      }
    }
    return rolled / sims;
  }

  it('A/A: rollbacks ≤ α however often the job looks', () => {
    const r = falseRollbacks(0, 0, 31);
    assert.ok(r <= 0.05, `false rollbacks ${r}`);
  });
  it('a regression exactly at the tolerance: rollbacks ≤ α; far beyond it: rolled back', () => {
    assert.ok(falseRollbacks(0.03, 0.03, 32) <= 0.05);
    assert.ok(falseRollbacks(0.15, 0.03, 33) >= 0.95);
  });
});

describe('winsorized cost (pure)', () => {
  it('caps both arms of a comparison at the quantile of their pooled costs', () => {
    const costs = fc.array(fc.integer({ min: 1, max: 100_000 }).map((c) => c / 1000), { minLength: 3, maxLength: 60 });
    fc.assert(
      fc.property(costs, costs, fc.constantFrom(0.6, 0.9, 0.95, 0.99), (a, b, q) => {
        const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
        const armOf = (xs: number[]) => arm(xs.length, 0.5, 0.1, mean(xs), 0.01);
        const obs = (xs: number[]): Observation[] => xs.map((c) => [0.5, c, [], []] as const);
        const r = analyzePhase({ phase: 0, variants, control: 'control', alpha: 0.05, arms: new Map([['control', armOf(a)], ['b', armOf(b)]]), obs: new Map([['control', obs(a)], ['b', obs(b)]]), winsorize: q });
        const cap = quantile([...a, ...b], q);
        const capped = (xs: number[]) => mean(xs.map((x) => Math.min(x, cap)));
        for (const [v, xs] of [['control', a], ['b', b]] as const) {
          const res = r.variants.find((x) => x.variant === v)!;
          assert.equal(res.cost.cap, cap, `${v}: the pooled cap`);
          assert.ok(Math.abs(res.cost.winsorizedMean! - capped(xs)) < 1e-9);
        }
        const c = r.comparisons.find((x) => x.metric === 'cost')!;
        if (c.welch) assert.ok(Math.abs(c.welch.diff - (capped(b) - capped(a))) < 1e-9, `diff ${c.welch.diff} vs ${capped(b) - capped(a)}`);
      }),
      { seed: 12, numRuns: 200 },
    );
  });
});
