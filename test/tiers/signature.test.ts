import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CONTROL_KINDS, servingModel, tierAgentsOf, tierModelIds, toPipeline, viewOf, type RawControlState, type Versioned } from '@apportion/sdk/engine';
import { compileFeatures } from '../../src/learner/features.js';
import { initialWeights, serializeWeights } from '../../src/learner/model.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { initialParams, serializeTierParams } from '../../src/learner/tiers-policy.js';

/**
 * A tier version (the joint model-and-tokens fit) is fitted per candidate model of every agent: it serves a pipeline
 * version only while that declares the same models, not merely as many.
 */
const OPUS = { inputPerMTokUsd: 15, outputPerMTokUsd: 75 };
const HAIKU = { inputPerMTokUsd: 1, outputPerMTokUsd: 5 };
const SONNET = { inputPerMTokUsd: 3, outputPerMTokUsd: 15 };

function state(version: number, models: readonly { model: string; provider?: string; price: typeof OPUS }[], modelDoc: unknown): RawControlState {
  const kinds = Object.fromEntries(CONTROL_KINDS.map((k) => [k, new Map<string, Versioned<unknown>>()])) as Record<(typeof CONTROL_KINDS)[number], Map<string, Versioned<unknown>>>;
  kinds.pipelines.set('p', { id: 'p', version, doc: { defaultTotalTokens: 20_000, agents: [{ name: 'a', models }, { name: 'b', models }] } });
  if (modelDoc) kinds.models.set('p', { id: 'p', version: 1, doc: modelDoc });
  return { version, kinds };
}

describe('the tier version signature', () => {
  it('a tier version fitted for opus/haiku does not serve the pipeline once haiku is swapped for sonnet', () => {
    const trainedOn = [{ model: 'claude-opus-4-1', provider: 'anthropic', price: OPUS }, { model: 'claude-haiku-4-5', price: HAIKU }];
    const pipeline = toPipeline(state(1, trainedOn, undefined).kinds.pipelines.get('p')!);
    const enc = compileFeatures([]);
    const tiers = { ...serializeTierParams(initialParams(tierAgentsOf(pipeline), enc.dim, 10_000)), models: tierModelIds(pipeline) };
    assert.deepEqual(tiers.models, [['anthropic/claude-opus-4-1', 'claude-haiku-4-5'], ['anthropic/claude-opus-4-1', 'claude-haiku-4-5']]);
    const doc = { active: 3, signature: enc.signature, agents: ['a', 'b'], weights: serializeWeights(initialWeights(enc.dim, 2, 20_000, mulberry32(1))), kind: 'tiers', tiers };
    const same = viewOf(state(1, trainedOn, doc));
    assert.equal(servingModel(same, same.pipelines.get('p')!).version, 3, 'serves the pipeline it was fitted for');
    assert.ok(servingModel(same, same.pipelines.get('p')!).tiers);
    const rewritten = viewOf(state(2, trainedOn, doc));
    assert.equal(servingModel(rewritten, rewritten.pipelines.get('p')!).version, 3, 'a rewrite with the same models keeps it');

    for (const other of [
      [{ model: 'claude-opus-4-1', provider: 'anthropic', price: OPUS }, { model: 'claude-sonnet-4-5', price: SONNET }],
      [{ model: 'claude-haiku-4-5', price: HAIKU }, { model: 'claude-opus-4-1', provider: 'anthropic', price: OPUS }],
      [{ model: 'claude-opus-4-1', price: OPUS }, { model: 'claude-haiku-4-5', price: HAIKU }],
    ]) {
      const v = viewOf(state(2, other, doc));
      const s = servingModel(v, v.pipelines.get('p')!);
      assert.equal(s.version, 0, `${JSON.stringify(other.map((m) => m.model))}: the safe start serves, not the version fitted for other models`);
      assert.equal(s.tiers, undefined);
    }
    // A candidate fitted for other models is not mixed in either.
    const withCandidate = { active: 0, signature: enc.signature, agents: ['a', 'b'], candidate: { version: 4, signature: enc.signature, agents: ['a', 'b'], weights: doc.weights, kind: 'tiers', tiers } };
    const swapped = viewOf(state(2, [trainedOn[0]!, { model: 'claude-sonnet-4-5', price: SONNET }], withCandidate));
    assert.equal(servingModel(swapped, swapped.pipelines.get('p')!).candidate, undefined);
    const kept = viewOf(state(2, trainedOn, withCandidate));
    assert.equal(servingModel(kept, kept.pipelines.get('p')!).candidate?.version, 4);
  });
});
