import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { buildTrainingData, type LoggedEvent } from '../../src/learner/events.js';
import { compileFeatures } from '../../src/learner/features.js';
import { forward, initialWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { trainModel } from '../../src/learner/trainer.js';

const ev = (i: number, p?: { P: number[]; k: number }): LoggedEvent => ({ id: String(i), t: i, s: 'learned', f: { n: i }, T: 1000, b: { a: 500, b: 500 }, q: 0.5, c: null, ...(p ? { C: p.P.map(() => [500, 500]), P: p.P, k: p.k } : {}) });

describe('training options of the bench (off in the service)', () => {
  it('importance weights: each row × min(cap, p^−power) of its served action; rows without a logged distribution unchanged', () => {
    const enc = compileFeatures([{ name: 'n', type: 'numeric' }]);
    const events = [ev(0, { P: [0.5, 0.5], k: 0 }), ev(1, { P: [0.99, 0.01], k: 1 }), ev(2), ev(3, { P: [0.25, 0.75], k: 0 })];
    const plain = buildTrainingData(events, enc, ['a', 'b'], { costWeight: 0, halfLife: 1e12 });
    const imp = buildTrainingData(events, enc, ['a', 'b'], { costWeight: 0, halfLife: 1e12, importance: { cap: 10, power: 1 } });
    const ratios = Array.from(imp.w).map((w, i) => w / plain.w[i]!);
    assert.deepEqual(ratios.map((r) => Math.round(r * 1e6) / 1e6), [2, 10, 1, 4]);
    const sqrt = buildTrainingData(events, enc, ['a', 'b'], { costWeight: 0, halfLife: 1e12, importance: { cap: 100, power: 0.5 } });
    assert.ok(Math.abs(sqrt.w[1]! / plain.w[1]! - 10) < 1e-6);
  });

  it('weightPenalty pulls the agents\' weight heads down where the data do not hold them up', async () => {
    const { tf } = await loadTf();
    // Two agents; only agent 0 matters: r = 1 − 0.6·e^{−b0/500}, whatever b1.
    const rng = mulberry32(8);
    const N = 800;
    const x = new Float32Array(N).fill(1);
    const b = new Float32Array(N * 2);
    const r = new Float32Array(N);
    for (let i = 0; i < N; i++) {
      b[i * 2] = 200 + rng() * 2000;
      b[i * 2 + 1] = 800 + rng() * 400;
      r[i] = 1 - 0.6 * Math.exp(-b[i * 2]! / 500) + (rng() - 0.5) * 0.05;
    }
    const data = { rows: N, x, b, r, w: new Float32Array(N).fill(1) };
    const init = initialWeights(1, 2, 2000, mulberry32(1));
    const opts = { yieldToEventLoop: false, minSteps: 200 } as const;
    const base = await trainModel(tf, data, init, opts);
    const pen = await trainModel(tf, data, init, { ...opts, weightPenalty: 0.01 });
    const w = (m: typeof base) => forward(m.weights, Float32Array.from([1])).weight[1]!;
    assert.ok(w(pen) < w(base) - 0.1, `agent 1's weight ${w(pen).toFixed(3)} with the penalty vs ${w(base).toFixed(3)} without`);
  });
});
