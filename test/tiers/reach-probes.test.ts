import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { exploreOptions, TIER_REACH_PLATEAU, TIER_REACH_SHARE, tierEpsilon, tierLearnedDecision, type Pipeline, type ServingModel } from '@apportion/sdk/engine';
import { compileFeatures } from '../../src/learner/features.js';
import { initialWeights } from '../../src/learner/model.js';
import { TIER_CANDIDATE_SHARE } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { generateTierWorld } from '../../src/learner/sim/tier-family.js';
import { runTierLoop } from '../../src/learner/sim/tier-loop.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import { referenceTierDecision, tierInput, tierRequestOf, type TierRequest } from '../helpers/tier-decision.js';
import { randomTierParams } from '../helpers/tier-params.js';
import { curvesOf, plannedCostOf, reachProbes, sameTierAction, serializeTierParams, TIER_GAP_WEIGHT, type TierAgent } from '../../src/learner/tiers-policy.js';
import type { Running } from '../../src/server.js';
import { tierPipelineDoc } from '../helpers/tier-server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

/**
 * Reach probes of a serving tier version (`tierReachShare`): one agent moved to a cheaper model with ample tokens, the
 * rest re-split. The probes' construction, the exact probability of every logged action with the option on, and, off
 * (the default), every decision exactly as before, draw for draw. Worlds from the generated tier family (2–3 models,
 * 2–6 agents, ceilings that bind), so the probes meet token totals, ceilings, caps and minimums not written here.
 */

const worlds = [11, 12, 13, 14, 15, 16].map((seed) => generateTierWorld(seed).world);
const setups = worlds.map((tw) => {
  const encoder = compileFeatures(worldFeatures(tw.world).features);
  const agents: TierAgent[] = tw.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens, rates: tw.rates }));
  const pipeline = { id: 'rp', version: 1, defaultTotalTokens: tw.totalTokens, agents: tw.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens })) } as unknown as Pipeline;
  return { tw, encoder, agents, pipeline };
});
const explore = exploreOptions({});

function serving(s: (typeof setups)[number], rng: () => number): ServingModel {
  const weights = initialWeights(s.encoder.dim, s.agents.length, s.tw.totalTokens, mulberry32(1));
  const version = 1 + Math.floor(rng() * 12);
  const params = () => randomTierParams(s.agents, s.encoder.dim, 100, 3000, rng);
  const candidate = rng() < 0.5 ? { candidate: { version: version + 1, weights, encoder: s.encoder, tiers: params() } } : {};
  return { encoder: s.encoder, weights, version, tiers: params(), ...candidate };
}

const reference = (s: (typeof setups)[number], m: ServingModel, r: TierRequest, rng: () => number) =>
  referenceTierDecision(m, s.encoder, s.agents, explore, r, rng, tierEpsilon(explore, m.version), TIER_GAP_WEIGHT);

