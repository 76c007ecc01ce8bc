import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CONDITION_OPS } from '../../src/rollout/schema.js';
import { compileTargeting, targetingProblems } from '../../src/rollout/targeting.js';

describe('targeting (pure)', () => {
  const f = { tier: 'pro', messageCount: 12, region: 'eu-west-1', beta: true, empty: null };
  const t = (rule: Parameters<typeof compileTargeting>[0], features: Record<string, string | number | boolean | null> = f, unit = 'acme:42') => compileTargeting(rule)(features, unit);

  it('every operator, with and without per-condition inversion', () => {
    const cases: [string, Record<string, unknown>, boolean][] = [
      ['in', { attribute: 'tier', op: 'in', values: ['pro', 'team'] }, true],
      ['in miss', { attribute: 'tier', op: 'in', values: ['free'] }, false],
      ['in number', { attribute: 'messageCount', op: 'in', values: [12] }, true],
      ['not_in', { attribute: 'tier', op: 'not_in', values: ['free'] }, true],
      ['not_in missing', { attribute: 'nope', op: 'not_in', values: ['x'] }, true],
      ['eq', { attribute: 'beta', op: 'eq', value: true }, true],
      ['neq', { attribute: 'tier', op: 'neq', value: 'pro' }, false],
      ['neq other', { attribute: 'tier', op: 'neq', value: 'free' }, true],
      ['neq missing', { attribute: 'nope', op: 'neq', value: 'pro' }, false],
      ['neq null', { attribute: 'empty', op: 'neq', value: 'pro' }, false],
      ['gt', { attribute: 'messageCount', op: 'gt', value: 12 }, false],
      ['gte', { attribute: 'messageCount', op: 'gte', value: 12 }, true],
      ['lt', { attribute: 'messageCount', op: 'lt', value: 13 }, true],
      ['lte', { attribute: 'messageCount', op: 'lte', value: 11 }, false],
      ['gt on a string', { attribute: 'tier', op: 'gt', value: 1 }, false],
      ['prefix', { attribute: 'region', op: 'prefix', value: 'eu-' }, true],
      ['contains', { attribute: 'region', op: 'contains', value: 'west' }, true],
      ['contains on a number', { attribute: 'messageCount', op: 'contains', value: '1' }, false],
      ['exists', { attribute: 'tier', op: 'exists' }, true],
      ['exists null', { attribute: 'empty', op: 'exists' }, false],
      ['unitKey prefix', { attribute: 'unitKey', op: 'prefix', value: 'acme:' }, true],
    ];
    for (const [name, cond, want] of cases) {
      assert.equal(t({ all: [cond as never] }), want, name);
      assert.equal(t({ all: [{ ...(cond as object), not: true } as never] }), !want, `not ${name}`);
    }
  });

  it('a missing (or null) attribute fails every operator but not_in, whatever the value', () => {
    const scalar = fc.oneof(fc.string({ maxLength: 8 }), fc.double({ noNaN: true }), fc.boolean());
    fc.assert(
      fc.property(fc.constantFrom(...CONDITION_OPS), scalar, fc.boolean(), (op, value, asNull) => {
        const features: Record<string, null> = asNull ? { x: null } : {};
        const numeric = ['gt', 'gte', 'lt', 'lte'].includes(op);
        const cond = { attribute: 'x', op, ...(op === 'in' || op === 'not_in' ? { values: [value] } : { value: numeric && typeof value !== 'number' ? 1 : value }) };
        assert.equal(t({ all: [cond as never] }, features), op === 'not_in', `${op} ${JSON.stringify(value)}`);
      }),
      { seed: 20, numRuns: 300 },
    );
  });

  it('all AND any, then invert; no rule matches everyone', () => {
    const all = [{ attribute: 'tier', op: 'eq' as const, value: 'pro' }];
    const any = [
      { attribute: 'region', op: 'prefix' as const, value: 'us-' },
      { attribute: 'messageCount', op: 'gt' as const, value: 10 },
    ];
    assert.equal(t({ all, any }), true);
    assert.equal(t({ all, any: [any[0]!] }), false);
    assert.equal(t({ all, any, invert: true }), false);
    assert.equal(t(undefined), true);
    assert.equal(t({}), true);
  });

  it('reports operator/value mismatches naming the field', () => {
    const p = targetingProblems({ all: [{ attribute: 'x', op: 'gt', value: 'a' }], any: [{ attribute: 'y', op: 'in' }] }, 'body/targeting');
    assert.deepEqual(p, ['body/targeting/all/0/value: op gt needs a numeric value', 'body/targeting/any/0/values: op in needs values']);
  });
});
