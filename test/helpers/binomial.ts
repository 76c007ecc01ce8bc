/** P(X ≥ k) for X ~ Binomial(n, p), summed exactly (in logs). */
export function binomialTail(n: number, p: number, k: number): number {
  let logC = 0; // log C(n, 0)
  let tail = 0;
  for (let i = 0; i <= n; i++) {
    if (i > 0) logC += Math.log(n - i + 1) - Math.log(i);
    if (i >= k) tail += Math.exp(logC + i * Math.log(p) + (n - i) * Math.log(1 - p));
  }
  return tail;
}

/**
 * Smallest k with P(Binomial(n, p) ≥ k) ≤ tail: a count of events of rate p above it is evidence the rate exceeds p,
 * not chance (the bar of the suite's seeded statistical tests).
 */
export function binomialBound(n: number, p: number, tail: number): number {
  let k = 0;
  while (binomialTail(n, p, k) > tail) k++;
  return k;
}
