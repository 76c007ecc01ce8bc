import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { gammaln } from 'simple-statistics';
import { mulberry32 } from '../../src/learner/rng.js';
import { SRM_CONCENTRATION, SRM_SEQUENTIAL_ALPHA, srmSequential } from '../../src/stats/srm.js';

const logChoose = (n: number, k: number) => gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1);

describe('sequential SRM test (Lindon & Malek, pure)', () => {
  it('matches the closed form on small counts', () => {
    // BF([1, 0]) = 1 for any prior: one observation carries no evidence against 50/50.
    assert.ok(Math.abs(srmSequential([1, 0], [1, 1], 0.05, 30)!.logBayesFactor) < 1e-9);
    // BF([2, 0]) with Dirichlet(K/2, K/2) = 4 · (K/2)(K/2 + 1) / (K(K + 1)) = (K + 2)/(K + 1).
    for (const k of [1, 10, 30, 1000]) {
      assert.ok(Math.abs(srmSequential([2, 0], [1, 1], 0.05, k)!.logBayesFactor - Math.log((k + 2) / (k + 1))) < 1e-9, `K = ${k}`);
    }
    assert.equal(srmSequential([0, 0], [1, 1]), null);
    assert.equal(srmSequential([5, 5, 1], [1, 1, 0])!.mismatch, true, 'traffic where none may go');
    assert.equal(srmSequential([5, 5], [1, 1])!.alpha, SRM_SEQUENTIAL_ALPHA);
  });

  it('stays finite for a variant whose weight is a tiny share of the others (its prior mass underflowed ln Γ), and flags traffic that lands there', () => {
    const k = SRM_CONCENTRATION;
    for (const tiny of [1e-20, 1e-100, 1e-300, 5e-324]) {
      const none = srmSequential([1000, 0], [1, tiny])!;
      assert.ok(Number.isFinite(none.logBayesFactor) && !none.mismatch, `no outcome in the tiny arm (weight ${tiny}): ${none.logBayesFactor}`);
      const one = srmSequential([1000, 1], [1, tiny])!;
      // One outcome: ln K − ln(K + 1000) under the Dirichlet prior (it puts mass Kθ on the arm), no flag.
      assert.ok(Math.abs(one.logBayesFactor - (Math.log(k) - Math.log(k + 1000))) < 1e-6, `one outcome (weight ${tiny}): ${one.logBayesFactor}`);
      // Two: about ln K − ln θ − ln((K + 1000)(K + 1001)), overwhelming evidence.
      const two = srmSequential([1000, 2], [1, tiny])!;
      const theta = tiny / (1 + tiny);
      const expected = Math.log(k) - Math.log(theta) - Math.log((k + 1000) * (k + 1001));
      assert.ok(Math.abs(two.logBayesFactor - expected) < 1e-6 * expected, `two outcomes (weight ${tiny}): ${two.logBayesFactor} vs ${expected}`);
      assert.equal(two.mismatch, true);
      assert.equal(srmSequential([1_000_000_000, 1000], [1, tiny])!.mismatch, true, `1,000 outcomes where a share ${tiny} should go`);
    }
  });

  it('is a martingale under correct assignment: E[BF_n] = 1 exactly, for any weights and n', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 60 }), fc.double({ min: 0.05, max: 0.95, noNaN: true }), fc.constantFrom(1, 10, SRM_CONCENTRATION, 300), (n, theta, k) => {
        let e = 0;
        for (let x = 0; x <= n; x++) {
          const logP = logChoose(n, x) + x * Math.log(theta) + (n - x) * Math.log(1 - theta);
          e += Math.exp(logP + srmSequential([x, n - x], [theta, 1 - theta], 0.05, k)!.logBayesFactor);
        }
        assert.ok(Math.abs(e - 1) < 1e-8, `E[BF] = ${e} at n = ${n}, θ = ${theta}, K = ${k}`);
      }),
      { seed: 20, numRuns: 60 },
    );
  });

  it('looked at after every outcome, flags at most α of correct experiments; flags a 60/40 imbalance', () => {
    const alpha = 0.05;
    const runs = 400;
    const n = 1500;
    const u = mulberry32(7);
    let falseFlags = 0;
    let detected = 0;
    for (let r = 0; r < runs; r++) {
      const ok = [0, 0, 0];
      const bad = [0, 0, 0];
      let flagged = false;
      let found = false;
      for (let i = 0; i < n && !(flagged && found); i++) {
        const x = u();
        ok[x < 0.2 ? 0 : x < 0.6 ? 1 : 2]!++;
        bad[x < 0.6 ? 0 : x < 0.8 ? 1 : 2]!++;
        if (!flagged && srmSequential(ok, [1, 2, 2], alpha)!.mismatch) flagged = true;
        if (!found && srmSequential(bad, [1, 1, 1], alpha)!.mismatch) found = true;
      }
      if (flagged) falseFlags++;
      if (found) detected++;
    }
    assert.ok(falseFlags / runs <= alpha, `false flags ${falseFlags}/${runs}`);
    assert.equal(detected, runs, 'a 60/20/20 split against 1:1:1 is always found within 1,500 outcomes');
  });
});
