/**
 * The runtime guard's control arm (docs/learner.md, "Runtime guard"): the engine's (`@apportion/sdk/engine`,
 * learned.ts), so local mode serves and logs it identically. Its draw is seeded by the decision id.
 */
export { controlArm, controlShareOf, controlStrategyDef, guardOffset, revertedToControl, servingControlShare, type ControlMeta } from '@apportion/sdk/engine';
