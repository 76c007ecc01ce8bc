import { roundToTarget, waterFill } from '../strategies/fit.js';
import { greedySplit, predict, type Heads } from './model.js';

/**
 * The exploring policy (pure). Actions form a small discrete set per request, so every decision logs an
 * exact probability for every candidate (they sum to 1), which makes off-policy evaluation exact:
 *
 *   k = 0        the greedy split (argmax of the reward model, see model.ts greedySplit)
 *   k = 1..2n    the greedy split with agent i's budget scaled by e^{+δ} or e^{−δ}, the difference taken from
 *                or given to the others in proportion to their room (local exploration: it shows the model
 *                what one agent more or less buys, which is what the structure needs)
 *   k = last     the anchor: the pipeline's default strategy's split (uniform when the default is the built-in
 *                uniform strategy): it keeps support for the baseline, so the activation gate and off-policy
 *                evaluation can always value the default strategy
 *
 * Identical budget vectors are merged (their probabilities add). Exploration over that set is either
 * epsilon-greedy (ε spread evenly) or SquareCB (Foster & Rakhlin 2020: p_k = 1/(K + γ·(ŷ_best − ŷ_k)),
 * so candidates the model thinks are bad are tried less). See docs/learner.md for the measurement.
 *
 * Optional probes (ExploreOptions.probe, off by default; measured and not adopted, docs/learner.md "Probes that
 * starve an agent"): deep cuts of one agent or a random split, appended to the candidate set with exact probabilities.
 */
export type Explorer = 'epsilon' | 'squarecb';

export interface ExploreOptions {
  readonly explorer: Explorer;
  /** Epsilon-greedy: share of traffic spread over all candidates. */
  readonly epsilon: number;
  /** SquareCB: how sharply predicted regret suppresses a candidate. */
  readonly gamma: number;
  /** δ: log-scale of the per-agent perturbations. */
  readonly perturbation: number;
  /** Only the e^{+δ} perturbations (n + 2 candidates instead of 2n + 2). Default false. */
  readonly upOnly?: boolean;
  /**
   * SquareCB: the exploration budget ε, p_k = 1/(K/ε + γ·(ŷ_best − ŷ_k)), so the non-greedy candidates together
   * get less than ε however flat the model's predictions. 1 (the default) is plain SquareCB. See budgetFor.
   */
  readonly budget?: number;
  /** Shrink the budget as versions accumulate: ε_v = budget · √(decayFrom / v) for version v > decayFrom. */
  readonly decayFrom?: number;
  /**
   * Sparse deep probes: each agent i gets probability probe/n of a probe, the greedy split with i's budget cut
   * to e^{−probeDepth} of it (the freed tokens spread over the others in proportion to their room), unless the
   * model predicts the probe loses more than `probeStop` (relative) of the greedy split's reward. 0 (default): off.
   */
  readonly probe?: number;
  /** Log-depth of a probe's cut (default 1.5: the agent keeps e^{−1.5} ≈ 22 % of its greedy budget). */
  readonly probeDepth?: number;
  /** Predicted relative loss above which an agent is not probed in this context (default 0.25). */
  readonly probeStop?: number;
  /** 'cut' (default): one agent cut deep, per agent; 'random': one split drawn uniformly over the simplex (Dirichlet(1) shares fitted to the bounds), share `probe`. */
  readonly probeKind?: 'cut' | 'random';
  /** false: the probe share does not decay with versions (default: it shrinks as decayFrom / v, see optionsFor). */
  readonly probeDecay?: boolean;
  /**
   * Wide exploration during the safe start (decideAround; off by default, 0): a share of the safe start's decisions
   * serves a split far from the default strategy's, so the first versions see what starving an agent costs before
   * any of them serves. 'cut' (default kind): per agent with room above its minimum, the default split with that
   * agent cut to e^{−wideDepth} of it (the freed tokens to the others in proportion to their room), the share spread
   * evenly over those splits; 'random': one split drawn uniformly over the simplex (randomSplit) with the whole share.
   * Exact probabilities, like every candidate. See docs/learner.md, "Buying the starvation information before a version serves".
   */
  readonly wideStart?: number;
  readonly wideKind?: 'cut' | 'random';
  /** Log-depth of a wide cut (default 2: the agent keeps e^{−2} ≈ 14 % of its default budget; Infinity: its minimum). */
  readonly wideDepth?: number;
}

/** Defaults of the safe start's wide exploration (off unless `wideStart` is set). */
export const WIDE_DEFAULTS = { wideDepth: 2 } as const;

