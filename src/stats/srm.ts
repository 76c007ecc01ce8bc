import { gammaln } from 'simple-statistics';
import { chiSquareSf } from './distributions.js';

/** p below which a sample-ratio mismatch is flagged (the industry-standard 0.001). */
export const SRM_THRESHOLD = 0.001;

export interface SrmResult {
  readonly chiSquare: number;
  readonly df: number;
  readonly pValue: number;
  /** True when p < threshold: assignment or logging is broken, results must not be trusted. */
  readonly mismatch: boolean;
}

/**
 * Sample-ratio-mismatch check: chi-square goodness of fit of observed counts per variant against the
 * configured weights (pure). Returns null when there are fewer than 2 variants or no observations.
 */
export function srm(counts: readonly number[], weights: readonly number[], threshold = SRM_THRESHOLD): SrmResult | null {
  if (counts.length !== weights.length) throw new Error('srm: counts and weights differ in length');
  const total = counts.reduce((s, c) => s + c, 0);
  const wsum = weights.reduce((s, w) => s + w, 0);
  const live = weights.filter((w) => w > 0).length;
  if (live < 2 || total === 0 || wsum <= 0) return null;
  let chi = 0;
  for (let i = 0; i < counts.length; i++) {
    const expected = (total * weights[i]!) / wsum;
    if (expected === 0) {
      if (counts[i]! > 0) return { chiSquare: Infinity, df: live - 1, pValue: 0, mismatch: true };
      continue;
    }
    chi += (counts[i]! - expected) ** 2 / expected;
  }
  const pValue = chiSquareSf(chi, live - 1);
  return { chiSquare: chi, df: live - 1, pValue, mismatch: pValue < threshold };
}

/** Euler–Mascheroni constant. */
const EULER_GAMMA = 0.5772156649015329;

/**
 * ln Γ(x) for x > 0. simple-statistics' `gammaln` answers Infinity below about 1e-15 (and drifts from 1e-10 down),
 * which a variant's prior mass Kθ reaches when its weight is that small a share of the others' (a weight of 1e-20
 * beside 1): the Bayes factor then came out −Infinity or NaN and never flagged, whatever the counts. Near 0,
 * ln Γ(x) = −ln x − γx + O(x²) (the remainder is below 1e-10 at x = 1e-5).
 */
export function lnGamma(x: number): number {
  return x < 1e-5 ? -Math.log(x) - EULER_GAMMA * x : gammaln(x);
}

/** Level of the sequential SRM test: P(any false flag over the experiment's whole life) ≤ this. */
export const SRM_SEQUENTIAL_ALPHA = 0.02;
/**
 * Concentration K of the Dirichlet(K·weights) mixing prior: how far from the weights the test looks
 * for a mismatch. Small K bets on large mismatches, large K on small ones. Chosen by `bench/srm.ts`.
 */
export const SRM_CONCENTRATION = 30;

export interface SequentialSrmResult {
  /** Always-valid p-value min(1, 1/BF): P(it ever falls to ≤ α under correct assignment) ≤ α. */
  readonly pValue: number;
  /** Natural log of the Dirichlet-multinomial Bayes factor against the configured weights. */
  readonly logBayesFactor: number;
  readonly alpha: number;
  /** True when BF ≥ 1/α. */
  readonly mismatch: boolean;
  /** Descriptive only: the fixed-sample χ² of the same counts (not valid under repeated looks). */
  readonly chiSquare: number;
  readonly df: number;
}

/**
 * Sequential sample-ratio-mismatch test for multinomial counts (Lindon & Malek, "Anytime-Valid
 * Inference for Multinomial Count Data", NeurIPS 2022), pure. Under H0 (counts ~ Multinomial(n, θ),
 * θ the normalised weights) the Dirichlet-multinomial Bayes factor
 *
 *   BF_n = Γ(K) / Γ(K + n) · Π_i Γ(Kθ_i + x_i) / Γ(Kθ_i) / Π_i θ_i^{x_i}
 *
 * is a non-negative martingale with mean 1, so by Ville's inequality P(∃ n: BF_n ≥ 1/α) ≤ α: the test
 * may be run after every outcome, for the experiment's whole life, and still flag a correct assignment
 * with probability at most α. Returns null when fewer than 2 weights are positive or there are no counts.
 */
export function srmSequential(
  counts: readonly number[],
  weights: readonly number[],
  alpha = SRM_SEQUENTIAL_ALPHA,
  concentration = SRM_CONCENTRATION,
): SequentialSrmResult | null {
  if (counts.length !== weights.length) throw new Error('srmSequential: counts and weights differ in length');
  const fixed = srm(counts, weights);
  if (!fixed) return null;
  const wsum = weights.reduce((s, w) => s + w, 0);
  let n = 0;
  let logBf = 0;
  for (let i = 0; i < counts.length; i++) {
    const x = counts[i]!;
    const w = weights[i]!;
    if (w <= 0) {
      // Traffic where none may go cannot happen under H0: infinite evidence.
      if (x > 0) return { pValue: 0, logBayesFactor: Infinity, alpha, mismatch: true, chiSquare: fixed.chiSquare, df: fixed.df };
      continue;
    }
    const theta = w / wsum;
    const a = concentration * theta;
    n += x;
    if (x > 0) logBf += lnGamma(a + x) - lnGamma(a) - x * Math.log(theta);
  }
  logBf += lnGamma(concentration) - lnGamma(concentration + n);
  return {
    pValue: Math.min(1, Math.exp(-logBf)),
    logBayesFactor: logBf,
    alpha,
    mismatch: logBf >= Math.log(1 / alpha),
    chiSquare: fixed.chiSquare,
    df: fixed.df,
  };
}
