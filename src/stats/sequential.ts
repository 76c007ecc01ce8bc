import type { Moments } from './moments.js';
import type { DiffResult } from './welch.js';

/**
 * Always-valid inference for a difference of means: the asymptotic normal-mixture confidence sequence
 * of Howard, Ramdas, McAuliffe & Sekhon (2021) / Waudby-Smith et al. (2023), the form GrowthBook uses.
 * With N total observations and per-observation variance s² of the difference (Var(Δ̂) = s²/N), the
 * two-sided half-width at level α is
 *
 *   s · sqrt( 2(Nρ² + 1) / (N²ρ²) · log( sqrt(Nρ² + 1) / α ) )
 *
 * and it covers the true difference at every N simultaneously with probability ≥ 1 − α, so the
 * interval may be checked after every observation without inflating false alarms. ρ tunes where the
 * sequence is tightest: ρ² = (−2 log α + log(1 − 2 log α)) / N*, N* the planned total sample size.
 */

/** Tuning: total sample size where the sequence should be tightest. Default 10,000. */
export const DEFAULT_TUNING_N = 10_000;

export function mixtureRho2(alpha: number, tuningN = DEFAULT_TUNING_N): number {
  const l = -2 * Math.log(alpha);
  return (l + Math.log(1 + l)) / tuningN;
}

/** Half-width of the confidence sequence for N observations with per-observation variance s2. */
export function csHalfwidth(s2: number, n: number, alpha: number, tuningN = DEFAULT_TUNING_N): number {
  if (n <= 0) return Infinity;
  const r2 = mixtureRho2(alpha, tuningN);
  const a = n * r2 + 1;
  return Math.sqrt(s2 * ((2 * a) / (n * n * r2)) * Math.log(Math.sqrt(a) / alpha));
}

/**
 * Always-valid p-value for "difference = 0": the smallest α whose sequence (with ρ fixed by the design
 * α) excludes 0, i.e. min(1, 1/M_N) for the mixture martingale M_N.
 */
export function csPValue(diff: number, s2: number, n: number, alpha: number, tuningN = DEFAULT_TUNING_N): number {
  if (n <= 0 || s2 <= 0) return diff === 0 || n <= 0 ? 1 : 0;
  const r2 = mixtureRho2(alpha, tuningN);
  const a = n * r2 + 1;
  const logP = 0.5 * Math.log(a) - (diff * diff * n * n * r2) / (2 * s2 * a);
  return Math.min(1, Math.exp(logP));
}

/**
 * Variance floor of one arm of n observations of a metric whose values span at most `range`: the variance that two
 * pseudo-observations at the worst-case variance range²/4 of a bounded metric carry in a sample of n + 2, i.e.
 * range² / (2(n + 2)) (for a 0/1 metric about what Agresti–Caffo's one added success and one added failure give an arm
 * with no failures). A sample with (near) zero variance — every outcome 1.0, every cost identical — says little about
 * the true variance when it is small: plugging in its sample variance of 0 gives an interval of zero width, which
 * "detects" any difference after a handful of observations, including in an A/A test. The floor binds only while
 * an arm has at most about one observation away from its mean, and vanishes as 1/n: a sample with real spread keeps
 * its own variance.
 */
export function varianceFloor(n: number, range: number): number {
  return (range * range) / (2 * (n + 2));
}

/** The variance the interval uses for an arm: its sample variance, at least the floor for its size. */
export function effectiveVariance(m: Moments, range: number): number {
  return Math.max(m.variance, varianceFloor(m.n, range));
}

/**
 * The width of a metric's range for the floor when the caller does not know it (an unbounded metric such as cost):
 * the largest magnitude of either mean, as if the metric spanned [0, that]. So an arm with every cost 0.01 is treated
 * as possibly spread over [0, 0.01], never as certain; two arms identically zero have diff 0 and need no width.
 */
export function dataRange(treatment: Moments, control: Moments): number {
  return Math.max(Math.abs(treatment.mean), Math.abs(control.mean));
}

/**
 * Sequential interval for treatment − control from summary moments (null when a side has n < 2). Each arm's variance
 * is at least `varianceFloor(n, range)`: `range` is the width of the metric's range (1 for a quality or a rate in
 * [0, 1]); without it, `dataRange` of the two means.
 */
export function sequentialDiff(treatment: Moments, control: Moments, alpha = 0.05, tuningN = DEFAULT_TUNING_N, range?: number): DiffResult | null {
  if (treatment.n < 2 || control.n < 2) return null;
  const r = range ?? dataRange(treatment, control);
  const varDiff = effectiveVariance(treatment, r) / treatment.n + effectiveVariance(control, r) / control.n;
  return sequentialFromVariance(treatment.mean - control.mean, varDiff, treatment.n + control.n, control.mean, alpha, tuningN);
}

/** Same, from a difference, its variance and the total sample size (used by the simulations). */
export function sequentialFromVariance(diff: number, varDiff: number, n: number, controlMean: number, alpha = 0.05, tuningN = DEFAULT_TUNING_N): DiffResult {
  const s2 = varDiff * n;
  const hw = csHalfwidth(s2, n, alpha, tuningN);
  return {
    diff,
    relative: controlMean !== 0 ? diff / controlMean : null,
    se: Math.sqrt(varDiff),
    ci: [diff - hw, diff + hw],
    pValue: csPValue(diff, s2, n, alpha, tuningN),
  };
}
