/**
 * Action distributions of the logging policy (pure). A decision's logging policy can be a mixture: the router
 * picks a strategy with some probability (experiment variant weight × coverage × ramp share, holdout share),
 * the learned strategy hands a share of its traffic to a control strategy, and a strategy may itself
 * randomise (the learned strategy's exploration). The probability of an action (a budget vector) is the sum,
 * over every way the logging policy could have produced it, of the product of the probabilities on the way.
 * Identical vectors are one action: their probabilities add. Off-policy evaluation and the DSJSON export use
 * this marginal distribution, which is exact: no density estimation.
 */
export interface ActionDistribution {
  /** Distinct budget vectors (pipeline agent order). */
  readonly C: number[][];
  /** Their probabilities, summing to 1 (no zeros). */
  readonly P: number[];
}

export interface WeightedDistribution {
  /** Probability of this branch of the mixture. */
  readonly q: number;
  readonly C: readonly (readonly number[])[];
  readonly P: readonly number[];
}

const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

export function indexOfAction(C: readonly (readonly number[])[], b: readonly number[]): number {
  for (let i = 0; i < C.length; i++) if (same(C[i]!, b)) return i;
  return -1;
}

/** Σ_j q_j · dist_j with identical vectors merged, in first-seen order; zero-probability actions are left out. */
export function mixDistributions(parts: readonly WeightedDistribution[]): ActionDistribution {
  const C: number[][] = [];
  const P: number[] = [];
  for (const part of parts) {
    part.C.forEach((c, k) => {
      const p = part.q * (part.P[k] ?? 0);
      if (!(p > 0)) return;
      const at = indexOfAction(C, c);
      if (at >= 0) P[at] = P[at]! + p;
      else {
        C.push([...c]);
        P.push(p);
      }
    });
  }
  return { C, P };
}
