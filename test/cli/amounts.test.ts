import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatAmount, formatUsd, inDollars, parseAmount } from '../../src/budgets/amounts.js';

describe('CLI amounts', () => {
  it('dollars round-trip exactly through micro-cents', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1_000_000_000_000_000 }), (microcents) => {
        const text = formatUsd(microcents);
        assert.equal(parseAmount(text, 'USD'), microcents);
      }),
      { seed: 18, numRuns: 2000 },
    );
  });

  it('reads dollars as people write them', () => {
    assert.equal(parseAmount('50', 'USD'), 5_000_000_000);
    assert.equal(parseAmount('$12.5', 'USD'), 1_250_000_000);
    assert.equal(parseAmount('0.00000001', 'USD'), 1);
    assert.equal(parseAmount('1,000.25', 'USD'), 100_025_000_000);
    assert.equal(parseAmount('300000000', 'USD_MICROCENTS'), 300_000_000);
    assert.equal(parseAmount('1500', 'TOKENS'), 1500);
    for (const bad of ['', '1e3', 'ten', '$', '0.000000001', '1.5.2'])
      assert.throws(() => parseAmount(bad, 'USD'), /dollar amount|at most 8 decimals/, bad);
    for (const [bad, unit] of [['-1', 'USD'], ['-$0.5', 'USD'], ['-3', 'TOKENS'], ['-3', 'USD_MICROCENTS']] as const) assert.throws(() => parseAmount(bad, unit), /^Error: It must not be negative\.$/, bad);
    assert.throws(() => parseAmount('2.5', 'TOKENS'), /non-negative integer \(tokens\)/);
    assert.throws(() => parseAmount('2.5', 'USD_MICROCENTS'), /micro-cents/);
  });

  it('shows dollars with two decimals unless the amount has more', () => {
    assert.equal(formatUsd(5_000_000_000), '$50.00');
    assert.equal(formatUsd(250_000_000), '$2.50');
    assert.equal(formatUsd(123), '$0.00000123');
    assert.equal(formatUsd(123_456_789_000_000), '$1,234,567.89');
    assert.equal(formatUsd(-150_000_000), '-$1.50');
    assert.equal(formatAmount(2_000_000, 'TOKENS'), '2,000,000');
    assert.equal(formatAmount(2_000_000_000, 'USD_MICROCENTS', true), '2,000,000,000');
  });

  it('converts the amounts of USD objects in an answer, and only those', () => {
    const answer = { balances: [{ scope: 'a', unit: 'USD_MICROCENTS', allocated: 5_000_000_000, spent: 0 }, { scope: 'b', unit: 'TOKENS', allocated: 100 }], replayed: false };
    assert.deepEqual(inDollars(answer), { balances: [{ scope: 'a', unit: 'USD_MICROCENTS', allocated: '$50.00', spent: '$0.00' }, { scope: 'b', unit: 'TOKENS', allocated: 100 }], replayed: false });
  });
});
