import { rewardOf, type LoggedEvent } from './events.js';
import { forward, predict, type ModelWeights } from './model.js';
import type { FeatureEncoder } from './features.js';
import { importanceWeight } from './ope-service.js';

/**
 * The activation gate (pure: no I/O). A newly trained version first runs as the *candidate*: the learned
 * strategy adds the candidate's greedy split to every decision's candidate set with probability CANDIDATE_SHARE
 * (policy.ts withCandidate), so the decisions logged from then on give its split exact, known support. At the
 * next retrain the gate judges it on those decisions (all logged after it was trained: none was trained on):
 *
 *   for each reference R (the serving version when one serves, and the default strategy):
 *     Δ_i = DR_i(candidate) − DR_i(R)      paired over the same logged decisions
 *     pass iff  n ≥ minEvents  and  mean(Δ) − z·sd(Δ)/√n ≥ −δ   (one-sided lower confidence bound)
 *
 * DR is the product's doubly robust estimator (stats/ope.ts, with ope-service's importance weights and the
 * candidate's reward model as the direct-method part): DR_i(π) = q̂(x_i, π(x_i)) + w_i(π)·(r_i − q̂(x_i, a_i)).
 * Every target is the deterministic split a policy would serve (the version's greedy split, the default strategy's
 * split); all three are in every logged candidate set (the greedy at index 0, the default as the anchor, the
 * candidate's split mixed in), so the estimate is unbiased whatever the reward model: a confidently wrong model
 * cannot buy its way through with its own predictions.
 */
export interface GateRule {
  /** Tolerated loss δ on the reward scale. Default 0.02. */
  readonly delta: number;
  /** z of the one-sided lower bound. Default 1.645 (95 %). */
  readonly z: number;
  /** Fewest held-out decisions the gate decides on; fewer refuses. Default 200. */
  readonly minEvents: number;
  /**
   * Fewest of those decisions that played each compared split (the candidate's, the serving version's, the
   * default strategy's); fewer refuses. Default 20. Without it, a split the logs rarely played is valued almost
   * only by the candidate's own reward model, and the normal interval understates how wrong that can be.
   */
  readonly minSupport?: number;
}

export const DEFAULT_GATE: GateRule = { delta: 0.02, z: 1.645, minEvents: 200, minSupport: 20 };

export function describeRule(rule: GateRule): string {
  return `serve iff, on ≥ ${rule.minEvents} decisions logged since the candidate was trained (≥ ${rule.minSupport ?? 0} of them playing each compared split), the lower ${(100 * normalCdf(rule.z)).toFixed(0)} % bound of DR(candidate) − DR(reference) ≥ −${rule.delta} for the serving version and the default strategy`;
}

export interface GateComparison {
  readonly against: 'serving' | 'default';
  /** Mean paired DR difference (candidate − reference) and its one-sided lower bound. */
  readonly diff: number;
  readonly lo: number;
  /** DR estimates of the reference and the candidate. */
  readonly reference: number;
  readonly candidate: number;
}

export interface GateVerdict {
  readonly pass: boolean;
  readonly reason: string;
  readonly events: number;
  readonly comparisons: readonly GateComparison[];
}

/** What the gate compares: the candidate's split, the serving version's (absent during the safe start) and the default strategy's. */
export interface GateInput {
  /** Decisions logged since the candidate was trained (they carry its split in their candidate sets). */
  readonly events: readonly LoggedEvent[];
  readonly agents: readonly string[];
  readonly costWeight: number;
  /** The candidate version: its reward model is DR's direct-method part. */
  readonly candidate: { readonly weights: ModelWeights; readonly encoder: FeatureEncoder };
  readonly candidateSplit: (ev: LoggedEvent) => readonly number[];
  readonly serving?: { readonly version: number; readonly split: (ev: LoggedEvent) => readonly number[] };
  readonly defaultSplit: (ev: LoggedEvent) => readonly number[];
  /** Share of the total two splits may differ by and count as one action (as in OPE). Default 0.005. */
  readonly tolerance?: number;
}

