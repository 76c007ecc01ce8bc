import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { accumulate, addEvidence, EMPTY_ARM, EMPTY_EVIDENCE, GUARD_DEFAULTS, guardVerdict, judge, NEW_RUN, revertTarget, subSegmentAlpha, type ArmSums, type GuardRun } from '../../src/learner/guard.js';
import { mulberry32, normal } from '../../src/learner/rng.js';

const arm = (rewards: readonly number[]): ArmSums => rewards.reduce((a, r) => ({ n: a.n + 1, sum: a.sum + r, sumSq: a.sumSq + r * r }), EMPTY_ARM);

/** Rewards around `mean` (sd 0.1, clipped to [0, 1]) from a seed. */
function draws(n: number, mean: number, seed: number): number[] {
  const rng = mulberry32(seed);
  return Array.from({ length: n }, () => Math.min(1, Math.max(0, mean + 0.1 * normal(rng))));
}

describe('guard verdict (always-valid test of learned − control)', () => {
  it('is worse only when the whole interval is below −margin, and never with too few outcomes per arm', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e6 }), fc.double({ min: -0.3, max: 0.3, noNaN: true }), fc.integer({ min: 2, max: 400 }), (seed, gap, n) => {
        const v = guardVerdict(arm(draws(n * 10, 0.6 + gap, seed)), arm(draws(n, 0.6, seed + 1)));
        if (n < GUARD_DEFAULTS.minPerArm) assert.equal(v.status, 'insufficient');
        else if (v.status === 'worse') assert.ok(v.ci![1] < 0);
        else assert.ok(v.ci![1] >= 0);
        assert.ok(v.ci![0] <= v.diff! && v.diff! <= v.ci![1]);
      }),
      { numRuns: 200 },
    );
  });

  it('finds a clearly worse learned arm, and not an equal or better one', () => {
    assert.equal(guardVerdict(arm(draws(2000, 0.5, 1)), arm(draws(200, 0.7, 2))).status, 'worse');
    assert.equal(guardVerdict(arm(draws(2000, 0.7, 3)), arm(draws(200, 0.7, 4))).status, 'ok');
    assert.equal(guardVerdict(arm(draws(2000, 0.8, 5)), arm(draws(200, 0.7, 6))).status, 'ok');
    assert.equal(guardVerdict(arm(draws(2000, 0.5, 1)), arm(draws(200, 0.7, 2)), { margin: 0.5 }).status, 'ok', 'a margin tolerates a small shortfall');
  });

  it('false reverts stay below α when the arms are equal and the guard looks after every 20 decisions', () => {
    const runs = 200;
    let reverted = 0;
    for (let r = 0; r < runs; r++) {
      const rng = mulberry32(100 + r);
      let run: GuardRun = NEW_RUN;
      for (let t = 0; t < 6000; t++) {
        const a: 0 | 1 = rng() < 0.05 ? 1 : 0;
        run = accumulate(run, 1, a, Math.min(1, Math.max(0, 0.7 + 0.15 * normal(rng))));
        if ((t + 1) % 20 === 0 && judge(run).status === 'worse') {
          reverted++;
          break;
        }
      }
    }
    assert.ok(reverted / runs <= GUARD_DEFAULTS.alpha, `${reverted} of ${runs} runs reverted`);
  });

  it('sub-segment levels sum to α/2 (the cumulative test has the other half), and a sub-segment restarts after segmentOutcomes decisions', () => {
    let s = 0;
    for (let j = 1; j <= 100_000; j++) s += subSegmentAlpha(0.05, j);
    assert.ok(Math.abs(s - 0.025) < 1e-5);
    let run: GuardRun = NEW_RUN;
    for (let i = 0; i < 250; i++) run = accumulate(run, 3, i % 5 === 0 ? 1 : 0, 0.5, 100);
    assert.equal(run.j, 3);
    assert.equal(run.evidence.learned.n + run.evidence.control.n, 50);
    assert.equal(run.evidence.byVersion[3]!.control.n, 10);
    assert.equal(run.total.learned.n + run.total.control.n, 250, 'the cumulative evidence keeps everything');
  });

  it('a small persistent shortfall is found by the cumulative test after the sub-segments alone missed it', () => {
    const rng = mulberry32(9);
    let run: GuardRun = NEW_RUN;
    let at = 0;
    for (let t = 0; t < 200_000 && !at; t++) {
      const a: 0 | 1 = rng() < 0.05 ? 1 : 0;
      run = accumulate(run, 1, a, Math.min(1, Math.max(0, (a ? 0.7 : 0.66) + 0.15 * normal(rng))));
      if ((t + 1) % 500 === 0 && judge(run).status === 'worse') at = t + 1;
    }
    assert.ok(at > 0, 'found');
    assert.ok(run.j > 1, `found after ${at} decisions, in sub-segment ${run.j}`);
  });
});

describe('revert target', () => {
  const served = (version: number, extra: Record<string, unknown> = {}) => ({ version, activatedAt: version * 1000, ...extra });

  it('steps back to the newest earlier version that served, was not reverted and did not do worse itself', () => {
    const versions = [served(5), served(4), served(3, { reverted: { from: 3 } }), served(2), { version: 1 }];
    assert.equal(revertTarget(versions, 5, EMPTY_EVIDENCE, false), 4, 'no evidence on 4 in this segment');
    let ev = EMPTY_EVIDENCE;
    for (let i = 0; i < 40; i++) ev = addEvidence(ev, 4, i % 2 === 0 ? 1 : 0, i % 2 === 0 ? 0.8 : 0.3);
    assert.equal(revertTarget(versions, 5, ev, false), 2, '4 did worse than control, 3 was reverted');
    assert.equal(revertTarget(versions, 2, EMPTY_EVIDENCE, false), 0, 'version 1 never served: the control strategy');
    assert.equal(revertTarget(versions, 5, EMPTY_EVIDENCE, true), 0, 'a second revert in a segment goes to the control strategy');
  });
});
