import { quantileSorted } from 'simple-statistics';
import { fromWelford, type Moments } from './moments.js';

/**
 * Moments of a sample after capping values above its q-quantile (pure). Cost per request is heavy
 * tailed (one runaway agent loop can dwarf a day of traffic); winsorizing keeps the mean comparable
 * and the variance honest. Returns the cap used.
 */
export function winsorizedMoments(values: readonly number[], q = 0.99): Moments & { readonly cap: number } {
  if (values.length === 0) return { ...fromWelford(0, 0, 0), cap: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const cap = quantileSorted(sorted, q);
  return { ...momentsOf(values.map((v) => Math.min(v, cap))), cap };
}

/** Moments of a plain sample (Welford, numerically stable). */
export function momentsOf(values: readonly number[]): Moments {
  let n = 0;
  let mean = 0;
  let m2 = 0;
  for (const v of values) {
    n++;
    const d = v - mean;
    mean += d / n;
    m2 += d * (v - mean);
  }
  return fromWelford(n, mean, m2);
}

/** Moments of a Bernoulli sample with k successes out of n. */
export function bernoulliMoments(k: number, n: number): Moments {
  if (n === 0) return fromWelford(0, 0, 0);
  const p = k / n;
  return fromWelford(n, p, p * (1 - p) * n);
}
