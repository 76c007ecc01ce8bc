import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readDecisionJson, type DecisionRecord } from '../../src/allocation/decisions.js';
import { loggingPolicyOf } from '../../src/learner/hooks.js';
import { learnerMetaOf } from '../../src/learner/kind.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadTierWorld } from '../../src/learner/sim/tiers.js';
import { worldFeatures } from '../../src/learner/sim/world.js';
import type { Running } from '../../src/server.js';
import { testPrefix } from '../helpers/env.js';
import { okHttp } from '../helpers/http.js';
import { tierPipelineDoc, tierServerHooks } from '../helpers/tier-server.js';

/**
 * A learned strategy as one route of an experiment on a pipeline with model tiers, over a real socket: a decision
 * that another route served logs the learned route's whole joint distribution (budgets and models), weighted by the
 * route's probability. Before, the learned alternative was read back without its models, found not to match, and
 * logged as its one draw with probability 1, which made DSJSON and OPE wrong on such pipelines.
 */
const prefix = testPrefix('tiers-routing');
const tw = loadTierWorld('cheap-suffices');
let rt: Running;
let url: string;
const op = okHttp(() => url);
tierServerHooks(prefix, (s) => ({ rt, url } = s));

const key = (b: readonly number[], m: readonly (string | null)[]) => JSON.stringify([b, m]);

describe('a learned route of an experiment on a pipeline with model tiers', () => {
  it("is logged with its whole joint distribution on the decisions another route served", async () => {
    const doc = tierPipelineDoc(tw);
    await op('PUT', '/v1/pipelines/tr', doc);
    await op('PUT', '/v1/pipelines/tr/features', worldFeatures(tw.world));
    await op('PUT', '/v1/strategies/tr-learn', { pipeline: 'tr', kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, perturbation: 0.4 } });
    const shares = Object.fromEntries(tw.agents.map((a, i) => [a.name, i + 1]));
    await op('PUT', '/v1/strategies/tr-static', { pipeline: 'tr', kind: 'static', params: { shares } });
    await op('PUT', '/v1/experiments/tr-ab', {
      pipeline: 'tr',
      coverage: 0.7,
      variants: [
        { name: 'static', strategy: 'tr-static', weight: 1 },
        { name: 'learned', strategy: 'tr-learn', weight: 1 },
      ],
      control: 'static',
    });
    await op('POST', '/v1/experiments/tr-ab/start');
    const pipeline = rt.core.view().pipelines.get('tr')!;
    const rng = mulberry32(11);
    let checked = 0;
    for (let i = 0; i < 150; i++) {
      const a = await op('POST', '/v1/allocations', { pipeline: 'tr', unitKey: `u-${i}`, features: tw.features(tw.sample(rng)), maxCostUsd: tw.maxCostUsd, totalTokens: tw.totalTokens });
      if (a.strategy === 'tr-learn') continue;
      const d = JSON.parse((await readDecisionJson(rt.core.redis, rt.core.keys, a.decisionId))!) as DecisionRecord;
      const alt = d.routing?.alt.find((x) => x.s === 'tr-learn');
      assert.ok(alt?.l && alt.m, 'the learned alternative is logged with its meta and its models');
      const budgets = Object.fromEntries(pipeline.agents.map((ag, j) => [ag.name, alt.b[j]!]));
      const models = Object.fromEntries(pipeline.agents.map((ag, j) => [ag.name, alt.m![j]!]));
      const lm = learnerMetaOf({ meta: { learner: alt.l }, budgets, totalTokens: d.totalTokens, models }, pipeline);
      assert.ok(lm?.CM && lm.C.length > 1, 'the alternative explores over several joint actions');
      const policy = loggingPolicyOf(d, pipeline);
      assert.ok(policy.C && policy.CM && policy.P && policy.k !== undefined);
      const total = d.routing!.q + d.routing!.alt.reduce((s, x) => s + x.q, 0);
      const mass = new Map<string, number>();
      policy.C.forEach((b, j) => mass.set(key(b, policy.CM![j]!), policy.P![j]!));
      // Every joint action of the learned route carries at least its share of the route's probability.
      lm.C.forEach((b, j) => {
        const p = mass.get(key(b, lm.CM![j]!));
        assert.ok(p !== undefined && p >= (alt.q / total) * lm.P[j]! - 1e-9, `action ${j} of the learned route: ${p} < ${(alt.q / total) * lm.P[j]!}`);
      });
      // The served action is the one logged as chosen.
      assert.deepEqual(policy.C[policy.k], pipeline.agents.map((ag) => a.budgets[ag.name].tokens));
      assert.deepEqual(policy.CM[policy.k], pipeline.agents.map((ag) => a.budgets[ag.name].model));
      checked++;
    }
    assert.ok(checked > 40, `${checked} decisions served by another route`);
  });
});
