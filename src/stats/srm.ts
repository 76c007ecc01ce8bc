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
