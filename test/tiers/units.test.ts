import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BudgetController } from '@apportion/sdk';
import { applyTiers, blendedRate, checkCeiling, toPipeline, totalForCeiling, type Pipeline } from '@apportion/sdk/engine';
import { decodeInline, encodeInline } from '../../src/allocation/record-codec.js';
import type { DecisionRecord } from '../../src/allocation/decisions.js';
import { toDsjson } from '../../src/learner/dsjson.js';
import type { LoggedEvent } from '../../src/learner/events.js';
import { loggingPolicyOf } from '../../src/learner/hooks.js';
import { importanceWeight } from '../../src/learner/ope-service.js';

/** Model tiers, pure parts: the tier stage's arithmetic, the record codec, the log (propensities, OPE, DSJSON), the controller. */

const OPUS = { inputPerMTokUsd: 15, outputPerMTokUsd: 75 };
const HAIKU = { inputPerMTokUsd: 1, outputPerMTokUsd: 5 };
const pipeline: Pipeline = toPipeline({
  id: 'p',
  version: 3,
  doc: {
    defaultTotalTokens: 10_000,
    agents: [
      { name: 'a', priority: 'critical', minTokens: 1000, models: [{ model: 'opus', price: OPUS }, { model: 'haiku', price: HAIKU }] },
      { name: 'b', priority: 'background', minTokens: 0, models: [{ model: 'opus', price: OPUS }, { model: 'haiku', price: HAIKU }] },
    ],
  },
});
const ro = blendedRate(OPUS);
const rh = blendedRate(HAIKU);

describe('the tier stage', () => {
  it('prices a token at 70 % input and 30 % output', () => {
    assert.equal(ro, (0.7 * 15 + 0.3 * 75) / 1e6);
  });

  it('leaves a split within the ceiling alone, and drops the part of the reserve the ceiling cannot pay', () => {
    const t = applyTiers(pipeline, { budgets: { a: 4000, b: 4000 } }, { a: 4000, b: 4000 }, 10_000, 8000 * ro + 500 * ro);
    assert.deepEqual(t.budgets, { a: 4000, b: 4000 });
    assert.deepEqual(t.models, { a: 'opus', b: 'opus' });
    assert.equal(t.reserve, 500);
  });

  it('scales every budget above its minimum by one factor to fit the ceiling', () => {
    const ceiling = (1000 + 0.5 * 3000 + 0.5 * 4000) * ro;
    const t = applyTiers(pipeline, { budgets: { a: 4000, b: 4000 } }, { a: 4000, b: 4000 }, 10_000, ceiling);
    assert.ok(Math.abs(t.budgets.a! - 2500) <= 1 && Math.abs(t.budgets.b! - 2000) <= 1, JSON.stringify(t.budgets));
    assert.ok(t.costUsd! <= ceiling);
    assert.equal(t.reserve, 0);
  });

  it('moves background agents first to their cheapest model when even the minimums do not fit', () => {
    const t = applyTiers(pipeline, { budgets: { a: 5000, b: 5000 } }, { a: 5000, b: 5000 }, 10_000, 999 * ro);
    assert.deepEqual(t.models, { a: 'haiku', b: 'haiku' });
    const u = applyTiers(toPipeline({ id: 'q', version: 1, doc: { defaultTotalTokens: 10, agents: [{ name: 'a', priority: 'critical', minTokens: 1000, models: [{ model: 'opus', price: OPUS }, { model: 'haiku', price: HAIKU }] }, { name: 'b', priority: 'background', minTokens: 1000, models: [{ model: 'opus', price: OPUS }, { model: 'haiku', price: HAIKU }] }] } }), { budgets: { a: 1000, b: 1000 } }, { a: 1000, b: 1000 }, 2000, 1000 * ro + 1000 * rh);
    assert.deepEqual(u.models, { a: 'opus', b: 'haiku' }, 'the critical agent keeps its model when moving the background one is enough');
  });

  it('refuses a ceiling below the minimums on the cheapest models; a ceiling alone buys tokens at the cheapest price', () => {
    assert.throws(() => checkCeiling(pipeline, 999 * rh), /INFEASIBLE|cheapest/);
    assert.equal(totalForCeiling(pipeline, 1), Math.floor(1 / rh));
  });

  it('refuses a strategy that names a model the agent does not declare', () => {
    assert.throws(() => applyTiers(pipeline, { budgets: { a: 1, b: 1 }, models: { a: 'gpt-4o' } }, { a: 1000, b: 0 }, 1000, undefined), /does not declare/);
    assert.deepEqual(applyTiers(pipeline, { budgets: {}, models: { b: 'haiku' } }, { a: 1000, b: 0 }, 1000, undefined).models, { a: 'opus', b: 'haiku' });
  });
});

const record: DecisionRecord = {
  id: 'mabcde-00000000-0000-4000-8000-000000000000',
  pipeline: 'p',
  pipelineVersion: 3,
  strategy: 's',
  strategyVersion: 1,
  strategyKind: 'static',
  reason: 'experiment',
  budgets: { a: 6000, b: 4000 },
  totalTokens: 10_000,
  features: {},
  ts: parseInt('mabcde', 36) * 1000 + 5,
  models: { a: 'opus', b: 'haiku' },
  maxCostUsd: 0.25,
};

