import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { learnedDecision, type ServingModel } from '@apportion/sdk/engine';
import { windowAfterChange } from '../../src/learner/drift.js';
import { compileFeatures } from '../../src/learner/features.js';
import { initialWeights } from '../../src/learner/model.js';
import { CANDIDATE_SHARE, candidateShareFor, candidatesAround, DRIFT_CANDIDATE_SHARE, signedPerturbation, type ExploreOptions } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';

/**
 * The candidate share while a detected change is recent (policy.ts candidateShareFor): a version trained with drift
 * recovery's shortened half-life gets `afterChange` of the decisions while it is the candidate, every other version
 * CANDIDATE_SHARE; the share stored with the candidate is what serving mixes in, and the logged probabilities carry it.
 */
describe('candidate share after a detected change', () => {
  it('is the after-change share only for a version trained while the change is recent (the shortened half-life)', () => {
    assert.equal(candidateShareFor(true, 0.1), 0.1);
    assert.equal(candidateShareFor(false, 0.1), CANDIDATE_SHARE);
    assert.equal(candidateShareFor(true, undefined), CANDIDATE_SHARE, 'no after-change share: the usual one');
    assert.equal(candidateShareFor(true, 0.05, 0.3), 0.05);
    assert.equal(candidateShareFor(false, 0.05, 0.3), 0.3);
    // "Recent" is drift recovery's own: the half-life is shortened until 4 × the configured half-life after the change.
    const recent = (since: number) => windowAfterChange(since, 8000, 1000).shortened;
    assert.deepEqual([250, 1000, 3999, 4000, 6000, Infinity].map((s) => candidateShareFor(recent(s), 0.1)), [0.1, 0.1, 0.1, CANDIDATE_SHARE, CANDIDATE_SHARE, CANDIDATE_SHARE]);
    // The default is off unless measured better (docs/learner.md, "Drift recovery").
    assert.equal(candidateShareFor(false, DRIFT_CANDIDATE_SHARE), CANDIDATE_SHARE);
  });

  it('serving mixes the candidate in at its stored share (CANDIDATE_SHARE without one), and the logged probabilities carry it', () => {
    const agents = [
      { min: 100, cap: 6000 },
      { min: 100, cap: 6000 },
      { min: 100, cap: 6000 },
    ];
    const explore: ExploreOptions = { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, budget: 0.3, decayFrom: 2 };
    const encoder = compileFeatures([]);
    const weights = initialWeights(encoder.dim, 3, 9000, mulberry32(1));
    const uniform = [3000, 3000, 3000];
    const probsOf = (share: number | undefined) => {
      // A candidate that wants almost everything for agent 0: its greedy split is none of the policy's candidates.
      const cw = initialWeights(encoder.dim, 3, 9000, mulberry32(7));
      const m: ServingModel = { encoder, weights, version: 3, candidate: { version: 4, weights: cw, encoder, ...(share !== undefined ? { share } : {}) } };
      const { dec } = learnedDecision(m, agents, { features: {}, totalTokens: 9000 }, explore, uniform, undefined, mulberry32(11));
      const at = dec.candidates.findIndex((c) => c.every((v, i) => v === dec.candidateSplit![i]));
      const policy = candidatesAround(dec.candidates[0]!, agents, 9000, signedPerturbation(explore), uniform);
      return { at, p: dec.probs[at]!, fresh: at >= policy.length, sum: dec.probs.reduce((s, v) => s + v, 0) };
    };
    for (const [share, want] of [
      [0.1, 0.1],
      [undefined, CANDIDATE_SHARE],
      [0.3, 0.3],
    ] as const) {
      const r = probsOf(share);
      assert.ok(Math.abs(r.sum - 1) < 1e-12);
      // The candidate's split is not among the policy's own candidates, so its logged probability is the share exactly.
      assert.ok(r.fresh, 'the candidate split is appended');
      assert.ok(Math.abs(r.p - want) < 1e-12, `share ${share}: logged ${r.p}, want ${want}`);
    }
  });
});
