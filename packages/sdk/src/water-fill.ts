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
  scratch(n);
  for (let i = 0; i < n; i++) {
    const a = agents[i]!;
    sMin[i] = a.min;
    sCap[i] = a.cap;
    sW[i] = a.weight;
  }
  return fill(n, total);
}

/**
 * waterFill over columns (agent i: `mins[i]`, `caps[i]`, `weights[i]`, i < n): the same arithmetic, for hot
 * paths that would otherwise build an agent object per agent per call.
 */
export function waterFillColumns(mins: ArrayLike<number>, caps: ArrayLike<number>, weights: ArrayLike<number>, n: number, total: number): number[] {
  scratch(n);
  for (let i = 0; i < n; i++) {
    sMin[i] = mins[i]!;
    sCap[i] = caps[i]!;
    sW[i] = weights[i]!;
  }
  return fill(n, total);
}

// Scratch columns, reused across calls (waterFill runs to completion synchronously and calls nothing else):
// the hot path allocates only its result. Float64Array holds every double exactly, so the arithmetic below is
// the reference implementation's (waterFillReference), operation for operation and in the same order.
let sMin = new Float64Array(16);
let sCap = new Float64Array(16);
let sW = new Float64Array(16);
let sReal = new Float64Array(16);
let sFrac = new Float64Array(16);
let sPts = new Float64Array(32);
let sWeighted = new Uint8Array(16);
let sOrder = new Int32Array(16);

function scratch(n: number): void {
  if (sMin.length >= n) return;
  const m = Math.max(n, sMin.length * 2);
  sMin = new Float64Array(m);
  sCap = new Float64Array(m);
  sW = new Float64Array(m);
  sReal = new Float64Array(m);
  sFrac = new Float64Array(m);
  sPts = new Float64Array(2 * m);
  sWeighted = new Uint8Array(m);
  sOrder = new Int32Array(m);
}

/** f(λ) = Σ clamp(λ·w_i, min_i, cap_i) over the scratch columns (see waterFillReference). */
function fAt(n: number, lambda: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += sWeighted[i] ? Math.min(sCap[i]!, Math.max(sMin[i]!, lambda * sW[i]!)) : sMin[i]!;
  return s;
}

/** The body of waterFill on the scratch columns (sMin, sCap = the caller's caps, sW = the raw weights). */
function fill(n: number, total: number): number[] {
  let minSum = 0;
  let maxW = 0;
  for (let i = 0; i < n; i++) {
    const min = sMin[i]!;
    sCap[i] = Math.max(min, sCap[i]!);
    minSum += min;
    const wt = sW[i]!;
    if (wt > maxW) maxW = wt;
  }
  if (minSum > total) throw new RangeError(`sum of minimums ${minSum} exceeds total ${total}`);
  const scale = maxW > 0 && Number.isFinite(maxW);
  let capRoom = 0;
  for (let i = 0; i < n; i++) {
    const wt = sW[i]!;
    const w = scale ? wt / maxW : wt === Infinity ? 1 : 0;
    sW[i] = w;
    const weighted = w > 1e-12 && sCap[i]! > sMin[i]!;
    sWeighted[i] = weighted ? 1 : 0;
    if (weighted) capRoom += sCap[i]! - sMin[i]!;
  }
  const target = Math.min(total, minSum + capRoom);
  if (target <= minSum) {
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(sMin[i]!);
    return out;
  }
  // Breakpoints, sorted ascending by a stable insertion sort (the reference's Array#sort is stable too, and
  // breakpoints are never NaN: an agent is weighted only when its min and cap compare).
  let np = 0;
  for (let i = 0; i < n; i++) {
    if (!sWeighted[i]) continue;
    sPts[np++] = sMin[i]! / sW[i]!;
    if (Number.isFinite(sCap[i]!)) sPts[np++] = sCap[i]! / sW[i]!;
  }
  for (let k = 1; k < np; k++) {
    const x = sPts[k]!;
    let j = k - 1;
    while (j >= 0 && sPts[j]! > x) {
      sPts[j + 1] = sPts[j]!;
      j--;
    }
    sPts[j + 1] = x;
  }
  // The reference walks the breakpoints up to the first p_k with f(p_k) ≥ target. f as computed is
  // non-decreasing in λ (each term is, and a rounded sum is non-decreasing in each operand), so that k is found
  // by binary search, with the same f values at p_k and p_{k-1} (or at 0 when k = 0).
  let lo = 0;
  let hi = np;
  let fHi = NaN;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const fm = fAt(n, sPts[mid]!);
    if (fm >= target) {
      hi = mid;
      fHi = fm;
    } else lo = mid + 1;
  }
  const prev = lo === 0 ? 0 : sPts[lo - 1]!;
  const fPrev = fAt(n, prev);
  let lambda = NaN;
  if (lo < np) {
    const p = sPts[lo]!;
    const fp = fHi;
    lambda = fp === fPrev ? p : prev + ((target - fPrev) * (p - prev)) / (fp - fPrev);
  }
  if (Number.isNaN(lambda)) {
    let slope = 0;
    for (let i = 0; i < n; i++) if (sWeighted[i] && !Number.isFinite(sCap[i]!)) slope += sW[i]!;
    lambda = prev + (target - fPrev) / slope;
  }
  let finite = true;
  for (let i = 0; i < n; i++) {
    const v = sWeighted[i] ? Math.min(sCap[i]!, Math.max(sMin[i]!, lambda * sW[i]!)) : sMin[i]!;
    sReal[i] = v;
    if (!Number.isFinite(v)) finite = false;
  }
  if (!finite) {
    const real: number[] = [];
    const mins: number[] = [];
    const caps: number[] = [];
    for (let i = 0; i < n; i++) {
      real.push(sReal[i]!);
      mins.push(sMin[i]!);
      caps.push(sCap[i]!);
    }
    return roundToTargetReference(real, mins, caps, Math.floor(target));
  }
  return roundScratch(n, Math.floor(target));
}

