import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { accumulate, adaptiveControlShare, addEvidence, CONTROL_SHARE_DEFAULTS, addReward, backoffUnit, candidateAfter, EMPTY_ARM, EMPTY_EVIDENCE, GUARD_DEFAULTS, guardVerdict, judge, NEW_RUN, realisedMean, revertTarget, subSegmentAlpha, type ArmSums, type GuardRun } from '../../src/learner/guard.js';
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

describe('guard offset (the serving version\'s predicted reward of the control split, ControlMeta z)', () => {
  it('tests each reward less its offset and reports the realised means; without offsets the sums are as before', () => {
    let a = EMPTY_ARM;
    a = addReward(a, 0.7, 0.6);
    a = addReward(a, 0.4, 0.5);
    assert.ok(Math.abs(a.sum - 0) < 1e-12 && Math.abs(a.sumSq - 0.02) < 1e-12 && a.n === 2);
    assert.ok(Math.abs(realisedMean(a) - 0.55) < 1e-12);
    // An event without an offset after one with: its reward is tested as is, the realised sum still kept.
    a = addReward(a, 0.3);
    assert.ok(Math.abs(a.sum - 0.3) < 1e-12 && Math.abs(realisedMean(a) - 1.4 / 3) < 1e-12);
    assert.deepEqual(addReward(addReward(EMPTY_ARM, 0.5), 0.25), { n: 2, sum: 0.75, sumSq: 0.3125 }, 'no `raw` field without offsets');
    const v = guardVerdict(
      [0.5, 0.55, 0.45].reduce((x, r, i) => addReward(x, r, [0.45, 0.5, 0.42][i]), EMPTY_ARM),
      [0.8, 0.7, 0.75].reduce((x, r, i) => addReward(x, r, [0.78, 0.66, 0.7][i]), EMPTY_ARM),
      { minPerArm: 2 },
    );
    assert.ok(Math.abs(v.learned.mean - 0.5) < 1e-12 && Math.abs(v.control.mean - 0.75) < 1e-12, 'the realised means');
    assert.ok(Math.abs(v.diff! - ((0.05 + 0.05 + 0.03) / 3 - (0.02 + 0.04 + 0.05) / 3)) < 1e-12, 'the difference of the offset means');
  });

  /**
   * A world whose reward level varies a lot between requests (uniform in [0.2, 0.9]) around which the arms differ
   * by `gap`, noise sd 0.05; the offset predicts the level with error sd 0.03 and does not depend on the arm.
   * Returns the decision at which each guard (realised, offset) first says worse, looking every 50 decisions.
   */
  function race(gap: number, seed: number, outcomes: number): { raw?: number; offset?: number } {
    const rng = mulberry32(seed);
    let raw: GuardRun = NEW_RUN;
    let off: GuardRun = NEW_RUN;
    const out: { raw?: number; offset?: number } = {};
    for (let t = 0; t < outcomes && (out.raw === undefined || out.offset === undefined); t++) {
      const level = 0.2 + 0.7 * rng();
      const z = level + 0.03 * normal(rng);
      const a: 0 | 1 = rng() < 0.05 ? 1 : 0;
      const r = level + (a === 1 ? 0 : gap) + 0.05 * normal(rng);
      raw = accumulate(raw, 1, a, r);
      off = accumulate(off, 1, a, r, GUARD_DEFAULTS.segmentOutcomes, z);
      if ((t + 1) % 50 === 0) {
        if (out.raw === undefined && judge(raw).status === 'worse') out.raw = t + 1;
        if (out.offset === undefined && judge(off).status === 'worse') out.offset = t + 1;
      }
    }
    return out;
  }

  it('finds a shortfall several times sooner than the realised rewards when the offset predicts the request\'s level', () => {
    const raw: number[] = [];
    const offset: number[] = [];
    for (let k = 0; k < 20; k++) {
      const r = race(-0.04, 300 + k, 60_000);
      assert.ok(r.offset !== undefined, `run ${k}: the offset guard found the shortfall`);
      offset.push(r.offset);
      raw.push(r.raw ?? 60_000);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    assert.ok(median(offset) * 3 <= median(raw), `median detection: offset ${median(offset)}, realised ${median(raw)}`);
  });

  it('keeps false reverts below α with the offset when the arms are equal', () => {
    const runs = 200;
    let reverted = 0;
    for (let k = 0; k < runs; k++) if (race(0, 900 + k, 6000).offset !== undefined) reverted++;
    assert.ok(reverted / runs <= GUARD_DEFAULTS.alpha, `${reverted} of ${runs} runs reverted`);
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

describe('backoff after refused candidates', () => {
  it('counts in the interval retrains really run at: trainEvery, or the outcomes between the last two retrains when fewer', () => {
    // Retrains by count: the unit is trainEvery.
    assert.equal(backoffUnit(250, 0), 250);
    assert.equal(backoffUnit(250, 400), 250);
    // Retrains by time or on request with a large trainEvery: the observed gap, so one refusal waits two retrains,
    // not 2,000,000 outcomes.
    assert.equal(backoffUnit(1_000_000, 500), 500);
    assert.equal(candidateAfter(3_000, 1, backoffUnit(1_000_000, 500)), 4_000);
    assert.equal(candidateAfter(3_000, 9, backoffUnit(1_000_000, 500)), 3_000 + 500 * 32);
  });
});

/** Segment evidence: n learned and m control rewards around the means (sd 0.1). */
const evidence = (n: number, learned: number, m: number, control: number, seed: number) => {
  let e = EMPTY_EVIDENCE;
  for (const r of draws(n, learned, seed)) e = addEvidence(e, 1, 0, r);
  for (const r of draws(m, control, seed + 1)) e = addEvidence(e, 1, 1, r);
  return e;
};

describe('the control share while the learned arm leads (adaptiveControlShare)', () => {


  it('keeps the full share without enough outcomes, while the lead is within the margin, and when it is off (no probation)', () => {
    const off = { max: 0 };
    assert.equal(adaptiveControlShare(0.05, evidence(500, 0.9, 20, 0.2, 1), off), 0.05, 'fewer than 30 control outcomes');
    assert.equal(adaptiveControlShare(0.05, evidence(2000, 0.62, 200, 0.6, 2), off), 0.05, 'a lead of 0.02 < margin 0.05');
    assert.equal(adaptiveControlShare(0.05, evidence(2000, 0.62, 200, 0.6, 2)), 0.05, 'a lead of 0.02, shown: no probation either');
    assert.equal(adaptiveControlShare(0.05, evidence(2000, 0.4, 200, 0.6, 3), off), 0.05, 'learned behind');
    assert.equal(adaptiveControlShare(0.05, evidence(2000, 0.9, 200, 0.2, 4), { min: 0.05 }), 0.05, 'min = base: fixed');
    assert.equal(adaptiveControlShare(0, evidence(2000, 0.9, 200, 0.2, 4)), 0, 'no control arm');
    assert.equal(adaptiveControlShare(0, evidence(500, 0.4, 20, 0.6, 4), { max: 0.2 }), 0, 'no control arm: no probation either');
  });

  it('lowers the share to base · margin / lead on levels base · 2^(−k/2), rounded up, not below min', () => {
    const e = evidence(4000, 0.9, 400, 0.2, 5); // lead ≈ 0.7, its lower bound ≈ 0.69
    const share = adaptiveControlShare(0.05, e, { min: 0.001 });
    const raw = (0.05 * 0.05) / 0.69;
    assert.ok(share >= raw * 0.97 && share <= raw * Math.SQRT2 * 1.03, `share ${share} against base · margin / lead ${raw}`);
    const k = 2 * Math.log2(0.05 / share);
    assert.ok(Math.abs(k - Math.round(k)) < 1e-9, `${share} is a level`);
    assert.equal(adaptiveControlShare(0.05, e), 0.01, 'the default floor');
    assert.equal(adaptiveControlShare(0.05, e, { min: 0.02 }), 0.02);
    // A larger lead never gives a larger share; a larger margin never a smaller one.
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e6 }), fc.double({ min: 0, max: 0.6, noNaN: true }), fc.double({ min: 0, max: 0.2, noNaN: true }), (seed, lead, more) => {
        const a = adaptiveControlShare(0.05, evidence(1500, 0.3 + lead, 150, 0.3, seed), { min: 0.001 });
        const b = adaptiveControlShare(0.05, evidence(1500, 0.3 + lead + more, 150, 0.3, seed), { min: 0.001 });
        assert.ok(b <= a + 1e-12, `lead ${lead} → ${a}, lead ${lead + more} → ${b}`);
        assert.ok(adaptiveControlShare(0.05, evidence(1500, 0.3 + lead, 150, 0.3, seed), { min: 0.001, margin: 0.1 }) >= a - 1e-12);
      }),
      { numRuns: 100 },
    );
  });
});

describe('probation: the raised control share until the serving version has shown it is not worse (adaptiveControlShare)', () => {

  it('raises the share to probationShare before either arm has 30 outcomes and while the lower bound is at or below −margin', () => {
    assert.equal(CONTROL_SHARE_DEFAULTS.max, 0.2);
    assert.equal(CONTROL_SHARE_DEFAULTS.probation, 0.02);
    assert.equal(adaptiveControlShare(0.05, EMPTY_EVIDENCE), 0.2, 'a new segment starts on probation');
    assert.equal(adaptiveControlShare(0.05, evidence(500, 0.9, 20, 0.2, 1)), 0.2, 'fewer than 30 control outcomes');
    assert.equal(adaptiveControlShare(0.05, evidence(2000, 0.4, 200, 0.6, 3)), 0.2, 'learned behind');
    // Equal arms: on probation while the interval still allows a shortfall of 0.02, off once it does not.
    assert.equal(adaptiveControlShare(0.05, evidence(100, 0.6, 30, 0.6, 6)), 0.2, 'equal, 30 control outcomes: 2 SE ≈ 0.04');
    assert.equal(adaptiveControlShare(0.05, evidence(4000, 0.6, 800, 0.6, 6)), 0.05, 'equal, 800 control outcomes: 2 SE ≈ 0.008');
    assert.equal(adaptiveControlShare(0.05, evidence(2000, 0.4, 200, 0.6, 3), { max: 0.1 }), 0.1, 'its own share');
    assert.equal(adaptiveControlShare(0.05, evidence(2000, 0.4, 200, 0.6, 3), { max: 0.05 }), 0.05, 'max ≤ base: off');
    assert.equal(adaptiveControlShare(0.05, evidence(2000, 0.4, 200, 0.6, 3), { probation: 0.5 }), 0.05, 'a margin that tolerates the shortfall: off probation');
    assert.equal(adaptiveControlShare(0.3, evidence(2000, 0.4, 200, 0.6, 3)), 0.3, 'a base above the probation share stays');
  });

  it('is exactly the rule: raised iff the lower bound (mean difference − 2 SE) is at or below −margin, and never lower than without probation', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e6 }), fc.double({ min: -0.2, max: 0.2, noNaN: true }), fc.integer({ min: 30, max: 600 }), (seed, gap, m) => {
        const e = evidence(m * 10, 0.6 + gap, m, 0.6, seed);
        const share = adaptiveControlShare(0.05, e);
        const l = e.learned;
        const c = e.control;
        const mean = (a: typeof l) => a.sum / a.n;
        const variance = (a: typeof l) => (a.sumSq - a.n * mean(a) ** 2) / (a.n - 1);
        const lower = mean(l) - mean(c) - 2 * Math.sqrt(variance(l) / l.n + variance(c) / c.n);
        if (Math.abs(lower + 0.02) > 1e-9) assert.equal(share === 0.2, lower <= -0.02, `lower ${lower} → ${share}`);
        assert.ok(share >= adaptiveControlShare(0.05, e, { max: 0 }));
      }),
      { numRuns: 200 },
    );
  });
});
