import { nanoToUsd } from './span.js';
import { costNano, type Totals } from './tree.js';

/** Totals as the API shows them: exact nano-USD integers next to USD, and the unpriced part never as $0. */
export interface TotalsView {
  calls: number;
  tokens: { input: number; output: number; cacheRead: number; cacheWrite: number; reasoning: number; total: number };
  /** Cost of the priced part (provided + computed), in USD. */
  costUsd: number;
  costNano: number;
  providedNano: number;
  computedNano: number;
  unpricedCalls: number;
  unpricedTokens: number;
  unmeteredCalls: number;
  /** False when some calls are unpriced or unmetered: the cost is a lower bound. */
  complete: boolean;
}

export function totalsView(t: Totals): TotalsView {
  const nano = costNano(t);
  return {
    calls: t.calls,
    tokens: { input: t.input, output: t.output, cacheRead: t.cacheRead, cacheWrite: t.cacheWrite, reasoning: t.reasoning, total: t.input + t.output },
    costUsd: nanoToUsd(nano),
    costNano: nano,
    providedNano: t.providedNano,
    computedNano: t.computedNano,
    unpricedCalls: t.unpricedCalls,
    unpricedTokens: t.unpricedTokens,
    unmeteredCalls: t.unmeteredCalls,
    complete: t.unpricedCalls === 0 && t.unmeteredCalls === 0,
  };
}
