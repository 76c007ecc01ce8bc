import { assignments, bestSplit, floorSplit, response, type Curve } from './tiers-split.js';
import { randomSplit } from './policy.js';

/**
 * Joint choice of model and tokens per agent (pure; no tfjs). A structured reward model over (model, budget) per
 * agent, and an exploring policy over both with exact logged probabilities.
 *
 * Reward model. Agent i with request features x (encoded φ, φ_0 = 1) on model m answers
 *   c_im(b) = 1 − w_i(x)·[(1 − reach_im) + reach_im·exp(−b / (pace_im·N_i(x)))],
 *   w_i(x) = σ(u_i·φ),   N_i(x) = exp(θ_i·φ),   reach_im = σ(η_im),   pace_im = exp(κ_im),
 * with reach and pace fixed at 1 on the agent's first model (they are relative to it: what the request needs is
 * learned once per agent and shared across models). Predicted quality is Π_i c_i; it is fitted to observed quality
 * by Adam on the squared error. The reward the policy maximises is predicted quality − λ·planned cost.
 *
 * Policy. For every model assignment the best split under the token total and the cost ceiling on the fitted curves
 * (tiers-split.ts); greedy = the assignment with the best predicted reward. Candidates: the greedy action, the best
 * split of every other assignment (exploring models), and the greedy assignment's split with one agent's need
 * scaled by e^{±δ} (exploring tokens), identical actions merged. Epsilon-greedy over the candidates, so every
 * decision logs an exact probability for every action.
 */

export interface TierAction {
  /** Model index per agent. */
  readonly assign: readonly number[];
  /** Integer budgets per agent. */
  readonly budgets: readonly number[];
}

export interface TierDecision {
  readonly action: TierAction;
  readonly candidates: readonly TierAction[];
  readonly probs: readonly number[];
  readonly chosen: number;
}

export interface TierAgent {
  readonly min: number;
  readonly cap: number;
  /** Candidate models' prices, USD per token (blended). */
  readonly rates: readonly number[];
}

export interface TierParams {
  /** Per agent: weight and need coefficients over φ (length dim each). */
  readonly u: Float64Array[];
  readonly theta: Float64Array[];
  /** Per agent and model (index 0 unused: the first model is the reference). */
  readonly eta: Float64Array[];
  readonly kappa: Float64Array[];
}

