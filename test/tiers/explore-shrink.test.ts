import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { exploreOptions, TIER_EPSILON_DECAY, TIER_MIN_EPSILON, tierEpsilon, tierLearnedDecision, type Pipeline, type ServingModel } from '@apportion/sdk/engine';
import { compileFeatures } from '../../src/learner/features.js';
import { initialWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { runTierLoop } from '../../src/learner/sim/tier-loop.js';
import { loadTierWorld } from '../../src/learner/sim/tiers.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import { sameTierAction, serializeTierParams, TIER_GAP_WEIGHT, type TierAgent } from '../../src/learner/tiers-policy.js';
import type { Running } from '../../src/server.js';
import { referenceTierDecision, tierInput, tierRequestOf, type TierRequest } from '../helpers/tier-decision.js';
import { randomTierParams } from '../helpers/tier-params.js';
import { tierPipelineDoc } from '../helpers/tier-server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

/**
 * How fast the tier learner's exploration rate decays (`tierEpsilonDecay`, p: budget·(from/v)^p) and how its
 * exploration is weighted by the predicted gap (`tierGapWeight`, γ): the rates at given versions, p = 0.5 exactly the
 * square-root rule it had before, the default decisions draw for draw the default rule's, and the params schema.
 */

/** The default exponent this code ships with (docs/tiers.md, "How fast the exploration rate decays"). */
const CHOSEN_DECAY = 1;

const tw = loadTierWorld('cheap-suffices');
const encoder = compileFeatures(worldFeatures(tw.world).features);
const agents: TierAgent[] = tw.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens, rates: tw.rates }));
const pipeline = { id: 'es', version: 1, defaultTotalTokens: tw.totalTokens, agents: tw.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens })) } as unknown as Pipeline;
const explore = exploreOptions({});

/** The exploration rate as the engine computed it before the option existed: budget·√(from/v) for v > from, at least 0.04. */
const sqrtRule = (budget: number, version: number, from: number) => Math.max(0.04, version > from && from > 0 ? budget * Math.sqrt(from / version) : budget);

describe('the tier exploration rate (tierEpsilon)', () => {
  it('decays as budget·(from/v)^p above from, at least TIER_MIN_EPSILON, for p = 0.5 and p = 1', () => {
    assert.equal(TIER_MIN_EPSILON, 0.04);
    assert.equal(explore.budget, 0.3);
    const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
    // [version, from, p = 0.5, p = 1]
    const table: [number, number, number, number][] = [
      [1, 1, 0.3, 0.3],
      [2, 1, 0.3 / Math.SQRT2, 0.15],
      [4, 1, 0.15, 0.075],
      [5, 1, 0.3 / Math.sqrt(5), 0.06],
      [9, 1, 0.1, 0.04],
      [25, 1, 0.06, 0.04],
      [100, 1, 0.04, 0.04],
      [8, 2, 0.15, 0.075],
      [2, 2, 0.3, 0.3],
      [50, 0, 0.3, 0.3],
    ];
    for (const [v, from, half, one] of table) {
      close(tierEpsilon(explore, v, from, 0.5), half);
      close(tierEpsilon(explore, v, from, 1), one);
    }
    // p = 0: no decay; the epsilon explorer's ε whatever p.
    close(tierEpsilon(explore, 40, 1, 0), 0.3);
    assert.equal(tierEpsilon(exploreOptions({ explorer: 'epsilon', epsilon: 0.17 }), 40, 1, 1), 0.17);
  });

  it('p = 0.5 is exactly the square-root rule, and the default p is the chosen one', () => {
    assert.equal(TIER_EPSILON_DECAY, CHOSEN_DECAY);
    for (const budget of [0.05, 0.1, 0.3, 0.7, 1]) {
      const e = exploreOptions({ exploreBudget: budget });
      for (let v = 0; v <= 60; v++) {
        for (const from of [0, 1, 2, 3, 7]) {
          assert.equal(tierEpsilon(e, v, from, 0.5), sqrtRule(budget, v, from), `budget ${budget}, v ${v}, from ${from}`);
          assert.equal(tierEpsilon(e, v, from), tierEpsilon(e, v, from, CHOSEN_DECAY));
        }
      }
    }
  });
});

/** A serving model with a tier version at a version number that decays the rate (and, half the time, a pending candidate). */
function servingWith(rng: () => number): ServingModel {
  const weights = initialWeights(encoder.dim, agents.length, tw.totalTokens, mulberry32(1));
  const version = 2 + Math.floor(rng() * 20);
  const params = () => randomTierParams(agents, encoder.dim, 300, 6000, rng);
  const candidate = rng() < 0.5 ? { candidate: { version: version + 1, weights, encoder, tiers: params() } } : {};
  return { encoder, weights, version, tiers: params(), ...candidate };
}

const requestOf = (rng: () => number) => tierRequestOf(tw, agents, rng);
const input = tierInput;

/**
 * The served decision by the rule written out (test/helpers/tier-decision.ts) at ε = max(0.04, 0.3·(1/v)^p) and
 * gap weight γ. p = 0.5 is computed as the engine did before the option (Math.sqrt).
 */
