import { estimateKind } from './estimate.js';
import { priorityPoolKind } from './priority-pool.js';
import { staticKind } from './static.js';
import { StrategyKinds as KernelStrategyKinds, type StrategyKind } from '../kernel/extension-points.js';
import { uniformKind } from './uniform.js';

/** The strategy kind registry, with the built-in kinds unless told otherwise. The learned kind adds itself at start-up. */
export class StrategyKinds extends KernelStrategyKinds {
  constructor(initial: readonly StrategyKind<never>[] = BUILTIN_KINDS) {
    super(initial);
  }
}

export const BUILTIN_KINDS: readonly StrategyKind<never>[] = [
  uniformKind as StrategyKind<never>,
  staticKind as StrategyKind<never>,
  estimateKind as StrategyKind<never>,
  priorityPoolKind as StrategyKind<never>,
];
