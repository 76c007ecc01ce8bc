/** A strategy kind is an extension point (src/kernel/extension-points.ts); the engine's types come with it. */
export type { AllocationInput, AllocationOutput, CompiledStrategy, Features, StrategyKind, StrategyKindContext } from '../kernel/extension-points.js';
