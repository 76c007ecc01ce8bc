/**
 * The learner's reward model, evaluated in plain TypeScript on the serving path (pure: no tfjs, no I/O).
 *
 * A small network maps the encoded context x to six numbers per agent:
 *   o = W2·relu(W1·x + b1) + W3·x + b2          (a 1-hidden-layer MLP with a linear skip)
 *   need_i(x)   = NEED_SCALE · exp(o_i)          the agent's token scale (where its response bends)
 *   weight_i(x) = σ(o_{n+i})                     how much agent i's saturating part matters for this request
 *   shape_i     = 1 + exp(o_{2n+i})              tail shape κ ∈ (1, ∞)                      (one constant per agent)
 *   step_i(x)   = σ(o_{3n+i})                    how much agent i's threshold part matters for this request
 *   loc_i(x)    = need_i · exp(o_{4n+i})         where the threshold sits                   (constant ratio to need)
 *   steep_i     = 1 + exp(o_{5n+i})              how sharp it is                            (one constant per agent)
 * and predicts the reward of budgets b as a product of per-agent responses, each a saturating factor times a
 * threshold factor:
 *   c_i(b) = (1 − weight_i · (1 + b_i / (κ_i·need_i))^(−κ_i)) · (1 − step_i · σ(steep_i·(1 − b_i/loc_i)) / σ(steep_i))
 *   r̂(x, b) = Π_i c_i(b_i)
 * The saturating factor runs from hyperbolic (κ = 1: slow, Michaelis–Menten-like saturation) to exponential
 * (κ → ∞: 1 − w·exp(−b/need)); the threshold factor is 1 − step_i at b = 0 and rises to 1 past loc_i: it fits step
 * curves and hard failures below a floor, which no saturating curve can. Both factors grow with b: more tokens never
 * hurt an agent, and an agent off the critical path costs little when starved. With no threshold part (step ≈ 0)
 * log r̂ is separable and concave and the greedy split is exact marginal allocation; with one, the greedy split
 * looks ahead (see `greedySplit`). The structure lets the model extrapolate to totals it was not trained on.
 *
 * Versions trained before the threshold factor existed (3 outputs per agent) load with step = 0 (padded).
 *
 * Optionally (GlobalWeights; off in the service, `--global-head on` in bench/learner.ts) a split-independent factor
 * g(x) multiplies the product: r̂(x, b) = g(x)·Π_i c_i(b_i). Measured on the dev seeds it did not help (docs/learner.md
 * "Where the quality model is wrong"). Versions without it (every version the service trains) load and predict as before.
 */
export const NEED_SCALE = 1000;
/** Outputs per agent: need, weight, shape, step, loc, steep. */
export const OUTPUTS = 6;
/** Outputs per agent of versions trained before the threshold factor (need, weight, shape). */
export const LEGACY_OUTPUTS = 3;
/** Initial values of the threshold part's raw outputs (step ≈ 0.02, loc = need, steep = 8). */
export const STEP_INIT = -4;
export const STEEP_INIT = Math.log(7);

export interface ModelWeights {
  readonly inputDim: number;
  readonly hidden: number;
  readonly agents: number;
  /** hidden × inputDim, row-major. */
  readonly w1: Float32Array;
  readonly b1: Float32Array;
  /** (OUTPUTS·agents) × hidden. */
  readonly w2: Float32Array;
  /** (OUTPUTS·agents) × inputDim: the linear skip. */
  readonly w3: Float32Array;
  readonly b2: Float32Array;
  /** The cost part (absent: the reward is Π c_i alone, what versions without one predict). See CostWeights. */
  readonly cost?: CostWeights;
  /** The global factor g(x) (absent: g = 1, what versions without one predict). See GlobalWeights. */
  readonly glob?: GlobalWeights;
}

/**
 * The global factor: a split-independent, context-dependent level of the reward,
 *   g(x) = exp(clamp(o_g, GLOBAL_MIN, GLOBAL_MAX)),  o_g = gh·relu(W1·x + b1) + gx·x + g0
 * (the quality network's hidden layer plus a linear skip), so r̂(x, b) = g(x)·Π_i c_i(b_i) (− the cost part). It
 * lets the level of quality a context reaches whatever the split (task difficulty, a feature that moves quality
 * up or down) be fitted without bending the agents' weight and need heads. A positive factor does not change the
 * split that maximises Π c_i, so the greedy split without a cost part is unchanged by it; with one, the cost
 * trade-off uses g·Π c_i. New weights start with gh = gx = 0, g0 = 0: g = 1.
 */
