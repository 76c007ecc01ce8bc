import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

/** Runs the README's walk-through curl commands, in order, and checks the numbers the README quotes. */
const prefix = testPrefix('readme');
let rt: Running;

interface Step {
  method: 'PUT' | 'POST' | 'GET';
  url: string;
  body?: string;
}

function steps(): Step[] {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const walk = readme.slice(readme.indexOf('## Walk-through'), readme.indexOf('## Strategies'));
  const out: Step[] = [];
  for (const m of walk.matchAll(/curl -s(?:X (PUT|POST))? localhost:3000(\S+?)(?: -H '[^']*' -d '([^']*)')?(?:\s|$)/g)) {
    out.push({ method: (m[1] as 'PUT' | 'POST' | undefined) ?? 'GET', url: m[2]!, ...(m[3] !== undefined ? { body: m[3] } : {}) });
  }
  return out;
}

before(async () => {
  rt = await startTest(prefix);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('README walk-through', () => {
  it('every command works and the quoted numbers are what the server answers', async () => {
    const all = steps();
    assert.deepEqual(
      all.map((s) => `${s.method} ${s.url}`),
      ['PUT /v1/pipelines/research', 'PUT /v1/strategies/research-estimate', 'POST /v1/allocations', 'POST /v1/outcomes', 'GET /v1/strategies/research-estimate/stats'],
    );
    let decisionId = '';
    for (const s of all) {
      const body = s.body?.replace('<from the allocation>', decisionId);
      const res = await rt.app!.inject({ method: s.method, url: s.url, ...(body ? { payload: body, headers: { 'content-type': 'application/json' } } : {}) });
      if (s.method === 'GET') {
        const stats = await eventually(async () => {
          const r = (await rt.app!.inject({ method: 'GET', url: s.url })).json();
          return r.count === 1 ? r : undefined;
        });
        assert.equal(stats.quality.mean, 0.86);
        assert.equal(stats.agents.writer.utilization.toFixed(2), '0.95');
        assert.equal(stats.agents.writer.ceilingHitRate, 1);
        continue;
      }
      assert.ok(res.statusCode < 300, `${s.method} ${s.url}: ${res.body}`);
      if (s.url === '/v1/allocations') {
        const a = res.json();
        decisionId = a.decisionId;
        assert.equal(a.strategy, 'research-estimate');
        assert.equal(a.reason, 'requested');
        assert.equal(a.budgets.planner.tokens, 1152);
        assert.equal(a.budgets.researcher.tokens, 7440);
      }
    }
  });
});
