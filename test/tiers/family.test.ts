import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { MAX_JOINT_ASSIGNMENTS } from '@apportion/sdk/engine';
import { mulberry32 } from '../../src/learner/rng.js';
import { generateTierDoc, generateTierWorld } from '../../src/learner/sim/tier-family.js';
import { bestSplit, floorSplit, response } from '../../src/learner/tiers-split.js';

/** The generated family of tier worlds (src/learner/sim/tier-family.ts): deterministic per seed, and the properties it promises. */

const SEEDS = Array.from({ length: 40 }, (_, k) => k + 1);
const worlds = SEEDS.map((s) => generateTierWorld(s));

describe('tier family', () => {
  it('is deterministic per seed, and different seeds give different worlds', () => {
    for (const s of [1, 7, 123456]) assert.deepEqual(generateTierDoc(s), generateTierDoc(s));
    const names = new Set(SEEDS.map((s) => JSON.stringify(generateTierDoc(s).doc.response)));
    assert.equal(names.size, SEEDS.length);
  });

  it('has 2–6 agents, 2–3 real priced models, strongest (dearest) first, and at most MAX_JOINT_ASSIGNMENTS assignments', () => {
    const sizes = new Set<number>();
    const counts = new Set<number>();
    for (const { world: tw } of worlds) {
      assert.ok(tw.agents.length >= 2 && tw.agents.length <= 6, tw.name);
      assert.ok(tw.models.length === 2 || tw.models.length === 3, tw.name);
      for (let k = 1; k < tw.rates.length; k++) assert.ok(tw.rates[k]! < tw.rates[k - 1]!, `${tw.name}: ${tw.models.join(' > ')}`);
      assert.ok(tw.rates.every((r) => r > 0));
      assert.ok(tw.assignments.length <= MAX_JOINT_ASSIGNMENTS, tw.name);
      sizes.add(tw.agents.length);
      counts.add(tw.models.length);
    }
    assert.deepEqual([...sizes].sort(), [2, 3, 4, 5, 6]);
    assert.deepEqual([...counts].sort(), [2, 3]);
  });

  it('a stronger model saturates faster and higher; each world has an agent where the cheapest model with more tokens suffices and one where the strong model is needed', () => {
    const rng = mulberry32(11);
    for (const { world: tw, roles } of worlds) {
      assert.ok(roles.includes('cheap') && roles.includes('strong'), tw.name);
      const last = tw.models.length - 1;
      const ratio = tw.rates[0]! / tw.rates[last]!;
      for (let k = 0; k < 20; k++) {
        const cv = tw.curves(tw.sample(rng));
        cv.forEach((row, i) => {
          const N = row[0]!.N;
          for (const b of [N / 4, N, 4 * N])
            for (let m = 1; m < row.length; m++) assert.ok(response(row[m]!, b) <= response(row[m - 1]!, b) + 1e-12, `${tw.name} agent ${i} model ${m} at ${b}`);
          if (roles[i] === 'cheap') {
            // At the same cost, the cheapest model's (many more) tokens do better than the strong model's.
            assert.ok(response(row[last]!, (N / 2) * ratio) > response(row[0]!, N / 2), `${tw.name} agent ${i}`);
          } else {
            // However many tokens the cheapest gets, it stays below the strong model on twice the need.
            assert.ok(1 - row[last]!.A < response(row[0]!, 2 * N), `${tw.name} agent ${i}`);
          }
        });
      }
    }
  });

  it('needs and weights depend on the request (task categories move the critical path)', () => {
    for (const { world: tw } of worlds) {
      const rng = mulberry32(12);
      const seen = new Map<string, string>();
      for (let k = 0; k < 200; k++) {
        const c = tw.sample(rng);
        seen.set(c.taskType, tw.curves(c).map((row) => `${(row[0]!.A + row[0]!.B).toFixed(3)}`).join(','));
      }
      assert.ok(seen.size >= 2, tw.name);
      const varies = tw.agents.some((_, i) => {
        const rs = mulberry32(13);
        const needs = new Set<number>();
        for (let k = 0; k < 50; k++) needs.add(Math.round(tw.curves(tw.sample(rs))[i]![0]!.N));
        return needs.size > 1;
      });
      assert.ok(varies || new Set(seen.values()).size > 1, tw.name);
    }
    // Across the family, the weights (not only the needs) change with the task somewhere.
    assert.ok(worlds.some(({ doc }) => Object.values(doc.world.truth).some((t) => t.weightByTask !== undefined)));
  });

  it('the ceiling binds on the strongest model, and some worlds weigh cost', () => {
    for (const { world: tw } of worlds) {
      const rng = mulberry32(14);
      const first = tw.agents.map(() => 0);
      let spent = 0;
      for (let k = 0; k < 20; k++) {
        const cv = tw.curves(tw.sample(rng));
        const s = bestSplit(cv.map((row) => row[0]!), first.map(() => tw.rates[0]!), tw.agents.map((a) => a.minTokens), tw.agents.map((a) => a.maxTokens), tw.totalTokens, tw.maxCostUsd)!;
        spent += tw.plannedCost(first, floorSplit(s, tw.agents.map((a) => a.minTokens))) / 20;
      }
      assert.ok(spent > 0.95 * tw.maxCostUsd, `${tw.name}: ${spent} of ${tw.maxCostUsd}`);
    }
    const weighted = worlds.filter(({ world }) => world.costWeight > 0);
    assert.ok(weighted.length >= 5 && weighted.length <= 25, String(weighted.length));
  });

  it('the oracle beats random feasible choices on reward (quality − λ·planned cost)', () => {
    const rng = mulberry32(15);
    for (const { world: tw } of worlds.slice(0, 12).concat(worlds.filter((w) => w.world.costWeight > 0).slice(0, 3))) {
      for (let k = 0; k < 5; k++) {
        const c = tw.sample(rng);
        const o = tw.oracle(c, tw.totalTokens, tw.maxCostUsd);
        assert.ok(o.budgets.reduce((s, v) => s + v, 0) <= tw.totalTokens);
        assert.ok(tw.plannedCost(o.assign, o.budgets) <= tw.maxCostUsd * (1 + 1e-9));
        assert.ok(Math.abs(o.reward - (o.quality - tw.costWeight * tw.plannedCost(o.assign, o.budgets))) < 1e-12);
        for (let j = 0; j < 30; j++) {
          const a = tw.assignments[Math.floor(rng() * tw.assignments.length)]!;
          const w = tw.agents.map(() => rng());
          const sum = w.reduce((s, v) => s + v, 0);
          const frac = rng();
          const b = tw.agents.map((ag, i) => Math.max(ag.minTokens, Math.floor((w[i]! / sum) * frac * tw.totalTokens)));
          if (b.reduce((s, v) => s + v, 0) > tw.totalTokens || tw.plannedCost(a, b) > tw.maxCostUsd) continue;
          assert.ok(tw.reward(c, a, b) <= o.reward + 1e-6, `${tw.name}: random ${tw.reward(c, a, b)} > oracle ${o.reward}`);
        }
      }
    }
  });

  it('the seed lists: dev seeds and a wide list for choosing, at least 20 held-out test seeds, disjoint', () => {
    const s = JSON.parse(readFileSync(new URL('../../experiments/tiers/family-seeds.json', import.meta.url), 'utf8')) as { dev: number[]; wide: number[]; test: number[]; how: string };
    assert.ok(s.dev.length >= 4 && s.test.length >= 20 && s.how.length > 0);
    // The wide list: enough worlds to choose a setting on paired runs (docs/tiers.md, "Reach probes").
    assert.ok(s.wide.length >= 36);
    for (const list of [s.test, s.wide]) assert.equal(new Set(list).size, list.length);
    assert.ok(s.test.every((t) => !s.dev.includes(t) && !s.wide.includes(t)));
  });
});