export interface GlobalWeights {
  /** hidden values. */
  readonly gh: Float32Array;
  /** inputDim values. */
  readonly gx: Float32Array;
  readonly g0: number;
}
/** Bounds of o_g: g ∈ [e^−4, e^1]. */
export const GLOBAL_MIN = -4;
export const GLOBAL_MAX = 1;

/**
 * The cost part of a version whose quality model was trained on quality alone (usage reported per agent): each
 * agent's token demand D_i is log-normal, ln D_i ~ N(μ_i(x), σ_i²), with
 *   μ_i(x) = m0_i + Σ_j mx_ij·x_j + Σ_k mh_ik·relu(W1·x + b1)_k      (linear in the inputs and the quality network's hidden layer)
 * fitted on the reported usage, which is censored at the budget (usage = min(b_i, D_i)); `lp_i` = λ·price_i (USD per
 * token times the strategy's cost weight). The predicted reward is then
 *   r̂(x, b) = Π_i c_i(b_i) − Σ_i lp_i · E[min(b_i, D_i)]
 * so a token given to an expensive agent that would use it costs money, and one it would not use costs nothing.
 */
export interface CostWeights {
  readonly lp: Float64Array;
  readonly m0: Float64Array;
  /** agents × inputDim, row-major. */
  readonly mx: Float64Array;
  /** agents × hidden, row-major. */
  readonly mh: Float64Array;
  readonly sigma: Float64Array;
}

/** JSON form: Float32 arrays as base64 (little-endian), about 1.4 bytes per weight. */
export interface SerializedWeights {
  readonly inputDim: number;
  readonly hidden: number;
  readonly agents: number;
  readonly w1: string;
  readonly b1: string;
  readonly w2: string;
  readonly w3: string;
  readonly b2: string;
  /** The global factor (absent in versions without one): gh, gx and g0 as one Float32 array, base64. */
  readonly g?: string;
}

const ARRAYS = ['w1', 'b1', 'w2', 'w3', 'b2'] as const;

export function serializeWeights(w: ModelWeights): SerializedWeights {
  const enc = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
  const base = { inputDim: w.inputDim, hidden: w.hidden, agents: w.agents, w1: enc(w.w1), b1: enc(w.b1), w2: enc(w.w2), w3: enc(w.w3), b2: enc(w.b2) };
  if (!w.glob) return base;
  const g = new Float32Array(w.hidden + w.inputDim + 1);
  g.set(w.glob.gh, 0);
  g.set(w.glob.gx, w.hidden);
  g[w.hidden + w.inputDim] = w.glob.g0;
  return { ...base, g: enc(g) };
}

export function deserializeWeights(s: SerializedWeights): ModelWeights {
  const dec = (b64: string) => {
    const buf = Buffer.from(b64, 'base64');
    const out = new Float32Array(buf.byteLength / 4);
    new Uint8Array(out.buffer).set(buf);
    return out;
  };
  let w: ModelWeights = upgradeLegacy({ inputDim: s.inputDim, hidden: s.hidden, agents: s.agents, w1: dec(s.w1), b1: dec(s.b1), w2: dec(s.w2), w3: dec(s.w3), b2: dec(s.b2) });
  if (s.g !== undefined) {
    const g = dec(s.g);
    if (g.length !== s.hidden + s.inputDim + 1) throw new Error(`model weights g: expected ${s.hidden + s.inputDim + 1} values, got ${g.length}`);
    w = { ...w, glob: { gh: g.slice(0, s.hidden), gx: g.slice(s.hidden, s.hidden + s.inputDim), g0: g[s.hidden + s.inputDim]! } };
  }
  checkShapes(w);
  return w;
}

/** Weights of a version with LEGACY_OUTPUTS per agent, padded to OUTPUTS with no threshold part (same predictions). */
export function upgradeLegacy(w: ModelWeights): ModelWeights {
  const n = w.agents;
  if (w.b2.length !== LEGACY_OUTPUTS * n) return w;
  const pad = (a: Float32Array, width: number) => {
    const out = new Float32Array(OUTPUTS * n * width);
    out.set(a);
    return out;
  };
  const b2 = pad(w.b2, 1);
  for (let i = 0; i < n; i++) {
    b2[3 * n + i] = -30;
    b2[5 * n + i] = STEEP_INIT;
  }
  return { ...w, w2: pad(w.w2, w.hidden), w3: pad(w.w3, w.inputDim), b2 };
}

