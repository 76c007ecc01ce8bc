import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

/**
 * VALIDATION_FAILED on a union-shaped field (a feature declaration is numeric, categorical or tokens, told apart by
 * `type`): the message comes from the branch the value's `type` chose, not from the first branch.
 */

const prefix = testPrefix('errors-union');
let rt: Running;

before(async () => {
  rt = await startTest(prefix);
});
after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

async function message(features: unknown[]): Promise<string> {
  const res = await rt.app!.inject({ method: 'PUT', url: '/v1/pipelines/union-p/features', payload: { features } });
  const body = res.json();
  assert.equal(res.statusCode, 400, res.body);
  assert.equal(body.code, 'VALIDATION_FAILED', res.body);
  return body.message as string;
}

describe('VALIDATION_FAILED on a union names the error of the branch the value chose', () => {
  it('a categorical feature with too many hash buckets names the maximum', async () => {
    assert.equal(await message([{ name: 'h', type: 'categorical', hashBuckets: 100000 }]), 'body/features/0/hashBuckets must be <= 1024');
  });

  it('a categorical feature with no values names the minimum', async () => {
    assert.equal(await message([{ name: 'c', type: 'categorical', values: [] }]), 'body/features/0/values must NOT have fewer than 1 items');
  });

  it('a tokens feature with a string mean names the mean, not the type', async () => {
    assert.equal(await message([{ name: 'c', type: 'tokens', mean: 'x' }]), 'body/features/0/mean must be number');
  });

  it('a property of another branch is not allowed in the chosen one', async () => {
    assert.equal(await message([{ name: 'c', type: 'tokens', hashBuckets: 4 }]), 'body/features/0/hashBuckets is not an allowed property');
  });

  it('a type no branch has names the type and the allowed values', async () => {
    assert.equal(await message([{ name: 'n', type: 'numeric' }, { name: 'c', type: 'bogus', mean: 1 }]), 'body/features/1/type must be one of "numeric", "categorical", "tokens"');
  });

  it('a field every branch has is reported from the chosen branch', async () => {
    assert.equal(await message([{ name: 'bad name!', type: 'numeric' }]), 'body/features/0/name must match pattern "^[A-Za-z0-9_.-]{1,128}$"');
  });
});

describe('VALIDATION_FAILED on a field of fixed values names the values', () => {
  async function refused(method: 'PUT' | 'GET', url: string, payload?: unknown): Promise<string> {
    const res = await rt.app!.inject({ method, url, ...(payload === undefined ? {} : { payload: payload as object }) });
    assert.equal(res.statusCode, 400, res.body);
    assert.equal(res.json().code, 'VALIDATION_FAILED', res.body);
    return res.json().message as string;
  }

  it('a budget unit, an overage policy and a cost report grouping: "must be one of", never "must be equal to constant"', async () => {
    assert.equal(await refused('PUT', '/v1/budgets', { scope: 'tenant:acme', unit: 'EUR', allocated: 5 }), 'body/unit must be one of "TOKENS", "USD_MICROCENTS"');
    assert.match(await refused('PUT', '/v1/budgets', { scope: 'tenant:acme', unit: 'TOKENS', allocated: 5, overagePolicy: 'nope' }), /^body\/overagePolicy must be one of "REJECT", /);
    assert.equal(await refused('GET', '/v1/reports/costs?groupBy=planet'), 'querystring/groupBy must be one of "customer", "team", "agent", "model", "day"');
  });

  it('inside a branch a discriminator chose (a numeric feature\'s transform)', async () => {
    assert.match(await message([{ name: 'x', type: 'numeric', transform: 'sqrt' }]), /^body\/features\/0\/transform must be one of "/);
  });

  it('an agent priority in a pipeline', async () => {
    assert.equal(
      await refused('PUT', '/v1/pipelines/enum-p', { defaultTotalTokens: 100, agents: [{ name: 'a', priority: 'urgent' }] }),
      'body/agents/0/priority must be one of "critical", "standard", "background"',
    );
  });
});

describe('VALIDATION_FAILED on a pattern says what the field takes', () => {
  it('a numeric query parameter written as a pattern names its range from the field’s description', async () => {
    for (const [url, field] of [
      ['/v1/experiments/any/audit?limit=0', 'querystring/limit'],
      ['/v1/experiments/any/audit?limit=abc', 'querystring/limit'],
    ] as const) {
      const res = await rt.app!.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 400, res.body);
      assert.equal(res.json().code, 'VALIDATION_FAILED');
      assert.match(res.json().message as string, new RegExp(`^${field} must match pattern ".*" \\(Entries to return, newest first: 1 to 9999\\. Default 100\\.\\)$`), res.body);
    }
  });
});

