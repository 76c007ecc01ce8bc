import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ArmStats } from '../../src/feedback/stats-reader.js';
import { analyzePhase, checkGuardrails } from '../../src/rollout/analysis.js';
import type { Guardrail } from '../../src/rollout/schema.js';
import { momentsOf } from '../../src/stats/winsorize.js';
import { sequentialDiff } from '../../src/stats/sequential.js';
import { rng } from './rng.js';
import { binomialBound } from '../helpers/binomial.js';

/**
 * Zero-variance arms: a sample whose outcomes are all equal (every quality 1.0, every cost identical) has sample
 * variance 0, and an interval built on it alone has zero width. These tests check that the always-valid interval
 * stays honest for such samples (src/stats/sequential.ts, `varianceFloor`).
 */

/** An arm of raw quality and cost values (moments as the stats reader would return them). */
function armOf(quality: readonly number[], cost: readonly number[]): ArmStats {
  const c = momentsOf(cost);
  return { count: quality.length, quality: momentsOf(quality), cost: { ...c, total: c.mean * c.n }, agents: {} };
}

const variants = [{ name: 'control' }, { name: 'b' }];

/**
 * A/A experiments: both arms draw from `draw`, one observation each per step; the guardrail is judged after every step
 * (from its minSamples) and the run counts as a false rollback the first time it is breached. Also counts runs whose
 * results (analyzePhase's sequential p-value on quality and cost, looked at from n = 2) ever declared a difference.
 */
function aa(opts: { runs: number; steps: number; seed: number; alpha: number; guardrail: Guardrail; draw: (r: ReturnType<typeof rng>) => readonly [number, number] }) {
  const r = rng(opts.seed);
  let rollbacks = 0;
  let significant = 0;
  for (let s = 0; s < opts.runs; s++) {
    const q: [number[], number[]] = [[], []];
    const c: [number[], number[]] = [[], []];
    let rolled = false;
    let sig = false;
    for (let k = 0; k < opts.steps && !(rolled && sig); k++) {
      for (const a of [0, 1] as const) {
        const [qv, cv] = opts.draw(r);
        q[a].push(qv);
        c[a].push(cv);
      }
      const arms = new Map([
        ['control', armOf(q[0], c[0])],
        ['b', armOf(q[1], c[1])],
      ]);
      if (!rolled && checkGuardrails([opts.guardrail], variants, 'control', arms, opts.alpha).some((g) => g.breached)) rolled = true;
      if (!sig) {
        const ph = analyzePhase({ phase: 0, variants: [{ name: 'control', strategy: 'a', weight: 1 }, { name: 'b', strategy: 'a', weight: 1 }], control: 'control', alpha: opts.alpha, arms });
        if (ph.comparisons.some((x) => x.sequential !== null && x.sequential.pValue < opts.alpha)) sig = true;
      }
    }
    if (rolled) rollbacks++;
    if (sig) significant++;
  }
  return { rollbacks, significant };
}