export function checkShapes(w: ModelWeights): void {
  const out = OUTPUTS * w.agents;
  const want: Record<(typeof ARRAYS)[number], number> = {
    w1: w.hidden * w.inputDim,
    b1: w.hidden,
    w2: out * w.hidden,
    w3: out * w.inputDim,
    b2: out,
  };
  for (const k of ARRAYS) {
    if (w[k].length !== want[k]) throw new Error(`model weights ${k}: expected ${want[k]} values, got ${w[k].length}`);
    for (const v of w[k]) if (!Number.isFinite(v)) throw new Error(`model weights ${k}: non-finite value`);
  }
  const g = w.glob;
  if (g) {
    if (g.gh.length !== w.hidden || g.gx.length !== w.inputDim) throw new Error(`model weights g: expected ${w.hidden} + ${w.inputDim} values, got ${g.gh.length} + ${g.gx.length}`);
    if (!Number.isFinite(g.g0) || g.gh.some((v) => !Number.isFinite(v)) || g.gx.some((v) => !Number.isFinite(v))) throw new Error('model weights g: non-finite value');
  }
}

/** Hidden units of a new model. */
export const DEFAULT_HIDDEN = 16;

/**
 * Fresh weights: every agent needs an equal share of `total` and matters halfway. Seeded. `globalHead`: with a global
 * factor, g = 1 (GlobalWeights). `weightPrior`: every agent's saturating weight starts at this value instead of
 * σ(0) = 0.5 (a bench option, measured and not adopted: docs/learner.md, "Buying the starvation information before a
 * version serves"); 0.5 gives the same weights as before, bit for bit.
 */
export function initialWeights(inputDim: number, agents: number, total: number, rng: () => number, hidden = DEFAULT_HIDDEN, globalHead = false, weightPrior = 0.5): ModelWeights {
  const scale = (fanIn: number) => Math.sqrt(2 / fanIn) * 0.5;
  const rand = (n: number, s: number) => Float32Array.from({ length: n }, () => (rng() * 2 - 1) * s);
  const b2 = new Float32Array(OUTPUTS * agents);
  const need0 = Math.log(Math.max(1, total / agents / 2) / NEED_SCALE);
  for (let i = 0; i < agents; i++) {
    b2[i] = need0;
    b2[agents + i] = Math.log(weightPrior / (1 - weightPrior)); // 0 at the default 0.5
    b2[2 * agents + i] = 1; // κ ≈ 3.7: between the hyperbolic and exponential ends
    b2[3 * agents + i] = STEP_INIT;
    b2[5 * agents + i] = STEEP_INIT;
  }
  return {
    inputDim,
    hidden,
    agents,
    w1: rand(hidden * inputDim, scale(inputDim)),
    b1: new Float32Array(hidden),
    w2: rand(OUTPUTS * agents * hidden, scale(hidden) * 0.1),
    w3: new Float32Array(OUTPUTS * agents * inputDim),
    b2,
    ...(globalHead ? { glob: { gh: new Float32Array(hidden), gx: new Float32Array(inputDim), g0: 0 } } : {}),
  };
}

/** Per-agent response parameters for one context. */
export interface Heads {
  readonly need: Float64Array;
  readonly weight: Float64Array;
  readonly shape: Float64Array;
  /** The threshold factor (absent: none): its weight, location in tokens, steepness and 1/σ(steepness). */
  readonly step?: Float64Array;
  readonly loc?: Float64Array;
  readonly steep?: Float64Array;
  readonly stepNorm?: Float64Array;
  /** Largest step weight: below STEP_MIN the greedy split treats the responses as concave. */
  readonly maxStep?: number;
  /** The cost part (CostWeights) for this context: λ·price per token, and ln D_i ~ N(mu_i, sigma_i²). */
  readonly cost?: CostHeads;
  /** The global factor g(x) for this context (absent: 1). */
  readonly scale?: number;
}

export interface CostHeads {
  readonly lp: Float64Array;
  readonly mu: Float64Array;
  readonly sigma: Float64Array;
}

/** Step weights below this count as no threshold part (the greedy split then needs no look-ahead). */
export const STEP_MIN = 1e-3;

const clamp = (v: number, lo: number, hi: number) => (v < lo ? lo : v > hi ? hi : v);

/** Scratch of the forward pass (synchronous, so one buffer per process is safe): hidden activations, nonzero inputs. */
let scratch = new Float64Array(64);
let nonzero = new Int32Array(64);

/**
 * Per-version constants of the forward pass, computed once per weights object: which output rows read the hidden
 * layer or the inputs at all (the trainer keeps the shape, location and steepness rows at zero: one constant per
 * agent), so forward skips them.
 */
interface Plan {
  readonly readsHidden: Uint8Array;
  readonly readsInput: Uint8Array;
}
const plans = new WeakMap<ModelWeights, Plan>();

