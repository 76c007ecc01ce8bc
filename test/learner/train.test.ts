import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { runLoop } from '../../src/learner/sim/loop.js';
import { loadWorld } from '../../src/learner/sim/world.js';

describe('training on a simulated world (tfjs, seeded)', () => {
  it('loads a TensorFlow.js backend (wasm here; tfjs-node when installed)', async () => {
    const { backend } = await loadTf();
    assert.ok(['wasm', 'tensorflow', 'cpu'].includes(backend), backend);
  });

  it('declared without mean/std, through safe start and gate: ≥ 93 % of the oracle (greedy) and served ≥ 5 points above uniform within 4,000 outcomes on support-basic', async () => {
    const { tf } = await loadTf();
    const world = loadWorld('support-basic');
    const res = await runLoop(tf, {
      world,
      outcomes: 4000,
      seed: 3,
      explore: { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5 },
      checkpointEvery: 2000,
      evalContexts: 300,
    });
    const first = res.checkpoints[0]!;
    const last = res.checkpoints.at(-1)!;
    assert.ok(first.learned / first.oracle < 0.9, 'the safe start serves the default strategy (uniform)');
    assert.equal(first.version, 0);
    assert.ok(res.versions.some((v) => v.gate?.pass), 'a version cleared the gate');
    assert.ok(last.learned / last.oracle >= 0.93, `learned/oracle = ${(last.learned / last.oracle).toFixed(3)}`);
    assert.ok((last.learned - last.uniform) / last.oracle >= 0.1, `learned ${last.learned} vs uniform ${last.uniform}`);
    assert.ok((last.served - last.uniform) / last.oracle >= 0.05, `served (exploring) ${last.served} vs uniform ${last.uniform}`);
  });
});
