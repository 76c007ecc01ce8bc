/** Seeded PRNG (mulberry32) and Box–Muller normals: the engine's (`@apportion/sdk/engine`, rng.ts), shared with local mode. */
export { decisionRng, mulberry32, normal } from '@apportion/sdk/engine';