function planOf(w: ModelWeights): Plan {
  let p = plans.get(w);
  if (!p) {
    const rows = w.b2.length;
    const readsHidden = new Uint8Array(rows);
    const readsInput = new Uint8Array(rows);
    for (let k = 0; k < rows; k++) {
      for (let j = 0; j < w.hidden && !readsHidden[k]; j++) if (w.w2[k * w.hidden + j] !== 0) readsHidden[k] = 1;
      for (let i = 0; i < w.inputDim && !readsInput[k]; i++) if (w.w3[k * w.inputDim + i] !== 0) readsInput[k] = 1;
    }
    p = { readsHidden, readsInput };
    plans.set(w, p);
  }
  return p;
}

/**
 * The heads for one encoded context. Zero inputs (most of a one-hot encoding), inactive hidden units and rows of
 * zero weights are skipped: their terms are ±0, so the sums, and the heads, are exactly those of the full products.
 */
export function forward(w: ModelWeights, x: Float32Array): Heads {
  const { inputDim: d, hidden: h, agents: n } = w;
  const plan = planOf(w);
  if (scratch.length < h) scratch = new Float64Array(h);
  if (nonzero.length < d) nonzero = new Int32Array(d);
  const hid = scratch;
  const nz = nonzero;
  let m = 0;
  for (let i = 0; i < d; i++) if (x[i] !== 0) nz[m++] = i;
  for (let j = 0; j < h; j++) {
    let s = w.b1[j]!;
    const row = j * d;
    for (let q = 0; q < m; q++) {
      const i = nz[q]!;
      s += w.w1[row + i]! * x[i]!;
    }
    hid[j] = s > 0 ? s : 0;
  }
  const need = new Float64Array(n);
  const weight = new Float64Array(n);
  const shape = new Float64Array(n);
  const step = new Float64Array(n);
  const loc = new Float64Array(n);
  const steep = new Float64Array(n);
  const stepNorm = new Float64Array(n);
  const outs = w.b2.length === LEGACY_OUTPUTS * n ? LEGACY_OUTPUTS : OUTPUTS;
  for (let k = 0; k < outs * n; k++) {
    let s = w.b2[k]!;
    if (plan.readsHidden[k]) {
      const r2 = k * h;
      for (let j = 0; j < h; j++) {
        const v = hid[j]!;
        if (v !== 0) s += w.w2[r2 + j]! * v;
      }
    }
    if (plan.readsInput[k]) {
      const r3 = k * d;
      for (let q = 0; q < m; q++) {
        const i = nz[q]!;
        s += w.w3[r3 + i]! * x[i]!;
      }
    }
    if (k < n) need[k] = NEED_SCALE * Math.exp(clamp(s, -12, 12));
    else if (k < 2 * n) weight[k - n] = 1 / (1 + Math.exp(-s));
    else if (k < 3 * n) shape[k - 2 * n] = 1 + Math.exp(clamp(s, -8, 8));
    else if (k < 4 * n) step[k - 3 * n] = 1 / (1 + Math.exp(-s));
    else if (k < 5 * n) loc[k - 4 * n] = Math.exp(clamp(s, -3, 3));
    else steep[k - 5 * n] = 1 + Math.exp(clamp(s, -3, 4));
  }
  let maxStep = 0;
  for (let i = 0; i < n; i++) {
    loc[i] = loc[i]! * need[i]!;
    if (outs === LEGACY_OUTPUTS) steep[i] = 1;
    stepNorm[i] = 1 + Math.exp(-steep[i]!);
    if (step[i]! > maxStep) maxStep = step[i]!;
  }
  const heads: Heads = { need, weight, shape, step, loc, steep, stepNorm, maxStep, ...(w.glob ? { scale: globalFactor(w.glob, h, x, nz, m, hid) } : {}) };
  if (!w.cost) return heads;
  return { ...heads, cost: costHeads(w.cost, d, h, x, nz, m, hid) };
}

function globalFactor(g: GlobalWeights, h: number, x: Float32Array, nz: Int32Array, m: number, hid: Float64Array): number {
  let s = g.g0;
  for (let q = 0; q < m; q++) s += g.gx[nz[q]!]! * x[nz[q]!]!;
  for (let j = 0; j < h; j++) if (hid[j] !== 0) s += g.gh[j]! * hid[j]!;
  return Math.exp(clamp(s, GLOBAL_MIN, GLOBAL_MAX));
}

function costHeads(cw: CostWeights, d: number, h: number, x: Float32Array, nz: Int32Array, m: number, hid: Float64Array): CostHeads {
  const n = cw.lp.length;
  const mu = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = cw.m0[i]!;
    for (let q = 0; q < m; q++) s += cw.mx[i * d + nz[q]!]! * x[nz[q]!]!;
    for (let j = 0; j < h; j++) if (hid[j] !== 0) s += cw.mh[i * h + j]! * hid[j]!;
    mu[i] = clamp(s, -5, 20);
  }
  return { lp: cw.lp, mu, sigma: cw.sigma };
}

