/** Summary statistics from running moments (pure). */
export interface Moments {
  readonly n: number;
  readonly mean: number;
  /** Sample variance (n − 1); 0 when n < 2. */
  readonly variance: number;
  readonly stddev: number;
  /** Standard error of the mean; 0 when n < 2. */
  readonly stderr: number;
}

export function fromWelford(n: number, mean: number, m2: number): Moments {
  const variance = n > 1 ? Math.max(0, m2 / (n - 1)) : 0;
  const stddev = Math.sqrt(variance);
  return { n, mean: n > 0 ? mean : 0, variance, stddev, stderr: n > 1 ? stddev / Math.sqrt(n) : 0 };
}