export function gateVerdict(input: GateInput, rule: GateRule = DEFAULT_GATE): GateVerdict {
  const { agents } = input;
  const tol = input.tolerance ?? 0.005;
  const usable = input.events.filter((e) => e.d !== 1 && agents.every((a) => typeof e.b[a] === 'number'));
  const n = usable.length;
  if (n < rule.minEvents) {
    return { pass: false, reason: `only ${n} decisions with an outcome logged since the candidate was trained; the gate needs ${rule.minEvents}`, events: n, comparisons: [] };
  }
  const refs: { against: 'serving' | 'default'; split: (ev: LoggedEvent) => readonly number[] }[] = [];
  if (input.serving) refs.push({ against: 'serving', split: input.serving.split });
  refs.push({ against: 'default', split: input.defaultSplit });
  const cand = new Float64Array(n);
  const ref = refs.map(() => new Float64Array(n));
  let unsupported = 0;
  // Per target (candidate, then the references): decisions whose played action is that target's split.
  const played = new Int32Array(refs.length + 1);
  usable.forEach((ev, i) => {
    const logged = agents.map((a) => ev.b[a]!);
    const r = rewardOf(ev, input.costWeight);
    const h = forward(input.candidate.weights, input.candidate.encoder.encode(ev.f));
    const qLogged = predict(h, logged);
    const dr = (a: readonly number[], slot: number) => {
      const iw = importanceWeight(ev, agents, a, tol);
      if (!iw.supported) unsupported++;
      if (iw.w > 0) played[slot] = played[slot]! + 1;
      return predict(h, a) + iw.w * (r - qLogged);
    };
    cand[i] = dr(input.candidateSplit(ev), 0);
    refs.forEach((R, j) => (ref[j]![i] = dr(R.split(ev), j + 1)));
  });
  const minSupport = rule.minSupport ?? 0;
  const thin = [{ against: 'candidate', n: played[0]! }, ...refs.map((R, j) => ({ against: R.against, n: played[j + 1]! }))].filter((x) => x.n < minSupport);
  if (thin.length > 0) {
    return {
      pass: false,
      reason: `too little support: ${thin.map((x) => `the ${x.against === 'default' ? 'default strategy' : x.against === 'serving' ? 'serving version' : 'candidate'}'s split was played on ${x.n}`).join(', ')} of ${n} decisions; the gate needs ${minSupport} each`,
      events: n,
      comparisons: [],
    };
  }
  const comparisons: GateComparison[] = refs.map((R, j) => {
    let m = 0;
    let mc = 0;
    let mr = 0;
    for (let i = 0; i < n; i++) {
      m += (cand[i]! - ref[j]![i]!) / n;
      mc += cand[i]! / n;
      mr += ref[j]![i]! / n;
    }
    let v = 0;
    for (let i = 0; i < n; i++) v += (cand[i]! - ref[j]![i]! - m) ** 2 / (n - 1);
    return { against: R.against, diff: m, lo: m - (rule.z * Math.sqrt(v)) / Math.sqrt(n), reference: mr, candidate: mc };
  });
  const failed = comparisons.filter((c) => !(c.lo >= -rule.delta));
  const fmt = (c: GateComparison) => `${c.against}${c.against === 'serving' && input.serving ? ` version ${input.serving.version}` : ''}: Δ ${c.diff.toFixed(4)}, lower bound ${c.lo.toFixed(4)}`;
  const tail = `(δ ${rule.delta}, ${n} decisions${unsupported ? `, ${unsupported} target actions without support` : ''})`;
  return failed.length === 0
    ? { pass: true, reason: `not worse than ${comparisons.map(fmt).join('; ')} ${tail}`, events: n, comparisons }
    : { pass: false, reason: `possibly worse than ${failed.map(fmt).join('; ')} ${tail}`, events: n, comparisons };
}

/** Standard normal CDF (Abramowitz–Stegun 7.1.26 via erf), for stating the rule's level. */
function normalCdf(z: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(z / Math.SQRT2));
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-(z * z) / 2);
  return z >= 0 ? (1 + y) / 2 : (1 - y) / 2;
}
