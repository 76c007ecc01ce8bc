import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { initialWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { runLoop } from '../../src/learner/sim/loop.js';
import { DEFAULT_MIN_STEPS, trainModel } from '../../src/learner/trainer.js';
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

  it('a small buffer still gets at least minSteps gradient steps (default DEFAULT_MIN_STEPS), and fits better for it', async () => {
    const { tf } = await loadTf();
    // 600 rows of a two-agent toy: reward = (1 − e^{−b0/800}) · (1 − 0.5·e^{−b1/300}).
    const rng = mulberry32(5);
    const N = 600;
    const x = new Float32Array(N * 2);
    const b = new Float32Array(N * 2);
    const r = new Float32Array(N);
    for (let i = 0; i < N; i++) {
      x[i * 2] = 1;
      x[i * 2 + 1] = rng() * 2 - 1;
      b[i * 2] = rng() * 3000;
      b[i * 2 + 1] = rng() * 3000;
      r[i] = (1 - Math.exp(-b[i * 2]! / 800)) * (1 - 0.5 * Math.exp(-b[i * 2 + 1]! / 300)) + (rng() - 0.5) * 0.05;
    }
    const data = { rows: N, x, b, r, w: new Float32Array(N).fill(1) };
    const init = initialWeights(2, 2, 3000, mulberry32(1));
    const few = await trainModel(tf, data, init, { minSteps: 0, yieldToEventLoop: false });
    const dflt = await trainModel(tf, data, init, { yieldToEventLoop: false });
    // 540 training rows at batch 256: 2 steps per epoch, 4 epochs.
    assert.equal(few.metrics.steps, 8);
    assert.equal(DEFAULT_MIN_STEPS, 100);
    assert.equal(dflt.metrics.steps, DEFAULT_MIN_STEPS);
    assert.ok(dflt.metrics.holdoutMse < few.metrics.holdoutMse, `holdout MSE ${dflt.metrics.holdoutMse} with ${DEFAULT_MIN_STEPS} steps vs ${few.metrics.holdoutMse} with 8`);
  });
});