/** Largest-remainder rounding: floors, then hands out the remaining units by descending fraction (ties by index). */
export function roundToTarget(real: readonly number[], mins: readonly number[], caps: readonly number[], target: number): number[] {
  const n = real.length;
  for (let i = 0; i < n; i++) if (!Number.isFinite(real[i]!)) return roundToTargetReference(real, mins, caps, target);
  scratch(n);
  for (let i = 0; i < n; i++) {
    sReal[i] = real[i]!;
    sMin[i] = mins[i]!;
    sCap[i] = caps[i]!;
  }
  return roundScratch(n, target);
}

/**
 * roundToTarget on the scratch columns (sReal finite). Orders are built by stable insertion sorts of indices,
 * which give the reference's comparator orders exactly (both are total orders on finite values, ties by index).
 */
function roundScratch(n: number, target: number): number[] {
  const out: number[] = [];
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const v = Math.max(sMin[i]!, Math.min(sCap[i]!, Math.floor(sReal[i]! + 1e-9)));
    out.push(v);
    sum += v;
  }
  let rest = target - sum;
  if (rest < 0) {
    // Floating error pushed floors over the target: take units back from the largest budgets above their minimum.
    sortDesc(out, n);
    for (let k = 0; rest < 0 && k < n * 2; k++) {
      const i = sOrder[k % n]!;
      if (out[i]! > sMin[i]!) {
        out[i]!--;
        rest++;
      }
    }
    return out;
  }
  if (!(rest > 0)) return out;
  for (let i = 0; i < n; i++) {
    const v = sReal[i]!;
    sFrac[i] = v - Math.floor(v + 1e-9);
  }
  sortDesc(sFrac, n);
  while (rest > 0) {
    let gave = false;
    for (let k = 0; k < n; k++) {
      if (rest === 0) break;
      const i = sOrder[k]!;
      if (out[i]! < sCap[i]!) {
        out[i]!++;
        rest--;
        gave = true;
      }
    }
    if (!gave) break;
  }
  return out;
}

/** sOrder[0..n) = indices by descending key, ties by ascending index (stable insertion sort). */
function sortDesc(key: ArrayLike<number>, n: number): void {
  for (let k = 0; k < n; k++) {
    let j = k - 1;
    const kv = key[k]!;
    while (j >= 0 && key[sOrder[j]!]! < kv) {
      sOrder[j + 1] = sOrder[j]!;
      j--;
    }
    sOrder[j + 1] = k;
  }
}

/** waterFill as first written (an array per column, closures, sorts with comparators): the reference the fast path is tested against. */
export function waterFillReference(agents: readonly FitAgent[], total: number): number[] {
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
  return roundToTargetReference(real, mins, caps, Math.floor(target));
}

/** roundToTarget as first written (sorts objects): the fast path falls back to it for non-finite values. */
export function roundToTargetReference(real: readonly number[], mins: readonly number[], caps: readonly number[], target: number): number[] {
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
