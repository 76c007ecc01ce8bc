import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '../../src/learner/rng.js';
import { bestStaticTier, loadTierWorld, servedStatic } from '../../src/learner/sim/tiers.js';
import { response } from '../../src/learner/tiers-split.js';

/** The simulated worlds with model tiers: prices from the price table, the seed's claim where it holds and where it does not, an exact oracle. */

const cheap = loadTierWorld('cheap-suffices');
const strong = loadTierWorld('strong-needed');
const FORMATTER = 2;

describe('tier worlds', () => {
  it('price tokens from the price table at the engine blend (opus 15/75, haiku 1/5 USD per million)', () => {
    assert.deepEqual(cheap.models, ['claude-opus-4-1', 'claude-haiku-4-5']);
    assert.ok(Math.abs(cheap.rates[0]! - (0.7 * 15 + 0.3 * 75) / 1e6) < 1e-15);
    assert.ok(Math.abs(cheap.rates[1]! - (0.7 * 1 + 0.3 * 5) / 1e6) < 1e-15);
  });

  it("cheap-suffices: the peripheral formatter does better with 16,000 tokens on haiku than with 4,000 on opus, for less", () => {
    const rng = mulberry32(3);
    for (let k = 0; k < 200; k++) {
      const c = cheap.sample(rng);
      const f = cheap.curves(c)[FORMATTER]!;
      assert.ok(response(f[1]!, 16_000) > response(f[0]!, 4000), JSON.stringify(c));
    }
    assert.ok(16_000 * cheap.rates[1]! < 4000 * cheap.rates[0]!);
  });

  it('strong-needed: at equal cost the formatter does better on opus (haiku never reaches it)', () => {
    const rng = mulberry32(4);
    const equal = Math.floor((4000 * strong.rates[0]!) / strong.rates[1]!);
    for (let k = 0; k < 200; k++) {
      const f = strong.curves(strong.sample(rng))[FORMATTER]!;
      assert.ok(response(f[0]!, 4000) > response(f[1]!, equal) + 0.1);
    }
  });

  it('the oracle is feasible and beats every random feasible choice; it routes the formatter to haiku only where haiku suffices', () => {
    const rng = mulberry32(5);
    for (const [tw, cheapShare] of [
      [cheap, (s: number) => s > 0.8],
      [strong, (s: number) => s < 0.05],
    ] as const) {
      let onHaiku = 0;
      for (let k = 0; k < 60; k++) {
        const c = tw.sample(rng);
        const o = tw.oracle(c, tw.totalTokens, tw.maxCostUsd);
        assert.ok(tw.plannedCost(o.assign, o.budgets) <= tw.maxCostUsd + 1e-12);
        assert.ok(o.budgets.reduce((s, v) => s + v, 0) <= tw.totalTokens);
        o.budgets.forEach((b, i) => assert.ok(b >= tw.agents[i]!.minTokens && b <= tw.agents[i]!.maxTokens));
        if (o.assign[FORMATTER] === 1) onHaiku++;
        for (let r = 0; r < 40; r++) {
          const a = tw.assignments[Math.floor(rng() * tw.assignments.length)]!;
          const raw = tw.agents.map((x) => x.minTokens + rng() * (x.maxTokens - x.minTokens));
          const cost = tw.plannedCost(a, raw);
          const f = Math.min(1, tw.maxCostUsd / cost, tw.totalTokens / raw.reduce((s, v) => s + v, 0));
          const b = raw.map((v, i) => Math.max(tw.agents[i]!.minTokens, v * f));
          if (tw.plannedCost(a, b) > tw.maxCostUsd) continue;
          assert.ok(tw.quality(c, a, b) <= o.quality + 1e-6, `${tw.name}: random ${tw.quality(c, a, b)} > oracle ${o.quality}`);
        }
      }
      assert.ok(cheapShare(onHaiku / 60), `${tw.name}: formatter on haiku in ${onHaiku} of 60 requests`);
    }
  });

  it('the best static choice (one model per agent, as the engine serves it) stays within the ceiling and below the oracle', () => {
    const rng = mulberry32(6);
    const cs = Array.from({ length: 80 }, () => cheap.sample(rng));
    const st = bestStaticTier(cheap, cs, cheap.totalTokens, cheap.maxCostUsd);
    assert.deepEqual(st.assign.slice(1), [1, 1], 'writer and formatter on haiku');
    const b = servedStatic(cheap, st.assign, st.shares, cheap.totalTokens, cheap.maxCostUsd);
    assert.ok(cheap.plannedCost(st.assign, b) <= cheap.maxCostUsd);
    const oracle = cs.reduce((s, c) => s + cheap.oracle(c, cheap.totalTokens, cheap.maxCostUsd).quality, 0) / cs.length;
    assert.ok(st.value < oracle, `${st.value} < ${oracle}`);
  });
});
