/**
 * The best split of a token total and a cost ceiling between agents whose responses saturate (pure): the tier
 * oracle of the simulated worlds and the greedy split of the tier learner (tiers-policy.ts) both use it.
 *
 * Agent i on its model answers c_i(b) = 1 − A_i − B_i·exp(−b / N_i) (A: what the model can never reach, B: what
 * tokens buy, N: the tokens it needs). The split maximises Σ log c_i(b_i) — the product of the responses — subject
 * to Σ b_i ≤ T, Σ r_i·b_i ≤ C (r_i: the model's price per token) and min_i ≤ b_i ≤ cap_i. By KKT, with
 * multipliers μ (tokens) and ν (cost), each agent's budget solves B·e^{−b/N}/N = λ_i·c_i(b), λ_i = μ + ν·r_i:
 *   b_i = N_i · ln( B_i (1 + λ_i N_i) / (λ_i N_i (1 − A_i)) ), clamped to [min_i, cap_i],
 * and ν, then μ, are found by bisection (outer on ν for the ceiling, inner on μ for the total).
 */
export interface Curve {
  readonly A: number;
  readonly B: number;
  readonly N: number;
}

export function response(c: Curve, b: number): number {
  return 1 - c.A - c.B * Math.exp(-b / c.N);
}

function budgetAt(c: Curve, lambda: number, min: number, cap: number): number {
  if (!(lambda > 0)) return cap;
  if (c.B <= 0) return min;
  const ln = Math.log((c.B * (1 + lambda * c.N)) / (lambda * c.N * Math.max(1e-12, 1 - c.A)));
  const b = c.N * ln;
  return b < min ? min : b > cap ? cap : Number.isFinite(b) ? b : min;
}

/**
 * The split (real-valued) maximising the product of the responses under the total and the ceiling; undefined when
 * the minimums alone cost more than the ceiling. `nuFloor`: a lower bound on the cost multiplier ν (0, the default:
 * none), so cost is priced at least that much log quality per USD where the ceiling does not bind
 * (bench/tiers-cost-split.ts uses it for a split that trades quality against λ·cost).
 */
export function bestSplit(curves: readonly Curve[], rates: readonly number[], mins: readonly number[], caps: readonly number[], total: number, ceiling: number, nuFloor = 0): number[] | undefined {
  const n = curves.length;
  let minCost = 0;
  let minSum = 0;
  for (let i = 0; i < n; i++) {
    minCost += mins[i]! * rates[i]!;
    minSum += mins[i]!;
  }
  if (minCost > ceiling * (1 + 1e-12) || minSum > total) return undefined;
  const out = new Array<number>(n);
  const at = (mu: number, nu: number) => {
    let tokens = 0;
    let cost = 0;
    for (let i = 0; i < n; i++) {
      const b = budgetAt(curves[i]!, mu + nu * rates[i]!, mins[i]!, caps[i]!);
      out[i] = b;
      tokens += b;
      cost += b * rates[i]!;
    }
    return { tokens, cost };
  };
  // Inner: the smallest μ ≥ 0 at which the split fits the total (given ν).
  const fitTokens = (nu: number) => {
    if (at(0, nu).tokens <= total) return 0;
    let lo = -50;
    let hi = 10;
    for (let it = 0; it < 50; it++) {
      const mid = (lo + hi) / 2;
      if (at(Math.exp(mid), nu).tokens > total) lo = mid;
      else hi = mid;
    }
    return Math.exp(hi);
  };
  let mu = fitTokens(nuFloor);
  let nu = nuFloor;
  if (at(mu, nu).cost > ceiling) {
    let lo = nuFloor > 0 ? Math.log(nuFloor) : -30;
    let hi = Math.max(40, lo + 1);
    for (let it = 0; it < 50; it++) {
      const mid = (lo + hi) / 2;
      const m = fitTokens(Math.exp(mid));
      if (at(m, Math.exp(mid)).cost > ceiling) lo = mid;
      else hi = mid;
    }
    nu = Math.exp(hi);
    mu = fitTokens(nu);
  }
  at(mu, nu);
  return out.slice();
}

/** Integer budgets (floored: the total and the ceiling still hold). */
export function floorSplit(b: readonly number[], mins: readonly number[]): number[] {
  return b.map((v, i) => Math.max(mins[i]!, Math.floor(v + 1e-9)));
}

/** Every assignment of one of `m[i]` models to each agent i, in lexicographic order (the first is all zeros). */
export function assignments(m: readonly number[]): number[][] {
  let out: number[][] = [[]];
  for (const k of m) out = out.flatMap((a) => Array.from({ length: k }, (_, j) => [...a, j]));
  return out;
}
