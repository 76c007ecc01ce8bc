import { tQuantile, tTwoSided } from './distributions.js';
import type { Moments } from './moments.js';

/** A difference of means (treatment − control) with its interval. */
export interface DiffResult {
  /** Treatment mean − control mean. */
  readonly diff: number;
  /** diff ÷ control mean (null when the control mean is 0). */
  readonly relative: number | null;
  readonly se: number;
  readonly ci: readonly [number, number];
  readonly pValue: number;
}

export interface WelchResult extends DiffResult {
  readonly t: number;
  /** Welch–Satterthwaite degrees of freedom. */
  readonly df: number;
}

/**
 * Fixed-horizon Welch t-test for treatment − control from summary moments (pure). Valid only when
 * looked at once, at a sample size chosen in advance; use `sequentialDiff` to watch continuously.
 * Returns null when either side has fewer than 2 observations. A side whose variance carries its own degrees of
 * freedom (`df`: a cluster-robust variance's small-sample ones, see src/feedback/units.ts) counts them in the
 * Welch–Satterthwaite formula instead of n − 1.
 */
export function welch(treatment: Moments, control: Moments, alpha = 0.05): WelchResult | null {
  if (treatment.n < 2 || control.n < 2) return null;
  const vt = treatment.variance / treatment.n;
  const vc = control.variance / control.n;
  const se = Math.sqrt(vt + vc);
  const diff = treatment.mean - control.mean;
  const relative = control.mean !== 0 ? diff / control.mean : null;
  if (se === 0) {
    const p = diff === 0 ? 1 : 0;
    return { diff, relative, se: 0, t: diff === 0 ? 0 : Math.sign(diff) * Infinity, df: treatment.n + control.n - 2, ci: [diff, diff], pValue: p };
  }
  const dof = (m: Moments & { df?: number }): number => Math.max(1, m.df ?? m.n - 1);
  const df = (vt + vc) ** 2 / (vt ** 2 / dof(treatment) + vc ** 2 / dof(control));
  const t = diff / se;
  const q = tQuantile(1 - alpha / 2, df);
  return { diff, relative, se, t, df, ci: [diff - q * se, diff + q * se], pValue: tTwoSided(t, df) };
}
