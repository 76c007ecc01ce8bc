import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import murmurhash from 'murmurhash';
import { assign, bucket, chooseVariant, cumulative, hashUnit, HASH_VERSION, seedOf, type BucketInput, type HashPurpose } from '../../src/rollout/bucketing.js';

interface Vectors {
  hashVersion: number;
  murmur3: [string, number, number][];
  seeds: [string, HashPurpose, number][];
  hash: [string, HashPurpose, string, number][];
  assign: [string, BucketInput, number][];
  cumulative: [number[], number[]][];
}
const V = JSON.parse(readFileSync(new URL('../vectors/bucketing.json', import.meta.url), 'utf8')) as Vectors;

describe('bucketing vectors (test/vectors/bucketing.json)', () => {
  it('is the hash version the vectors were made for', () => assert.equal(V.hashVersion, HASH_VERSION));
  it('murmur3_x86_32 of UTF-8 bytes', () => {
    for (const [key, seed, want] of V.murmur3) assert.equal(murmurhash.v3(new TextEncoder().encode(key), seed), want, `${key}/${seed}`);
  });
  it('per-purpose seeds', () => {
    for (const [seed, purpose, want] of V.seeds) assert.equal(seedOf(seed, purpose), want, `${seed}|${purpose}`);
  });
  it(`unit positions (${V.hash.length} cases)`, () => {
    for (const [seed, purpose, key, want] of V.hash) assert.equal(bucket(key, seed, purpose), want, `${seed}/${purpose}/${key}`);
  });
  it(`assignments (${V.assign.length} cases)`, () => {
    for (const [name, input, want] of V.assign) assert.equal(assign(input), want, name);
  });
  it('cumulative weights', () => {
    for (const [w, want] of V.cumulative) assert.deepEqual(cumulative(w), want, JSON.stringify(w));
  });
});

/** Deterministic pseudo-random unit keys (the property tests must not depend on the run). */
function keys(n: number, salt: string): string[] {
  const out: string[] = [];
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + i) | 0;
    out.push(`${salt}-${(x >>> 0).toString(36)}-${i}`);
  }
  return out;
}

describe('bucketing properties (100k keys)', () => {
  const units = keys(100_000, 'u');

  it('assignment shares are within ±1 % of the weights', () => {
    for (const weights of [[1, 1], [0.2, 0.8], [1, 2, 3, 4], [0.05, 0.95]]) {
      const cum = cumulative(weights);
      const seed = seedOf(`share-${weights.join('-')}`, 'variant');
      const counts = weights.map(() => 0);
      for (const u of units) counts[chooseVariant(cum, hashUnit(u, seed))]!++;
      const total = weights.reduce((s, w) => s + w, 0);
      counts.forEach((c, i) => {
        const share = c / units.length;
        assert.ok(Math.abs(share - weights[i]! / total) < 0.01, `weights ${weights}: variant ${i} got ${share}`);
      });
    }
  });

  it('coverage includes its share, and raising it never drops a unit or changes its variant', () => {
    const seed = 'monotone';
    const levels = [0.01, 0.05, 0.1, 0.25, 0.5, 1];
    let prev = new Map<string, number>();
    for (const c of levels) {
      const now = new Map<string, number>();
      for (const u of units) {
        const v = assign({ unitKey: u, seed, coverage: c, weights: [1, 1, 1] });
        if (v >= 0) now.set(u, v);
      }
      assert.ok(Math.abs(now.size / units.length - c) < 0.01, `coverage ${c}: included ${now.size}`);
      for (const [u, v] of prev) assert.equal(now.get(u), v, `unit ${u} moved when coverage rose to ${c}`);
      prev = now;
    }
  });

  it('inclusion and variant are independent (chi-square on the 2×2 table, and equal shares inside and outside)', () => {
    const inc = seedOf('indep', 'inclusion');
    const vs = seedOf('indep', 'variant');
    const table = [
      [0, 0],
      [0, 0],
    ];
    for (const u of units) table[hashUnit(u, inc) < 0.3 ? 1 : 0]![hashUnit(u, vs) < 0.5 ? 1 : 0]!++;
    const n = units.length;
    let chi = 0;
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 2; j++) {
        const row = table[i]![0]! + table[i]![1]!;
        const col = table[0]![j]! + table[1]![j]!;
        const e = (row * col) / n;
        chi += (table[i]![j]! - e) ** 2 / e;
      }
    assert.ok(chi < 10.83, `chi-square ${chi} (p < 0.001 would mean dependence)`);
    const shareIn = table[1]![1]! / (table[1]![0]! + table[1]![1]!);
    const shareOut = table[0]![1]! / (table[0]![0]! + table[0]![1]!);
    assert.ok(Math.abs(shareIn - shareOut) < 0.01);
    // And the two hashes of one unit really differ (not the same draw reused).
    assert.ok(units.slice(0, 1000).filter((u) => hashUnit(u, inc) === hashUnit(u, vs)).length === 0);
  });

  it('changing the seed reshuffles units', () => {
    const a = seedOf('seed-a', 'variant');
    const b = seedOf('seed-b', 'variant');
    const same = units.slice(0, 10_000).filter((u) => hashUnit(u, a) < 0.5 === hashUnit(u, b) < 0.5).length;
    assert.ok(Math.abs(same / 10_000 - 0.5) < 0.03, `agreement ${same}`);
  });

  it('zero-weight variants are never chosen', () => {
    const cum = cumulative([1, 0, 1, 0]);
    const seed = seedOf('zero', 'variant');
    for (const u of units.slice(0, 20_000)) {
      const v = chooseVariant(cum, hashUnit(u, seed));
      assert.ok(v === 0 || v === 2);
    }
  });
});
