import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileFeatures } from '../../src/learner/features.js';
import { forward, GREEDY_STEPS, greedySplit, initialWeights, LEGACY_OUTPUTS, marginalLookAhead, NEED_SCALE, OUTPUTS, predict, response, upgradeLegacy, type Heads, type ModelWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';

/**
 * The serving path's shortcuts give the answers of the plain computation: the sparse forward pass equals the
 * dense products bit for bit, the look-ahead's one-chunk rule past a threshold's location picks the same splits
 * as evaluating every horizon, and the coarse-then-fine look-ahead is as good as one fine pass on average.
 */

/** The forward pass as written before the shortcuts: every product, in the same order. */
function denseForward(w: ModelWeights, x: Float32Array): Heads {
  const { inputDim: d, hidden: h, agents: n } = w;
  const hid = new Float64Array(h);
  for (let j = 0; j < h; j++) {
    let s = w.b1[j]!;
    for (let i = 0; i < d; i++) s += w.w1[j * d + i]! * x[i]!;
    hid[j] = s > 0 ? s : 0;
  }
  const o = new Float64Array(OUTPUTS * n);
  for (let k = 0; k < OUTPUTS * n; k++) {
    let s = w.b2[k]!;
    for (let j = 0; j < h; j++) s += w.w2[k * h + j]! * hid[j]!;
    for (let i = 0; i < d; i++) s += w.w3[k * d + i]! * x[i]!;
    o[k] = s;
  }
  const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
  const need = Float64Array.from({ length: n }, (_, i) => NEED_SCALE * Math.exp(clamp(o[i]!, -12, 12)));
  const steep = Float64Array.from({ length: n }, (_, i) => 1 + Math.exp(clamp(o[5 * n + i]!, -3, 4)));
  const step = Float64Array.from({ length: n }, (_, i) => 1 / (1 + Math.exp(-o[3 * n + i]!)));
  return {
    need,
    weight: Float64Array.from({ length: n }, (_, i) => 1 / (1 + Math.exp(-o[n + i]!))),
    shape: Float64Array.from({ length: n }, (_, i) => 1 + Math.exp(clamp(o[2 * n + i]!, -8, 8))),
    step,
    loc: Float64Array.from({ length: n }, (_, i) => Math.exp(clamp(o[4 * n + i]!, -3, 3)) * need[i]!),
    steep,
    stepNorm: Float64Array.from({ length: n }, (_, i) => 1 + Math.exp(-steep[i]!)),
    maxStep: Math.max(0, ...step),
  };
}

/** Random weights; `sparseRows`: the shape, location and steepness rows stay zero, as the trainer leaves them. */
function randomWeights(rng: () => number, d: number, n: number, sparseRows: boolean): ModelWeights {
  const w = initialWeights(d, n, 10_000, rng);
  for (const [name, arr] of Object.entries({ w1: w.w1, w2: w.w2, w3: w.w3, b2: w.b2 })) {
    const width = name === 'w2' ? w.hidden : name === 'w3' ? d : 1;
    for (let i = 0; i < arr.length; i++) {
      const row = Math.floor(i / width);
      const constantRow = (name === 'w2' || name === 'w3') && (Math.floor(row / n) === 2 || Math.floor(row / n) >= 4);
      if (!(sparseRows && constantRow)) arr[i]! += (rng() - 0.5) * 2;
    }
  }
  return w;
}

/** The look-ahead split evaluating every horizon that covers what is left (no one-chunk rule past the threshold). */
function everyHorizon(heads: Heads, out: number[], caps: readonly number[], target: number, chunk: number): number[] {
  const n = out.length;
  let rest = target - out.reduce((a, b) => a + b, 0);
  const rate = (i: number) => {
    let best = -Infinity;
    const cur = Math.log(response(heads, i, out[i]!));
    for (const k of [1, 4, 16, 64]) {
      const next = Math.min(caps[i]!, out[i]! + k * chunk);
      const step = next - out[i]!;
      if (step <= 1e-9) break;
      best = Math.max(best, ((Math.log(response(heads, i, next)) - cur) * chunk) / step);
      if (next >= caps[i]! || k * chunk >= rest) break;
    }
    return best;
  };
  const rates = out.map((_, i) => rate(i));
  while (rest > 1e-9) {
    let best = -1;
    for (let i = 0; i < n; i++) if (rates[i]! > -Infinity && (best < 0 || rates[i]! > rates[best]!)) best = i;
    if (best < 0) break;
    const step = Math.min(chunk, rest, caps[best]! - out[best]!);
    out[best]! += step;
    rest -= step;
    rates[best] = rate(best);
  }
  return out;
}

describe('serving shortcuts', () => {
  it('the sparse forward pass equals the dense products exactly (one-hot inputs, zero rows, legacy weights)', () => {
    const rng = mulberry32(41);
    const keys = ['need', 'weight', 'shape', 'step', 'loc', 'steep', 'stepNorm'] as const;
    for (let t = 0; t < 400; t++) {
      const n = 1 + Math.floor(rng() * 12);
      const d = 2 + Math.floor(rng() * 24);
      const w = randomWeights(rng, d, n, t % 2 === 0);
      const x = Float32Array.from({ length: d }, (_, i) => (i === 0 ? 1 : rng() < 0.6 ? 0 : rng() * 4 - 2));
      const fast = forward(w, x);
      const dense = denseForward(w, x);
      for (const k of keys) for (let i = 0; i < n; i++) assert.equal(fast[k]![i], dense[k]![i], `${k}[${i}] (case ${t})`);
      assert.equal(fast.maxStep, dense.maxStep);
    }
    // A legacy version (no threshold rows) reads the same through the fast path as through its padding.
    const w = initialWeights(5, 3, 6000, mulberry32(3));
    const legacy = { ...w, w2: w.w2.slice(0, LEGACY_OUTPUTS * 3 * w.hidden), w3: w.w3.slice(0, LEGACY_OUTPUTS * 3 * 5), b2: w.b2.slice(0, LEGACY_OUTPUTS * 3) };
    const x = Float32Array.from([1, 0, -1.2, 0, 0.5]);
    for (const b of [[0, 0, 0], [100, 2000, 50], [3000, 3000, 3000]]) assert.ok(Math.abs(predict(forward(legacy, x), b) - predict(forward(upgradeLegacy(legacy), x), b)) < 1e-12);
  });

  it('past a threshold one chunk decides: the look-ahead picks the same split as evaluating every horizon', () => {
    const rng = mulberry32(42);
    let cases = 0;
    for (let t = 0; t < 600; t++) {
      const n = 1 + Math.floor(rng() * 10);
      const w = randomWeights(rng, 6, n, true);
      const h = forward(w, Float32Array.from({ length: 6 }, (_, i) => (i === 0 ? 1 : rng() * 2 - 1)));
      const mins = Array.from({ length: n }, () => Math.floor(rng() * 300));
      const caps = mins.map((m) => (rng() < 0.3 ? Infinity : m + Math.floor(rng() * 8000)));
      const target = Math.floor(Math.min(mins.reduce((a, b) => a + b, 0) + rng() * 30_000, caps.reduce((a, b) => a + b, 0)));
      const chunk = Math.max(1, Math.floor((target - mins.reduce((a, b) => a + b, 0)) / GREEDY_STEPS));
      if (target <= mins.reduce((a, b) => a + b, 0)) continue;
      assert.deepEqual(marginalLookAhead(h, mins.slice(), caps, target, chunk), everyHorizon(h, mins.slice(), caps, target, chunk), `case ${t}`);
      cases++;
    }
    assert.ok(cases > 400);
  });

  it('the coarse-then-fine look-ahead is as good as one fine pass on average, and close on every case', () => {
    const rng = mulberry32(43);
    const ratios: number[] = [];
    for (let t = 0; t < 600; t++) {
      const n = 1 + Math.floor(rng() * 12);
      const w = randomWeights(rng, 6, n, true);
      const h = forward(w, Float32Array.from({ length: 6 }, (_, i) => (i === 0 ? 1 : rng() * 2 - 1)));
      const mins = Array.from({ length: n }, () => Math.floor(rng() * 300));
      const caps = mins.map((m) => (rng() < 0.3 ? Infinity : m + Math.floor(rng() * 8000)));
      const minSum = mins.reduce((a, b) => a + b, 0);
      const total = minSum + Math.floor(rng() * 30_000);
      const target = Math.floor(Math.min(total, caps.reduce((a, b) => a + b, 0)));
      if (target <= minSum || (h.maxStep ?? 0) < 1e-3) continue;
      const g = greedySplit(h, mins, caps, total);
      assert.equal(g.reduce((a, b) => a + b, 0), target);
      g.forEach((v, i) => assert.ok(Number.isInteger(v) && v >= mins[i]! && v <= caps[i]!));
      const fine = marginalLookAhead(h, mins.slice(), caps, target, Math.max(1, Math.floor((target - minSum) / GREEDY_STEPS)));
      ratios.push(predict(h, g) / predict(h, fine));
    }
    const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
    assert.ok(ratios.length > 400);
    assert.ok(mean >= 0.999, `mean ratio ${mean}`);
    assert.ok(Math.min(...ratios) >= 0.85, `worst ratio ${Math.min(...ratios)}`);
  });

  it('a hashed categorical feature encodes the same from its bucket cache, past the cache size too', () => {
    const specs = [{ name: 'region', type: 'categorical' as const, hashBuckets: 16 }];
    const cached = compileFeatures(specs);
    const values = Array.from({ length: 3000 }, (_, i) => `r${i % 1500}`);
    for (const v of values) assert.deepEqual(Array.from(cached.encode({ region: v })), Array.from(compileFeatures(specs).encode({ region: v })), v);
  });
});
