import murmurhash from 'murmurhash';

/** Seeded PRNG (mulberry32): deterministic streams for simulations, tests and weight initialisation. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal by Box–Muller. */
export function normal(rng: () => number): number {
  const u = Math.max(rng(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/**
 * The random stream of one decision: mulberry32 seeded with murmur3_x86_32(utf8(decisionId), seed32 of
 * `purpose`). A decision's draws are a function of its id, so the server and the SDK's local mode draw the same
 * numbers for the same decision, and a logged decision can be replayed. Without an id (offline evaluation),
 * Math.random.
 */
export function decisionRng(decisionId: string | undefined, purpose: string): () => number {
  if (decisionId === undefined) return Math.random;
  let seed = purposeSeeds.get(purpose);
  if (seed === undefined) purposeSeeds.set(purpose, (seed = murmurhash.v3(purpose, 0)));
  return mulberry32(murmurhash.v3(decisionId, seed));
}
const purposeSeeds = new Map<string, number>();