export interface TierEvent {
  readonly x: Float32Array;
  readonly action: TierAction;
  readonly quality: number;
  readonly cost: number;
  /** Weight in the fit (recency; default 1): the loss is the weighted mean of the squared errors. */
  readonly weight?: number;
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

export function initialParams(agents: readonly TierAgent[], dim: number, needGuess: number): TierParams {
  return {
    u: agents.map(() => new Float64Array(dim)),
    theta: agents.map(() => {
      const t = new Float64Array(dim);
      t[0] = Math.log(needGuess);
      return t;
    }),
    eta: agents.map((a) => new Float64Array(a.rates.length)),
    kappa: agents.map((a) => new Float64Array(a.rates.length)),
  };
}

const dot = (a: Float64Array, x: Float32Array) => {
  let s = 0;
  for (let j = 0; j < x.length; j++) s += a[j]! * x[j]!;
  return s;
};

/**
 * The prior a fit starts from when there is no warm start, centred on the log: every agent's need starts at the
 * geometric mean of the budgets it was logged with (`needGuess` for an agent without any), so the first steps of
 * the fit sit where the curves have slope instead of far out on a flat tail.
 */
export function loggedPrior(agents: readonly TierAgent[], dim: number, needGuess: number, events: readonly TierEvent[]): TierParams {
  const p = initialParams(agents, dim, needGuess);
  agents.forEach((_, i) => {
    let s = 0;
    let k = 0;
    for (const e of events) {
      const b = e.action.budgets[i]!;
      if (b > 0) {
        s += Math.log(b);
        k++;
      }
    }
    if (k > 0) p.theta[i]![0] = s / k;
  });
  return p;
}

/** The fitted curve of every agent on every model for a request. */
export function curvesOf(p: TierParams, agents: readonly TierAgent[], x: Float32Array): Curve[][] {
  return agents.map((a, i) => {
    const w = sigmoid(dot(p.u[i]!, x));
    const N = Math.exp(Math.max(-5, Math.min(14, dot(p.theta[i]!, x))));
    return a.rates.map((_, m) => {
      const reach = m === 0 ? 1 : sigmoid(p.eta[i]![m]!);
      const pace = m === 0 ? 1 : Math.exp(p.kappa[i]![m]!);
      return { A: w * (1 - reach), B: w * reach, N: N * pace };
    });
  });
}

export function predictQuality(curves: readonly Curve[][], action: TierAction): number {
  let q = 1;
  for (let i = 0; i < curves.length; i++) q *= response(curves[i]![action.assign[i]!]!, action.budgets[i]!);
  return q;
}

export function plannedCostOf(agents: readonly TierAgent[], action: TierAction): number {
  let c = 0;
  for (let i = 0; i < agents.length; i++) c += action.budgets[i]! * agents[i]!.rates[action.assign[i]!]!;
  return c;
}

export interface TierPolicyOptions {
  /** Share of decisions spread evenly over all candidates. */
  readonly epsilon: number;
  /** Log-scale of the need perturbations that explore tokens. */
  readonly perturbation: number;
  /** λ of reward = quality − λ·cost (USD). */
  readonly costWeight: number;
  /** Restrict the model choice (e.g. [[0,0,0]]: every agent on its first model, token-only). Default: every assignment. */
  readonly assignments?: readonly (readonly number[])[];
}

const sameAction = (a: TierAction, b: TierAction) => a.assign.every((v, i) => v === b.assign[i]) && a.budgets.every((v, i) => v === b.budgets[i]);

function splitOn(curves: readonly Curve[][], agents: readonly TierAgent[], assign: readonly number[], total: number, ceiling: number): TierAction | undefined {
  const mins = agents.map((a) => a.min);
  const s = bestSplit(
    curves.map((row, i) => row[assign[i]!]!),
    agents.map((a, i) => a.rates[assign[i]!]!),
    mins,
    agents.map((a) => a.cap),
    total,
    ceiling,
  );
  return s ? { assign: assign.slice(), budgets: floorSplit(s, mins) } : undefined;
}

/** Every model assignment's best split on the fitted curves, and the index of the greedy one (−1: none fits the ceiling). */
function perAssignment(p: TierParams, agents: readonly TierAgent[], x: Float32Array, total: number, ceiling: number, opts: TierPolicyOptions): { curves: Curve[][]; perAssign: TierAction[]; best: number } {
  const curves = curvesOf(p, agents, x);
  const all = opts.assignments ?? assignments(agents.map((a) => a.rates.length));
  const perAssign: TierAction[] = [];
  let best = -1;
  let bestV = -Infinity;
  for (const a of all) {
    const act = splitOn(curves, agents, a, total, ceiling);
    if (!act) continue;
    const v = predictQuality(curves, act) - opts.costWeight * plannedCostOf(agents, act);
    perAssign.push(act);
    if (v > bestV) {
      bestV = v;
      best = perAssign.length - 1;
    }
  }
  return { curves, perAssign, best };
}

/**
 * The greedy action alone (`tierCandidates(…)[0]`, without solving the token perturbations): what the gate, a
 * pending candidate's mixing and shadow mode need. Undefined when no assignment fits the ceiling.
 */
export function tierGreedy(p: TierParams, agents: readonly TierAgent[], x: Float32Array, total: number, ceiling: number, opts: TierPolicyOptions): TierAction | undefined {
  const { perAssign, best } = perAssignment(p, agents, x, total, ceiling, opts);
  return best < 0 ? undefined : perAssign[best];
}

/** The candidate actions of one request (index 0 greedy); undefined when no assignment fits the ceiling. */
export function tierCandidates(p: TierParams, agents: readonly TierAgent[], x: Float32Array, total: number, ceiling: number, opts: TierPolicyOptions): TierAction[] | undefined {
  const { curves, perAssign, best } = perAssignment(p, agents, x, total, ceiling, opts);
  if (best < 0) return undefined;
  const greedy = perAssign[best]!;
  const out: TierAction[] = [greedy];
  const push = (c: TierAction | undefined) => {
    if (c && !out.some((o) => sameAction(o, c))) out.push(c);
  };
  for (const a of perAssign) push(a);
  for (let i = 0; i < agents.length; i++) {
    for (const s of [opts.perturbation, -opts.perturbation]) {
      const scaled = curves.map((row, j) => (j === i ? row.map((c) => ({ ...c, N: c.N * Math.exp(s) })) : row));
      push(splitOn(scaled, agents, greedy.assign, total, ceiling));
    }
  }
  return out;
}

/**
 * Token perturbations of a fixed action on its own models (the safe start explores tokens around the default
 * strategy's action with them): agent i's budget scaled by e^{±δ}, the other agents' budgets above their minimums
 * rescaled by one factor so that the planned cost stays that of `base` (floored, within their bounds). Only those
 * that differ from `base` and fit the token total and the ceiling are returned, in agent order (+δ, then −δ).
 */
/** δ of the safe start's token perturbations around the default strategy's action (perturbAround). */
export const SAFE_START_TOKEN_SPREAD = 0.7;

export function perturbAround(base: TierAction, agents: readonly TierAgent[], total: number, ceiling: number, delta: number): TierAction[] {
  const n = agents.length;
  const rate = (j: number) => agents[j]!.rates[base.assign[j]!]!;
  let cost0 = 0;
  for (let j = 0; j < n; j++) cost0 += base.budgets[j]! * rate(j);
  const out: TierAction[] = [];
  for (let i = 0; i < n; i++) {
    for (const s of [delta, -delta]) {
      const a = agents[i]!;
      const bi = Math.min(a.cap, Math.max(a.min, Math.floor(base.budgets[i]! * Math.exp(s))));
      if (bi === base.budgets[i]) continue;
      let rest = cost0 - bi * rate(i);
      let above = 0;
      for (let j = 0; j < n; j++) {
        if (j === i) continue;
        rest -= agents[j]!.min * rate(j);
        above += (base.budgets[j]! - agents[j]!.min) * rate(j);
      }
      if (rest < 0) continue;
      const f = above > 0 ? rest / above : 1;
      const budgets = base.budgets.map((b, j) => (j === i ? bi : Math.min(agents[j]!.cap, Math.max(agents[j]!.min, Math.floor(agents[j]!.min + f * (b - agents[j]!.min) + 1e-9)))));
      let tokens = 0;
      let cost = 0;
      for (let j = 0; j < n; j++) {
        tokens += budgets[j]!;
        cost += budgets[j]! * rate(j);
      }
      if (tokens > total || cost > ceiling * (1 + 1e-12)) continue;
      pushTierAction(out, { assign: base.assign.slice(), budgets });
    }
  }
  return out;
}

/**
 * A guaranteed share of token exploration mixed into a decision's distribution (a serving tier version's token
 * perturbations around its greedy action, perturbAround): every probability is scaled by 1 − share and share /
 * |perturbations| is added at each perturbation's index — appended to `candidates` (in place) when new, merged with
 * an identical candidate otherwise — so the probabilities still sum to 1 and each logged action's is exact. With share
 * 0 or no perturbations the candidates and probabilities are left as they are.
 */
export function withTokenShare(candidates: TierAction[], probs: readonly number[], perturbations: readonly TierAction[], share: number): number[] {
  if (!(share > 0) || perturbations.length === 0) return probs.slice();
  const s = Math.min(1, share);
  const at = perturbations.map((c) => pushTierAction(candidates, c));
  const out = candidates.map((_, k) => (probs[k] ?? 0) * (1 - s));
  for (const k of at) out[k] = out[k]! + s / perturbations.length;
  return out;
}

export function decideTier(p: TierParams, agents: readonly TierAgent[], x: Float32Array, total: number, ceiling: number, opts: TierPolicyOptions, rng: () => number): TierDecision | undefined {
  const candidates = tierCandidates(p, agents, x, total, ceiling, opts);
  if (!candidates) return undefined;
  const K = candidates.length;
  const e = K === 1 ? 0 : Math.min(1, Math.max(0, opts.epsilon));
  const probs = candidates.map((_, k) => e / K + (k === 0 ? 1 - e : 0));
  const u = rng();
  let chosen = K - 1;
  let acc = 0;
  for (let k = 0; k < K; k++) {
    acc += probs[k]!;
    if (u < acc) {
      chosen = k;
      break;
    }
  }
  return { action: candidates[chosen]!, candidates, probs, chosen };
}

/**
 * How the tier fit regularises its parameters. `decoupled` (the default, TIER_RIDGE): weight decay outside Adam's
 * normalised step (AdamW), TIER_DECAY per unit of step size, toward the retrain's prior centred on the log (a direct
 * fitTier call: toward where the fit starts). `adam`: a ridge of 1e-4 toward 0 added to the gradient inside the step
 * (the default until 2026-12-05). Along directions the log leaves flat (an agent's weight against its need at the
 * budgets it was served, a cheaper model's reach against its pace) `adam` takes full-size steps on the ridge alone and
 * ends at need 1 token, weight ½, reach ½; `decoupled` leaves the fit where the data put it (docs/tiers.md, "The fit's
 * ridge").
 */
export type TierRidge = 'adam' | 'decoupled';
/** The fit's regularisation when none is named: what the service's retrains use. */
export const TIER_RIDGE: TierRidge = 'decoupled';
export const TIER_DECAY = 1e-2;

/**
 * Fits the reward model to logged events (newest last) by Adam on the mean squared error of predicted quality
 * (weighted by the events' `weight`, default 1), starting from `p` (warm start). Returns the new parameters and the
 * final training loss.
 */
export function fitTier(p0: TierParams, agents: readonly TierAgent[], events: readonly TierEvent[], opts: { steps?: number; lr?: number; l2?: number; centre?: TierParams; ridge?: TierRidge } = {}): { params: TierParams; loss: number } {
  const steps = opts.steps ?? 150;
  const lr = opts.lr ?? 0.03;
  const decoupled = (opts.ridge ?? TIER_RIDGE) === 'decoupled';
  const l2 = opts.l2 ?? (decoupled ? TIER_DECAY : 1e-4);
  const n = agents.length;
  const dim = p0.u[0]!.length;
  // Flat parameter vector: per agent [u (dim), theta (dim), eta (M), kappa (M)].
  const layout = agents.map((a) => ({ M: a.rates.length }));
  const size = layout.reduce((s, l) => s + 2 * dim + 2 * l.M, 0);
  const w = new Float64Array(size);
  const offs: number[] = [];
  let o = 0;
  for (let i = 0; i < n; i++) {
    offs.push(o);
    w.set(p0.u[i]!, o);
    w.set(p0.theta[i]!, o + dim);
    w.set(p0.eta[i]!, o + 2 * dim);
    w.set(p0.kappa[i]!, o + 2 * dim + layout[i]!.M);
    o += 2 * dim + 2 * layout[i]!.M;
  }
  // The decoupled decay's centre: `centre` (a retrain's prior centred on the log), else where the fit starts.
  const c0 = w.slice();
  if (opts.centre) {
    for (let i = 0; i < n; i++) {
      c0.set(opts.centre.u[i]!, offs[i]!);
      c0.set(opts.centre.theta[i]!, offs[i]! + dim);
      c0.set(opts.centre.eta[i]!, offs[i]! + 2 * dim);
      c0.set(opts.centre.kappa[i]!, offs[i]! + 2 * dim + layout[i]!.M);
    }
  }
  const m1 = new Float64Array(size);
  const m2 = new Float64Array(size);
  const g = new Float64Array(size);
  // Per agent, the current event's c and the parts of its partials (scratch: no allocation per event and step).
  const cs = new Float64Array(n);
  const wvs = new Float64Array(n);
  const reaches = new Float64Array(n);
  const es = new Float64Array(n);
  const ratios = new Float64Array(n);
  const ms = new Int32Array(n);
  // reach and pace per agent and model: one number each per step, not per event.
  const reachOf = layout.map((l) => new Float64Array(l.M));
  const paceOf = layout.map((l) => new Float64Array(l.M));
  // The events as flat arrays, once: each one's nonzero features (index and value; φ is mostly a one-hot encoding,
  // and a zero feature adds ±0 to a sum that is never −0, so skipping it changes no bit), models, budgets, weights.
  const E = events.length;
  const nzStart = new Int32Array(E + 1);
  let nnz = 0;
  for (let k = 0; k < E; k++) {
    const x = events[k]!.x;
    for (let j = 0; j < dim; j++) if (x[j] !== 0) nnz++;
    nzStart[k + 1] = nnz;
  }
  const nzIdx = new Int32Array(nnz);
  const nzVal = new Float64Array(nnz);
  const assign = new Int32Array(E * n);
  const budget = new Float64Array(E * n);
  const quality = new Float64Array(E);
  const weight = new Float64Array(E);
  for (let k = 0, z = 0; k < E; k++) {
    const ev = events[k]!;
    for (let j = 0; j < dim; j++) {
      const v = ev.x[j]!;
      if (v !== 0) {
        nzIdx[z] = j;
        nzVal[z++] = v;
      }
    }
    for (let i = 0; i < n; i++) {
      assign[k * n + i] = ev.action.assign[i]!;
      budget[k * n + i] = ev.action.budgets[i]!;
    }
    quality[k] = ev.quality;
    weight[k] = ev.weight ?? 1;
  }
  let W = 0;
  for (let k = 0; k < E; k++) W += weight[k]!;
  if (!(W > 0)) W = 1;
  let loss = 0;
  // The parameters with the lowest loss seen (each step's loss is of the parameters before its update, the warm
  // start included): a retrain never returns a fit worse on its data than the one it started from.
  let best = w.slice();
  let bestLoss = Infinity;
  for (let t = 1; t <= steps + 1; t++) {
    g.fill(0);
    loss = 0;
    for (let i = 0; i < n; i++) {
      const base = offs[i]!;
      const M = layout[i]!.M;
      for (let m = 1; m < M; m++) {
        reachOf[i]![m] = sigmoid(w[base + 2 * dim + m]!);
        paceOf[i]![m] = Math.exp(w[base + 2 * dim + M + m]!);
      }
    }
    for (let k = 0; k < E; k++) {
      const z0 = nzStart[k]!;
      const z1 = nzStart[k + 1]!;
      let q = 1;
      // Per agent: c and its partials.
      for (let i = 0; i < n; i++) {
        const base = offs[i]!;
        let zu = 0;
        let zt = 0;
        for (let z = z0; z < z1; z++) {
          const j = nzIdx[z]!;
          const v = nzVal[z]!;
          zu += w[base + j]! * v;
          zt += w[base + dim + j]! * v;
        }
        const wv = sigmoid(zu);
        const clamped = zt < -5 || zt > 14;
        const N = Math.exp(Math.max(-5, Math.min(14, zt)));
        const m = assign[k * n + i]!;
        const reach = m === 0 ? 1 : reachOf[i]![m]!;
        const pace = m === 0 ? 1 : paceOf[i]![m]!;
        const b = budget[k * n + i]!;
        const ratio = b / (N * pace);
        const e = Math.exp(-ratio);
        const c = Math.max(1e-6, 1 - wv * (1 - reach + reach * e));
        cs[i] = c;
        q *= c;
        wvs[i] = wv;
        reaches[i] = reach;
        es[i] = e;
        ratios[i] = clamped ? 0 : ratio;
        ms[i] = m;
      }
      const r = q - quality[k]!;
      const ew = weight[k]!;
      loss += ew * r * r;
      const kq = (2 * ew * r * q) / W;
      for (let i = 0; i < n; i++) {
        const wv = wvs[i]!;
        const reach = reaches[i]!;
        const e = es[i]!;
        const m = ms[i]!;
        const base = offs[i]!;
        const M = layout[i]!.M;
        const inv = kq / cs[i]!;
        // ∂c/∂zu = −(1 − reach + reach·e)·w(1−w); ∂c/∂zt = −w·reach·e·ratio (N grows with zt: e grows).
        const dzu = -(1 - reach + reach * e) * wv * (1 - wv) * inv;
        const dzt = -wv * reach * e * ratios[i]! * inv;
        for (let z = z0; z < z1; z++) {
          const j = nzIdx[z]!;
          const v = nzVal[z]!;
          g[base + j]! += dzu * v;
          g[base + dim + j]! += dzt * v;
        }
        if (m > 0) {
          // ∂c/∂η = w·(1 − e)·reach(1 − reach); ∂c/∂κ = −w·reach·e·ratio.
          g[base + 2 * dim + m]! += wv * (1 - e) * reach * (1 - reach) * inv;
          g[base + 2 * dim + M + m]! += -wv * reach * e * ratios[i]! * inv;
        }
      }
    }
    loss /= W;
    if (loss < bestLoss) {
      bestLoss = loss;
      best = w.slice();
    }
    if (t > steps) break;
    const c1 = 1 - 0.9 ** t;
    const c2 = 1 - 0.999 ** t;
    for (let j = 0; j < size; j++) {
      // `adam`: the ridge inside the normalised step; `decoupled`: outside it, toward the centre (TierRidge).
      const gj = decoupled ? g[j]! : g[j]! + l2 * w[j]!;
      m1[j] = 0.9 * m1[j]! + 0.1 * gj;
      m2[j] = 0.999 * m2[j]! + 0.001 * gj * gj;
      const mh = m1[j]! / c1;
      const vh = m2[j]! / c2;
      w[j]! -= (lr * mh) / (Math.sqrt(vh) + 1e-8) + (decoupled ? lr * l2 * (w[j]! - c0[j]!) : 0);
    }
  }
  w.set(best);
  loss = bestLoss;
  const params: TierParams = {
    u: agents.map((_, i) => w.slice(offs[i]!, offs[i]! + dim)),
    theta: agents.map((_, i) => w.slice(offs[i]! + dim, offs[i]! + 2 * dim)),
    eta: agents.map((a, i) => w.slice(offs[i]! + 2 * dim, offs[i]! + 2 * dim + a.rates.length)),
    kappa: agents.map((a, i) => w.slice(offs[i]! + 2 * dim + a.rates.length, offs[i]! + 2 * dim + 2 * a.rates.length)),
  };
  return { params, loss };
}

/**
 * One retrain (what the bench and the tests run every few hundred outcomes): a warm start from the serving
 * parameters and a fresh start from the prior, the one with the lower loss on the window kept, so a fit caught in a
 * poor optimum is replaced as soon as a fresh fit explains the data better. The first `early` outcomes use longer,
 * faster fits.
 */
export function retrainTier(p: TierParams, agents: readonly TierAgent[], events: readonly TierEvent[], dim: number, opts: { early?: boolean; needGuess?: number; restart?: boolean; prior?: TierParams; ridge?: TierRidge; decay?: number } = {}): TierParams {
  const centre = opts.prior ?? initialParams(agents, dim, opts.needGuess ?? 1000);
  const reg = { centre, ridge: opts.ridge ?? TIER_RIDGE, ...(opts.decay !== undefined ? { l2: opts.decay } : {}) } as const;
  const warm = fitTier(p, agents, events, opts.early ? { steps: 300, lr: 0.03, ...reg } : { steps: 150, lr: 0.01, ...reg });
  let next = warm.params;
  if (!opts.early && opts.restart) {
    const fresh = fitTier(centre, agents, events, { steps: 400, lr: 0.03, ...reg });
    if (fresh.loss < warm.loss) next = fresh.params;
  }
  return opts.early || fitsBetter(next, p, agents, events) ? next : p;
}

/** Squared error of predicted quality per event. */
export function tierErrors(p: TierParams, agents: readonly TierAgent[], events: readonly TierEvent[]): number[] {
  return events.map((e) => {
    const r = predictQuality(curvesOf(p, agents, e.x), e.action) - e.quality;
    return r * r;
  });
}

/**
 * Whether `next` fits the events significantly better than `current` (paired, one-sided 95 %): the serving fit is
 * only replaced on evidence, so noise in a flat loss does not move the policy back and forth. With event weights
 * (recency) the mean difference is the weighted one and its standard error uses the effective number of events
 * (Σw)²/Σw²; with equal weights this is the plain paired test.
 */
export function fitsBetter(next: TierParams, current: TierParams, agents: readonly TierAgent[], events: readonly TierEvent[]): boolean {
  const a = tierErrors(next, agents, events);
  const b = tierErrors(current, agents, events);
  const n = a.length;
  if (n < 2) return true;
  let W = 0;
  let W2 = 0;
  let m = 0;
  for (let i = 0; i < n; i++) {
    const w = events[i]!.weight ?? 1;
    W += w;
    W2 += w * w;
    m += w * (a[i]! - b[i]!);
  }
  m /= W;
  const ne = (W * W) / W2;
  if (!(ne > 1)) return m < 0;
  let v = 0;
  for (let i = 0; i < n; i++) v += (events[i]!.weight ?? 1) * (a[i]! - b[i]! - m) ** 2;
  v = (v / W) * (ne / (ne - 1));
  const se = Math.sqrt(v / ne);
  return m < -1.645 * se;
}

/** Tier parameters as stored with a model version (plain arrays: JSON). */
export interface SerializedTierParams {
  readonly u: number[][];
  readonly theta: number[][];
  readonly eta: number[][];
  readonly kappa: number[][];
  /**
   * The candidate models the parameters were fitted for, per agent in pipeline order (`provider/model`, or the model
   * alone without a provider; empty for an agent without models): a version serves only a pipeline declaring exactly
   * these (η and κ are per model index). Absent on versions saved before it was recorded: those are matched by the
   * numbers of models alone.
   */
  readonly models?: readonly (readonly string[])[];
}

/** Whether stored tier parameters were fitted for these candidate models (see SerializedTierParams.models; absent: yes). */
export function fitsTierModels(s: Pick<SerializedTierParams, 'models'>, models: readonly (readonly string[])[]): boolean {
  const m = s.models;
  if (m === undefined) return true;
  return m.length === models.length && m.every((ms, i) => ms.length === models[i]!.length && ms.every((x, j) => x === models[i]![j]));
}

export function serializeTierParams(p: TierParams): SerializedTierParams {
  const arr = (xs: readonly Float64Array[]) => xs.map((x) => Array.from(x));
  return { u: arr(p.u), theta: arr(p.theta), eta: arr(p.eta), kappa: arr(p.kappa) };
}

/** Stored tier parameters for these agents and this encoded width; throws when they do not fit them. */
export function deserializeTierParams(s: SerializedTierParams, agents: readonly TierAgent[], dim: number): TierParams {
  const n = agents.length;
  const ok = (xs: unknown, width: (i: number) => number) => Array.isArray(xs) && xs.length === n && xs.every((x, i) => Array.isArray(x) && x.length === width(i) && x.every((v) => typeof v === 'number' && Number.isFinite(v)));
  if (!ok(s.u, () => dim) || !ok(s.theta, () => dim) || !ok(s.eta, (i) => agents[i]!.rates.length) || !ok(s.kappa, (i) => agents[i]!.rates.length)) {
    throw new Error(`tier parameters do not fit ${n} agents with ${agents.map((a) => a.rates.length).join('/')} models and ${dim} inputs`);
  }
  const f = (xs: number[][]) => xs.map((x) => Float64Array.from(x));
  return { u: f(s.u), theta: f(s.theta), eta: f(s.eta), kappa: f(s.kappa) };
}

/** Whether two actions are the same (models and budgets). */
export function sameTierAction(a: TierAction, b: TierAction): boolean {
  return a.assign.length === b.assign.length && sameAction(a, b);
}

/** Appends `c` unless an identical action is already there; returns its index. */
export function pushTierAction(out: TierAction[], c: TierAction): number {
  const at = out.findIndex((o) => sameTierAction(o, c));
  if (at >= 0) return at;
  out.push(c);
  return out.length - 1;
}

/**
 * A joint action drawn at random (explore-first's, docs/tiers.md): each agent's model uniformly among its candidates,
 * the split uniformly over the simplex (Dirichlet(1) shares fitted to the bounds, integer budgets), scaled toward the
 * agents' minimums until its planned cost is within the ceiling (bisection). Undefined when the minimums alone are
 * over the ceiling on the drawn models. Draws 2n values of `rng` (n agents).
 */
export function randomTierAction(agents: readonly TierAgent[], total: number, ceiling: number, rng: () => number): TierAction | undefined {
  const assign = agents.map((a) => Math.min(a.rates.length - 1, Math.floor(rng() * a.rates.length)));
  const split = randomSplit(agents, total, rng).map((v, i) => Math.max(agents[i]!.min, Math.floor(v)));
  const action = { assign, budgets: split };
  if (plannedCostOf(agents, action) <= ceiling) return action;
  const mins = agents.map((a) => a.min);
  if (plannedCostOf(agents, { assign, budgets: mins }) > ceiling) return undefined;
  const scaled = (f: number) => split.map((v, i) => Math.floor(mins[i]! + (v - mins[i]!) * f));
  let lo = 0;
  let hi = 1;
  for (let k = 0; k < 40; k++) {
    const mid = (lo + hi) / 2;
    if (plannedCostOf(agents, { assign, budgets: scaled(mid) }) <= ceiling) lo = mid;
    else hi = mid;
  }
  return { assign, budgets: scaled(lo) };
}

/** Epsilon-greedy probabilities over K candidates, index `greedy` the greedy one. */
export function epsilonProbs(K: number, epsilon: number, greedy = 0): number[] {
  const e = K === 1 ? 0 : Math.min(1, Math.max(0, epsilon));
  return Array.from({ length: K }, (_, k) => e / K + (k === greedy ? 1 - e : 0));
}

/** γ of the served exploration's inverse-gap weighting (gapProbs), per unit of predicted reward. */
export const TIER_GAP_WEIGHT = 20;

/**
 * Exploration shares that shrink with the predicted gap (inverse-gap weighting): ε is spread over the K candidates
 * in proportion to 1 / (1 + γ·(v_greedy − v_k)⁺), v the predicted rewards (index `greedy` the greedy one, which also
 * keeps the 1 − ε). The same total exploration as epsilonProbs, less of it on actions the model predicts to be far
 * worse; every candidate keeps a positive probability.
 */
export function gapProbs(values: readonly number[], epsilon: number, gamma: number, greedy = 0): number[] {
  const K = values.length;
  const e = K === 1 ? 0 : Math.min(1, Math.max(0, epsilon));
  const top = values[greedy]!;
  const w = values.map((v) => 1 / (1 + gamma * Math.max(0, top - v)));
  const W = w.reduce((s, v) => s + v, 0);
  return w.map((v, k) => (e * v) / W + (k === greedy ? 1 - e : 0));
}

/** The index drawn from probabilities with u uniform in [0, 1). */
export function drawIndex(probs: readonly number[], u: number): number {
  let acc = 0;
  for (let k = 0; k < probs.length; k++) {
    acc += probs[k]!;
    if (u < acc) return k;
  }
  return probs.length - 1;
}