/** Φ(z), the standard normal distribution function (erfc by Numerical Recipes' Chebyshev fit: relative error < 1.2e-7). */
export function normalCdf(z: number): number {
  const x = -z / Math.SQRT2;
  const t = 1 / (1 + 0.5 * Math.abs(x));
  const r =
    t *
    Math.exp(
      -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return 0.5 * (x >= 0 ? r : 2 - r);
}

/** E[min(b, D)] for ln D ~ N(mu, sigma²): e^{μ+σ²/2}·Φ((ln b − μ − σ²)/σ) + b·(1 − Φ((ln b − μ)/σ)). */
export function expectedUsage(mu: number, sigma: number, b: number): number {
  if (b <= 0) return 0;
  const z = (Math.log(b) - mu) / sigma;
  return Math.exp(mu + (sigma * sigma) / 2) * normalCdf(z - sigma) + b * (1 - normalCdf(z));
}

/** Σ_i λ·price_i·E[min(b_i, D_i)]: the predicted cost term of a budget vector (0 without a cost part). */
export function predictCost(heads: Heads, budgets: ArrayLike<number>): number {
  const c = heads.cost;
  if (!c) return 0;
  let s = 0;
  for (let i = 0; i < c.lp.length; i++) if (c.lp[i]! > 0) s += c.lp[i]! * expectedUsage(c.mu[i]!, c.sigma[i]!, budgets[i]!);
  return s;
}

/** c_i(b): agent i's response at budget b, in (0, 1]. */
export function response(heads: Heads, i: number, b: number): number {
  const k = heads.shape[i]!;
  const sat = 1 - heads.weight[i]! * Math.exp(-k * Math.log1p(b / (k * heads.need[i]!)));
  const st = heads.step;
  if (st === undefined || st[i]! < 1e-9) return sat;
  // σ(s·(1 − b/L)) / σ(s) = (1 + e^{−s}) / (1 + e^{−s·(1 − b/L)})
  const s = heads.steep![i]!;
  return sat * (1 - (st[i]! * heads.stepNorm![i]!) / (1 + Math.exp(-s * (1 - b / heads.loc![i]!))));
}

/** log c_i(b). */
export function logResponse(heads: Heads, i: number, b: number): number {
  return Math.log(response(heads, i, b));
}

/** Predicted reward of a budget vector (agents in pipeline order). */
export function predict(heads: Heads, budgets: ArrayLike<number>): number {
  let q = heads.scale ?? 1;
  for (let i = 0; i < heads.need.length; i++) q *= response(heads, i, budgets[i]!);
  return heads.cost ? q - predictCost(heads, budgets) : q;
}

/** Steps of the greedy split: its resolution is (total − Σ min) / GREEDY_STEPS (≈ 1.6 % of the free tokens; 40 steps lost up to 0.6 % quality against the exact optimum). */
export const GREEDY_STEPS = 64;
/** The coarse pass of the greedy split takes chunks this many times larger (see greedySplit). */
const COARSE = 4;

/**
 * The budgets that maximise r̂ with Σ b = ⌊min(total, Σ cap)⌋ and min ≤ b ≤ cap (integers when the bounds are). log r̂ is
 * separable and each log c_i is concave, so handing out the free tokens in equal chunks, each to the agent
 * whose response grows by the largest factor, reaches the optimum up to one chunk (marginal allocation).
 *
 * Proximity scaling (Hochbaum 1994): a first pass with chunks COARSE times larger gives x; some optimum at the
 * fine resolution lies at or above x − one coarse chunk per agent, so the fine pass starts there and only places
 * the rest (at most n·COARSE chunks plus the coarse pass's leftovers). About 16 + 4n steps instead of 64.
 * With a threshold part both passes look ahead (marginalLookAhead): the coarse pass's horizons reach 4× as far,
 * so it funds an agent past its threshold, and the fine pass can still move one coarse chunk either way. This
 * is no longer exact (log r̂ is not concave), but on trained models and random heads it loses under 0.1 % of the
 * predicted reward against one fine pass (test/learner/policy.test.ts) at about half the cost.
 */
export function greedySplit(heads: Heads, mins: readonly number[], caps: readonly number[], total: number): number[] {
  const n = mins.length;
  let capSum = 0;
  let minSum = 0;
  for (let i = 0; i < n; i++) {
    capSum += caps[i]!;
    minSum += mins[i]!;
  }
  // Integer chunks (the last step takes the remainder): with integer bounds the result is integer too.
  const target = Math.floor(Math.min(total, capSum));
  if (target <= minSum) return mins.slice();
  const chunk = Math.max(1, Math.floor((target - minSum) / GREEDY_STEPS));
  // A threshold part makes log c_i non-concave: one chunk's gain can hide what crossing the threshold pays. A cost
  // part makes r̂ a product minus a sum: chunks are compared by their gain in r̂ itself (marginalCost).
  if (heads.cost) return greedySplitCost(heads, mins, caps, target, minSum, chunk);
  const pass = (heads.maxStep ?? 0) >= STEP_MIN ? marginalLookAhead : marginal;
  const coarse = chunk * COARSE;
  if (target - minSum < coarse * (n + 4)) return pass(heads, mins.slice(), caps, target, chunk);
  const x = pass(heads, mins.slice(), caps, target, coarse);
  for (let i = 0; i < n; i++) x[i] = Math.max(mins[i]!, x[i]! - coarse);
  return pass(heads, x, caps, target, chunk);
}

/** Marginal allocation from `out` (modified in place) in chunks of `chunk` until Σ out = target or every agent is capped. */
export function marginal(heads: Heads, out: number[], caps: readonly number[], target: number, chunk: number): number[] {
  const n = out.length;
  let rest = target;
  for (let i = 0; i < n; i++) rest -= out[i]!;
  // Per agent: its response now (cur), where its next chunk would take it (nextAt) and the response there
  // (nextResp). A full step moves the agent onto nextAt, whose response is already known: one response
  // evaluation per step instead of two.
  const cur = new Float64Array(n);
  const nextAt = new Float64Array(n);
  const nextResp = new Float64Array(n);
  // gain[i]: the factor by which agent i's next chunk multiplies r̂ (comparing factors instead of log-gains
  // saves a log per step).
  const gain = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    cur[i] = response(heads, i, out[i]!);
    gain[i] = lookAhead(heads, i, out[i]!, cur[i]!, caps[i]!, chunk, nextAt, nextResp);
  }
  while (rest > 1e-9) {
    let best = -1;
    for (let i = 0; i < n; i++) if (gain[i]! > 0 && (best < 0 || gain[i]! > gain[best]!)) best = i;
    if (best < 0) break;
    const step = Math.min(chunk, rest, caps[best]! - out[best]!);
    out[best]! += step;
    rest -= step;
    cur[best] = out[best] === nextAt[best] ? nextResp[best]! : response(heads, best, out[best]!);
    gain[best] = lookAhead(heads, best, out[best]!, cur[best]!, caps[best]!, chunk, nextAt, nextResp);
  }
  return out;
}

