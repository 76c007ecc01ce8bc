/**
 * Deterministic, sticky bucketing (pure, no I/O): the engine's (`@apportion/sdk/engine`, routing.ts), so the
 * SDK's local mode buckets units exactly as the server does. Hash version 1: see HASH_VERSION there.
 */
export { assign, bucket, chooseVariant, cumulative, HASH_VERSION, hashUnit, seedOf, unitBytes, type BucketInput, type HashPurpose } from '@apportion/sdk/engine';
