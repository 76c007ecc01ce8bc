import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { isApplied } from '../../src/feedback/processor.js';
import { decodeEvent, type LoggedEvent } from '../../src/learner/events.js';
import { learnerKeys } from '../../src/learner/keys.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

// A request's features are logged with its outcome into the learner's training buffer (100,000 events): what a
// client sends there must be bounded, whatever it sends.
const prefix = testPrefix('feature-bounds');
let rt: Running;

const call = (method: 'GET' | 'PUT' | 'POST', url: string, payload?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(headers ? { headers } : {}), ...(payload !== undefined ? (typeof payload === 'string' ? { payload } : { payload: payload as object }) : {}) });

before(async () => {
  // Ticks far apart: the outcome's event stays in the incoming list, where the test reads it.
  rt = await startTest(prefix, {}, { APPORTION_LEARNER_TICK_MS: '3600000' });
  assert.equal((await call('PUT', '/v1/pipelines/fb', FIVE_AGENTS)).statusCode, 200);
  const decl = await call('PUT', '/v1/pipelines/fb/features', {
    features: [
      { name: 'tier', type: 'categorical', values: ['free', 'pro'] },
      { name: 'region', type: 'categorical', hashBuckets: 16 },
      { name: 'question', type: 'tokens' },
      { name: 'turns', type: 'numeric' },
    ],
  });
  assert.equal(decl.statusCode, 200, decl.body);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

/** Allocates with `features`, reports an outcome, and answers the training event the outcome logged. */
async function logged(features: Record<string, unknown>): Promise<LoggedEvent> {
  const r = await call('POST', '/v1/allocations', { pipeline: 'fb', features });
  assert.equal(r.statusCode, 200, r.body.slice(0, 500));
  const id = r.json().decisionId as string;
  const o = await call('POST', '/v1/outcomes', { decisionId: id, quality: 0.5 });
  assert.equal(o.statusCode, 202, o.body);
  await eventually(() => isApplied(rt.core.redis, rt.core.keys, 'fb', id));
  const k = learnerKeys(rt.core.keys, 'fb');
  const raw = [...(await rt.core.redis.lrange(k.incoming, 0, -1)), ...(await rt.core.redis.lrange(k.buffer, 0, -1))];
  for (const line of raw) {
    const e = decodeEvent(line.slice(line.indexOf('|') + 1));
    if (e?.id === id) return e;
  }
  throw new Error(`no training event for ${id}`);
}

describe('features in the training buffer are bounded', () => {
  it('keeps every declared feature and a bounded number of small undeclared ones; long strings are not kept', async () => {
    const junk = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`junk${String(i).padStart(3, '0')}`, 'x'.repeat(200)]));
    const e = await logged({ tier: 'pro', region: 'eu-west', questionText: 'How do I reset my password?', turns: 3, ...junk, blob: 'y'.repeat(900_000), small: 7 });
    assert.equal(e.f.tier, 'pro');
    assert.equal(e.f.region, 'eu-west');
    assert.equal(typeof e.f.questionTokens, 'number');
    assert.equal(e.f.turns, 3);
    assert.equal(e.f.blob, undefined, 'a string over the cap is not kept');
    const undeclared = Object.keys(e.f).filter((k) => !['tier', 'region', 'questionTokens', 'turns'].includes(k));
    assert.ok(undeclared.length <= 32, `${undeclared.length} undeclared features kept`);
    assert.ok(undeclared.length > 0, 'small undeclared features are kept (a later declaration can learn from them)');
    for (const k of undeclared) assert.ok(JSON.stringify(e.f[k]).length <= 258, k);
    assert.ok(JSON.stringify(e).length < 16_000, `event of ${JSON.stringify(e).length} characters`);
  });

  it('a declared feature with a huge string value is not kept (it reads as missing)', async () => {
    const e = await logged({ tier: 'pro', region: 'z'.repeat(5000) });
    assert.equal(e.f.tier, 'pro');
    assert.equal(e.f.region, undefined);
  });

  it('refuses a request with too many features with a 400 naming the field, and a body over the limit with a 413', async () => {
    const many = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`f${i}`, i]));
    const r = await call('POST', '/v1/allocations', { pipeline: 'fb', features: many });
    assert.equal(r.statusCode, 400, r.body.slice(0, 300));
    assert.equal(r.json().code, 'VALIDATION_FAILED');
    assert.match(r.json().message, /body\/features/);
    const big = await call('POST', '/v1/allocations', { pipeline: 'fb', features: { a: 'q'.repeat(1_100_000) } });
    assert.equal(big.statusCode, 413, big.body.slice(0, 300));
    assert.equal(big.json().code, 'BODY_TOO_LARGE');
  });

  it('hostile feature names are refused with a 400 or kept as plain data, never a 5xx', async () => {
    for (const body of [
      '{"pipeline":"fb","features":{"__proto__":{"tier":"pro"}}}',
      '{"pipeline":"fb","features":{"constructor":{"prototype":{"x":1}}}}',
      '{"pipeline":"fb","features":{"constructor":"x","hasOwnProperty":1,"toString":"y","valueOf":null}}',
      '{"pipeline":"fb","features":{"":1,"a\\u0000b":"c"}}',
    ]) {
      const r = await call('POST', '/v1/allocations', body, { 'content-type': 'application/json' });
      assert.ok(r.statusCode === 200 || r.statusCode === 400, `${body} → ${r.statusCode} ${r.body}`);
      if (r.statusCode === 400) assert.match(r.json().message, /features|body/, body);
    }
  });
});
