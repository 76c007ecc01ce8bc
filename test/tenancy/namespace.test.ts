import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { namespaced, namespacePrefix, splitNamespace } from '../../src/http/namespace.js';
import { TENANT_PATTERN } from '../../src/http/tenancy.js';

const tenant = fc.stringMatching(new RegExp(TENANT_PATTERN));

describe('tenant namespaces of ids', () => {
  it('an id namespaced under a valid tenant name splits back into that tenant and the id, whatever the id holds', () => {
    fc.assert(
      fc.property(tenant, fc.string(), (t, id) => {
        const full = namespaced(t, id);
        assert.ok(full.startsWith(namespacePrefix(t)));
        assert.deepEqual(splitNamespace(full), { tenant: t, local: id });
      }),
      { numRuns: 500 },
    );
  });

  it("an operator's id is kept as given and has no tenant unless it names one", () => {
    assert.equal(namespaced(null, 'trace-1'), 'trace-1');
    assert.equal(namespacePrefix(undefined), '');
    assert.deepEqual(splitNamespace('trace-1'), { tenant: null, local: 'trace-1' });
    assert.deepEqual(splitNamespace('~x'), { tenant: null, local: '~x' });
    assert.deepEqual(splitNamespace('acme~a~b'), { tenant: 'acme', local: 'a~b' });
  });
});
