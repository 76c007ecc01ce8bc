import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newDecisionId, unitBytes } from '@apportion/sdk/engine';
import fc from 'fast-check';
import { decisionSecond } from '../../src/allocation/decisions.js';
import { bucketField } from '../../src/allocation/record-codec.js';

/** Decision ids made in process (local mode): the server's canonical form, so they are stored compactly and found by time. */
describe('local decision ids', () => {
  it('are `<epoch second base 36>-<version 4 UUID>`, distinct, with the second they were made in', () => {
    const seen = new Set<string>();
    const now = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    // More ids than the random pool holds, so it is refilled several times.
    for (let i = 0; i < 5000; i++) {
      const id = newDecisionId(now);
      assert.match(id, /^[0-9a-z]{6,7}-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(decisionSecond(id), Math.floor(now / 1000));
      const field = bucketField(id);
      assert.ok(Buffer.isBuffer(field) && field.length === 16, 'stored under the 16 bytes of its UUID');
      assert.ok(!seen.has(id), `id ${id} repeated`);
      seen.add(id);
    }
    // Every hex digit of the random groups occurs (the formatting covers all byte values).
    const digits = new Set([...seen].map((id) => id.slice(id.indexOf('-') + 1).replaceAll('-', '')).join(''));
    for (const d of '0123456789abcdef') assert.ok(digits.has(d), `digit ${d} never drawn`);
    // Without a time given: the current second.
    const before = Math.floor(Date.now() / 1000);
    const sec = decisionSecond(newDecisionId())!;
    assert.ok(sec >= before && sec <= Math.floor(Date.now() / 1000));
  });
});

describe('unit key bytes (experiment bucketing)', () => {
  it('are the UTF-8 encoding of the key, ASCII or not, short or long', () => {
    const enc = new TextEncoder();
    for (const key of ['', 'u1', 'user-42', 'ü', '数据', 'a'.repeat(64), 'a'.repeat(65), `${'a'.repeat(63)}é`, '\u007f', '\u0080', '😀x']) {
      assert.deepEqual(unitBytes(key), enc.encode(key), key);
    }
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'grapheme-ascii', maxLength: 80 }), fc.string({ unit: 'grapheme', maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 80 })), (key) => {
        assert.deepEqual(unitBytes(key), enc.encode(key));
      }),
      { numRuns: 5000 },
    );
  });
});
