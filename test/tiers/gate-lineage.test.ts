import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tierModelsOut } from '@apportion/sdk/engine';
import type { LoggedEvent } from '../../src/learner/events.js';
import { DEFAULT_GATE, gateVerdict } from '../../src/learner/gate.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { tierGateInput } from '../../src/learner/tier-gate.js';
import { tierGreedy, type TierAction, type TierParams } from '../../src/learner/tiers-policy.js';
import { cheapSufficesGate } from '../helpers/tier-gate-fixture.js';

/**
 * The activation gate's lineage evidence for joint (model-and-tokens) versions: while a tier version serves, a
 * candidate's comparison with the default strategy is chained through the serving version's held-out decisions, as
 * for token versions (gate.ts). Before, tier candidates were judged on their own retrain interval only, where the
 * default's action is played on a few percent of decisions: every candidate was refused for too little support and
 * the learner stayed on its first version.
 */
const { tw, pipeline, agents, encoder, params, names, T, opts, fitted } = cheapSufficesGate();

/** The default strategy's action: the first model for every agent, an even split of the total. */
const defaultAction = (): TierAction => ({ assign: tw.agents.map(() => 0), budgets: tw.agents.map(() => Math.floor(T / tw.agents.length)) });

/**
 * Decisions served by `serving` (its greedy action), the default's action mixed in with probability `pDefault` and a
 * random joint action with 0.1; `candidate`'s greedy action (when given) with 0.1 too.
 */
function decisions(n: number, seed: number, serving: TierParams, pDefault: number, candidate?: TierParams, t0 = 0): LoggedEvent[] {
  const rng = mulberry32(seed);
  return Array.from({ length: n }, (_, t) => {
    const c = tw.sample(rng);
    const f = tw.features(c);
    const x = encoder.encode(f);
    const acts: TierAction[] = [tierGreedy(serving, agents, x, T, Infinity, opts)!, defaultAction()];
    const P = [1 - pDefault - (candidate ? 0.2 : 0.1), pDefault];
    if (candidate) {
      acts.push(tierGreedy(candidate, agents, x, T, Infinity, opts)!);
      P.push(0.1);
    }
    acts.push(tw.assignments.map((a) => ({ assign: a, budgets: defaultAction().budgets }))[Math.floor(rng() * tw.assignments.length)]!);
    P.push(0.1);
    let u = rng();
    let k = 0;
    while (k < P.length - 1 && u >= P[k]!) u -= P[k++]!;
    const chosen = acts[k]!;
    const o = tw.outcome(c, chosen.assign, chosen.budgets, rng);
    const models = (a: TierAction) => names.map((n) => tierModelsOut(pipeline, a.assign)[n] ?? null);
    return {
      id: `d${seed}-${t}`,
      t: t0 + t,
      s: 'l',
      f,
      T,
      b: Object.fromEntries(names.map((n, i) => [n, chosen.budgets[i]!])),
      q: o.quality,
      c: null,
      C: acts.map((a) => [...a.budgets]),
      CM: acts.map(models),
      P,
      k,
      M: models(chosen),
    };
  });
}

describe('the activation gate for joint versions along a lineage', () => {
  it("chains the comparison with the default through the serving tier version's held-out decisions", () => {
    const serving = fitted(1);
    const candidate = fitted(2);
    // Since the candidate was proposed: the default's action is played on about 2 % of 400 decisions (< 20).
    const recent = decisions(400, 4, serving, 0.02, candidate, 3000);
    // Since the serving version was trained: 3,000 decisions with the default's action at 10 % (its control arm).
    const record = [...decisions(3000, 3, serving, 0.1), ...recent];
    const servingOf = (evidence?: readonly LoggedEvent[]) => ({ version: 7, tiers: serving, encoder, ...(evidence ? { evidence } : {}) });
    const direct = gateVerdict(tierGateInput(pipeline, params, recent, { weights: undefined as never, encoder, tiers: candidate }, servingOf(), defaultAction), DEFAULT_GATE);
    assert.equal(direct.pass, false);
    assert.match(direct.reason, /too little support: the default strategy's split was played on \d+ of 400 decisions/);
    const chained = gateVerdict(tierGateInput(pipeline, params, recent, { weights: undefined as never, encoder, tiers: candidate }, servingOf(record), defaultAction), DEFAULT_GATE);
    const d = chained.comparisons.find((c) => c.against === 'default');
    assert.ok(d, chained.reason);
    assert.deepEqual(d.lineage, { version: 7, events: 3400 });
    assert.match(chained.reason, /along the lineage of version 7, on its 3400 held-out decisions/);
    assert.ok(Number.isFinite(d.diff) && d.lo <= d.diff);
  });
});
