import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { deserializeWeights, forward, greedySplit, initialWeights, predict, predictCost, rescaleInputs, serializeWeights, type ModelWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { predictWithTrainingGraph, trainModel } from '../../src/learner/trainer.js';

/** 1,200 rows of a two-agent toy whose quality level depends on the context, whatever the split: q = s(x)·(1 − e^{−b0/800})·(1 − 0.6·e^{−b1/300}), s = 0.55 when x1 = 1, else 1. */
function scaledToy(seed: number) {
  const rng = mulberry32(seed);
  const N = 1200;
  const x = new Float32Array(N * 2);
  const b = new Float32Array(N * 2);
  const r = new Float32Array(N);
  for (let i = 0; i < N; i++) {
    const hard = rng() < 0.5 ? 1 : 0;
    x[i * 2] = 1;
    x[i * 2 + 1] = hard;
    b[i * 2] = rng() * 3000;
    b[i * 2 + 1] = rng() * 3000;
    r[i] = (hard ? 0.55 : 1) * (1 - Math.exp(-b[i * 2]! / 800)) * (1 - 0.6 * Math.exp(-b[i * 2 + 1]! / 300)) + (rng() - 0.5) * 0.04;
  }
  return { rows: N, x, b, r, w: new Float32Array(N).fill(1) };
}

const randomGlobal = (w: ModelWeights, seed: number): ModelWeights => {
  const rng = mulberry32(seed);
  return { ...w, glob: { gh: Float32Array.from({ length: w.hidden }, () => rng() - 0.5), gx: Float32Array.from({ length: w.inputDim }, () => rng() - 0.5), g0: Math.fround(0.3) } };
};

describe('the reward model\'s global factor g(x)', () => {
  it('starts at g = 1: new weights with the head predict exactly what the same weights without it predict', () => {
    const plain = initialWeights(5, 3, 3000, mulberry32(2));
    const withHead = initialWeights(5, 3, 3000, mulberry32(2), undefined, true);
    assert.ok(withHead.glob && !plain.glob);
    const x = Float32Array.from([1, 0.3, -1, 0, 2]);
    const h = forward(withHead, x);
    assert.equal(h.scale, 1);
    for (const b of [[100, 200, 300], [2000, 10, 990]]) assert.equal(predict(h, b), predict(forward(plain, x), b));
  });

  it('scales r̂ and leaves the greedy split unchanged (no cost part)', () => {
    const w = randomGlobal(initialWeights(4, 4, 4000, mulberry32(3)), 9);
    const { glob: _g, ...plain } = w;
    for (let k = 0; k < 20; k++) {
      const rng = mulberry32(100 + k);
      const x = Float32Array.from([1, rng() * 2 - 1, rng() * 2 - 1, rng() < 0.5 ? 1 : 0]);
      const hg = forward(w, x);
      const hp = forward(plain, x);
      assert.ok(hg.scale !== undefined && hg.scale !== 1);
      const b = [rng() * 1000, rng() * 1000, rng() * 1000, rng() * 1000];
      assert.ok(Math.abs(predict(hg, b) - hg.scale! * predict(hp, b)) < 1e-12);
      const mins = [50, 50, 50, 50];
      const caps = [1e6, 1e6, 3000, 1e6];
      assert.deepEqual(greedySplit(hg, mins, caps, 4000), greedySplit(hp, mins, caps, 4000));
    }
  });

  it('with a cost part: r̂ = g·Π c_i − cost, and the greedy split trades cost against g·Π c_i', () => {
    // g = e^−1.5 ≈ 0.22: quality is worth less here, so the expensive agent 0 should get fewer tokens.
    const w0 = initialWeights(3, 3, 3000, mulberry32(12));
    const base = { ...w0, glob: { gh: new Float32Array(w0.hidden), gx: new Float32Array(3), g0: -1.5 } };
    const n = 3;
    const cost = { lp: Float64Array.from([2e-4, 0, 5e-5]), m0: Float64Array.from([7, 7, 6.5]), mx: new Float64Array(n * 3), mh: new Float64Array(n * base.hidden), sigma: Float64Array.from([0.5, 0.5, 0.5]) };
    const w = { ...base, cost };
    const { glob: _g, cost: _c, ...plain } = w;
    const x = Float32Array.from([1, 0.4, -0.7]);
    const h = forward(w, x);
    const b = [900, 1200, 900];
    assert.ok(Math.abs(predict(h, b) - (h.scale! * predict(forward(plain, x), b) - predictCost(h, b))) < 1e-12);
    // The split maximises the model's own r̂ (g included) at least as well as the split that ignores g.
    const mins = [50, 50, 50];
    const caps = [1e6, 1e6, 1e6];
    const withG = greedySplit(h, mins, caps, 3000);
    const { scale: _s, ...noG } = h;
    const ignoringG = greedySplit(noG, mins, caps, 3000);
    assert.ok(withG[0]! < ignoringG[0]! - 100, `agent 0: ${withG[0]} with g vs ${ignoringG[0]} ignoring it`);
    assert.ok(predict(h, withG) > predict(h, ignoringG) + 0.01, `${predict(h, withG)} vs ${predict(h, ignoringG)}`);
  });

  it('serialises with the head and loads versions without one as before (backward compatible)', () => {
    const plain = initialWeights(6, 3, 3000, mulberry32(4));
    const s = serializeWeights(plain);
    assert.equal('g' in s, false, 'a version without the head is stored as before');
    const back = deserializeWeights(s);
    assert.equal(back.glob, undefined);
    const x = Float32Array.from([1, 0, 1, 0.5, -0.2, 3]);
    assert.equal(predict(forward(back, x), [500, 900, 1600]), predict(forward(plain, x), [500, 900, 1600]));
    const withHead = randomGlobal(plain, 5);
    const round = deserializeWeights(serializeWeights(withHead));
    assert.deepEqual(round.glob, withHead.glob);
    assert.equal(predict(forward(round, x), [500, 900, 1600]), predict(forward(withHead, x), [500, 900, 1600]));
    assert.throws(() => deserializeWeights({ ...serializeWeights(withHead), g: Buffer.from(new Float32Array(3).buffer).toString('base64') }), /model weights g/);
  });

  it('rescaling the inputs carries the head\'s input weights like the other rows', () => {
    const w = randomGlobal(initialWeights(3, 2, 2000, mulberry32(6)), 7);
    const from = [{ at: 1, center: 5, scale: 2 }];
    const to = [{ at: 1, center: 3, scale: 4 }];
    const r = rescaleInputs(w, from, to);
    // Raw value v encodes as (v − center)/scale; both versions must predict the same for the same raw value.
    for (const v of [0, 3, 11]) {
      const xo = Float32Array.from([1, (v - 5) / 2, 0]);
      const xn = Float32Array.from([1, (v - 3) / 4, 0]);
      assert.ok(Math.abs(forward(w, xo).scale! - forward(r, xn).scale!) < 1e-5);
    }
  });

  it('is fitted on a toy world whose quality level a feature scales, and serving and training predict the same', async () => {
    const { tf } = await loadTf();
    const data = scaledToy(11);
    const opts = { yieldToEventLoop: false, minSteps: 300 } as const;
    const withHead = await trainModel(tf, data, initialWeights(2, 2, 3000, mulberry32(1), undefined, true), opts);
    const without = await trainModel(tf, data, initialWeights(2, 2, 3000, mulberry32(1)), opts);
    const g = withHead.weights.glob!;
    assert.ok(g, 'the trained version keeps its head');
    const easy = forward(withHead.weights, Float32Array.from([1, 0]));
    const hard = forward(withHead.weights, Float32Array.from([1, 1]));
    // The level of the hard context relative to the easy one, at a split where both agents are saturated: 0.55 in truth.
    const ratio = predict(hard, [3000, 3000]) / predict(easy, [3000, 3000]);
    assert.ok(Math.abs(ratio - 0.55) < 0.06, `hard ÷ easy at a saturated split ${ratio.toFixed(3)}`);
    assert.ok(hard.scale! / easy.scale! < 0.8, `g(hard) ÷ g(easy) = ${(hard.scale! / easy.scale!).toFixed(3)}: the level is in g, not only in the agents' heads`);
    assert.ok(withHead.metrics.holdoutMse < without.metrics.holdoutMse, `held-out MSE with the head ${withHead.metrics.holdoutMse} vs without ${without.metrics.holdoutMse}`);
    assert.ok(withHead.metrics.holdoutMse < 0.002, `held-out MSE ${withHead.metrics.holdoutMse} (noise variance 0.00013)`);
    // The training graph and the serving path on the same rows.
    const tfq = predictWithTrainingGraph(tf, withHead.weights, 50, data.x.subarray(0, 100), data.b.subarray(0, 100));
    for (let i = 0; i < 50; i++) {
      const q = predict(forward(withHead.weights, data.x.subarray(i * 2, i * 2 + 2)), data.b.subarray(i * 2, i * 2 + 2));
      assert.ok(Math.abs(q - tfq[i]!) < 1e-5, `row ${i}: serving ${q} vs training ${tfq[i]}`);
    }
  });
});