/** Defaults of the sparse deep probes (off unless `probe` is set). */
export const PROBE_DEFAULTS = { probeDepth: 1.5, probeStop: 0.25 } as const;

/** Defaults of the exploration budget and its decay (docs/learner.md, "Policy and exploration"). */
export const EXPLORE_DEFAULTS = { budget: 0.3, decayFrom: 2 } as const;

/** The exploration options of model version v: the budget shrinks as 1/√v after `decayFrom` versions (none: no decay). */
export function optionsFor(opts: ExploreOptions, version: number): ExploreOptions {
  if (!opts.decayFrom || version <= opts.decayFrom) return opts;
  const budget = (opts.budget ?? 1) * Math.sqrt(opts.decayFrom / version);
  // Probes shrink as 1/v (faster than the budget): they are for the first versions, while the prior still stands.
  return opts.probe ? { ...opts, budget, probe: opts.probe * (opts.probeDecay === false ? 1 : opts.decayFrom / version) } : { ...opts, budget };
}

export interface PolicyAgent {
  readonly min: number;
  readonly cap: number;
}

export interface Decision {
  /** Integer budgets of the chosen candidate (pipeline agent order). */
  readonly budgets: number[];
  readonly candidates: number[][];
  readonly probs: number[];
  readonly chosen: number;
  /** Index of the greedy candidate (always 0). */
  readonly greedy: 0;
}

/** The integer greedy split: what the policy serves when it does not explore. */
export function greedyBudgets(heads: Heads, agents: readonly PolicyAgent[], total: number): number[] {
  const { mins, caps } = boundsOf(agents);
  // Integer bounds give integer chunks; rounding only matters for (hypothetical) fractional bounds.
  const b = greedySplit(heads, mins, caps, total);
  if (b.every((v) => Number.isInteger(v))) return b;
  const target = Math.floor(Math.min(total, caps.reduce((s, v) => s + v, 0)));
  return roundToTarget(b, mins, caps, target);
}

const bounds = new WeakMap<readonly PolicyAgent[], { readonly mins: number[]; readonly caps: number[] }>();

/** The agents' minimums and caps as arrays, once per agents array (serving passes the same array every time). */
function boundsOf(agents: readonly PolicyAgent[]): { readonly mins: number[]; readonly caps: number[] } {
  let b = bounds.get(agents);
  if (!b) {
    b = { mins: agents.map((a) => a.min), caps: agents.map((a) => Math.max(a.min, a.cap)) };
    bounds.set(agents, b);
  }
  return b;
}

/**
 * Moves agent i from g_i to `to` (clamped to its bounds) and takes the difference from, or gives it to, the
 * other agents in proportion to their room (above their minimum, below their cap). Integer, O(n).
 */
function shifted(g: readonly number[], agents: readonly PolicyAgent[], i: number, to: number): number[] {
  const n = g.length;
  const out = g.slice();
  const target = Math.max(agents[i]!.min, Math.min(agents[i]!.cap, Math.round(to)));
  const want = target - g[i]!; // > 0: the others give; < 0: the others take
  if (want === 0) return out;
  const sign = want > 0 ? 1 : -1;
  let roomSum = 0;
  let unbounded = 0;
  for (let j = 0; j < n; j++) {
    if (j === i) continue;
    const r = sign > 0 ? g[j]! - agents[j]!.min : agents[j]!.cap - g[j]!;
    if (Number.isFinite(r)) roomSum += r;
    else unbounded++;
  }
  const budget = unbounded > 0 ? Math.abs(want) : Math.min(Math.abs(want), roomSum);
  out[i] = g[i]! + sign * budget;
  let moved = 0;
  for (let j = 0; j < n; j++) {
    if (j === i) continue;
    const r = sign > 0 ? g[j]! - agents[j]!.min : agents[j]!.cap - g[j]!;
    if (r <= 0) continue;
    const share = unbounded > 0 ? (Number.isFinite(r) ? 0 : 1 / unbounded) : r / roomSum;
    const d = Math.min(r, Math.floor(budget * share));
    out[j] = g[j]! - sign * d;
    moved += d;
  }
  // Hand out the rounding remainder one token at a time to agents with room left.
  for (let j = 0, left = budget - moved; left > 0 && j < n * 2; j++) {
    const a = j % n;
    if (a === i) continue;
    const can = sign > 0 ? out[a]! - agents[a]!.min : agents[a]!.cap - out[a]!;
    const d = Math.min(can, left);
    if (d > 0) {
      out[a] = out[a]! - sign * d;
      left -= d;
    }
  }
  return out;
}