describe('model tiers in the log', () => {
  it('decision records keep the models and the ceiling through the compact codec', () => {
    assert.deepEqual(decodeInline(record.id, encodeInline(record)), record);
    const { models: _m, maxCostUsd: _c, ...plain } = record;
    assert.deepEqual(decodeInline(record.id, encodeInline(plain)), plain);
  });

  it('the routing mixture keeps actions with the same budgets on different models apart', () => {
    const d = { ...record, routing: { q: 0.5, alt: [{ s: 't', q: 0.3, b: [6000, 4000], m: ['opus', 'opus'] }, { s: 'u', q: 0.2, b: [6000, 4000], m: ['opus', 'haiku'] }] } };
    const pol = loggingPolicyOf(d, pipeline);
    assert.deepEqual(pol.C, [[6000, 4000], [6000, 4000]]);
    assert.deepEqual(pol.CM, [['opus', 'haiku'], ['opus', 'opus']]);
    assert.deepEqual(pol.P!.map((p) => Math.round(p * 10) / 10), [0.7, 0.3]);
    assert.equal(pol.k, 0);
    assert.deepEqual(pol.M, ['opus', 'haiku']);
    // OPE: a target serving the same budgets on opus/opus matches only the 0.3 action.
    const ev: LoggedEvent = { id: d.id, t: d.ts, s: 's', f: {}, T: 10_000, b: d.budgets, q: 1, c: null, ...pol };
    const opus = importanceWeight(ev, ['a', 'b'], [6000, 4000], 0.02, ['opus', 'opus']);
    assert.deepEqual(opus, { w: 0, supported: true });
    const served = importanceWeight(ev, ['a', 'b'], [6000, 4000], 0.02, ['opus', 'haiku']);
    assert.ok(Math.abs(served.w - 1 / 0.7) < 1e-9);
    // DSJSON names the model of every action, and the ceiling.
    const line = JSON.parse(toDsjson({ ...ev, X: 0.25 }, ['a', 'b']));
    assert.deepEqual(line.c._multi.map((m: { model: unknown }) => m.model), [{ a: 'opus', b: 'haiku' }, { a: 'opus', b: 'opus' }]);
    assert.equal(line.c._maxCostUsd, 0.25);
  });
});

describe('the budget controller on model tiers', () => {
  it("runs each agent on the allocation's model; a fallback model is used under pressure unless already chosen", () => {
    const agents = [
      { name: 'a', model: 'opus', fallbackModel: 'haiku' },
      { name: 'b', model: 'opus', fallbackModel: 'haiku' },
      // c's fallback is cheaper than its own model; the allocation's opus is priced against it by `models`.
      { name: 'c', model: 'haiku', fallbackModel: 'haiku-lite', models: [{ model: 'opus', price: { inputPerMTokUsd: 15, outputPerMTokUsd: 75 } }, { model: 'haiku-lite', price: { inputPerMTokUsd: 0.5, outputPerMTokUsd: 2 } }] },
    ];
    const c = new BudgetController({ budgets: { a: { tokens: 100, model: 'opus' }, b: { tokens: 100, model: 'haiku' }, c: { tokens: 100, model: 'opus' } } }, { agents, degradeAt: 0.3 });
    assert.equal(c.state('b').model, 'haiku');
    const a = c.start('a');
    assert.equal(a.model, 'opus');
    c.record('a', 100);
    assert.ok(c.underPressure);
    const b = c.start('b');
    assert.equal(b.model, 'haiku');
    assert.equal(b.degraded, undefined, 'already on its fallback model: not downgraded again');
    const cc = c.start('c');
    assert.deepEqual([cc.model, cc.degraded, cc.tokens], ['haiku-lite', 'downgrade', 100], "the allocation's opus (not the agent's own haiku) was the model in use: downgraded, same tokens");
  });

  it('downgrades under pressure only to a cheaper model than the one in use', () => {
    const OPUS = { inputPerMTokUsd: 15, outputPerMTokUsd: 75 };
    const SONNET = { inputPerMTokUsd: 3, outputPerMTokUsd: 15 };
    const HAIKU = { inputPerMTokUsd: 1, outputPerMTokUsd: 5 };
    const models = [{ model: 'opus', price: OPUS }, { model: 'sonnet', price: SONNET }, { model: 'haiku', price: HAIKU }];
    const agents = [
      { name: 'x', model: 'opus', fallbackModel: 'sonnet' },
      // The allocation put y and z on haiku: sonnet, their fallback from opus, is dearer.
      { name: 'y', model: 'opus', fallbackModel: 'sonnet', models },
      { name: 'z', model: 'opus', fallbackModel: 'sonnet' },
      { name: 'w', model: 'opus', fallbackModel: 'sonnet', models },
    ];
    const c = new BudgetController(
      { budgets: { x: { tokens: 100, model: 'opus' }, y: { tokens: 100, model: 'haiku' }, z: { tokens: 100, model: 'haiku' }, w: { tokens: 100, model: 'opus' } } },
      { agents, degradeAt: 0.2 },
    );
    c.record('x', 100);
    assert.ok(c.underPressure);
    const y = c.start('y');
    assert.deepEqual([y.model, y.degraded], ['haiku', undefined], 'priced: sonnet is dearer than haiku, no downgrade');
    const z = c.start('z');
    assert.deepEqual([z.model, z.degraded], ['haiku', undefined], 'unpriced and not on its own model: it cannot be known cheaper, no downgrade');
    const w = c.start('w');
    assert.deepEqual([w.model, w.degraded], ['sonnet', 'downgrade'], 'priced and cheaper: downgraded');
    const dearer = new BudgetController({ budgets: { v: { tokens: 10 } } }, { agents: [{ name: 'v', model: 'haiku', fallbackModel: 'opus', models }], degradeAt: 0 });
    const v = dearer.start('v');
    assert.deepEqual([v.model, v.degraded], ['haiku', undefined], 'a fallback priced dearer than the own model is not used');
  });
});
