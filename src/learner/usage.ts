import type { LoggedEvent } from './events.js';
import type { FeatureEncoder } from './features.js';
import { normalCdf, type CostWeights, type ModelWeights } from './model.js';

/**
 * The cost part of a version (model.ts CostWeights), fitted apart from the quality model (pure, no tfjs):
 *  - per agent, its token demand: ln D_i ~ N(μ_i(x), σ_i²), μ_i linear in the encoded context and the quality
 *    network's hidden layer, fitted to the reported usage (`u` of the events), which is censored at the budget
 *    (an agent that used its whole budget might have used more): a Tobit regression by EM with a ridge penalty;
 *  - per agent, its price per token: declared (the pipeline's pricing) where given, else non-negative least
 *    squares of the reported cost on the reported usage (cost = Σ price_i·usage_i).
 * Undefined when there is nothing to fit (no event reports usage, or λ = 0).
 */
export interface UsageFitOptions {
  readonly costWeight: number;
  /** USD per token per agent (pipeline order); null or absent: fitted from cost and usage. */
  readonly prices?: readonly (number | null)[];
  /** Recency half-life in events (newest first). Default 1000. */
  readonly halfLife?: number;
  /** Ridge penalty per (weighted) row. Default 1e-3. */
  readonly ridge?: number;
  /** The demand fit uses at most this many newest events (the recency weights make older ones count little). Default 3000. */
  readonly maxRows?: number;
  /** EM iterations. Default 60. */
  readonly iterations?: number;
}

/** Events that report usage for every agent (newest first). */
function withUsage(events: readonly LoggedEvent[], agents: readonly string[]): LoggedEvent[] {
  return events.filter((e) => e.u !== undefined && agents.every((a) => typeof e.u![a] === 'number' && typeof e.b[a] === 'number'));
}

/** Whether fitCost has what it needs: λ > 0, 50 events reporting every agent's usage, and a price for every agent (declared, or 20 of those events report a cost). */
export function canFitCost(events: readonly LoggedEvent[], agents: readonly string[], opts: Pick<UsageFitOptions, 'costWeight' | 'prices'>): boolean {
  if (!(opts.costWeight > 0)) return false;
  const rows = withUsage(events, agents);
  if (rows.length < 50) return false;
  if (agents.every((_, i) => Number.isFinite(opts.prices?.[i] ?? NaN))) return true;
  return rows.filter((e) => typeof e.c === 'number' && Number.isFinite(e.c)).length >= 20;
}

