import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeInline } from '../../src/allocation/record-codec.js';
import { stampedOverrides } from '../../src/costs/rollup-vector.js';
import { decodeDecisionRecord, type DecisionRecord } from '../../src/kernel/decision.js';
import { decodeEvent, decodeEvents, type LoggedEvent } from '../../src/learner/events.js';
import { readWindow } from '../../src/learner/train-process.js';
import { REDIS_URL, testPrefix, testRedis } from '../helpers/env.js';

const prefix = testPrefix('stored-docs');
const redis = testRedis(prefix);

const full: LoggedEvent = {
  id: 'e1',
  t: 1_700_000_000_000,
  s: 'learn',
  f: { messageCount: 3, taskType: 'refund', vip: true, none: null },
  T: 10_000,
  b: { a: 6000, b: 4000 },
  q: 0.75,
  c: 0.0021,
  C: [
    [6000, 4000],
    [5000, 5000],
  ],
  P: [0.9, 0.1],
  k: 0,
  m: 3,
  a: 0,
  M: ['small', null],
  CM: [
    ['small', null],
    ['large', null],
  ],
  X: 0.05,
  sh: { other: [5000, 5000] },
};
const minimal: LoggedEvent = { id: 'e2', t: 1, s: 's', f: {}, T: 100, b: { a: 100 }, q: 0, c: null, d: 1 };
/** Entries that are not events: not JSON, not an object, a field of the wrong type, a required field missing. */
const corrupt = ['{not json', '"e3"', 'null', JSON.stringify({ ...minimal, q: '0.5' }), JSON.stringify({ ...minimal, f: undefined }), JSON.stringify({ ...minimal, c: undefined })];

describe('stored documents read through their schemas', () => {
  it('a logged event reads back as written, with every optional field or none', () => {
    assert.deepEqual(decodeEvent(JSON.stringify(full)), full);
    assert.deepEqual(decodeEvent(JSON.stringify(minimal)), minimal);
    for (const text of corrupt) assert.equal(decodeEvent(text), undefined, text);
    assert.deepEqual(decodeEvents([JSON.stringify(full), ...corrupt, JSON.stringify(minimal)]), [full, minimal], 'entries that are not events are left out, in order');
  });

  it('the trainer leaves a buffer entry that is not an event out of its window', async () => {
    const key = `${prefix}:{pipeline:a}:buffer`;
    // LPUSH: the last pushed is the newest (first in the buffer).
    await redis.lpush(key, JSON.stringify({ ...minimal, id: 'old' }), '{not json', JSON.stringify({ ...minimal, id: 'new', q: 'x' }), JSON.stringify({ ...minimal, id: 'newest' }));
    const read = await readWindow(redis, REDIS_URL, key, 10);
    assert.equal(read.fetched, 4);
    assert.deepEqual(
      read.events.map((e) => e.id),
      ['newest', 'old'],
    );
  });

  it('a decision record stored as JSON reads back as written; one of another shape reads as absent', () => {
    const rec: DecisionRecord = {
      id: 'd1',
      pipeline: 'p',
      pipelineVersion: 2,
      strategy: 's',
      strategyVersion: 1,
      strategyKind: 'learned',
      reason: 'default',
      budgets: { a: 100 },
      totalTokens: 100,
      features: { n: 1, t: 'x', b: false, z: null },
      unitKey: 'u',
      ts: 5,
      meta: { learner: { m: 1 } },
      routing: { q: 0.5, alt: [{ s: 'other', q: 0.5, b: [100], m: [null] }] },
      models: { a: 'small' },
      maxCostUsd: 0.1,
    };
    assert.deepEqual(decodeDecisionRecord(JSON.stringify(rec)), rec);
    assert.equal(decodeInline('d1', JSON.stringify(rec)), undefined, 'JSON is not a form of a stored record (the compact forms are)');
    assert.equal(decodeDecisionRecord(JSON.stringify({ ...rec, budgets: { a: '100' } })), undefined);
    assert.equal(decodeInline('d1', JSON.stringify({ id: 'd1' })), undefined, 'a JSON record without its fields reads as absent');
  });

  it('a cost price stamp reads back as written; one that does not decode gives no stamped overrides', () => {
    const overrides = [{ model: 'gpt-x', inputMTok: 1, outputMTok: 2 }];
    const of = stampedOverrides(JSON.stringify([['acme', overrides], [null, []]]));
    assert.ok(of);
    assert.deepEqual(of('acme'), overrides);
    assert.deepEqual(of(undefined), []);
    assert.equal(of('other'), undefined);
    assert.equal(stampedOverrides('{not json'), undefined);
    assert.equal(stampedOverrides(JSON.stringify([['acme', [{ model: 'gpt-x' }]]])), undefined, 'an override without its prices');
  });
});
