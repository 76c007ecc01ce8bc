import murmurhash from 'murmurhash';

/**
 * Deterministic, sticky bucketing (pure, no I/O).
 *
 * Hash version 1: h = murmur3_x86_32(utf8(unitKey), seed32) / 2^32, a number in [0, 1), where
 * seed32 = murmur3_x86_32(utf8(`${seed}|${purpose}`), 0). Each purpose (`inclusion`, `variant`,
 * `holdout`, and `layer` with the layer id as seed) gets its own 32-bit seed, so the draws are
 * independent: whether a unit is in an experiment says nothing about which variant it gets.
 * A new hash version would get a new number; documents record the version they were created with.
 */
export const HASH_VERSION = 1;

export type HashPurpose = 'inclusion' | 'variant' | 'holdout' | 'layer';

const enc = new TextEncoder();

export function seedOf(seed: string, purpose: HashPurpose): number {
  return murmurhash.v3(enc.encode(`${seed}|${purpose}`), 0);
}

/**
 * UTF-8 bytes of a unit key. The router encodes a key once per request and hashes the bytes for every
 * purpose: murmurhash's string path re-encodes on each call (~0.5 µs), the byte path takes ~30 ns.
 */
export function unitBytes(unitKey: string): Uint8Array {
  return Buffer.from(unitKey, 'utf8');
}

/** The unit's position in [0, 1) for a precomputed 32-bit seed (key as a string or its UTF-8 bytes). */
export function hashUnit(unitKey: string | Uint8Array, seed32: number, version = HASH_VERSION): number {
  if (version !== 1) throw new Error(`unknown hash version ${version}`);
  return murmurhash.v3(typeof unitKey === 'string' ? unitBytes(unitKey) : unitKey, seed32) / 4294967296;
}

/** Convenience: hash for a (seed, purpose) pair. */
export function bucket(unitKey: string, seed: string, purpose: HashPurpose, version = HASH_VERSION): number {
  return hashUnit(unitKey, seedOf(seed, purpose), version);
}

/** Cumulative upper bounds of normalised weights (last one forced to exactly 1). */
export function cumulative(weights: readonly number[]): number[] {
  const sum = weights.reduce((s, w) => s + w, 0);
  if (!(sum > 0)) throw new Error('weights must sum to a positive number');
  const out: number[] = [];
  let acc = 0;
  for (const w of weights) {
    acc += w / sum;
    out.push(acc);
  }
  // Float sums may stop short of 1: the last positive weight (and any zero weights after it) end at 1 exactly.
  let last = weights.length - 1;
  while (last > 0 && !(weights[last]! > 0)) last--;
  for (let i = last; i < out.length; i++) out[i] = 1;
  return out;
}

/** Index of the variant whose cumulative range holds h (h in [0, 1)). Zero-weight variants are never chosen. */
export function chooseVariant(cum: readonly number[], h: number): number {
  for (let i = 0; i < cum.length; i++) if (h < cum[i]!) return i;
  return cum.length - 1;
}

/** Inclusion: a unit is in when its inclusion hash is below the coverage, so raising coverage only adds units. */
export function isIncluded(h: number, coverage: number): boolean {
  return h < coverage;
}

/** Layer slot: [from, to) of the layer's hash space. */
export function inRange(h: number, range: readonly [number, number]): boolean {
  return h >= range[0] && h < range[1];
}

export interface BucketInput {
  readonly unitKey: string;
  readonly seed: string;
  readonly coverage: number;
  readonly weights: readonly number[];
  readonly hashVersion?: number;
}

/** Full assignment for one unit: variant index, or -1 when outside the coverage. */
export function assign(input: BucketInput): number {
  const v = input.hashVersion ?? HASH_VERSION;
  if (!isIncluded(bucket(input.unitKey, input.seed, 'inclusion', v), input.coverage)) return -1;
  return chooseVariant(cumulative(input.weights), bucket(input.unitKey, input.seed, 'variant', v));
}