/** The candidate actions for one request (index 0 greedy; see the module comment). `uniform` may be cached by the caller. */
export function candidateSet(heads: Heads, agents: readonly PolicyAgent[], total: number, perturbation: number, uniform?: number[]): number[][] {
  return candidatesAround(greedyBudgets(heads, agents, total), agents, total, perturbation, uniform);
}

/**
 * The candidate set around a greedy split: a pure function of (greedy, bounds, total, δ), so a decision
 * record only needs the greedy split to reproduce all candidates (the outcome worker does).
 */
export function candidatesAround(g: number[], agents: readonly PolicyAgent[], total: number, perturbation: number, uniform?: number[]): number[][] {
  const out: number[][] = [g];
  // A negative δ encodes "up-only" (it is logged as is, so the worker rebuilds the same set).
  const up = Math.exp(Math.abs(perturbation));
  const down = Math.exp(-Math.abs(perturbation));
  for (let i = 0; i < agents.length; i++) {
    pushNew(out, shifted(g, agents, i, Math.max(g[i]!, 1) * up));
    if (perturbation > 0) pushNew(out, shifted(g, agents, i, g[i]! * down));
  }
  pushNew(out, uniform ?? uniformSplit(agents, total));
  return out;
}

/** Appends b unless an identical vector is already there (top-level: no per-call closure on the hot path). */
function pushNew(out: number[][], b: number[]): void {
  const n = b.length;
  for (const c of out) {
    let same = true;
    for (let i = 0; i < n && same; i++) same = c[i] === b[i];
    if (same) return;
  }
  out.push(b);
}

export function uniformSplit(agents: readonly PolicyAgent[], total: number): number[] {
  return waterFill(agents.map((a) => ({ min: a.min, cap: a.cap, weight: 1 })), total);
}

/** Probabilities over the candidates (index 0 is greedy). Always positive and summing to 1. */
export function explorationProbs(heads: Heads, candidates: readonly number[][], opts: ExploreOptions): number[] {
  const K = candidates.length;
  if (K === 1) return [1];
  if (opts.explorer === 'epsilon') {
    const e = Math.min(1, Math.max(0, opts.epsilon));
    return candidates.map((_, k) => e / K + (k === 0 ? 1 - e : 0));
  }
  const y = candidates.map((c) => predict(heads, c));
  let best = 0;
  for (let k = 1; k < K; k++) if (y[k]! > y[best]!) best = k;
  const base = K / Math.min(1, Math.max(1e-6, opts.budget ?? 1));
  const p = y.map((v, k) => (k === best ? 0 : 1 / (base + opts.gamma * Math.max(0, y[best]! - v))));
  const rest = p.reduce((s, v) => s + v, 0);
  p[best] = 1 - rest;
  return p;
}

/** δ as logged: negative for up-only perturbations. */
export function signedPerturbation(opts: ExploreOptions): number {
  return opts.upOnly ? -opts.perturbation : opts.perturbation;
}

/**
 * Share of decisions that serve the candidate version's split while it awaits the activation gate (see gate.ts).
 * 0.2 with retrains every 250 outcomes (kind.ts DEFAULT_TRAIN_EVERY): a look sees about 50 plays of the candidate's
 * split 250 outcomes after it was trained, where 0.1 every 500 saw the same support twice as late (docs/learner.md,
 * "The gate's power against the world's truth").
 */
export const CANDIDATE_SHARE = 0.2;
/**
 * The candidate share while a detected change is recent (drift recovery, drift.ts windowAfterChange: the candidate was
 * trained with the shortened half-life, i.e. within 4 × the configured half-life of the change). undefined (the
 * default): CANDIDATE_SHARE throughout. Measured at 0.1 (docs/learner.md, "Drift recovery": "A smaller candidate
 * share while a change is recent").
 */
export const DRIFT_CANDIDATE_SHARE: number | undefined = undefined;

/**
 * The share of decisions a candidate version's split gets, fixed when the version is trained: `afterChange` (default
 * DRIFT_CANDIDATE_SHARE in the service) when it was trained while a detected change was recent (`recentChange`: drift recovery
 * shortened its half-life), else `base` (CANDIDATE_SHARE). The service stores it with the candidate (the model
 * document's `candidate.share`), so every server and the SDK's local mode mix the candidate in at the same share,
 * and the logged probabilities carry it (the outcome worker rebuilds nothing from it).
 */
export function candidateShareFor(recentChange: boolean, afterChange: number | undefined, base: number = CANDIDATE_SHARE): number {
  return recentChange && afterChange !== undefined ? afterChange : base;
}

