import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { exploreOptions, tierLearnedDecision, type Pipeline, type ServingModel } from '@apportion/sdk/engine';
import { compileFeatures } from '../../src/learner/features.js';
import { initialWeights } from '../../src/learner/model.js';
import { TIER_CANDIDATE_SHARE } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { runTierLoop } from '../../src/learner/sim/tier-loop.js';
import { loadTierWorld } from '../../src/learner/sim/tiers.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import { sameTierAction, serializeTierParams, type TierAgent } from '../../src/learner/tiers-policy.js';
import type { Running } from '../../src/server.js';
import { tierInput, tierRequestOf } from '../helpers/tier-decision.js';
import { randomTierParams } from '../helpers/tier-params.js';
import { tierPipelineDoc } from '../helpers/tier-server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

/**
 * The pending tier candidate's share of the decisions (`tierCandidateShare`): its greedy action's logged probability
 * is exactly (1 − s)·what the serving version gives it + s, every other action's (1 − s)·its own; it is served on that
 * share of the draws; the strategy parameter reaches the served decisions, and the schema bounds it.
 */

/** The share this code ships with (TIER_CANDIDATE_SHARE; docs/tiers.md, "A larger candidate share"). */
const CHOSEN_SHARE = 0.1;

const tw = loadTierWorld('cheap-suffices');
const encoder = compileFeatures(worldFeatures(tw.world).features);
const agents: TierAgent[] = tw.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens, rates: tw.rates }));
const pipeline = { id: 'cs', version: 1, defaultTotalTokens: tw.totalTokens, agents: tw.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens })) } as unknown as Pipeline;
const explore = exploreOptions({});
const randomParams = (rng: () => number) => randomTierParams(agents, encoder.dim, 300, 6000, rng);

/** A serving tier version and a pending tier candidate. */
function servingWithCandidate(rng: () => number): ServingModel {
  const weights = initialWeights(encoder.dim, agents.length, tw.totalTokens, mulberry32(1));
  const version = 1 + Math.floor(rng() * 12);
  return { encoder, weights, version, tiers: randomParams(rng), candidate: { version: version + 1, weights, encoder, tiers: randomParams(rng) } };
}

