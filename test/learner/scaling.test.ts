import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { buildTrainingData, type LoggedEvent } from '../../src/learner/events.js';
import { CLIP, compileFeatures, fitScaling, type FeatureSpec } from '../../src/learner/features.js';
import { forward, initialWeights, rescaleInputs } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { generateWorld } from '../../src/learner/sim/family.js';
import type { Features } from '../../src/strategies/types.js';

interface Vector {
  readonly name: string;
  readonly spec: FeatureSpec;
  readonly rows: (number | null)[];
  readonly fitted: { center: number; scale: number };
  readonly encode: [number | null, number, number][];
}
const vectors = (JSON.parse(readFileSync(new URL('./vectors/scaling.json', import.meta.url), 'utf8')) as { cases: Vector[] }).cases;
const close = (a: number, b: number, tol = 1e-5) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));
const row = (v: number | null): Features => (v === null ? {} : { x: v });

describe('feature scaling fitted from data (vectors)', () => {
  for (const v of vectors) {
    it(v.name, () => {
      const scaling = fitScaling([v.spec], v.rows.map(row));
      assert.ok(close(scaling.x!.center, v.fitted.center), `center ${scaling.x!.center} ≠ ${v.fitted.center}`);
      assert.ok(close(scaling.x!.scale, v.fitted.scale), `scale ${scaling.x!.scale} ≠ ${v.fitted.scale}`);
      const enc = compileFeatures([v.spec], scaling);
      for (const [raw, value, missing] of v.encode) {
        const out = enc.encode(row(raw));
        assert.ok(close(out[1]!, value), `${raw} → ${out[1]} ≠ ${value}`);
        assert.equal(out[2], missing);
      }
    });
  }
});

describe('scaling applied identically in training and serving', () => {
  const world = generateWorld(1);
  const specs = world.declaration.features;
  const rng = mulberry32(9);
  const events: LoggedEvent[] = Array.from({ length: 300 }, (_, i) => {
    const f = world.features(world.sample(rng));
    return { id: String(i), t: i, s: 'l', f, T: world.totalTokens, b: Object.fromEntries(world.agents.map((a) => [a.name, 100])), q: 0.5, c: null };
  });

  it('the training rows are the serving encoder’s vectors (scaling stored, JSON round trip, recompiled)', () => {
    const scaling = fitScaling(specs, events.map((e) => e.f));
    const train = compileFeatures(specs, scaling);
    const data = buildTrainingData(events, train, world.agents.map((a) => a.name), { costWeight: 0 });
    // What a model version stores and a serving process reads back.
    const serve = compileFeatures(specs, JSON.parse(JSON.stringify(scaling)) as typeof scaling);
    assert.equal(serve.signature, train.signature, 'the signature is the declaration’s: a refit does not make a version incompatible');
    events.forEach((e, i) => assert.deepEqual([...serve.encode(e.f)], [...data.x.subarray(i * train.dim, (i + 1) * train.dim)]));
  });

  it('every scaled input stays within ±CLIP whatever the raw values (1 … 1e7 apart, negative, huge)', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: -1e12, max: 1e12, noNaN: true }), { minLength: 1, maxLength: 50 }), fc.double({ min: -1e15, max: 1e15, noNaN: true }), (xs, probe) => {
        const spec: FeatureSpec = { name: 'x', type: 'numeric' };
        const enc = compileFeatures([spec], fitScaling([spec], xs.map((x) => ({ x }))));
        const v = enc.encode({ x: probe })[1]!;
        return Number.isFinite(v) && Math.abs(v) <= CLIP;
      }),
    );
  });

  it('a refit re-expresses warm-start weights exactly (away from the clip bounds)', () => {
    const old = compileFeatures(specs, fitScaling(specs, events.slice(0, 100).map((e) => e.f)));
    const next = compileFeatures(specs, fitScaling(specs, events.slice(100).map((e) => e.f)));
    const w = initialWeights(old.dim, world.agents.length, world.totalTokens, mulberry32(2));
    const w3 = Float32Array.from(w.w3, () => (rng() - 0.5) * 0.2);
    const before = { ...w, w3 };
    const after = rescaleInputs(before, old.numeric, next.numeric);
    let compared = 0;
    for (const e of events) {
      const a = old.encode(e.f);
      const b = next.encode(e.f);
      // Only where neither encoding clipped.
      if (old.numeric.some((s) => Math.abs(a[s.at]!) >= CLIP - 1e-6 || Math.abs(b[s.at]!) >= CLIP - 1e-6)) continue;
      const h1 = forward(before, a);
      const h2 = forward(after, b);
      for (let i = 0; i < h1.need.length; i++) {
        assert.ok(close(h1.need[i]!, h2.need[i]!, 1e-3), `need ${h1.need[i]} vs ${h2.need[i]}`);
        assert.ok(close(h1.weight[i]!, h2.weight[i]!, 1e-3));
      }
      compared++;
    }
    assert.ok(compared > 50, `${compared} requests compared`);
  });
});