/** The candidate share of a pipeline with model tiers (measured at 0.1 only: docs/tiers.md). */
export const TIER_CANDIDATE_SHARE = 0.1;

/**
 * Mixes a candidate version's split into a decision: it joins the candidate set (merged if already there) and
 * gets probability `share` on top of the policy's (1 − share)-scaled probabilities; the choice is redrawn from
 * the mixture. `extra` is appended exactly as candidatesWith rebuilds it from a logged decision.
 */
export function withCandidate(dec: Decision, extra: readonly number[], share: number, rng: () => number): Decision & { readonly drawn: boolean } {
  const candidates = candidatesWith(dec.candidates, extra);
  const at = indexOf(candidates, extra);
  const probs = candidates.map((_, k) => (k < dec.probs.length ? dec.probs[k]! * (1 - share) : 0) + (k === at ? share : 0));
  // `drawn`: the share's own draw chose `extra` (a per-decision coin independent of the request: the runtime
  // guard's candidate arm), not the policy's draw that happened to land on the same split.
  const drawn = rng() < share;
  const chosen = drawn ? at : dec.chosen;
  return { budgets: candidates[chosen]!, candidates, probs, chosen, greedy: 0, drawn };
}

/** The candidate set with `extra` appended unless already in it (a copy). */
export function candidatesWith(candidates: readonly number[][], extra: readonly number[]): number[][] {
  const out = candidates.slice();
  pushNew(out, extra.slice());
  return out;
}

function indexOf(candidates: readonly number[][], b: readonly number[]): number {
  return candidates.findIndex((c) => c.length === b.length && c.every((v, i) => v === b[i]));
}

/** Exploration rate of the safe start (see decideAround). */
export const SAFE_START_EPSILON = 0.2;

/**
 * The safe start's scales after the runtime guard found its learned traffic worse than the control arm (guard.ts
 * safeStartVerdict): each such finding halves the scale, down to SAFE_START_MIN_SCALE. The exploration rate is
 * SAFE_START_EPSILON × scale; the pending candidate's share is its share × max(scale, SAFE_START_CANDIDATE_FLOOR), so
 * the gate keeps its support rule within reach (at a 5 % share a candidate was refused for support: docs/learner.md).
 */
export const SAFE_START_MIN_SCALE = 0.125;
export const SAFE_START_CANDIDATE_FLOOR = 0.5;

/** The pending candidate's share during the safe start at exploration scale `scale` (1: unchanged). */
export function safeStartCandidateShare(share: number, scale: number): number {
  return scale >= 1 ? share : share * Math.max(scale, SAFE_START_CANDIDATE_FLOOR);
}

/**
 * The safe start: until a model version clears the activation gate, the learned strategy serves `base` (the
 * default strategy's split) and explores around it, epsilon-greedy over the same kind of candidate set as a
 * model's greedy split (index 0 = base, its per-agent perturbations, the anchor). `epsilon`: the exploration rate
 * (SAFE_START_EPSILON unless the runtime guard shrank it).
 */
export function decideAround(base: number[], agents: readonly PolicyAgent[], total: number, opts: ExploreOptions, rng: () => number, anchor?: number[], epsilon: number = SAFE_START_EPSILON): Decision & { readonly random?: number[] } {
  let candidates = candidatesAround(base, agents, total, signedPerturbation(opts), anchor);
  const K = candidates.length;
  const e = K === 1 ? 0 : epsilon;
  let probs = candidates.map((_, k) => e / K + (k === 0 ? 1 - e : 0));
  const wide = opts.wideStart ?? 0;
  // The random split (wideKind 'random') is not a function of the logged greedy split and bounds: the log must carry it.
  let random: number[] | undefined;
  if (wide > 0) {
    if (opts.wideKind === 'random') {
      random = randomSplit(agents, total, rng);
      ({ candidates, probs } = withProbes(candidates, probs, [random], wide, 1));
    } else {
      const cuts = wideCuts(base, agents, opts.wideDepth ?? WIDE_DEFAULTS.wideDepth);
      if (cuts.length > 0) ({ candidates, probs } = withProbes(candidates, probs, cuts, wide, cuts.length));
    }
  }
  const chosen = pickIndex(probs, rng());
  return { budgets: candidates[chosen]!, candidates, probs, chosen, greedy: 0, ...(random ? { random } : {}) };
}

/**
 * The safe start's wide cuts of `base`: per agent i with room above its minimum, base with i cut to e^{−depth}·base_i
 * (depth Infinity: to its minimum), the freed tokens to the others in proportion to their room. Pure in (base, bounds,
 * depth), so a logged decision's cuts can be rebuilt from its base split.
 */