describe('the pending tier candidate’s share (tierCandidateShare)', () => {
  it('the default share is TIER_CANDIDATE_SHARE, draw for draw', () => {
    assert.equal(TIER_CANDIDATE_SHARE, CHOSEN_SHARE);
    const rng = mulberry32(3);
    for (let k = 0; k < 100; k++) {
      const m = servingWithCandidate(rng);
      const r = tierRequestOf(tw, agents, rng);
      const dflt = tierLearnedDecision(m, pipeline, agents, tierInput(r), explore, 0, r.anchor, mulberry32(k));
      const named = tierLearnedDecision(m, pipeline, agents, tierInput(r), explore, 0, r.anchor, mulberry32(k), undefined, undefined, {}, TIER_CANDIDATE_SHARE);
      assert.deepEqual(dflt.probs, named.probs);
      assert.equal(dflt.chosen, named.chosen);
      assert.equal(dflt.ck, named.ck);
    }
  });

  it('logs (1 − s)·the serving version’s probability + s on the candidate’s greedy action, and serves it on that share of the draws', () => {
    const rng = mulberry32(11);
    let draws = 0;
    let served = 0;
    let expected = 0;
    for (let k = 0; k < 150; k++) {
      const m = servingWithCandidate(rng);
      const r = tierRequestOf(tw, agents, rng);
      const s = [0.05, 0.2, 0.4][k % 3]!;
      const { candidate: _pending, ...serving } = m;
      const alone = tierLearnedDecision(serving, pipeline, agents, tierInput(r), explore, 0, r.anchor, mulberry32(1));
      const d = tierLearnedDecision(m, pipeline, agents, tierInput(r), explore, 0, r.anchor, mulberry32(500 + k), undefined, undefined, {}, s);
      assert.ok(d.ck !== undefined);
      // The serving version's candidates first, in order; the candidate's greedy action merged with one of them or appended.
      alone.candidates.forEach((c, i) => assert.ok(sameTierAction(c, d.candidates[i]!)));
      assert.ok(d.candidates.length === alone.candidates.length || d.candidates.length === alone.candidates.length + 1);
      d.probs.forEach((p, i) => {
        const want = (alone.probs[i] ?? 0) * (1 - s) + (i === d.ck ? s : 0);
        assert.ok(Math.abs(p - want) < 1e-12, `decision ${k}, action ${i}: ${p} vs ${want}`);
      });
      assert.ok(Math.abs(d.probs.reduce((a, b) => a + b, 0) - 1) < 1e-12);
      if (k < 60) {
        const u = mulberry32(k + 77);
        for (let j = 0; j < 100; j++) {
          const dj = tierLearnedDecision(m, pipeline, agents, tierInput(r), explore, 0, r.anchor, u, undefined, undefined, {}, s);
          draws++;
          expected += d.probs[d.ck]!;
          if (dj.chosen === d.ck) served++;
        }
      }
    }
    const se = Math.sqrt(expected * (1 - expected / draws));
    assert.ok(Math.abs(served - expected) < 4 * se, `${served} vs ${expected.toFixed(1)} ± ${se.toFixed(1)}`);
  });

  it('the strategy parameter reaches the served decisions: the loop with default params serves as with the chosen share, not as with another', () => {
    const initial = { version: 6, tiers: serializeTierParams(randomParams(mulberry32(4))), holdoutMse: 0.01, rows: 1000 };
    // A retrain at 150 outcomes proposes a candidate, mixed into the decisions after it.
    const run = (params: Record<string, number>) => runTierLoop({ world: tw, outcomes: 300, seed: 3, params: { trainEvery: 150, ...params }, initial, guard: false, driftRecovery: null });
    const dflt = run({});
    const chosen = run({ tierCandidateShare: CHOSEN_SHARE });
    const other = run({ tierCandidateShare: 0.45 });
    assert.ok(dflt.gates.length === 0 && dflt.trained === 1, `${dflt.trained} trained, ${dflt.gates.length} judged`);
    assert.deepEqual(dflt.budgets, chosen.budgets);
    assert.deepEqual(dflt.assign, chosen.assign);
    const differs = other.budgets.some((b, i) => b.some((v, j) => v !== dflt.budgets[i]![j]));
    assert.ok(differs, 'another share serves other actions');
    // Before the first candidate is proposed, the decisions are the same whatever the share.
    assert.deepEqual(other.budgets.slice(0, 150), dflt.budgets.slice(0, 150));
  });
});

describe('the tierCandidateShare parameter over HTTP', () => {
  const prefix = testPrefix('tiers-candidate-share');
  let rt: Running;
  const call = (method: 'PUT' | 'GET', url: string, payload?: unknown): Promise<LightMyRequestResponse> => rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });
  before(async () => {
    rt = await startTest(prefix, { workers: false });
    assert.equal((await call('PUT', '/v1/pipelines/cs', tierPipelineDoc(tw))).statusCode, 200);
  });
  after(async () => {
    await rt.close();
    await dropPrefix(prefix);
  });

  it('rejects a share outside 0.02–0.5 with 400 naming the field, stores nothing, and accepts a good one', async () => {
    for (const v of [0, 0.01, 0.6, 'half']) {
      const r = await call('PUT', '/v1/strategies/cs-learn', { pipeline: 'cs', kind: 'learned', params: { tierCandidateShare: v } });
      assert.equal(r.statusCode, 400, r.body);
      assert.equal(r.json().code, 'INVALID_STRATEGY_PARAMS');
      assert.match(r.json().message, /body\/params\/tierCandidateShare/);
    }
    assert.equal((await call('GET', '/v1/strategies/cs-learn')).statusCode, 404, 'nothing stored');
    const ok = await call('PUT', '/v1/strategies/cs-learn', { pipeline: 'cs', kind: 'learned', params: { tierCandidateShare: 0.3 } });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal((await call('GET', '/v1/strategies/cs-learn')).json().params.tierCandidateShare, 0.3);
  });
});
