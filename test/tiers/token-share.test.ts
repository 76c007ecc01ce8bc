import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { exploreOptions, TIER_TOKEN_SHARE, TIER_TOKEN_SPREAD, tierEpsilon, tierLearnedDecision, type Pipeline, type ServingModel } from '@apportion/sdk/engine';
import { compileFeatures } from '../../src/learner/features.js';
import { initialWeights } from '../../src/learner/model.js';
import { TIER_CANDIDATE_SHARE } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadTierWorld } from '../../src/learner/sim/tiers.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import { referenceTierDecision, tierInput, tierRequestOf, type TierRequest } from '../helpers/tier-decision.js';
import { randomTierParams } from '../helpers/tier-params.js';
import {
  perturbAround,
  sameTierAction,
  SAFE_START_TOKEN_SPREAD,
  TIER_GAP_WEIGHT,
  withTokenShare,
  type TierAgent,
  type TierParams,
} from '../../src/learner/tiers-policy.js';

/**
 * Guaranteed token perturbations around a serving tier version's greedy action (`tierTokenShare`): the exact
 * probabilities of every logged action, and, off (the default), every decision exactly as before, draw for draw.
 */

const tw = loadTierWorld('cheap-suffices');
const encoder = compileFeatures(worldFeatures(tw.world).features);
const agents: TierAgent[] = tw.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens, rates: tw.rates }));
const pipeline = { id: 'ts', version: 1, defaultTotalTokens: tw.totalTokens, agents: tw.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens })) } as unknown as Pipeline;
const explore = exploreOptions({});

/** Random tier parameters (weights, needs, a cheaper model's reach and pace per agent). */
const randomParams = (rng: () => number): TierParams => randomTierParams(agents, encoder.dim, 300, 6000, rng);

/** A serving model with a tier version (and, half the time, a pending tier candidate). */
function servingWith(rng: () => number): ServingModel {
  const weights = initialWeights(encoder.dim, agents.length, tw.totalTokens, mulberry32(1));
  const version = 1 + Math.floor(rng() * 12);
  const candidate = rng() < 0.5 ? { candidate: { version: version + 1, weights, encoder, tiers: randomParams(rng) } } : {};
  return { encoder, weights, version, tiers: randomParams(rng), ...candidate };
}

const requestOf = (rng: () => number) => tierRequestOf(tw, agents, rng);
const input = tierInput;

/**
 * The served decision as the engine made it before the option existed (the reference, written out in
 * test/helpers/tier-decision.ts): gap-weighted at tierEpsilon with TIER_GAP_WEIGHT.
 */
const before = (m: ServingModel, r: TierRequest, rng: () => number) => referenceTierDecision(m, encoder, agents, explore, r, rng, tierEpsilon(explore, m.version), TIER_GAP_WEIGHT);

