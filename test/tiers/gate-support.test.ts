import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tierModelsOut } from '@apportion/sdk/engine';
import type { LoggedEvent } from '../../src/learner/events.js';
import { TIER_GATE, gateVerdict, type GateVerdict } from '../../src/learner/gate.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { tierGateInput } from '../../src/learner/tier-gate.js';
import { initialParams, tierGreedy, type TierAction, type TierParams } from '../../src/learner/tiers-policy.js';
import { cheapSufficesGate } from '../helpers/tier-gate-fixture.js';

/**
 * The activation gate on a pipeline with model tiers when the candidate's action has too little support. A tier
 * candidate is mixed into 10 % of decisions (TIER_CANDIDATE_SHARE); with a `trainEvery` below the tier default of 500
 * a look sees ~20 plays of it, and one with 19 of 230 (the gate needs 20) was refused and never served. Now such a
 * candidate waits (GateRule.supportWaits: it stays the candidate and is judged again at the next retrain on all the
 * decisions since it was proposed), as a token candidate does; one whose estimate shows harm is still refused.
 */
const { tw, pipeline, agents, encoder, params, names, T, opts, fitted } = cheapSufficesGate();

/** A joint version that puts every agent on the cheap model (as in learned.test.ts: worse than the default). */
function allCheap(): TierParams {
  const p = initialParams(agents, encoder.dim, 5000);
  agents.forEach((_, i) => {
    p.eta[i]![1] = 8;
    p.kappa[i]![1] = -2;
  });
  return p;
}

/** The default strategy's action: the first model for every agent, an even split of the total. */
const defaultAction = (): TierAction => ({ assign: tw.agents.map(() => 0), budgets: tw.agents.map(() => Math.floor(T / tw.agents.length)) });

/**
 * Decisions of the safe start with a pending candidate: the default's action (logged probability 0.8), the
 * candidate's greedy action (0.1) and a random model assignment at the default's tokens (0.1). The candidate's
 * action is served on the decisions `playsCandidate(t)` picks (so the test sets its support), the others at random.
 */
function decisions(n: number, seed: number, candidate: TierParams, playsCandidate: (t: number) => boolean, t0 = 0): LoggedEvent[] {
  const rng = mulberry32(seed);
  return Array.from({ length: n }, (_, i) => {
    const t = t0 + i;
    const c = tw.sample(rng);
    const f = tw.features(c);
    const acts: TierAction[] = [defaultAction(), tierGreedy(candidate, agents, encoder.encode(f), T, Infinity, opts)!, { assign: tw.assignments[Math.floor(rng() * tw.assignments.length)]!, budgets: defaultAction().budgets }];
    const P = [0.8, 0.1, 0.1];
    const k = playsCandidate(t) ? 1 : rng() < 0.1 / 0.9 ? 2 : 0;
    const chosen = acts[k]!;
    const o = tw.outcome(c, chosen.assign, chosen.budgets, rng);
    const models = (a: TierAction) => names.map((nm) => tierModelsOut(pipeline, a.assign)[nm] ?? null);
    return { id: `d${seed}-${t}`, t, s: 'l', f, T, b: Object.fromEntries(names.map((nm, j) => [nm, chosen.budgets[j]!])), q: o.quality, c: null, C: acts.map((a) => [...a.budgets]), CM: acts.map(models), P, k, M: models(chosen) };
  });
}

const judge = (events: readonly LoggedEvent[], candidate: TierParams, look: number): GateVerdict =>
  gateVerdict(tierGateInput(pipeline, params, events, { weights: undefined as never, encoder, tiers: candidate }, undefined, defaultAction), TIER_GATE, look);

const candidatePlays = (v: GateVerdict): number => Number(/the candidate's split was played on (\d+) of/.exec(v.reason)?.[1] ?? NaN);

describe('the activation gate for a tier candidate with too little support', () => {
  const good = fitted(2);
  // One retrain interval at trainEvery 230: the candidate's action played on every 13th decision (18 of 230, < 20).
  const first = decisions(230, 4, good, (t) => t % 13 === 0);
  // The next interval: all decisions since the candidate was proposed (460), its action on ~10 % of the new ones.
  const both = [...first, ...decisions(230, 5, good, (t) => t % 10 === 0, 230)];

  it('waits (judged again at the next retrain) instead of being refused', () => {
    const v = judge(first, good, 1);
    const plays = candidatePlays(v);
    assert.ok(plays > 0 && plays < (TIER_GATE.minSupport ?? 0), v.reason);
    assert.equal(v.pass, false);
    assert.equal(v.wait, true, v.reason);
    assert.equal(v.look, 1);
    assert.deepEqual(v.comparisons, [], 'no estimate on too little support');
    assert.match(v.reason, /too little support: the candidate's split was played on \d+ of 230 decisions; the gate needs 20 each .*judged again on more decisions/);
  });

  it('is judged at the next look on all the decisions since it was proposed', () => {
    const v = judge(both, good, 2);
    assert.ok(v.comparisons.length > 0, v.reason);
    assert.doesNotMatch(v.reason, /too little support/);
    assert.equal(v.events, 460);
    assert.equal(v.look, 2);
    assert.ok(v.comparisons.every((c) => c.against === 'default' && Number.isFinite(c.diff) && c.lo <= c.diff), v.reason);
  });

  it('is refused for support after supportWaits looks, and at once when its action was never played', () => {
    const waits = TIER_GATE.supportWaits ?? 0;
    assert.ok(waits >= 1);
    const late = judge(first, good, waits + 1);
    assert.equal(late.pass, false);
    assert.notEqual(late.wait, true, late.reason);
    assert.match(late.reason, /too little support/);
    // Never played (a strategy in shadow): more decisions bring it no plays.
    const never = judge(decisions(230, 6, good, () => false), good, 1);
    assert.ok(/the candidate's split was played on 0 of 230/.test(never.reason), never.reason);
    assert.equal(never.pass, false);
    assert.notEqual(never.wait, true, never.reason);
  });

  it('still refuses a candidate whose estimate shows harm once it has support', () => {
    const bad = allCheap();
    const thin = judge(decisions(230, 7, bad, (t) => t % 13 === 0), bad, 1);
    assert.equal(thin.wait, true, thin.reason);
    const judged = judge([...decisions(230, 7, bad, (t) => t % 13 === 0), ...decisions(230, 8, bad, (t) => t % 10 === 0, 230)], bad, 2);
    assert.equal(judged.pass, false);
    assert.notEqual(judged.wait, true, judged.reason);
    const d = judged.comparisons.find((c) => c.against === 'default');
    assert.ok(d && d.diff < -TIER_GATE.delta, judged.reason);
  });
});
