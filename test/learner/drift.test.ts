import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkedVersions, DEFAULT_DRIFT, residualCheck, windowAfterChange } from '../../src/learner/drift.js';
import type { LoggedEvent } from '../../src/learner/events.js';
import { compileFeatures } from '../../src/learner/features.js';
import { forward, initialWeights, predict } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';

/**
 * Drift recovery's residual test and what a detected change does to the training window: a version whose
 * predictions fit the rewards it was trained on is checked on newer decisions; when the rewards moved, the
 * change is detected and the next retrains weigh the events since it.
 */
const agents = ['a', 'b'];
const encoder = compileFeatures([{ name: 'x', type: 'numeric' }]);
const weights = initialWeights(encoder.dim, 2, 100, mulberry32(3));
const model = (holdoutMse: number, rows = 8000) => ({ weights, encoder, holdoutMse, rows });
const qhat = (f: Record<string, number>, b: readonly number[]) => predict(forward(weights, encoder.encode(f)), b);

/** Decisions whose rewards are the model's prediction plus noise of sd `noise`, shifted by `shift`. */
function decisions(n: number, seed: number, noise: number, shift: number): LoggedEvent[] {
  const rng = mulberry32(seed);
  return Array.from({ length: n }, (_, t) => {
    const f = { x: rng() * 10 };
    const b = [20 + Math.floor(rng() * 60), 0];
    b[1] = 100 - b[0]!;
    const q = qhat(f, b) + shift + noise * (2 * rng() - 1) * Math.sqrt(3);
    return { id: String(t), t, s: 'l', f, T: 100, b: { a: b[0]!, b: b[1]! }, q, c: null };
  });
}

describe('drift recovery', () => {
  it('detects a change when the newest version’s error on new decisions is well above its held-out error', () => {
    const noise = 0.05;
    const stable = residualCheck(decisions(500, 1, noise, 0), model(noise ** 2), agents, 0);
    assert.equal(stable.changed, false, stable.reason);
    const moved = residualCheck(decisions(500, 2, noise, -0.15), model(noise ** 2), agents, 0);
    assert.equal(moved.changed, true, moved.reason);
    assert.ok(moved.mse > 5 * noise ** 2, moved.reason);
    assert.match(moved.reason, /squared error on 500 new decisions .* change iff ≥ 3/);
  });

  it('does not check on too few decisions or a version trained on a short window', () => {
    assert.equal(residualCheck(decisions(100, 3, 0.05, -0.3), model(0.0025), agents, 0).changed, false);
    const short = residualCheck(decisions(500, 3, 0.05, -0.3), model(0.0025, 500), agents, 0);
    assert.equal(short.changed, false);
    assert.match(short.reason, /trained on 500 events/);
  });

  it('after a change the half-life (and, in window mode, the window) shrinks to the events since it, then returns', () => {
    // The default: a quarter of the events since the change (at least 250), so the events before it keep 1/16 of the weight mass.
    assert.deepEqual(windowAfterChange(Infinity, 8000, 1000), { window: 8000, halfLife: 1000, shortened: false });
    assert.deepEqual(windowAfterChange(500, 8000, 1000), { window: 8000, halfLife: 250, shortened: true });
    assert.deepEqual(windowAfterChange(2000, 8000, 1000), { window: 8000, halfLife: 500, shortened: true });
    assert.deepEqual(windowAfterChange(3000, 8000, 1000), { window: 8000, halfLife: 750, shortened: true });
    assert.deepEqual(windowAfterChange(4000, 8000, 1000), { window: 8000, halfLife: 1000, shortened: false });
    // Half of them (the share before): back to the configured half-life at 2,000.
    const half = { ...DEFAULT_DRIFT, halfLifeShare: 0.5 };
    assert.deepEqual(windowAfterChange(1000, 8000, 1000, half), { window: 8000, halfLife: 500, shortened: true });
    assert.deepEqual(windowAfterChange(2000, 8000, 1000, half), { window: 8000, halfLife: 1000, shortened: false });
    const win = { ...DEFAULT_DRIFT, mode: 'window' as const, halfLifeShare: 0.5 };
    assert.deepEqual(windowAfterChange(0, 8000, 1000, win), { window: 500, halfLife: 250, shortened: true });
    assert.deepEqual(windowAfterChange(1500, 8000, 1000, win), { window: 1500, halfLife: 750, shortened: true });
  });

  it('with retrains sooner than the span, the newest version with that many decisions since it was trained is checked too', () => {
    // Decisions since each version was trained, newest version first (the span is an option, off by default).
    const span = { ...DEFAULT_DRIFT, span: 500 };
    assert.deepEqual(checkedVersions([250, 500, 750], span), [0, 1]);
    assert.deepEqual(checkedVersions([250, 400, 650], span), [0, 2]);
    assert.deepEqual(checkedVersions([500, 1000], span), [0], 'retrains every 500: the newest only, as without it');
    assert.deepEqual(checkedVersions([250, 400], span), [0], 'no version has the span yet');
    assert.deepEqual(checkedVersions([], span), []);
    assert.equal(DEFAULT_DRIFT.span, undefined);
    assert.deepEqual(checkedVersions([250, 500]), [0], 'without a span (the default): the newest only');
    // A shift the test misses on the 250 decisions since the newest version (z grows as √n) and finds on the 500
    // since the one before it (retrains every 250 outcomes; the same reward model in both versions here).
    const noise = 0.05;
    const since = decisions(500, 6, noise, 0.0375);
    const checks = checkedVersions([250, 500], span).map((i) => residualCheck(i === 0 ? since.slice(250) : since, model(noise ** 2), agents, 0));
    assert.equal(checks.length, 2);
    assert.equal(checks[0]!.changed, false, checks[0]!.reason);
    assert.equal(checks[0]!.n, 250);
    assert.equal(checks[1]!.changed, true, checks[1]!.reason);
    assert.equal(checks[1]!.n, 500);
    // On a world that did not change neither check fires.
    const calm = decisions(500, 6, noise, 0);
    assert.ok(checkedVersions([250, 500], span).every((i) => !residualCheck(i === 0 ? calm.slice(250) : calm, model(noise ** 2), agents, 0).changed));
  });
});
