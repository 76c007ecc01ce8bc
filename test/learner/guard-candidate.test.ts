import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addCandidateEvidence, CANDIDATE_MIN_OUTCOMES, candidateArmOf, candidateVerdict, EMPTY_ARM, EMPTY_CANDIDATE_EVIDENCE, type ArmSums, type CandidateEvidence } from '../../src/learner/guard.js';
import { withCandidate, type Decision } from '../../src/learner/policy.js';
import { mulberry32, normal } from '../../src/learner/rng.js';

const arm = (rewards: readonly number[]): ArmSums => rewards.reduce((a, r) => ({ n: a.n + 1, sum: a.sum + r, sumSq: a.sumSq + r * r }), EMPTY_ARM);

/** Rewards around `mean` (sd 0.15, clipped to [0, 1]) from a seed. */
function draws(n: number, mean: number, seed: number): number[] {
  const rng = mulberry32(seed);
  return Array.from({ length: n }, () => Math.min(1, Math.max(0, mean + 0.15 * normal(rng))));
}

const evidence = (candidate: number[], control: number[], serving: number[]): CandidateEvidence => ({ candidate: arm(candidate), control: arm(control), serving: arm(serving) });

describe('the guard’s candidate arm (decision rule)', () => {
  it('sorts a logged decision into its arm', () => {
    assert.equal(candidateArmOf({ a: 1 }, 3), 'control');
    assert.equal(candidateArmOf({ a: 1, v: 3 }, 3), 'control', 'the control served: not the candidate');
    assert.equal(candidateArmOf({ a: 0, v: 3 }, 3), 'candidate');
    assert.equal(candidateArmOf({ v: 3 }, 3), 'candidate');
    assert.equal(candidateArmOf({ a: 0 }, 3), 'serving');
    assert.equal(candidateArmOf({}, 3), 'serving');
    assert.equal(candidateArmOf({ a: 0, v: 2 }, 3), undefined, 'another candidate’s draw counts for none');
    let e = EMPTY_CANDIDATE_EVIDENCE;
    e = addCandidateEvidence(e, 'candidate', 0.5);
    e = addCandidateEvidence(e, 'candidate', 0.25);
    assert.deepEqual(e.candidate, { n: 2, sum: 0.75, sumSq: 0.3125 });
    assert.deepEqual([e.control, e.serving], [EMPTY_ARM, EMPTY_ARM]);
    // With the guard's offset: tested less it, the realised reward kept for the reported mean.
    let o = EMPTY_CANDIDATE_EVIDENCE;
    for (const [arm, r, z] of [['candidate', 0.5, 0.45], ['candidate', 0.3, 0.2], ['control', 0.6, 0.5], ['control', 0.7, 0.62], ['serving', 0.4, 0.4], ['serving', 0.5, 0.45]] as const) o = addCandidateEvidence(o, arm, r, z);
    assert.ok(Math.abs(o.candidate.sum - 0.15) < 1e-12 && Math.abs(o.control.sum - 0.18) < 1e-12);
    const v = candidateVerdict(o, { minPerArm: 2 });
    assert.ok(Math.abs(v.learned.mean - 0.4) < 1e-12 && Math.abs(v.control.mean - 0.65) < 1e-12, 'realised means');
    assert.ok(Math.abs(v.diff! - (0.075 - 0.09)) < 1e-12, 'the difference of the offset means');
  });

  it('refuses a candidate worse than the control arm, or than the rest, and says against which', () => {
    const worseThanDefault = candidateVerdict(evidence(draws(60, 0.4, 1), draws(40, 0.6, 2), draws(600, 0.6, 3)));
    assert.equal(worseThanDefault.status, 'worse');
    assert.equal(worseThanDefault.against, 'default');
    assert.ok(worseThanDefault.ci![1] < 0);
    // Better than the control, clearly worse than the serving version's decisions.
    const worseThanServing = candidateVerdict(evidence(draws(300, 0.55, 4), draws(150, 0.5, 5), draws(3000, 0.75, 6)));
    assert.equal(worseThanServing.status, 'worse');
    assert.equal(worseThanServing.against, 'serving');
    // Too few candidate outcomes (or reference outcomes): no verdict, however bad they look.
    assert.equal(candidateVerdict(evidence(draws(CANDIDATE_MIN_OUTCOMES - 1, 0.1, 7), draws(200, 0.6, 8), draws(2000, 0.6, 9))).status, 'insufficient');
    assert.equal(candidateVerdict(evidence(draws(100, 0.1, 7), draws(29, 0.6, 8), draws(29, 0.6, 9))).status, 'insufficient');
    // A very bad candidate is refused on its first few outcomes against the rest (the control arm still too small).
    const early = candidateVerdict(evidence(draws(CANDIDATE_MIN_OUTCOMES, 0.1, 13), draws(20, 0.6, 14), draws(100, 0.6, 15)));
    assert.deepEqual([early.status, early.against], ['worse', 'serving']);
    // A better candidate is not refused.
    assert.notEqual(candidateVerdict(evidence(draws(300, 0.7, 10), draws(150, 0.6, 11), draws(3000, 0.6, 12))).status, 'worse');
  });

  it('refuses an equal candidate at most about α of the time, looked at after every few outcomes (both tests at α/2)', () => {
    let refused = 0;
    const runs = 300;
    for (let s = 0; s < runs; s++) {
      // Checked as the tick does, after every 10 outcomes (the candidate arm 10 % of them), up to 2,000.
      const c = draws(200, 0.6, 3 * s + 100);
      const k = draws(100, 0.6, 3 * s + 101);
      const r = draws(1700, 0.6, 3 * s + 102);
      for (let t = 1; t <= 200; t++) {
        if (candidateVerdict(evidence(c.slice(0, t), k.slice(0, t >> 1), r.slice(0, (17 * t) >> 1))).status === 'worse') {
          refused++;
          break;
        }
      }
    }
    // Always-valid: looking often does not inflate it past α = 0.05 (15 of 300), even from 10 candidate outcomes.
    assert.ok(refused <= 15, `${refused} of ${runs} equal candidates refused`);
  });

  it('withCandidate says whether the share’s own draw chose the candidate', () => {
    const dec: Decision = { budgets: [5, 5], candidates: [[5, 5], [6, 4]], probs: [0.5, 0.5], chosen: 1, greedy: 0 };
    const drawn = withCandidate(dec, [6, 4], 0.1, () => 0.05);
    assert.deepEqual([drawn.chosen, drawn.drawn], [1, true]);
    // The policy's own choice landed on the candidate's split: chosen, but not drawn for it.
    const landed = withCandidate(dec, [6, 4], 0.1, () => 0.5);
    assert.deepEqual([landed.chosen, landed.drawn], [1, false]);
    const other = withCandidate(dec, [7, 3], 0.1, () => 0.5);
    assert.deepEqual([other.chosen, other.drawn, other.candidates.length], [1, false, 3]);
  });
});
