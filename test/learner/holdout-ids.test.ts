import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomUUID } from 'node:crypto';
import { compileFeatures } from '../../src/learner/features.js';
import { forward, initialWeights, predict, serializeWeights } from '../../src/learner/model.js';
import { trainModel } from '../../src/learner/trainer.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadTierWorld } from '../../src/learner/sim/tiers.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import { loadTf } from '../../src/learner/backend.js';
import { buildTrainingData, heldOutId, HOLDOUT_SPAN, isHeldOut, type LoggedEvent } from '../../src/learner/events.js';
import { trainTiers } from '../../src/learner/train-tiers.js';
import { deserializeTierParams, plannedCostOf, tierErrors } from '../../src/learner/tiers-policy.js';
import { tierAgentsOf } from '@apportion/sdk/engine';
import { tierDecisions } from '../helpers/tier-logged.js';

/**
 * The tier retrain holds out the same decisions at every retrain (events.ts isHeldOut; the token trainer with the bench
 * option `holdout: 'id'`): a version is
 * warm-started from the fits before it, so a held-out tenth drawn afresh at each retrain would contain decisions
 * those fits trained on, and the version's held-out error — what drift recovery compares new decisions with —
 * would be too low.
 */
const tw = loadTierWorld('cheap-suffices');
const features = worldFeatures(tw.world).features;
const agents = tierAgentsOf(tw.pipeline);

/** Decisions on model assignments drawn uniformly (all by the safe start, version 0), ids `d${seed}-${t}`. */
const decisions = (n: number, seed: number): LoggedEvent[] => tierDecisions(tw, n, seed, { pick: (rng) => ({ assign: tw.assignments[Math.floor(rng() * tw.assignments.length)]!, m: 0 }) });

const train = (window: readonly LoggedEvent[], init?: ReturnType<typeof trainTiers>['tiers'], seed = 7) =>
  trainTiers(
    { features, agents: tw.agents.map((a) => a.name), init: serializeWeights(initialWeights(compileFeatures(features).dim, agents.length, 10_000, mulberry32(1))), seed },
    { agents, models: tw.agents.map(() => tw.models.slice()), needGuess: 10_000, ...(init ? { init } : {}) },
    window,
    window.length,
  );

const heldRows = (job: ReturnType<typeof trainTiers>) => Object.values(job.metrics!.holdoutStrata!).reduce((s, v) => s + v.n, 0);

/** The fitted version's mean squared error on the given decisions, computed here as the retrain computes its held-out error. */
function mseOn(job: ReturnType<typeof trainTiers>, events: readonly LoggedEvent[]): number {
  const encoder = compileFeatures(features, job.scaling);
  const p = deserializeTierParams(job.tiers!, agents, encoder.dim);
  const rows = events.map((e) => {
    const action = { assign: e.M!.map((m) => tw.models.indexOf(m!)), budgets: tw.agents.map((a) => e.b[a.name]!) };
    return { x: encoder.encode(e.f), action, quality: e.q, cost: plannedCostOf(agents, action) };
  });
  const errs = tierErrors(p, agents, rows);
  return errs.reduce((s, v) => s + v, 0) / errs.length;
}