describe('reach probes of a serving tier version (tierReachShare)', () => {
  it('each probe moves one agent to a cheaper model at plateau × the larger of its fitted need and its greedy budget (as far as the bounds allow) and re-splits the rest within the total and the ceiling', () => {
    const rng = mulberry32(3);
    let probes = 0;
    let atWant = 0;
    let bounded = 0;
    for (let k = 0; k < 240; k++) {
      const s = setups[k % setups.length]!;
      const m = serving(s, rng);
      const r = tierRequestOf(s.tw, s.agents, rng);
      const greedy = reference(s, m, r, mulberry32(1)).candidates[0]!;
      const x = s.encoder.encode(r.features);
      const plateau = [1, 3, 6][k % 3]!;
      const curves = curvesOf(m.tiers!, s.agents, x);
      const out = reachProbes(m.tiers!, s.agents, x, greedy, r.T, r.C, plateau);
      const seen = new Set<string>();
      for (const p of out) {
        probes++;
        assert.ok(!sameTierAction(p, greedy), 'a probe differs from the greedy action');
        const key = JSON.stringify(p);
        assert.ok(!seen.has(key), 'no probe twice');
        seen.add(key);
        // Exactly one agent i may sit on another model than the greedy action's, and it is a model after its first.
        const moved = p.assign.map((v, j) => (v !== greedy.assign[j] ? j : -1)).filter((j) => j >= 0);
        assert.ok(moved.length <= 1);
        const candidatesI = moved.length === 1 ? moved : p.assign.map((v, j) => (v > 0 ? j : -1)).filter((j) => j >= 0);
        // The probed agent's budget is plateau × its fitted need on that model, unless a bound binds.
        const hits = candidatesI.filter((i) => {
          const want = Math.ceil(plateau * Math.max(curves[i]![p.assign[i]!]!.N, greedy.budgets[i]!));
          return p.budgets[i] === Math.min(want, s.agents[i]!.cap) || p.budgets[i]! < want;
        });
        assert.ok(hits.length >= 1, `decision ${k}: no agent at its probe budget`);
        const i = hits[0]!;
        assert.ok(p.assign[i]! >= 1);
        if (p.budgets[i] === Math.ceil(plateau * Math.max(curves[i]![p.assign[i]!]!.N, greedy.budgets[i]!))) atWant++;
        else bounded++;
        let tokens = 0;
        p.budgets.forEach((b, j) => {
          assert.ok(Number.isInteger(b) && b >= s.agents[j]!.min && b <= s.agents[j]!.cap, `agent ${j}: ${b}`);
          tokens += b;
        });
        assert.ok(tokens <= r.T, `tokens ${tokens} > ${r.T}`);
        assert.ok(plannedCostOf(s.agents, p) <= r.C * (1 + 1e-9), 'within the ceiling');
      }
    }
    // Both cases occur: the plateau budget itself, and one cut by a cap, the total or the ceiling.
    assert.ok(probes > 300 && atWant > 30 && bounded > 30, `${probes} probes, ${atWant} at the plateau, ${bounded} bounded`);
  });

  it('is off by default: every decision, its candidates, probabilities and draws, is the decision made before the option', () => {
    assert.equal(TIER_REACH_SHARE, 0);
    assert.equal(TIER_REACH_PLATEAU, 3);
    const rng = mulberry32(5);
    let moved = 0;
    for (let k = 0; k < 120; k++) {
      const s = setups[k % setups.length]!;
      const m = serving(s, rng);
      const r = tierRequestOf(s.tw, s.agents, rng);
      const seed = 1000 + k;
      const ref = reference(s, m, r, mulberry32(seed));
      for (const d of [
        tierLearnedDecision(m, s.pipeline, s.agents, tierInput(r), explore, 0, r.anchor, mulberry32(seed)),
        tierLearnedDecision(m, s.pipeline, s.agents, tierInput(r), explore, 0, r.anchor, mulberry32(seed), undefined, { share: 0, spread: 0.7, reachShare: 0 }),
      ]) {
        assert.equal(d.candidates.length, ref.candidates.length);
        d.candidates.forEach((c, i) => assert.ok(sameTierAction(c, ref.candidates[i]!)));
        assert.deepEqual(d.probs, ref.probs);
        assert.equal(d.chosen, ref.chosen);
      }
      const on = tierLearnedDecision(m, s.pipeline, s.agents, tierInput(r), explore, 0, r.anchor, mulberry32(seed), undefined, { share: 0, spread: 0.7, reachShare: 0.5 });
      if (on.probs.length !== ref.probs.length || on.probs.some((p, i) => p !== ref.probs[i])) moved++;
    }
    assert.ok(moved > 100, String(moved));
  });

  it('on: each logged probability is exactly (1 − s)·the gap-weighted one + s·(its share of the probes), s = reachShare × the exploration rate, mixed with the candidate version', () => {
    const rng = mulberry32(9);
    let probed = 0;
    let draws = 0;
    let expected = 0;
    for (let k = 0; k < 72; k++) {
      const s = setups[k % setups.length]!;
      const m = serving(s, rng);
      const r = tierRequestOf(s.tw, s.agents, rng);
      const r0 = [0.3, 0.5, 1.5][k % 3]!;
      // The probes' share: r0 × the serving version's exploration rate, at most ½.
      const share = Math.min(0.5, r0 * tierEpsilon(explore, m.version));
      const plateau = [2, 3, 5][Math.floor(k / 3) % 3]!;
      const { candidate: _pending, ...alone } = m;
      const ref = reference(s, alone, r, mulberry32(1));
      const probes = reachProbes(m.tiers!, s.agents, s.encoder.encode(r.features), ref.candidates[0]!, r.T, r.C, plateau);
      const opts = { share: 0, spread: 0.7, reachShare: r0, reachPlateau: plateau };
      const d = tierLearnedDecision(m, s.pipeline, s.agents, tierInput(r), explore, 0, r.anchor, mulberry32(2000 + k), undefined, opts);
      ref.candidates.forEach((c, i) => assert.ok(sameTierAction(c, d.candidates[i]!)));
      const at = probes.map((p) => d.candidates.findIndex((c) => sameTierAction(c, p)));
      assert.ok(at.every((i) => i >= 0), 'every probe is a logged candidate');
      const cs = m.candidate ? TIER_CANDIDATE_SHARE : 0;
      d.probs.forEach((p, i) => {
        const hits = at.filter((j) => j === i).length;
        const mixed = probes.length > 0 ? (ref.probs[i] ?? 0) * (1 - share) + (share * hits) / probes.length : (ref.probs[i] ?? 0);
        const want = mixed * (d.ck !== undefined ? 1 - cs : 1) + (i === d.ck ? cs : 0);
        assert.ok(Math.abs(p - want) < 1e-12, `decision ${k}, action ${i}: ${p} vs ${want}`);
      });
      assert.ok(Math.abs(d.probs.reduce((a, b) => a + b, 0) - 1) < 1e-12);
      if (probes.length > 0 && k < 14) {
        probed++;
        const set = new Set(at);
        const pr = [...set].reduce((a, i) => a + d.probs[i]!, 0);
        const u = mulberry32(k + 7);
        for (let j = 0; j < 150; j++) {
          const dj = tierLearnedDecision(m, s.pipeline, s.agents, tierInput(r), explore, 0, r.anchor, u, undefined, opts);
          draws += set.has(dj.chosen) ? 1 : 0;
          expected += pr;
        }
      }
    }
    assert.ok(probed >= 10, String(probed));
    // Served as often as logged: within 4 standard deviations of a binomial count.
    const sd = Math.sqrt(expected);
    assert.ok(Math.abs(draws - expected) < 4 * sd + 1, `${draws} probes served, ${expected.toFixed(1)} expected`);
  });
});