export function fitCost(events: readonly LoggedEvent[], encoder: FeatureEncoder, agents: readonly string[], quality: ModelWeights, opts: UsageFitOptions): CostWeights | undefined {
  if (!(opts.costWeight > 0)) return undefined;
  const all = withUsage(events, agents);
  const n = agents.length;
  if (all.length < 50) return undefined;
  const prices = fitPrices(all, agents, opts.prices);
  if (!prices) return undefined;
  const rows = all.slice(0, opts.maxRows ?? 3000);
  const d = encoder.dim;
  const h = quality.hidden;
  const p = 1 + d + h;
  const N = rows.length;
  // Design matrix Z = [1, x, hidden(x)] and recency weights.
  const Z = new Float64Array(N * p);
  const wt = new Float64Array(N);
  const decay = Math.LN2 / (opts.halfLife ?? 1000);
  const x = new Float32Array(d);
  rows.forEach((e, r) => {
    encoder.encode(e.f, x);
    const o = r * p;
    Z[o] = 1;
    for (let j = 0; j < d; j++) Z[o + 1 + j] = x[j]!;
    for (let k = 0; k < h; k++) {
      let s = quality.b1[k]!;
      for (let j = 0; j < d; j++) if (x[j] !== 0) s += quality.w1[k * d + j]! * x[j]!;
      Z[o + 1 + d + k] = s > 0 ? s : 0;
    }
    wt[r] = Math.exp(-decay * r);
  });
  // ZᵀWZ + ridge, shared by every agent and iteration; its Cholesky factor once.
  let wsum = 0;
  for (let r = 0; r < N; r++) wsum += wt[r]!;
  const L = ridgeFactor(Z, wt, p, N, opts.ridge ?? 1e-3);
  const m0 = new Float64Array(n);
  const mx = new Float64Array(n * d);
  const mh = new Float64Array(n * h);
  const sigma = new Float64Array(n);
  const lp = new Float64Array(n);
  const y = new Float64Array(N);
  const ys = new Float64Array(N);
  const cens = new Uint8Array(N);
  const c = new Float64Array(N);
  const mu = new Float64Array(N);
  const vr = new Float64Array(N);
  for (let i = 0; i < n; i++) {
    lp[i] = opts.costWeight * prices[i]!;
    const a = agents[i]!;
    rows.forEach((e, r) => {
      const u = e.u![a]!;
      const b = e.b[a]!;
      c[r] = Math.log(Math.max(1, b));
      // Used (nearly) its whole budget: D ≥ b, censored.
      cens[r] = u >= b - Math.max(1, 1e-3 * b) ? 1 : 0;
      y[r] = Math.log(Math.max(1, Math.min(u, b)));
    });
    let sg = 0;
    let beta = solveWith(L, p, Z, wt, y, N);
    for (let it = 0; it < (opts.iterations ?? 60); it++) {
      predictRows(Z, beta, p, N, mu);
      if (it === 0) {
        let s = 0;
        for (let r = 0; r < N; r++) s += wt[r]! * (y[r]! - mu[r]!) ** 2;
        sg = Math.max(0.05, Math.sqrt(s / wsum));
      }
      // E-step: a censored row's ln D is above c: its conditional mean and variance under N(μ, σ²).
      for (let r = 0; r < N; r++) {
        if (!cens[r]) {
          ys[r] = y[r]!;
          vr[r] = 0;
          continue;
        }
        const z = (c[r]! - mu[r]!) / sg;
        const lam = millsRatio(z);
        ys[r] = mu[r]! + sg * lam;
        vr[r] = sg * sg * Math.max(0, 1 + z * lam - lam * lam);
      }
      // M-step: weighted ridge regression on the completed ln D, σ² from the expected squared residuals.
      // Over-relaxed (EM under heavy censoring creeps: an agent cut at its budget on most requests).
      const next = solveWith(L, p, Z, wt, ys, N);
      for (let a = 0; a < p; a++) beta[a] = beta[a]! + RELAX * (next[a]! - beta[a]!);
      predictRows(Z, beta, p, N, mu);
      let s2 = 0;
      for (let r = 0; r < N; r++) s2 += wt[r]! * ((ys[r]! - mu[r]!) ** 2 + vr[r]!);
      sg = Math.max(0.05, Math.min(3, Math.sqrt(s2 / wsum)));
    }
    m0[i] = beta[0]!;
    for (let j = 0; j < d; j++) mx[i * d + j] = beta[1 + j]!;
    for (let k = 0; k < h; k++) mh[i * h + k] = beta[1 + d + k]!;
    sigma[i] = sg;
  }
  return { lp, m0, mx, mh, sigma };
}

/** Over-relaxation of the EM steps (1: plain EM). */
const RELAX = 1.8;

/** φ(z)/(1 − Φ(z)), the inverse Mills ratio (its asymptote z + 1/z far in the tail). */
function millsRatio(z: number): number {
  if (z > 8) return z + 1 / z;
  const sf = 1 - normalCdf(z);
  return Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI) / Math.max(sf, 1e-300);
}

function predictRows(Z: Float64Array, beta: Float64Array, p: number, N: number, out: Float64Array): void {
  for (let r = 0; r < N; r++) {
    let s = 0;
    const o = r * p;
    for (let a = 0; a < p; a++) s += Z[o + a]! * beta[a]!;
    out[r] = s;
  }
}

/**
 * The Cholesky factor of ZᵀWZ + ridge·Σw·I (Z: N rows of p, row-major; W: the rows' weights; the first column, the
 * intercept, gets a ridge of 1e-9·Σw only): what solveWith solves against, for any number of right-hand sides.
 */
