/**
 * bench/allocate scenario: the `learned` strategy with a trained model, on the support-basic world's pipeline.
 * Setup goes through the HTTP API only: pipeline, feature declaration (3 features), learned strategy, 600 simulated
 * allocate → outcome rounds, a retrain, then waits until the model serves.
 */
import { mulberry32 } from '../../src/learner/rng.js';
import { contextFeatures, loadWorld, sampleContext, simulateOutcome, worldFeatures, worldPipeline, type SimContext } from '../../src/learner/sim/world.js';
import type { ApportionClient } from '@apportion/sdk';

const PIPELINE = 'learned-bench';

const threeFeatures = (x: SimContext) => {
  const { taskType, messageCount, documentTokens } = contextFeatures(x);
  return { taskType: taskType!, messageCount: messageCount!, documentTokens: documentTokens! };
};
const STRATEGY = 'learned-bench';

export async function setup(client: ApportionClient): Promise<{ path: string; bodies: object[] }> {
  const world = loadWorld('support-basic');
  const rng = mulberry32(3);
  await client.request('PUT', `/v1/pipelines/${PIPELINE}`, worldPipeline(world));
  // The three request features that matter (task, messages, document tokens): the same request shape as
  // bench/allocate's estimate bodies, so the comparison is about the strategy, not the payload.
  await client.request('PUT', `/v1/pipelines/${PIPELINE}/features`, { features: worldFeatures(world).features.slice(0, 3) });
  await client.request('PUT', `/v1/strategies/${STRATEGY}`, { pipeline: PIPELINE, kind: 'learned', params: { trainEvery: 100_000 } });
  for (let i = 0; i < 600; i++) {
    const x = sampleContext(world, rng);
    const a = await client.allocate({ pipeline: PIPELINE, strategy: STRATEGY, features: threeFeatures(x) });
    const out = simulateOutcome(world, 0, x, world.agents.map((ag) => a.budgets[ag.name]!.tokens), rng);
    await client.reportOutcome({ decisionId: a.decisionId, quality: out.quality, usage: out.usage });
  }
  // Outcomes are applied asynchronously: retrain until a model trained on most of them serves.
  const deadline = Date.now() + 90_000;
  for (;;) {
    const logs = await client.request<{ items: unknown[] }>('GET', `/v1/pipelines/${PIPELINE}/logs?limit=1000`);
    if (logs.items.length >= 550 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  await client.request('POST', `/v1/models/${PIPELINE}/train`);
  for (;;) {
    const m = await client.request<{ active: number | null; compatible: boolean }>('GET', `/v1/models/${PIPELINE}`);
    if (m.active && m.compatible) break;
    if (Date.now() > deadline) throw new Error('no model was trained within 90 s');
    await new Promise((r) => setTimeout(r, 250));
  }
  const bodies = Array.from({ length: 512 }, () => ({ pipeline: PIPELINE, strategy: STRATEGY, features: threeFeatures(sampleContext(world, rng)) }));
  return { path: '/v1/allocations', bodies };
}
