import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWithin, parseScope, scopeOf, ScopeError } from '../../src/budgets/scope.js';

describe('budget scopes (pure)', () => {
  const cases: [string, string[]][] = [
    ['tenant:a', ['tenant:a']],
    ['tenant:a/agent:x', ['tenant:a', 'tenant:a/agent:x']],
    ['tenant:a/workspace:w/workflow:f/agent:x', ['tenant:a', 'tenant:a/workspace:w', 'tenant:a/workspace:w/workflow:f', 'tenant:a/workspace:w/workflow:f/agent:x']],
    ['tenant:acme-corp/workflow:task-123', ['tenant:acme-corp', 'tenant:acme-corp/workflow:task-123']],
  ];
  for (const [text, chain] of cases) {
    it(`parses ${text}`, () => {
      const s = parseScope(text);
      assert.equal(s.path, text);
      assert.deepEqual(s.chain, chain);
      assert.equal(s.tenant, text.split('/')[0]!.slice('tenant:'.length));
    });
  }

  it('derives the same scope from named levels, skipping missing ones', () => {
    assert.deepEqual(scopeOf({ tenant: 'a', agent: 'x', workspace: 'w' }), parseScope('tenant:a/workspace:w/agent:x'));
  });

  it('rejects malformed scopes with a reason', () => {
    const bad: [string, RegExp][] = [
      ['workspace:w', /must start with "tenant:<name>"/],
      ['tenant:a/agent:x/workspace:w', /out of order/],
      ['tenant:a/tenant:b', /out of order or repeated/],
      ['tenant:a/team:x', /unknown level "team"/],
      ['tenant:', /must match/],
      ['tenant:a b', /must match/],
      ['tenant:a//agent:x', /must be "<level>:<name>"/],
    ];
    for (const [text, why] of bad) assert.throws(() => parseScope(text), (e: unknown) => e instanceof ScopeError && why.test(e.message), text);
  });

  it('knows what lies within a scope', () => {
    assert.ok(isWithin('tenant:a/workspace:w/agent:x', 'tenant:a/workspace:w'));
    assert.ok(isWithin('tenant:a', 'tenant:a'));
    assert.ok(!isWithin('tenant:a/workspace:wx', 'tenant:a/workspace:w'));
  });
});
