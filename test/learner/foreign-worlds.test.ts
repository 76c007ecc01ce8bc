import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { loadTf } from '../../src/learner/backend.js';
import { EXPLORE_DEFAULTS, randomSplit } from '../../src/learner/policy.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { uniformSplitOf } from '../../src/learner/sim/family.js';
import { FOREIGN_KINDS, foreignQuality, foreignSpec, foreignWorld, type ForeignKind } from '../../src/learner/sim/foreign.js';
import { policyAgents, runLoop } from '../../src/learner/sim/loop.js';

const file = JSON.parse(readFileSync(new URL('../../experiments/family/foreign-seeds.json', import.meta.url), 'utf8')) as { kinds: ForeignKind[]; seeds: number[] };

describe('worlds outside the model class (sim/foreign.ts)', () => {
  it('the seed list: 20 distinct seeds, every composition kind on five of them', () => {
    assert.equal(new Set(file.seeds).size, 20);
    assert.deepEqual([...file.kinds], [...FOREIGN_KINDS]);
  });

  it('a seed gives the same world every time; the declaration has no mean or std', () => {
    const a = foreignWorld(file.seeds[0]!, 'pooled');
    const b = foreignWorld(file.seeds[0]!, 'pooled');
    assert.deepEqual(a.spec, b.spec);
    assert.equal(a.totalTokens, b.totalTokens);
    const [ra, rb] = [mulberry32(3), mulberry32(3)];
    for (let i = 0; i < 20; i++) assert.deepEqual(a.sample(ra), b.sample(rb));
    for (const f of a.declaration.features) assert.ok(!('mean' in f) && !('std' in f), f.name);
    assert.notDeepEqual(foreignSpec(file.seeds[0]!).agents, foreignSpec(file.seeds[1]!).agents);
  });

  for (const [i, seed] of file.seeds.entries()) {
    const kind = file.kinds[i % file.kinds.length]!;
    it(`${kind} world ${seed}: the oracle is feasible and beats uniform and random splits on every request`, () => {
      const world = foreignWorld(seed, kind);
      const rng = mulberry32(seed);
      const uni = uniformSplitOf(world, world.totalTokens);
      for (let k = 0; k < 25; k++) {
        const c = world.sample(rng);
        const o = world.oracle(0, c, world.totalTokens);
        assert.ok(o.reduce((s, v) => s + v, 0) <= world.totalTokens + 1e-6, 'within the total');
        o.forEach((b, j) => assert.ok(b >= world.agents[j]!.minTokens - 1e-6 && b <= world.agents[j]!.maxTokens + 1e-6, `agent ${j} within its bounds`));
        const qo = world.expected(0, c, o);
        assert.ok(qo >= 0 && qo <= 1);
        assert.ok(qo >= world.expected(0, c, uni) - 1e-9, 'oracle ≥ uniform');
        for (let r = 0; r < 5; r++) assert.ok(qo >= world.expected(0, c, randomSplit(policyAgents(world), world.totalTokens, rng)) - 1e-9, 'oracle ≥ a random split');
      }
    });
  }

  it('each composition is what it says, and none is a product of per-agent responses', () => {
    const c = { kind: 0, size: 100, depth: 2, junk: 5, urgent: false };
    const spec = (k: ForeignKind) => {
      // Two agents that matter equally for kind 0, no caps, so the compositions can be checked by hand.
      const s = foreignSpec(file.seeds[0]!, k);
      return { ...s, sizeRef: 100, agents: [0, 1].map((i) => ({ ...s.agents[i]!, base: 500, elasticity: 0, depthSlope: 0, importance: [1, 1], maxTokens: 1e6 })) };
    };
    const r = (b: number) => 1 - Math.exp(-b / 500);
    // additive: the mean of the responses.
    assert.ok(Math.abs(foreignQuality(spec('additive'), c, [300, 900]) - (r(300) + r(900)) / 2) < 1e-12);
    // bottleneck: below the mean response, and set by the weaker agent (starving one sinks it whatever the other gets).
    assert.ok(foreignQuality(spec('bottleneck'), c, [300, 900]) < (r(300) + r(900)) / 2);
    assert.ok(foreignQuality(spec('bottleneck'), c, [10, 100_000]) < 0.05);
    // verbose: more tokens past the point of use lower the quality.
    const v = spec('verbose');
    assert.ok(foreignQuality(v, c, [500, 500 * (v.verboseAt + 4)]) < foreignQuality(v, c, [500, 500 * v.verboseAt]));
    // pooled: equally important agents substitute for each other below their caps.
    assert.ok(Math.abs(foreignQuality(spec('pooled'), c, [200, 400]) - foreignQuality(spec('pooled'), c, [400, 200])) < 1e-12);
    assert.ok(Math.abs(foreignQuality(spec('pooled'), c, [0, 600]) - foreignQuality(spec('pooled'), c, [300, 300])) < 1e-12);
  });

  it('the learning loop on a world it is misspecified for serves above the default strategy by the last quarter', async () => {
    const { tf } = await loadTf();
    // The first pooled world of the list (agents that substitute for each other: the model's product form cannot say so).
    const i = file.kinds.indexOf('pooled');
    const world = foreignWorld(file.seeds[i]!, 'pooled');
    const N = 2500;
    const res = await runLoop(tf, { world, outcomes: N, seed: 11, explore: { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, ...EXPLORE_DEFAULTS }, evalContexts: 0, checkpointEvery: N });
    const uni = uniformSplitOf(world, world.totalTokens);
    let served = 0;
    let def = 0;
    for (let t = Math.floor(N * 0.75); t < N; t++) {
      served += res.served[t]!;
      def += world.expected(0, res.contexts[t] as Parameters<typeof world.expected>[1], uni);
    }
    assert.ok(res.versions.some((v) => v.active), 'a version served');
    assert.ok(served > def, `served ${served.toFixed(1)} against the default's ${def.toFixed(1)} over the last quarter`);
  });
});
