import { estimateKind } from './estimate.js';
import { priorityPoolKind } from './priority-pool.js';
import { staticKind } from './static.js';
import type { StrategyKind } from './types.js';
import { uniformKind } from './uniform.js';

/** Strategy kinds by name. Register a new kind here (the learned kind adds itself at start-up). */
export class StrategyKinds {
  private readonly kinds = new Map<string, StrategyKind<never>>();

  constructor(initial: readonly StrategyKind<never>[] = BUILTIN_KINDS) {
    for (const k of initial) this.register(k);
  }

  register<P>(kind: StrategyKind<P>): void {
    this.kinds.set(kind.kind, kind as unknown as StrategyKind<never>);
  }

  get(kind: string): StrategyKind<unknown> | undefined {
    return this.kinds.get(kind) as StrategyKind<unknown> | undefined;
  }

  names(): string[] {
    return [...this.kinds.keys()];
  }
}

export const BUILTIN_KINDS: readonly StrategyKind<never>[] = [
  uniformKind as StrategyKind<never>,
  staticKind as StrategyKind<never>,
  estimateKind as StrategyKind<never>,
  priorityPoolKind as StrategyKind<never>,
];
