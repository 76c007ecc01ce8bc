/**
 * Budget arithmetic shared by every strategy (pure, no I/O).
 *
 * `waterFill` turns non-negative weights into integer budgets b_i with
 *   min_i <= b_i <= cap_i,  sum(b) = min(total, sum(cap))  (never above total),
 * where b_i = clamp(λ·w_i, min_i, cap_i) for the λ that meets the target, then rounded by largest remainder.
 * Agents with weight 0 get their minimum. The caller guarantees sum(min) <= total.
 */
export interface FitAgent {
  readonly min: number;
  /** Upper bound; Infinity when unbounded. */
  readonly cap: number;
  readonly weight: number;
}

export function waterFill(agents: readonly FitAgent[], total: number): number[] {
  const n = agents.length;
  const mins = agents.map((a) => a.min);
  const caps = agents.map((a) => Math.max(a.min, a.cap));
  const minSum = mins.reduce((s, v) => s + v, 0);
  if (minSum > total) throw new RangeError(`sum of minimums ${minSum} exceeds total ${total}`);
  const weighted = agents.map((a, i) => a.weight > 0 && caps[i]! > mins[i]!);
  // Tokens that weighted agents can absorb above their minimum, bounded by what the total leaves.
  let capRoom = 0;
  for (let i = 0; i < n; i++) if (weighted[i]) capRoom += caps[i]! - mins[i]!;
  const target = Math.min(total, minSum + capRoom);
  if (target <= minSum) return mins.slice();

  const at = (lambda: number): number[] =>
    agents.map((a, i) => (weighted[i] ? Math.min(caps[i]!, Math.max(mins[i]!, lambda * a.weight)) : mins[i]!));
  const sum = (xs: number[]): number => xs.reduce((s, v) => s + v, 0);

  let lo = 0;
  let hi = 1;
  while (sum(at(hi)) < target && hi < 1e300) hi *= 2;
  for (let it = 0; it < 200 && hi - lo > 1e-12 * hi; it++) {
    const mid = (lo + hi) / 2;
    if (sum(at(mid)) < target) lo = mid;
    else hi = mid;
  }
  const real = at(hi);
  return roundToTarget(real, mins, caps, Math.floor(target));
}

/** Largest-remainder rounding: floors, then hands out the remaining units by descending fraction (ties by index). */
export function roundToTarget(real: readonly number[], mins: readonly number[], caps: readonly number[], target: number): number[] {
  const out = real.map((v, i) => Math.max(mins[i]!, Math.min(caps[i]!, Math.floor(v + 1e-9))));
  let rest = target - out.reduce((s, v) => s + v, 0);
  if (rest < 0) {
    // Floating error pushed floors over the target: take units back from the largest budgets above their minimum.
    const order = out.map((_, i) => i).sort((a, b) => out[b]! - out[a]! || a - b);
    for (let k = 0; rest < 0 && k < order.length * 2; k++) {
      const i = order[k % order.length]!;
      if (out[i]! > mins[i]!) {
        out[i]!--;
        rest++;
      }
    }
    return out;
  }
  const order = real
    .map((v, i) => ({ i, frac: v - Math.floor(v + 1e-9) }))
    .sort((a, b) => b.frac - a.frac || a.i - b.i);
  while (rest > 0) {
    let gave = false;
    for (const { i } of order) {
      if (rest === 0) break;
      if (out[i]! < caps[i]!) {
        out[i]!++;
        rest--;
        gave = true;
      }
    }
    if (!gave) break;
  }
  return out;
}
