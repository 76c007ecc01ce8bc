/**
 * `@apportion/sdk/engine`: the allocation engine the server and the SDK's local mode share (pure, no I/O):
 * control-state views, the built-in strategies, experiment routing and propensities, the learned strategy's
 * serving path, and the allocation core with its fallback chain.
 */
export * from './types.js';
export * from './strategies.js';
export * from './routing.js';
export * from './tokens.js';
export * from './rng.js';
export * from './allocate.js';
export * from './learned.js';
export * from './tiers.js';
export * from './shadow.js';
export * from './request.js';
export type { FeatureEncoder, FeatureScaling, FeaturesBody, FeatureSpec } from './mirror/learner/features.js';
export type { Heads, ModelWeights, SerializedWeights } from './mirror/learner/model.js';
export type { Decision, ExploreOptions, PolicyAgent } from './mirror/learner/policy.js';
