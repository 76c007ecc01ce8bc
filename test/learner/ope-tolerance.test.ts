/**
 * The default action-match tolerance of off-policy evaluation (ope-service.ts OPE_TOLERANCE) on a toy log with known
 * truth: an A/B of a static split and a nearby one (1.5 % of the total apart), half the decisions each, each split
 * earning a fixed quality. The static target's value is its own split's quality. A tolerance that counts the nearby
 * split as the same action estimates the mix of the two instead (bench/ope.ts setup d measures it on a simulated world).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LoggedEvent } from '../../src/learner/events.js';
import { learnerKeys } from '../../src/learner/keys.js';
import { OPE_TOLERANCE, shareDistance } from '../../src/learner/ope-service.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('ope-tolerance');
const AGENTS = ['a', 'b', 'c'];
const TOTAL = 6000;
let rt: Running;

const inject = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: object) => rt.app!.inject({ method, url, ...(payload ? { payload } : {}) });

before(async () => {
  rt = await startTest(prefix, { workers: false });
  assert.equal((await inject('PUT', '/v1/pipelines/p', { defaultTotalTokens: TOTAL, agents: AGENTS.map((name) => ({ name, minTokens: 100 })) })).statusCode, 200);
  assert.equal((await inject('PUT', '/v1/strategies/fixed', { pipeline: 'p', kind: 'static', params: { shares: { a: 1, b: 2, c: 3 } } })).statusCode, 200);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('off-policy evaluation: the default action-match tolerance', () => {
  it('estimates a static target from its own split, not from a nearby variant’s (A/B 1.5 % of the total apart)', async () => {
    const a = await inject('POST', '/v1/allocations', { pipeline: 'p', strategy: 'fixed', totalTokens: TOTAL });
    assert.equal(a.statusCode, 200, a.body);
    const fixed = AGENTS.map((n) => a.json().budgets[n].tokens as number);
    const near = [fixed[0]!, fixed[1]! - 90, fixed[2]! + 90];
    assert.equal(shareDistance(fixed, near, TOTAL), 0.015);
    const QUALITY = [0.8, 0.4];
    const events: LoggedEvent[] = Array.from({ length: 400 }, (_, i) => {
      const k = i % 2;
      const b = [fixed, near][k]!;
      return { id: `e${i}`, t: Date.now(), s: k === 0 ? 'fixed' : 'near', f: {}, T: TOTAL, b: Object.fromEntries(AGENTS.map((n, j) => [n, b[j]!])), q: QUALITY[k]!, c: null, C: [fixed, near], P: [0.5, 0.5], k };
    });
    await rt.core.redis.lpush(learnerKeys(rt.core.keys, 'p').buffer, ...events.map((e) => JSON.stringify(e)));
    const ope = async (query: string) => {
      const r = await inject('GET', `/v1/pipelines/p/ope?strategy=fixed&resamples=200${query}`);
      assert.equal(r.statusCode, 200, r.body);
      return r.json() as { tolerance: number; support: number; matched: number; ips: { value: number; lo: number; hi: number }; snips: { value: number; lo: number; hi: number }; dr: { value: number; lo: number; hi: number } };
    };
    const truth = QUALITY[0]!;

    const d = await ope('');
    assert.equal(d.tolerance, OPE_TOLERANCE);
    assert.equal(d.support, 1);
    assert.equal(d.matched, 200, 'only the decisions that played the target’s own split');
    for (const e of ['ips', 'snips', 'dr'] as const) {
      assert.ok(Math.abs(d[e].value - truth) < 1e-9, `${e} ${d[e].value} vs truth ${truth}`);
      assert.ok(d[e].lo <= truth && truth <= d[e].hi, `${e} interval [${d[e].lo}, ${d[e].hi}] contains ${truth}`);
    }

    // The former default (2 %) counted the nearby split as the target's: every estimate is the mix's 0.6, and its
    // interval leaves the truth out.
    const old = await ope('&tolerance=0.02');
    assert.equal(old.matched, 400);
    for (const e of ['snips', 'dr'] as const) {
      assert.ok(Math.abs(old[e].value - 0.6) < 1e-9, `${e} at 0.02: ${old[e].value}`);
      assert.ok(old[e].hi < truth, `${e} at 0.02: [${old[e].lo}, ${old[e].hi}] misses ${truth}`);
    }
  });
});
