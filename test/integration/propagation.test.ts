import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('propagation');
let a: Running;
let b: Running;

// Two processes' worth of runtime on one prefix. The 1 s safety-net poll is switched off (1 h), so what
// reaches B can only have come through the pub/sub announcement.
before(async () => {
  a = await startTest(prefix, { workers: false }, { APPORTION_CONFIG_POLL_MS: '3600000' });
  b = await startTest(prefix, { workers: false }, { APPORTION_CONFIG_POLL_MS: '3600000' });
});
after(async () => {
  await Promise.all([a.close(), b.close()]);
  await dropPrefix(prefix);
});

describe('config changed in one process is served by another', () => {
  it('a new pipeline and a new default strategy reach the other process without a restart', async () => {
    assert.equal((await a.app!.inject({ method: 'PUT', url: '/v1/pipelines/p', payload: { defaultTotalTokens: 1000, agents: [{ name: 'x' }, { name: 'y' }] } })).statusCode, 200);
    const first = await eventually(async () => {
      const r = await b.app!.inject({ method: 'POST', url: '/v1/allocations', payload: { pipeline: 'p' } });
      return r.statusCode === 200 ? (r.json() as { budgets: unknown }) : undefined;
    }, 5000);
    assert.deepEqual(first.budgets, { x: { tokens: 500 }, y: { tokens: 500 } });

    await a.app!.inject({ method: 'PUT', url: '/v1/strategies/heavy-x', payload: { pipeline: 'p', kind: 'static', params: { shares: { x: 9, y: 1 } } } });
    await a.app!.inject({ method: 'PUT', url: '/v1/pipelines/p', payload: { defaultTotalTokens: 1000, agents: [{ name: 'x' }, { name: 'y' }], defaultStrategy: 'heavy-x' } });
    const second = await eventually(async () => {
      const r = (await b.app!.inject({ method: 'POST', url: '/v1/allocations', payload: { pipeline: 'p' } })).json();
      return r.strategy === 'heavy-x' ? r : undefined;
    }, 5000);
    assert.deepEqual(second.budgets, { x: { tokens: 900 }, y: { tokens: 100 } });
    assert.equal(second.pipelineVersion, 2);
  });
});