export function ridgeFactor(Z: Float64Array, wt: Float64Array, p: number, N: number, ridgePerWeight: number): Float64Array {
  let wsum = 0;
  for (let r = 0; r < N; r++) wsum += wt[r]!;
  const A = new Float64Array(p * p);
  for (let r = 0; r < N; r++) {
    const o = r * p;
    const w = wt[r]!;
    for (let a = 0; a < p; a++) {
      const za = Z[o + a]!;
      if (za === 0) continue;
      for (let b = a; b < p; b++) A[a * p + b] = A[a * p + b]! + w * za * Z[o + b]!;
    }
  }
  const ridge = ridgePerWeight * wsum;
  for (let a = 0; a < p; a++) {
    for (let b = 0; b < a; b++) A[a * p + b] = A[b * p + a]!;
    A[a * p + a] = A[a * p + a]! + (a === 0 ? 1e-9 * wsum : ridge);
  }
  return cholesky(A, p);
}

/** β of the weighted ridge regression of y on Z, given ridgeFactor's L for the same Z and weights. */
export function solveWith(L: Float64Array, p: number, Z: Float64Array, wt: Float64Array, y: Float64Array, N: number): Float64Array {
  const rhs = new Float64Array(p);
  for (let r = 0; r < N; r++) {
    const o = r * p;
    const wy = wt[r]! * y[r]!;
    for (let a = 0; a < p; a++) rhs[a] = rhs[a]! + Z[o + a]! * wy;
  }
  // L·Lᵀ·β = rhs
  const t = new Float64Array(p);
  for (let a = 0; a < p; a++) {
    let s = rhs[a]!;
    for (let b = 0; b < a; b++) s -= L[a * p + b]! * t[b]!;
    t[a] = s / L[a * p + a]!;
  }
  const beta = new Float64Array(p);
  for (let a = p - 1; a >= 0; a--) {
    let s = t[a]!;
    for (let b = a + 1; b < p; b++) s -= L[b * p + a]! * beta[b]!;
    beta[a] = s / L[a * p + a]!;
  }
  return beta;
}

function cholesky(A: Float64Array, p: number): Float64Array {
  const L = new Float64Array(p * p);
  for (let a = 0; a < p; a++) {
    for (let b = 0; b <= a; b++) {
      let s = A[a * p + b]!;
      for (let k = 0; k < b; k++) s -= L[a * p + k]! * L[b * p + k]!;
      L[a * p + b] = a === b ? Math.sqrt(Math.max(s, 1e-12)) : s / L[b * p + b]!;
    }
  }
  return L;
}

/**
 * Price per token per agent: the declared one where given, else non-negative least squares of the reported cost on
 * the reported usage (projected coordinate descent on the normal equations). Undefined when a price is neither
 * declared nor fittable (no event reports a cost).
 */
export function fitPrices(rows: readonly LoggedEvent[], agents: readonly string[], declared?: readonly (number | null)[]): number[] | undefined {
  const n = agents.length;
  const out = agents.map((_, i) => declared?.[i] ?? NaN);
  const free = out.map((v, i) => (Number.isFinite(v) ? -1 : i)).filter((i) => i >= 0);
  if (free.length === 0) return out;
  const costed = rows.filter((e) => typeof e.c === 'number' && Number.isFinite(e.c));
  if (costed.length < 20) return undefined;
  // Usage in thousands of tokens keeps the normal equations well scaled.
  const K = 1e-3;
  const G = new Float64Array(n * n);
  const g = new Float64Array(n);
  for (const e of costed) {
    let fixed = 0;
    for (let i = 0; i < n; i++) if (Number.isFinite(out[i]!)) fixed += out[i]! * e.u![agents[i]!]!;
    const resid = e.c! - fixed;
    for (const i of free) {
      const ui = e.u![agents[i]!]! * K;
      g[i] = g[i]! + ui * resid;
      for (const j of free) G[i * n + j] = G[i * n + j]! + ui * e.u![agents[j]!]! * K;
    }
  }
  const pr = new Float64Array(n);
  for (let sweep = 0; sweep < 20000; sweep++) {
    let moved = 0;
    for (const i of free) {
      if (G[i * n + i]! <= 0) continue;
      let s = g[i]!;
      for (const j of free) if (j !== i) s -= G[i * n + j]! * pr[j]!;
      const v = Math.max(0, s / G[i * n + i]!);
      moved = Math.max(moved, Math.abs(v - pr[i]!));
      pr[i] = v;
    }
    if (moved < 1e-15) break;
  }
  for (const i of free) out[i] = pr[i]! * K;
  return out;
}