/** Rounds of greedySplitCost after the split without the cost part. */
const COST_ROUNDS = 3;

/**
 * The greedy split of r̂ = Q(b) − C(b), Q = Π c_i, C = Σ lp_i·E[min(b_i, D_i)] (a cost part). At an optimum b* the
 * gradient of r̂ is Q(b*)·∇ log Q − ∇C, so b* is also a stationary point of the separable F(b) = Q(b*)·Σ log c_i(b_i) −
 * Σ C_i(b_i): starting from the split without the cost part, each round fixes Q at the last split's value and
 * maximises F by marginal allocation with look-ahead (marginalCost; C_i is concave in b, so F is not, and a chunk
 * is judged over several horizons), coarse then fine as greedySplit. The best split by r̂ among the rounds (and the
 * start) is returned. A marginal allocation of r̂ itself from the minimums fails: Q is tiny there, so cost decides
 * every early chunk.
 */
function greedySplitCost(heads: Heads, mins: readonly number[], caps: readonly number[], target: number, minSum: number, chunk: number): number[] {
  const n = mins.length;
  const { cost: _c, ...plain } = heads;
  let best = greedySplit(plain, mins, caps, target);
  let bestV = predict(heads, best);
  let cur = best;
  const coarse = chunk * COARSE;
  for (let r = 0; r < COST_ROUNDS; r++) {
    let q = heads.scale ?? 1;
    for (let i = 0; i < n; i++) q *= response(heads, i, cur[i]!);
    let x: number[];
    if (target - minSum < coarse * (n + 4)) x = marginalCost(heads, mins.slice(), caps, target, chunk, q);
    else {
      x = marginalCost(heads, mins.slice(), caps, target, coarse, q);
      for (let i = 0; i < n; i++) x[i] = Math.max(mins[i]!, x[i]! - coarse);
      x = marginalCost(heads, x, caps, target, chunk, q);
    }
    const v = predict(heads, x);
    if (v > bestV) {
      best = x;
      bestV = v;
    }
    cur = x;
  }
  return best;
}