describe('every retrain holds out the same decisions (by decision id)', () => {
  it('heldOutId keeps about a tenth of decision ids, and always the same ones', () => {
    const ids = Array.from({ length: 20_000 }, () => randomUUID());
    const held = ids.filter(heldOutId).length;
    // Binomial(20,000, 0.1): sd 42, so ±400 is more than 9 sd.
    assert.ok(held > 1600 && held < 2400, `${held} of 20,000 held out`);
  });

  it('the tier retrain: a warm-started retrain on a longer window holds out exactly the window decisions whose id is held out, whatever the seed: none that the earlier fit trained on', () => {
    const all = decisions(3000, 5);
    const first = train(all.slice(0, 1500));
    assert.equal(first.trained, true, first.reason);
    assert.equal(heldRows(first), all.slice(0, 1500).filter((e) => heldOutId(e.id)).length);
    // Its held-out error is its error on exactly the decisions whose id is held out.
    const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(a, b);
    const held1 = all.slice(0, 1500).filter((e) => heldOutId(e.id));
    assert.ok(close(first.metrics!.holdoutMse, mseOn(first, held1)), `${first.metrics!.holdoutMse} vs ${mseOn(first, held1)}`);
    // Retrains of the longer window warm from the first fit, with other seeds: the same decisions held out, so none
    // that the first fit (their warm start) trained on.
    const heldAll = all.filter((e) => heldOutId(e.id));
    let compared = 0;
    for (const seed of [7, 11, 13]) {
      const next = train(all, first.tiers, seed);
      if (!next.trained) continue; // the newest fit stays when no refit explains the window significantly better
      compared++;
      assert.equal(heldRows(next), heldAll.length, `seed ${seed}`);
      assert.ok(close(next.metrics!.holdoutMse, mseOn(next, heldAll)), `seed ${seed}: ${next.metrics!.holdoutMse} vs ${mseOn(next, heldAll)}`);
    }
    assert.ok(compared > 0, 'at least one warm retrain was trained');
  });

  it('only the newest HOLDOUT_SPAN events are held out, and a decision held out by a later retrain was held out by every earlier one that saw it', () => {
    const n = HOLDOUT_SPAN + 2500;
    const enc = compileFeatures([{ name: 'n', type: 'numeric' }]);
    // Newest first; every 7th event lacks agent b's budget (an older pipeline version): skipped, but counted in the age.
    const stream = Array.from({ length: n }, (_, t): LoggedEvent => ({ id: `s-${t}`, t, s: 'learned', f: { n: 1 }, T: 1000, b: t % 7 === 3 ? { a: 500 } : { a: 500, b: 500 }, q: 0.5, c: null })).reverse();
    const data = buildTrainingData(stream, enc, ['a', 'b'], { costWeight: 0, holdout: 'id' });
    const kept = stream.map((e, age) => ({ e, age })).filter(({ e }) => e.b.b !== undefined);
    assert.deepEqual(Array.from(data.held!), kept.map(({ e, age }) => (age < HOLDOUT_SPAN && heldOutId(e.id) ? 1 : 0)));
    assert.ok(kept.some(({ e, age }) => age >= HOLDOUT_SPAN && heldOutId(e.id)), 'older decisions with a held-out id exist, and are trained on');
    // Windows of the same stream at earlier retrains (the newest k events not logged yet): whatever a later window
    // holds out, every earlier window that contains it held out too — so no warm-start ancestor trained on it.
    for (const k of [250, 500, 1000, 2500, 4000]) {
      const earlier = stream.slice(k);
      stream.forEach((e, age) => {
        if (!isHeldOut(e.id, age) || age < k) return;
        assert.ok(isHeldOut(earlier[age - k]!.id, age - k), `${e.id} held out now but trained on ${k} events earlier`);
      });
    }
  });

  it('the token trainer with `holdout: id` (a bench option): the training rows carry which decisions are held out by id, and a warm retrain on a longer window reports its error on exactly those', async () => {
    const { tf } = await loadTf();
    const enc = compileFeatures([{ name: 'n', type: 'numeric' }]);
    const rng = mulberry32(4);
    // Two agents; r = 1 − 0.5·e^{−b0/800} + noise. Newest first, as the buffer holds them.
    const events: LoggedEvent[] = Array.from({ length: 1200 }, (_, t) => {
      const b0 = 200 + Math.floor(rng() * 1600);
      return { id: `e-${t}`, t, s: 'learned', f: { n: rng() }, T: 2000, b: { a: b0, b: 2000 - b0 }, q: 1 - 0.5 * Math.exp(-b0 / 800) + (rng() - 0.5) * 0.1, c: null };
    }).reverse();
    const opts = { costWeight: 0, halfLife: 1e12, holdout: 'id' } as const;
    const first = buildTrainingData(events.slice(600), enc, ['a', 'b'], opts);
    assert.deepEqual(Array.from(first.held!), events.slice(600).map((e) => (heldOutId(e.id) ? 1 : 0)), 'within the span, the decisions held out by id');
    assert.equal(buildTrainingData(events, enc, ['a', 'b'], { costWeight: 0 }).held, undefined, 'by default the token trainer draws its tenth');
    const init = initialWeights(enc.dim, 2, 1000, mulberry32(1));
    const a = await trainModel(tf, first, init, { yieldToEventLoop: false, seed: 3 });
    const all = buildTrainingData(events, enc, ['a', 'b'], opts);
    for (const seed of [5, 9]) {
      const next = await trainModel(tf, all, a.weights, { yieldToEventLoop: false, seed });
      const held = events.filter((e) => heldOutId(e.id));
      let s = 0;
      for (const e of held) s += (predict(forward(next.weights, enc.encode(e.f)), [e.b.a!, e.b.b!]) - e.q) ** 2;
      const mse = s / held.length;
      assert.ok(Math.abs(next.metrics.holdoutMse - mse) <= 1e-4 * mse, `seed ${seed}: held-out error ${next.metrics.holdoutMse} vs ${mse} on the ${held.length} decisions held out by id`);
    }
  });
});
