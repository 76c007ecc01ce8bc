/**
 * Budget arithmetic (pure, no I/O), shared with the server: its strategies import it from here
 * (src/strategies/fit.ts re-exports it).
 *
 * `waterFill` turns non-negative weights into integer budgets b_i with
 *   min_i <= b_i <= cap_i,  sum(b) = min(total, sum(cap))  (never above total),
 * where b_i = clamp(λ·w_i, min_i, cap_i) for the λ that meets the target (found exactly), then rounded by
 * largest remainder.
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
  // Weights are relative: scale so the largest is 1, and treat weights below 1e-12 of it as zero (keeps
  // every breakpoint finite whatever the input's magnitude).
  const maxW = agents.reduce((m, a) => (a.weight > m ? a.weight : m), 0);
  const w = agents.map((a) => (maxW > 0 && Number.isFinite(maxW) ? a.weight / maxW : a.weight === Infinity ? 1 : 0));
  const weighted = agents.map((_, i) => w[i]! > 1e-12 && caps[i]! > mins[i]!);
  // Tokens that weighted agents can absorb above their minimum, bounded by what the total leaves.
  let capRoom = 0;
  for (let i = 0; i < n; i++) if (weighted[i]) capRoom += caps[i]! - mins[i]!;
  const target = Math.min(total, minSum + capRoom);
  if (target <= minSum) return mins.slice();

  // f(λ) = Σ clamp(λ·w_i, min_i, cap_i) is piecewise linear and non-decreasing, with breakpoints at
  // min_i/w_i and cap_i/w_i. Evaluate it at the sorted breakpoints and interpolate in the segment that
  // reaches the target: exact, and O(n²) for n ≤ 64 agents (no iteration on floating tolerance).
  const f = (lambda: number): number => {
    let s = 0;
    for (let i = 0; i < n; i++) {
      s += weighted[i] ? Math.min(caps[i]!, Math.max(mins[i]!, lambda * w[i]!)) : mins[i]!;
    }
    return s;
  };
  const points: number[] = [];
  for (let i = 0; i < n; i++) {
    if (!weighted[i]) continue;
    points.push(mins[i]! / w[i]!);
    if (Number.isFinite(caps[i]!)) points.push(caps[i]! / w[i]!);
  }
  points.sort((a, b) => a - b);
  let prev = 0;
  let fPrev = f(0);
  let lambda = NaN;
  for (const p of points) {
    const fp = f(p);
    if (fp >= target) {
      lambda = fp === fPrev ? p : prev + ((target - fPrev) * (p - prev)) / (fp - fPrev);
      break;
    }
    prev = p;
    fPrev = fp;
  }
  if (Number.isNaN(lambda)) {
    // Past the last breakpoint only uncapped agents still grow, with slope Σ w of those agents.
    let slope = 0;
    for (let i = 0; i < n; i++) if (weighted[i] && !Number.isFinite(caps[i]!)) slope += w[i]!;
    lambda = prev + (target - fPrev) / slope;
  }
  const real = agents.map((_, i) => (weighted[i] ? Math.min(caps[i]!, Math.max(mins[i]!, lambda * w[i]!)) : mins[i]!));
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