/**
 * Marginal allocation of F(b) = q·Σ log c_i(b_i) − Σ lp_i·E[min(b_i, D_i)] from `out` (modified in place): each step
 * gives one chunk to the agent with the best per-chunk gain in F over 1, 4, 16 or 64 chunks (one where log c_i is
 * concave; horizons stop at the first that covers the tokens still to hand out). Every token is handed out, as
 * for any split, even where F falls.
 */
export function marginalCost(heads: Heads, out: number[], caps: readonly number[], target: number, chunk: number, q: number): number[] {
  const n = out.length;
  const cost = heads.cost!;
  let rest = target;
  for (let i = 0; i < n; i++) rest -= out[i]!;
  const cur = new Float64Array(n);
  const rate = new Float64Array(n);
  const usage = (i: number, b: number) => (cost.lp[i]! > 0 ? cost.lp[i]! * expectedUsage(cost.mu[i]!, cost.sigma[i]!, b) : 0);
  const value = (i: number, b: number) => q * Math.log(response(heads, i, b)) - usage(i, b);
  const look = (i: number) => {
    const at = out[i]!;
    const concave = heads.step === undefined || heads.step[i]! < 1e-9 || at >= heads.loc![i]!;
    let best = -Infinity;
    for (let h = 0; h < HORIZONS.length; h++) {
      const k = HORIZONS[h]!;
      const next = Math.min(caps[i]!, at + k * chunk);
      const step = next - at;
      if (step <= 1e-9) break;
      const r = ((value(i, next) - cur[i]!) * chunk) / step;
      if (r > best) best = r;
      // The cost part bends the other way (E[min(b, D)] is concave): look further unless the response is concave and the agent's demand is passed.
      if ((concave && cost.lp[i]! === 0) || next >= caps[i]! || k * chunk >= rest) break;
    }
    rate[i] = best;
  };
  for (let i = 0; i < n; i++) {
    cur[i] = value(i, out[i]!);
    look(i);
  }
  while (rest > 1e-9) {
    let best = -1;
    for (let i = 0; i < n; i++) if (rate[i]! > -Infinity && (best < 0 || rate[i]! > rate[best]!)) best = i;
    if (best < 0) break;
    const step = Math.min(chunk, rest, caps[best]! - out[best]!);
    out[best]! += step;
    rest -= step;
    cur[best] = value(best, out[best]!);
    look(best);
  }
  return out;
}

let laCur = new Float64Array(16);
let laRate = new Float64Array(16);
let laNextAt = new Float64Array(16);
let laNextLog = new Float64Array(16);

/** Look-ahead horizons of the non-concave greedy split, in chunks. */
const HORIZONS = [1, 4, 16, 64] as const;

/**
 * Marginal allocation for non-concave responses (a threshold part): each step gives one chunk to the agent with
 * the best per-chunk log growth of its response over a look-ahead of 1, 4, 16 or 64 chunks (a threshold pays only
 * once crossed), as the numerical oracles of the simulated worlds do. Horizons stop at the first that covers the
 * tokens still to hand out (a threshold out of reach cannot pay) and at one chunk where log c_i is concave (see
 * bestRate). Responses are separable, so only the chosen agent's rates change per step; the one-chunk point's
 * response is kept, so a full step costs no new evaluation for the agent's current response.
 */
export function marginalLookAhead(heads: Heads, out: number[], caps: readonly number[], target: number, chunk: number): number[] {
  const n = out.length;
  let rest = target;
  for (let i = 0; i < n; i++) rest -= out[i]!;
  // Per agent: log response now, its best per-chunk log growth (−∞ at its cap), and where one chunk takes it
  // (module scratch: the split is synchronous and these never escape).
  if (laCur.length < n) {
    laCur = new Float64Array(n);
    laRate = new Float64Array(n);
    laNextAt = new Float64Array(n);
    laNextLog = new Float64Array(n);
  }
  const cur = laCur;
  const rate = laRate;
  const nextAt = laNextAt;
  const nextLog = laNextLog;
  for (let i = 0; i < n; i++) {
    cur[i] = Math.log(response(heads, i, out[i]!));
    rate[i] = bestRate(heads, i, out[i]!, cur[i]!, caps[i]!, chunk, rest, nextAt, nextLog);
  }
  while (rest > 1e-9) {
    let best = -1;
    for (let i = 0; i < n; i++) if (rate[i]! > -Infinity && (best < 0 || rate[i]! > rate[best]!)) best = i;
    if (best < 0) break;
    const step = Math.min(chunk, rest, caps[best]! - out[best]!);
    out[best]! += step;
    rest -= step;
    cur[best] = out[best] === nextAt[best] ? nextLog[best]! : Math.log(response(heads, best, out[best]!));
    rate[best] = bestRate(heads, best, out[best]!, cur[best]!, caps[best]!, chunk, rest, nextAt, nextLog);
  }
  return out;
}