describe('token perturbations around the greedy action (tierTokenShare)', () => {
  it('is off by default: every decision, its candidates, probabilities and draws, is the decision made before the option', () => {
    assert.equal(TIER_TOKEN_SHARE, 0);
    assert.equal(TIER_TOKEN_SPREAD, SAFE_START_TOKEN_SPREAD);
    const rng = mulberry32(5);
    let moved = 0;
    for (let k = 0; k < 300; k++) {
      const m = servingWith(rng);
      const r = requestOf(rng);
      const seed = 1000 + k;
      const ref = before(m, r, mulberry32(seed));
      for (const d of [
        tierLearnedDecision(m, pipeline, agents, input(r), explore, 0, r.anchor, mulberry32(seed)),
        tierLearnedDecision(m, pipeline, agents, input(r), explore, 0, r.anchor, mulberry32(seed), undefined, { share: 0, spread: 0.7 }),
      ]) {
        assert.equal(d.candidates.length, ref.candidates.length);
        d.candidates.forEach((c, i) => assert.ok(sameTierAction(c, ref.candidates[i]!)));
        assert.deepEqual(d.probs, ref.probs);
        assert.equal(d.chosen, ref.chosen);
        assert.equal(d.ck, ref.ck);
        assert.equal(d.cw, ref.ck === undefined ? undefined : ref.cw);
      }
      // With the option on, the same request's distribution differs (so the comparison above can tell).
      const on = tierLearnedDecision(m, pipeline, agents, input(r), explore, 0, r.anchor, mulberry32(seed), undefined, { share: 0.1, spread: 0.7 });
      if (on.probs.length !== ref.probs.length || on.probs.some((p, i) => p !== ref.probs[i])) moved++;
    }
    assert.ok(moved > 250, String(moved));
  });

  it('withTokenShare: the given probabilities × (1 − share), share ÷ |perturbations| at each perturbation, merged with an identical candidate', () => {
    const a = (b: number[]) => ({ assign: [0, 1, 1], budgets: b });
    const candidates = [a([1000, 2000, 500]), a([900, 2100, 500]), a([1000, 2000, 600])];
    const probs = [0.85, 0.1, 0.05];
    const perts = [a([2000, 1500, 400]), a([900, 2100, 500]), a([500, 2250, 550]), a([1000, 2000, 1000])];
    const out = withTokenShare(candidates, probs, perts, 0.2);
    // Two new actions are appended after the existing ones, one merged with candidate 1, one new at the end.
    assert.equal(candidates.length, 6);
    assert.ok(sameTierAction(candidates[3]!, perts[0]!) && sameTierAction(candidates[4]!, perts[2]!) && sameTierAction(candidates[5]!, perts[3]!));
    const expected = [0.85 * 0.8, 0.1 * 0.8 + 0.05, 0.05 * 0.8, 0.05, 0.05, 0.05];
    out.forEach((p, k) => assert.ok(Math.abs(p - expected[k]!) < 1e-15, `${k}: ${p} vs ${expected[k]}`));
    assert.ok(Math.abs(out.reduce((s, v) => s + v, 0) - 1) < 1e-12);
    // Share 0 or no perturbations: unchanged.
    const c2 = candidates.slice();
    assert.deepEqual(withTokenShare(c2, out, perts, 0), out);
    assert.deepEqual(withTokenShare(c2, out, [], 0.2), out);
    assert.equal(c2.length, candidates.length);
  });

  it('on: each logged probability is exactly (1 − s)·the gap-weighted one + s·(its share of the greedy action’s perturbations), mixed with the candidate version', () => {
    const rng = mulberry32(9);
    let withPerts = 0;
    let perturbedDraws = 0;
    let draws = 0;
    let expectedPerturbed = 0;
    for (let k = 0; k < 300; k++) {
      const m = servingWith(rng);
      const r = requestOf(rng);
      const s = [0.05, 0.1, 0.2][k % 3]!;
      const spread = [0.4, 0.7, 1][k % 3]!;
      const { candidate: _pending, ...serving } = m;
      const ref = before(serving, r, mulberry32(1));
      const perts = perturbAround(ref.candidates[0]!, agents, r.T, r.C, spread);
      const d = tierLearnedDecision(m, pipeline, agents, input(r), explore, 0, r.anchor, mulberry32(2000 + k), undefined, { share: s, spread });
      // The candidates: the ones before, then the perturbations not among them, then the candidate version's greedy action if new.
      ref.candidates.forEach((c, i) => assert.ok(sameTierAction(c, d.candidates[i]!)));
      const at = perts.map((p) => d.candidates.findIndex((c) => sameTierAction(c, p)));
      assert.ok(at.every((i) => i >= 0));
      if (perts.length > 0) withPerts++;
      const cs = m.candidate ? TIER_CANDIDATE_SHARE : 0;
      const ck = d.ck;
      d.probs.forEach((p, i) => {
        const hits = at.filter((j) => j === i).length;
        const mixed = perts.length > 0 ? (ref.probs[i] ?? 0) * (1 - s) + (s * hits) / perts.length : (ref.probs[i] ?? 0);
        const expected = mixed * (ck !== undefined ? 1 - cs : 1) + (i === ck ? cs : 0);
        assert.ok(Math.abs(p - expected) < 1e-12, `decision ${k}, action ${i}: ${p} vs ${expected}`);
      });
      assert.ok(Math.abs(d.probs.reduce((a, b) => a + b, 0) - 1) < 1e-12);
      // How often a perturbation is served, against its probability (over many draws of this one decision).
      if (perts.length > 0 && k < 40) {
        const set = new Set(at);
        const pr = [...set].reduce((a, i) => a + d.probs[i]!, 0);
        const u = mulberry32(k + 7);
        for (let j = 0; j < 100; j++) {
          const dj = tierLearnedDecision(m, pipeline, agents, input(r), explore, 0, r.anchor, u, undefined, { share: s, spread });
          draws++;
          expectedPerturbed += pr;
          if (set.has(dj.chosen)) perturbedDraws++;
        }
      }
    }
    assert.ok(withPerts > 250, String(withPerts));
    // Binomial-ish: the served share of perturbations within 4 standard errors of its probability.
    const se = Math.sqrt(expectedPerturbed * (1 - expectedPerturbed / draws));
    assert.ok(Math.abs(perturbedDraws - expectedPerturbed) < 4 * se, `${perturbedDraws} vs ${expectedPerturbed.toFixed(1)} ± ${se.toFixed(1)}`);
  });

  it('the safe start is unchanged by the option (it already explores around the default’s action)', () => {
    const rng = mulberry32(13);
    for (let k = 0; k < 50; k++) {
      const m = { encoder, weights: initialWeights(encoder.dim, agents.length, tw.totalTokens, mulberry32(1)), version: 0 } as ServingModel;
      const r = requestOf(rng);
      const off = tierLearnedDecision(m, pipeline, agents, input(r), explore, 0, r.anchor, mulberry32(k));
      const on = tierLearnedDecision(m, pipeline, agents, input(r), explore, 0, r.anchor, mulberry32(k), undefined, { share: 0.2, spread: 0.7 });
      assert.deepEqual(on.probs, off.probs);
      assert.equal(on.chosen, off.chosen);
    }
  });
});