describe('always-valid intervals with zero-variance arms (seeded simulations)', () => {
  const ALPHA = 0.01;
  const RUNS = 1000;
  // A count this high happens with probability ≤ 1e-6 if the per-run false-alarm rate is at most α: the check is
  // not flaky (and the simulations are seeded besides).
  const bound = binomialBound(RUNS, ALPHA, 1e-6);

  // Outcomes that are often identical: a 0/1 quality at p = 0.5 (both arms constant for the first looks with
  // probability 1/8, at different values half of that), a 0/1 quality near 1 (one arm all 1.0 for a long while), and
  // costs from two price points.
  const cases: { name: string; guardrail: Guardrail; draw: (r: ReturnType<typeof rng>) => readonly [number, number] }[] = [
    { name: 'Bernoulli quality p = 0.5', guardrail: { metric: 'quality', minSamples: 2 }, draw: (r) => [r.uniform() < 0.5 ? 1 : 0, 0.01] },
    { name: 'Bernoulli quality p = 0.98', guardrail: { metric: 'quality', minSamples: 2 }, draw: (r) => [r.uniform() < 0.98 ? 1 : 0, 0.01] },
    { name: 'quality 0.8 or 1.0', guardrail: { metric: 'quality', minSamples: 3 }, draw: (r) => [r.uniform() < 0.6 ? 1 : 0.8, 0.01] },
    { name: 'cost 0.010 or 0.012', guardrail: { metric: 'cost', minSamples: 2 }, draw: (r) => [1, r.uniform() < 0.5 ? 0.012 : 0.01] },
  ];
  cases.forEach((c, i) => {
    it(`A/A, ${c.name}: false rollbacks and false significance over ${RUNS} runs stay within a binomial bound at α = ${ALPHA}`, () => {
      const res = aa({ runs: RUNS, steps: 60, seed: 101 + i, alpha: ALPHA, guardrail: c.guardrail, draw: c.draw });
      assert.ok(res.rollbacks <= bound, `${res.rollbacks} false rollbacks of ${RUNS} (bound ${bound} for α = ${ALPHA})`);
      assert.ok(res.significant <= bound, `${res.significant} of ${RUNS} A/A runs declared significant (bound ${bound} for α = ${ALPHA})`);
    });
  });

  it('a handful of identical observations never yields a zero-width interval or p = 0', () => {
    const s = sequentialDiff(momentsOf([1, 1, 1, 1, 1]), momentsOf([0.9, 0.9, 0.9, 0.9, 0.9]), 0.05, undefined, 1)!;
    assert.ok(s.ci[1] - s.ci[0] > 0.2, `interval ${s.ci.join(', ')}`);
    assert.ok(s.ci[0] < 0 && s.ci[1] > 0, 'five identical observations per arm do not settle a 0.1 difference');
    assert.ok(s.pValue > 0.05, `p ${s.pValue}`);
    const cost = sequentialDiff(momentsOf([0.012, 0.012, 0.012]), momentsOf([0.01, 0.01, 0.01]))!;
    assert.ok(cost.ci[0] < 0 && cost.ci[1] > 0, `cost interval ${cost.ci.join(', ')}`);
  });
});

describe('two genuinely different constant arms are still detected', () => {
  /** The first per-arm n at which the guardrail is breached, looking after every observation (Infinity: never by max). */
  function firstBreach(g: Guardrail, t: readonly [number, number], c: readonly [number, number], max: number): number {
    for (let n = g.minSamples ?? 50; n <= max; n++) {
      const arms = new Map([
        ['control', armOf(Array(n).fill(c[0]), Array(n).fill(c[1]))],
        ['b', armOf(Array(n).fill(t[0]), Array(n).fill(t[1]))],
      ]);
      if (checkGuardrails([g], variants, 'control', arms, 0.05).some((x) => x.breached)) return n;
    }
    return Infinity;
  }

  it('quality 0.9 vs 1.0: not at a handful of outcomes, but within a few hundred', () => {
    const n = firstBreach({ metric: 'quality', minSamples: 2 }, [0.9, 0.01], [1, 0.01], 2000);
    assert.ok(n > 10 && n <= 300, `first breach at n = ${n}`);
  });

  it('quality 0 vs 1 (every outcome failed vs every outcome succeeded): within a few dozen', () => {
    const n = firstBreach({ metric: 'quality', minSamples: 2 }, [0, 0.01], [1, 0.01], 2000);
    assert.ok(n > 2 && n <= 50, `first breach at n = ${n}`);
  });

  it('cost 0.012 vs 0.010 (identical costs within each arm): detected, and never in the better direction', () => {
    const n = firstBreach({ metric: 'cost', minSamples: 2 }, [1, 0.012], [1, 0.01], 5000);
    assert.ok(n > 10 && n <= 1000, `first breach at n = ${n}`);
    assert.equal(firstBreach({ metric: 'cost', minSamples: 2 }, [1, 0.01], [1, 0.012], 1000), Infinity);
  });

  it('results: the sequential p-value of two different constant arms falls below α eventually', () => {
    const p = (n: number) =>
      analyzePhase({
        phase: 0,
        variants: [{ name: 'control', strategy: 'a', weight: 1 }, { name: 'b', strategy: 'b', weight: 1 }],
        control: 'control',
        alpha: 0.05,
        arms: new Map([
          ['control', armOf(Array(n).fill(1), Array(n).fill(0.01))],
          ['b', armOf(Array(n).fill(0.9), Array(n).fill(0.01))],
        ]),
      }).comparisons.find((x) => x.metric === 'quality')!.sequential!.pValue;
    assert.ok(p(5) > 0.05, `p at n = 5: ${p(5)}`);
    assert.ok(p(500) < 0.05, `p at n = 500: ${p(500)}`);
  });
});