/**
 * The best per-chunk log growth of agent i's response over the look-ahead horizons (−∞ at its cap); records the
 * one-chunk point and its log response (nextAt, nextLog). Past its threshold's location (b ≥ loc_i), or with no
 * threshold part, log c_i is concave (σ(s·(1 − b/L)) is convex there, so the threshold factor is concave, and so
 * is its log) and no longer horizon beats the next chunk: one response evaluation instead of up to four.
 */
function bestRate(heads: Heads, i: number, at: number, cur: number, cap: number, chunk: number, rest: number, nextAt: Float64Array, nextLog: Float64Array): number {
  const concave = heads.step === undefined || heads.step[i]! < 1e-9 || at >= heads.loc![i]!;
  let best = -Infinity;
  nextAt[i] = NaN;
  for (let h = 0; h < HORIZONS.length; h++) {
    const k = HORIZONS[h]!;
    const next = Math.min(cap, at + k * chunk);
    const step = next - at;
    if (step <= 1e-9) break;
    const l = Math.log(response(heads, i, next));
    if (h === 0) {
      nextAt[i] = next;
      nextLog[i] = l;
    }
    const r = ((l - cur) * chunk) / step;
    if (r > best) best = r;
    if (concave || next >= cap || k * chunk >= rest) break;
  }
  return best;
}

/**
 * The factor by which agent i's next chunk multiplies r̂ (0 at its cap); a partial last chunk is rescaled to
 * a full chunk's exponent. Records where that chunk ends and the response there (nextAt, nextResp). A
 * top-level function, not a closure: the hot path runs under tsx, whose keep-names helper would otherwise
 * run on every call.
 */
function lookAhead(heads: Heads, i: number, at: number, cur: number, cap: number, chunk: number, nextAt: Float64Array, nextResp: Float64Array): number {
  const next = Math.min(cap, at + chunk);
  const step = next - at;
  nextAt[i] = next;
  if (step <= 1e-9) {
    nextResp[i] = cur;
    return 0;
  }
  const r = response(heads, i, next);
  nextResp[i] = r;
  const ratio = r / cur;
  return step === chunk ? ratio : Math.pow(ratio, chunk / step);
}

/**
 * Re-expresses weights trained on inputs scaled one way for inputs scaled another (a retrain refits the scaling and
 * warm-starts from the previous version): with x_old = a·x_new + c per numeric input (a = s_new/s_old,
 * c = (c_new − c_old)/s_old), the input's columns of W1 and W3 are multiplied by a and c times them moves into the
 * bias input's column (input 0). Exact away from the clipping bounds. Returns new arrays; `w` is unchanged.
 */
export function rescaleInputs(
  w: ModelWeights,
  from: readonly { readonly at: number; readonly center: number; readonly scale: number; readonly clipped?: boolean }[],
  to: readonly { readonly at: number; readonly center: number; readonly scale: number }[],
): ModelWeights {
  const w1 = Float32Array.from(w.w1);
  const w3 = Float32Array.from(w.w3);
  // The global factor's input weights are one more row of the same kind.
  const gx = w.glob ? Float32Array.from(w.glob.gx) : undefined;
  const d = w.inputDim;
  for (let s = 0; s < Math.min(from.length, to.length); s++) {
    const o = from[s]!;
    const n = to[s]!;
    // An input the old weights read raw (no scaling: the untrained prior, or a version from before scaling) is not
    // carried over: multiplying its weights by a scale of up to 1e7 would wreck the warm start.
    if (o.clipped === false || o.at !== n.at || o.at >= d || (o.center === n.center && o.scale === n.scale)) continue;
    const a = n.scale / o.scale;
    const c = (n.center - o.center) / o.scale;
    if (!Number.isFinite(a) || !Number.isFinite(c)) continue;
    for (const m of gx ? [w1, w3, gx] : [w1, w3]) {
      for (let r = 0; r < m.length / d; r++) {
        const v = m[r * d + o.at]!;
        m[r * d] = m[r * d]! + v * c;
        // A missing value encodes as 0 with its indicator (the next input) set: the indicator takes the shift back.
        if (o.at + 1 < d) m[r * d + o.at + 1] = m[r * d + o.at + 1]! - v * c;
        m[r * d + o.at] = v * a;
      }
    }
  }
  return { ...w, w1, w3, ...(gx ? { glob: { ...w.glob!, gx } } : {}) };
}
