import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { namedWorld } from '../../src/learner/sim/family.js';
import { runLoop } from '../../src/learner/sim/loop.js';
import { loadWorld } from '../../src/learner/sim/world.js';
import { DEFAULT_GATE } from '../../src/learner/gate.js';
import { EXPLORE_DEFAULTS } from '../../src/learner/policy.js';

/**
 * A retrain cadence under the gate's minimum of decisions (trainEvery 100 < minEvents 200): the service's
 * gateCandidate answers "awaits the gate" (no verdict, no look used, nothing trained over the candidate), so the
 * in-process loop must too, or a bench run with such a cadence measures a learner that refuses every version for
 * too few decisions and never serves one. No Redis: the loop is pure.
 */
describe('the in-process loop with retrains more frequent than the gate can judge', () => {
  it('keeps the candidate waiting until it has the gate\u2019s minimum of decisions, then judges it on them', async () => {
    const { tf } = await loadTf();
    const world = namedWorld(loadWorld('support-basic'));
    const res = await runLoop(tf, {
      world,
      explore: { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, ...EXPLORE_DEFAULTS },
      outcomes: 1000,
      seed: 3,
      evalContexts: 0,
      checkpointEvery: 1000,
      trainEvery: 100,
      driftRecovery: null,
      train: { epochs: 1, minSteps: 10 },
    });
    const min = DEFAULT_GATE.minEvents;
    // Trained at 100; waits at 200 (100 decisions); judged at 300 on 200, and the next one trained then: every 200.
    assert.deepEqual(res.versions.map((v) => v.at), [100, 300, 500, 700, 900], JSON.stringify(res.versions.map((v) => ({ at: v.at, gate: v.gate?.reason }))));
    const judged = res.versions.filter((v) => v.gate !== undefined);
    assert.ok(judged.length >= 4, `versions judged: ${judged.length}`);
    for (const v of judged) {
      assert.ok(v.gate!.events >= min, `version ${v.version} judged on ${v.gate!.events} decisions: ${v.gate!.reason}`);
      assert.doesNotMatch(v.gate!.reason, /^only \d+ decisions/);
    }
  });
});
