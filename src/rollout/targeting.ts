/** A compiled targeting rule (the engine's compileTargeting: local mode targets identically). */
export { compileTargeting, type Predicate } from '@apportion/sdk/engine';

/** Problems a schema cannot express (a numeric op needs a numeric value…); returns messages naming the field. */
export { targetingProblems } from '@apportion/sdk/engine';