const reference = (m: ServingModel, r: TierRequest, rng: () => number, p: number, gamma: number) =>
  referenceTierDecision(m, encoder, agents, explore, r, rng, p === 0.5 ? sqrtRule(0.3, m.version, 1) : Math.max(0.04, 0.3 * Math.pow(1 / m.version, p)), gamma);

function assertSame(d: ReturnType<typeof tierLearnedDecision>, ref: ReturnType<typeof reference>): void {
  assert.equal(d.candidates.length, ref.candidates.length);
  d.candidates.forEach((c, i) => assert.ok(sameTierAction(c, ref.candidates[i]!)));
  assert.deepEqual(d.probs, ref.probs);
  assert.equal(d.chosen, ref.chosen);
  assert.equal(d.ck, ref.ck);
  assert.equal(d.cw, ref.ck === undefined ? undefined : ref.cw);
}

describe('tier decisions under the decay exponent and the gap weight', () => {
  it('default rate options decide, draw for draw, by the chosen rule; p and γ given decide by theirs', () => {
    assert.equal(TIER_GAP_WEIGHT, 20);
    const rng = mulberry32(11);
    let moved = 0;
    for (let k = 0; k < 200; k++) {
      const m = servingWith(rng);
      const r = requestOf(rng);
      const seed = 3000 + k;
      const def = reference(m, r, mulberry32(seed), CHOSEN_DECAY, 20);
      assertSame(tierLearnedDecision(m, pipeline, agents, input(r), explore, 0, r.anchor, mulberry32(seed)), def);
      // p = 0.5, γ = 20 given: the square-root rule it had before the options, draw for draw.
      assertSame(tierLearnedDecision(m, pipeline, agents, input(r), explore, 0, r.anchor, mulberry32(seed), undefined, undefined, { decay: 0.5, gapWeight: 20 }), reference(m, r, mulberry32(seed), 0.5, 20));
      const fast = tierLearnedDecision(m, pipeline, agents, input(r), explore, 0, r.anchor, mulberry32(seed), undefined, undefined, { decay: 1, gapWeight: 5 });
      assertSame(fast, reference(m, r, mulberry32(seed), 1, 5));
      if (fast.probs.some((p, i) => p !== def.probs[i])) moved++;
    }
    // The options change the distribution (so the comparisons above can tell).
    assert.ok(moved > 150, String(moved));
  });

  it('the strategy params reach the served decisions: the loop with default params serves as with the chosen p, not as with the other', () => {
    const initial = { version: 6, tiers: serializeTierParams(randomTierParams(agents, encoder.dim, 300, 6000, mulberry32(4))), holdoutMse: 0.01, rows: 1000 };
    const run = (params: Record<string, number>) => runTierLoop({ world: tw, outcomes: 300, seed: 3, params, initial, retrain: false, guard: false, driftRecovery: null });
    const dflt = run({});
    const chosen = run({ tierEpsilonDecay: CHOSEN_DECAY, tierGapWeight: 20 });
    const other = run({ tierEpsilonDecay: 0.5 });
    const otherGamma = run({ tierGapWeight: 2 });
    assert.deepEqual(dflt.budgets, chosen.budgets);
    assert.deepEqual(dflt.assign, chosen.assign);
    const differs = (a: typeof dflt) => a.budgets.some((b, i) => b.some((v, j) => v !== dflt.budgets[i]![j]) || a.assign[i]!.some((v, j) => v !== dflt.assign[i]![j]));
    assert.ok(differs(other), 'another decay exponent serves other actions');
    assert.ok(differs(otherGamma), 'another gap weight serves other actions');
  });
});

describe('the learned-strategy params schema', () => {
  const prefix = testPrefix('tiers-explore-shrink');
  let rt: Running;
  const call = (method: 'PUT' | 'GET', url: string, payload?: unknown): Promise<LightMyRequestResponse> => rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });
  before(async () => {
    rt = await startTest(prefix, { workers: false });
    assert.equal((await call('PUT', '/v1/pipelines/es', tierPipelineDoc(tw))).statusCode, 200);
  });
  after(async () => {
    await rt.close();
    await dropPrefix(prefix);
  });

  it('rejects a bad tierEpsilonDecay or tierGapWeight with 400 naming the field, and accepts good ones', async () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ tierEpsilonDecay: -0.1 }, /body\/params\/tierEpsilonDecay/],
      [{ tierEpsilonDecay: 3 }, /body\/params\/tierEpsilonDecay/],
      [{ tierEpsilonDecay: 'fast' }, /body\/params\/tierEpsilonDecay/],
      [{ tierGapWeight: -1 }, /body\/params\/tierGapWeight/],
      [{ tierGapWeight: 1e9 }, /body\/params\/tierGapWeight/],
    ];
    for (const [params, field] of bad) {
      const r = await call('PUT', '/v1/strategies/es-learn', { pipeline: 'es', kind: 'learned', params });
      assert.equal(r.statusCode, 400, r.body);
      assert.equal(r.json().code, 'INVALID_STRATEGY_PARAMS');
      assert.match(r.json().message, field);
    }
    assert.equal((await call('GET', '/v1/strategies/es-learn')).statusCode, 404, 'nothing stored');
    const ok = await call('PUT', '/v1/strategies/es-learn', { pipeline: 'es', kind: 'learned', params: { tierEpsilonDecay: 1, tierGapWeight: 0 } });
    assert.equal(ok.statusCode, 200, ok.body);
  });
});