export function wideCuts(base: readonly number[], agents: readonly PolicyAgent[], depth: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < agents.length; i++) {
    if (base[i]! <= agents[i]!.min) continue;
    const b = shifted(base, agents, i, Number.isFinite(depth) ? base[i]! * Math.exp(-depth) : agents[i]!.min);
    if (b[i] !== base[i]) out.push(b);
  }
  return out;
}

function pickIndex(probs: readonly number[], u: number): number {
  let acc = 0;
  for (let k = 0; k < probs.length; k++) {
    acc += probs[k]!;
    if (u < acc) return k;
  }
  return probs.length - 1;
}

/**
 * The probes of one decision: for each agent i with room above its minimum, the greedy split g with i cut to
 * g_i·e^{−depth}, kept when the model predicts it loses at most `stop` (relative) of r̂(g). Pure in (heads, g, bounds):
 * the same model and greedy split give the same probes.
 */
export function probesFor(heads: Heads, g: readonly number[], agents: readonly PolicyAgent[], opts: ExploreOptions): { readonly agents: number[]; readonly splits: number[][] } {
  const depth = opts.probeDepth ?? PROBE_DEFAULTS.probeDepth;
  const stop = opts.probeStop ?? PROBE_DEFAULTS.probeStop;
  const yg = predict(heads, g);
  const out = { agents: [] as number[], splits: [] as number[][] };
  for (let i = 0; i < agents.length; i++) {
    if (g[i]! <= agents[i]!.min) continue;
    const b = shifted(g, agents, i, g[i]! * Math.exp(-depth));
    if (b[i] === g[i]) continue;
    const loss = (yg - predict(heads, b)) / Math.max(1e-9, Math.abs(yg));
    if (loss > stop) continue;
    out.agents.push(i);
    out.splits.push(b);
  }
  return out;
}

/**
 * Mixes probes into a candidate set and its probabilities: each probe gets `share / n` (n = number of agents), the
 * policy's probabilities are scaled by 1 − (its probes' total); a probe identical to a candidate adds to it,
 * others are appended in order (as candidatesWith would).
 */
export function withProbes(candidates: readonly number[][], probs: readonly number[], probes: readonly number[][], share: number, n: number): { candidates: number[][]; probs: number[] } {
  const each = Math.min(1, Math.max(0, share)) / Math.max(1, n);
  const mass = each * probes.length;
  const C = candidates.slice();
  const P = probs.map((p) => p * (1 - mass));
  for (const b of probes) {
    const at = indexOf(C, b);
    if (at >= 0) P[at] = P[at]! + each;
    else {
      C.push(b);
      P.push(each);
    }
  }
  return { candidates: C, probs: P };
}

/** A split drawn uniformly over the simplex (Dirichlet(1) shares), fitted to the bounds (n draws of rng). */
export function randomSplit(agents: readonly PolicyAgent[], total: number, rng: () => number): number[] {
  return waterFill(agents.map((a) => ({ min: a.min, cap: a.cap, weight: -Math.log(Math.max(rng(), 1e-12)) })), total);
}

export function decide(heads: Heads, agents: readonly PolicyAgent[], total: number, opts: ExploreOptions, rng: () => number, uniform?: number[]): Decision {
  let candidates = candidateSet(heads, agents, total, signedPerturbation(opts), uniform);
  let probs = explorationProbs(heads, candidates, opts);
  if (opts.probe && opts.probe > 0 && opts.probeKind === 'random') {
    const r = randomSplit(agents, total, rng);
    const yg = predict(heads, candidates[0]!);
    const loss = (yg - predict(heads, r)) / Math.max(1e-9, Math.abs(yg));
    if (loss <= (opts.probeStop ?? PROBE_DEFAULTS.probeStop)) ({ candidates, probs } = withProbes(candidates, probs, [r], opts.probe, 1));
  } else if (opts.probe && opts.probe > 0) {
    const pr = probesFor(heads, candidates[0]!, agents, opts);
    if (pr.splits.length > 0) ({ candidates, probs } = withProbes(candidates, probs, pr.splits, opts.probe, agents.length));
  }
  const u = rng();
  let chosen = probs.length - 1;
  let acc = 0;
  for (let k = 0; k < probs.length; k++) {
    acc += probs[k]!;
    if (u < acc) {
      chosen = k;
      break;
    }
  }
  return { budgets: candidates[chosen]!, candidates, probs, chosen, greedy: 0 };
}