describe('tierReachShare and tierReachPlateau as strategy params', () => {
  const s0 = setups[0]!;

  it('reach the served decisions: the loop with {} serves exactly as with share 0, and otherwise with share 1', () => {
    const initial = { version: 3, tiers: serializeTierParams(randomTierParams(s0.agents, s0.encoder.dim, 300, 3000, mulberry32(4))), holdoutMse: 0.01, rows: 1000 };
    const run = (params: Record<string, number>) => runTierLoop({ world: s0.tw, outcomes: 200, seed: 3, params, initial, retrain: false, guard: false, driftRecovery: null });
    const dflt = run({});
    const off = run({ tierReachShare: 0, tierReachPlateau: 5 });
    const on = run({ tierReachShare: 1 });
    assert.deepEqual(dflt.budgets, off.budgets);
    assert.deepEqual(dflt.assign, off.assign);
    const differs = on.budgets.some((b, i) => b.some((v, j) => v !== dflt.budgets[i]![j]) || on.assign[i]!.some((v, j) => v !== dflt.assign[i]![j]));
    assert.ok(differs, 'reach probes serve other actions');
  });

  describe('the schema', () => {
    const prefix = testPrefix('tiers-reach-probes');
    let rt: Running;
    const call = (method: 'PUT' | 'GET', url: string, payload?: unknown): Promise<LightMyRequestResponse> => rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });
    before(async () => {
      rt = await startTest(prefix, { workers: false });
      assert.equal((await call('PUT', '/v1/pipelines/rp', tierPipelineDoc(s0.tw))).statusCode, 200);
    });
    after(async () => {
      await rt.close();
      await dropPrefix(prefix);
    });

    it('rejects a bad tierReachShare or tierReachPlateau with 400 naming the field, stores nothing, and accepts good ones', async () => {
      const bad: [Record<string, unknown>, RegExp][] = [
        [{ tierReachShare: -0.1 }, /body\/params\/tierReachShare/],
        [{ tierReachShare: 3 }, /body\/params\/tierReachShare/],
        [{ tierReachShare: 'some' }, /body\/params\/tierReachShare/],
        [{ tierReachPlateau: 0.1 }, /body\/params\/tierReachPlateau/],
        [{ tierReachPlateau: 50 }, /body\/params\/tierReachPlateau/],
      ];
      for (const [params, field] of bad) {
        const r = await call('PUT', '/v1/strategies/rp-learn', { pipeline: 'rp', kind: 'learned', params });
        assert.equal(r.statusCode, 400, r.body);
        assert.equal(r.json().code, 'INVALID_STRATEGY_PARAMS');
        assert.match(r.json().message, field);
      }
      assert.equal((await call('GET', '/v1/strategies/rp-learn')).statusCode, 404, 'nothing stored');
      const ok = await call('PUT', '/v1/strategies/rp-learn', { pipeline: 'rp', kind: 'learned', params: { tierReachShare: 0.5, tierReachPlateau: 3 } });
      assert.equal(ok.statusCode, 200, ok.body);
    });
  });
});
