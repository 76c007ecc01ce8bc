import { rewardOf, type LoggedEvent } from './events.js';
import { forward, predict, type ModelWeights } from './model.js';
import type { FeatureEncoder } from './features.js';
import { importanceWeight } from './ope-service.js';
import { mulberry32 } from './rng.js';

/**
 * The activation gate (pure: no I/O). A newly trained version first runs as the *candidate*: the learned
 * strategy adds the candidate's greedy split to every decision's candidate set with probability CANDIDATE_SHARE
 * (policy.ts withCandidate), so the decisions logged from then on give its split exact, known support. At each
 * retrain (a *look*) the gate judges it on all the decisions logged since it was proposed (none was trained on):
 *
 *   for each reference R (the serving version when one serves, and the default strategy):
 *     Δ_i = DR_i(candidate) − DR_i(R)      paired over the same logged decisions
 *     lower bound L = mean(Δ) − q · sd(Δ)/√n, q the (1 − α/looks) quantile of the bootstrap-t distribution
 *     pass iff  n ≥ minEvents  and  L ≥ −δ  for every R
 *   not passed at look j < looks, and mean(Δ) ≥ −δ for every R: it waits (stays the candidate) for more decisions;
 *   a compared split played on fewer than minSupport (but at least one) of them at look j ≤ supportWaits: no
 *   estimate, it waits likewise; otherwise it is refused.
 *
 * Why a bootstrap-t bound: Δ_i is a few large terms (importance weight ~10 × a reward residual, on the decisions
 * that played a compared split) among many small ones, and with hard failures the residuals are bimodal, so the
 * mean's distribution is skewed at the sample sizes the gate sees (tens of plays per split). The normal bound
 * then errs in the direction that matters: a few unlucky-for-the-truth plays without a failure give a high mean
 * *and* a small sd. The studentised bootstrap resamples the decisions and takes the quantile of
 * (mean_b − mean) / (sd_b / √n) over resamples b, which carries that coupling (second-order accurate). It is seeded by the data, so a
 * verdict is reproducible. Why looks: a candidate that is probably not worse but not yet provably so is judged
 * again on the larger set instead of being thrown away; each look runs at α/looks, so the chance that a version
 * worse than a reference by more than δ passes at any look stays ≤ α (Bonferroni).
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
   * default strategy's); fewer: no estimate (the candidate waits, see `supportWaits`, else it is refused). Default 20.
   * Without it, a split the logs rarely played is valued almost only by the candidate's own reward model, and the
   * normal interval understates how wrong that can be.
   */
  readonly minSupport?: number;
  /**
   * Looks at which a candidate with too little support *waits* (stays the candidate, nothing is trained over it, and
   * is judged again at the next retrain on all the decisions since it was proposed) instead of being refused: at
   * looks 1 … supportWaits, when every split short of `minSupport` was played at least once (a split played on none
   * — a strategy in shadow — gets no plays from more decisions, so it is refused at once). Default 0 (refused; token
   * pipelines); 2 on pipelines with model tiers (TIER_GATE). No estimate is made at such a look, so it spends none of the level α; it counts as a look
   * (`GateVerdict.look`), so a later estimate has that many fewer looks left to wait in (`looks`).
   */
  readonly supportWaits?: number;
  /**
   * How the lower bound is computed: `bootstrap-t` (default; skew-robust, see above) or `normal` (mean − z·sd/√n,
   * the rule before; kept for comparison).
   */
  readonly interval?: 'bootstrap-t' | 'percentile' | 'normal';
  /** Most looks at one candidate (each at level α/looks, α = 1 − Φ(z)). Default 3; 1 = one verdict, no waiting. */
  readonly looks?: number;
  /** Bootstrap resamples. Default 2000. */
  readonly resamples?: number;
  /**
   * Evidence that accumulates along a lineage of retrains (default true): when a version serves and its own held-out
   * decisions are given (`GateInput.serving.evidence`), the candidate's comparison with the default strategy is
   * the chain Δ(candidate, serving) on the candidate's decisions + Δ(serving, default) on all the decisions the
   * serving version never saw (see `chainedDiff`), so a small step from a version with a long record does not have
   * to re-earn its standing against the default on one retrain interval's decisions. false: the direct comparison.
   */
  readonly lineage?: boolean;
  /**
   * Whether the lineage is checked for a change first (default true): the serving version's standing against the
   * default strategy, Δ(serving, default), on the candidate's decisions (the recent ones) against the same on its
   * older held-out decisions. When the recent estimate is below the older one by more than δ and significantly
   * (the upper z bound of recent − older below 0), the older record no longer describes the world — a change drift
   * detection did not catch — and the comparison with the default strategy is the direct one, on the candidate's
   * decisions only, as without a lineage. false: the chain is used whatever the record shows (the rule before).
   */
  readonly lineageCheck?: boolean;
  /**
   * A control variate on every DR term (default 'none'). `offset`: DR_i(π) − β_π·(w_i(π) − 1), β_π the mean residual
   * r − q̂ over the decisions that played π, weighted by w (the reward model's offset at π's split), cross-fitted:
   * each half of the decisions (alternate ones) takes β from the other half. E[w_i(π) − 1 | x_i] = 0 for every
   * split in the logged candidate set, so the term has mean zero and the estimate stays unbiased whatever β; with the
   * model off by a common amount at a split, the residuals the importance weights multiply shrink, and so the
   * variance. Measured on the dev worlds (docs/learner.md, "The gate's power against the world's truth"): the
   * models are not off by a common amount there (the residual is the world's noise), and it passed no more helping
   * versions, so it is off by default.
   */
  readonly controlVariate?: 'none' | 'offset';
  /**
   * Least point estimate of DR(candidate) − DR(serving) (default none: the bound alone decides). With a value, a
   * candidate estimated below it against the serving version is refused even when its bound clears −δ, so versions
   * estimated worse cannot replace the serving one a tolerated step at a time.
   */
  readonly servingFloor?: number;
}

export const DEFAULT_GATE: GateRule = { delta: 0.02, z: 1.645, minEvents: 200, minSupport: 20, supportWaits: 0, interval: 'bootstrap-t', looks: 1, resamples: 2000, lineage: true, lineageCheck: true };

/**
 * The rule on a pipeline with model tiers: a candidate with too little support waits up to two looks. A tier
 * candidate is played on ~9.5 % of decisions (TIER_CANDIDATE_SHARE after the control arm), ~19–24 plays at a
 * `trainEvery` of 200–250 against the 20 the rule needs, so refusing for support refused good candidates. Token
 * pipelines keep refusing (a fresher candidate is trained at once): waiting cost the dev seeds 0.006 of the oracle on
 * average, 0.074 on the hard-floor drift world gen-8 (docs/learner.md, "Too little support").
 */
export const TIER_GATE: GateRule = { ...DEFAULT_GATE, supportWaits: 2 };

/** The activation gate's rule for a pipeline: TIER_GATE with model tiers, else DEFAULT_GATE; `delta` the strategy's gateDelta. */
export function gateRuleFor(tiers: boolean, delta?: number): GateRule {
  return { ...(tiers ? TIER_GATE : DEFAULT_GATE), ...(delta !== undefined ? { delta } : {}) };
}

/** The rule before the bootstrap-t bound, the looks and the lineage (one verdict per candidate, normal bound), for comparison. */
export const NORMAL_GATE: GateRule = { delta: 0.02, z: 1.645, minEvents: 200, minSupport: 20, interval: 'normal', looks: 1, lineage: false };

/** The one-sided confidence level of each of the rule's looks (0.95 for the default rule). */
export function gateLevel(rule: GateRule): number {
  return 1 - (1 - normalCdf(rule.z)) / Math.max(1, rule.looks ?? 1);
}

export function describeRule(rule: GateRule): string {
  const looks = rule.looks ?? 1;
  const level = (100 * (1 - (1 - normalCdf(rule.z)) / looks)).toFixed(looks > 1 ? 1 : 0);
  const how = rule.interval ?? 'bootstrap-t';
  const lineage = rule.lineage
    ? `; while a version serves, DR(candidate) − DR(default) is estimated along the lineage: Δ(candidate, serving) on the candidate's decisions + Δ(serving, default) on every decision since the serving version was trained (since the last detected change, if later), its lower ${level} % ${how} bound ≥ −${rule.delta}${rule.lineageCheck === false ? '' : `, unless Δ(serving, default) on the candidate's decisions is below the same on the older ones by more than ${rule.delta} and significantly (a change: then the direct comparison)`}`
    : '';
  const cv = rule.controlVariate === 'offset' ? `; each DR term with a cross-fitted offset control variate (− β̂·(w − 1), β̂ the weighted mean residual at that split on the other half of the decisions)` : '';
  return `serve iff, on ≥ ${rule.minEvents} decisions logged since the candidate was trained (≥ ${rule.minSupport ?? 0} of them playing each compared split${(rule.supportWaits ?? 0) > 0 ? `; with fewer, it waits and is judged again at the next retrain on all decisions since it was proposed, at up to ${rule.supportWaits} looks` : ''}), the lower ${level} % ${how} bound of DR(candidate) − DR(reference) ≥ −${rule.delta} for the serving version and the default strategy${rule.servingFloor !== undefined ? `, and the estimate of DR(candidate) − DR(serving) itself ≥ ${rule.servingFloor}` : ''}${lineage}${looks > 1 ? `; judged at up to ${looks} retrains on all decisions since it was proposed (waits while its estimate is not below −${rule.delta}), each look at α/${looks}` : ''}${cv}`;
}

export interface GateComparison {
  readonly against: 'serving' | 'default';
  /** For `default` along the lineage: the serving version's held-out decisions the chain used (the candidate's are `events`). */
  readonly lineage?: { readonly version: number; readonly events: number };
  /**
   * For `default`, when the lineage was not used because the serving version's record shows a change (`GateRule.lineageCheck`):
   * Δ(serving, default) on its older held-out decisions and on the candidate's, and how many of each.
   */
  readonly lineageChanged?: { readonly version: number; readonly older: number; readonly recent: number; readonly olderEvents: number; readonly recentEvents: number };
  /** Mean paired DR difference (candidate − reference) and its one-sided lower bound. */
  readonly diff: number;
  readonly lo: number;
  /** DR estimates of the reference and the candidate. */
  readonly reference: number;
  readonly candidate: number;
}

export interface GateVerdict {
  readonly pass: boolean;
  /**
   * Not passed, but looks remain and no estimate is below −δ, or too little support at a look within
   * `GateRule.supportWaits`: the candidate stays and is judged again on more decisions.
   */
  readonly wait?: boolean;
  /** Which look this was (1-based). */
  readonly look?: number;
  readonly reason: string;
  readonly events: number;
  readonly comparisons: readonly GateComparison[];
}

/**
 * A compared policy's action for a logged decision: its budgets (agent order), and on a pipeline with model tiers
 * its model per agent (agent order, null for none): it then matches a logged action only on the same models.
 */
export type GateTarget = readonly number[] | { readonly b: readonly number[]; readonly m?: readonly (string | null)[] };

const targetOf = (t: GateTarget): { b: readonly number[]; m?: readonly (string | null)[] } => ('b' in t && !Array.isArray(t) ? (t as { b: readonly number[]; m?: readonly (string | null)[] }) : { b: t as readonly number[] });

/** What the gate compares: the candidate's split, the serving version's (absent during the safe start) and the default strategy's. */
export interface GateInput {
  /** Decisions logged since the candidate was trained (they carry its split in their candidate sets). */
  readonly events: readonly LoggedEvent[];
  readonly agents: readonly string[];
  readonly costWeight: number;
  /** The candidate version: its reward model is DR's direct-method part. */
  readonly candidate: { readonly weights: ModelWeights; readonly encoder: FeatureEncoder };
  readonly candidateSplit: (ev: LoggedEvent) => GateTarget;
  readonly serving?: {
    readonly version: number;
    readonly split: (ev: LoggedEvent) => GateTarget;
    /**
     * The serving version's own held-out evidence: the decisions logged since it was trained (after the last
     * detected change, if later), which it never saw, and its reward model (DR's direct part on them). With it and
     * `rule.lineage`, the comparison with the default strategy is chained through the serving version. A token
     * version gives its reward model (`model`); a joint model-and-tokens version gives its own direct-method
     * `value` (and `reward`, as the input's), which take precedence.
     */
    readonly evidence?: {
      readonly events: readonly LoggedEvent[];
      readonly model?: { readonly weights: ModelWeights; readonly encoder: FeatureEncoder };
      readonly value?: (ev: LoggedEvent, budgets: readonly number[], models?: readonly (string | null)[]) => number;
      readonly reward?: (ev: LoggedEvent) => number;
    };
  };
  readonly defaultSplit: (ev: LoggedEvent) => GateTarget;
  /**
   * The direct method's value of an action (budgets, and models on a pipeline with model tiers) for a logged
   * decision. Default: the candidate's token reward model (`candidate`). A joint model-and-tokens candidate passes
   * its own (predicted quality − λ·planned cost).
   */
  readonly value?: (ev: LoggedEvent, budgets: readonly number[], models?: readonly (string | null)[]) => number;
  /** The observed reward of a logged decision. Default rewardOf(ev, costWeight). */
  readonly reward?: (ev: LoggedEvent) => number;
  /** Share of the total two splits may differ by and count as one action (as in OPE). Default 0.005. */
  readonly tolerance?: number;
}

/**
 * The gate's verdict at look `look` (1 = the first time this candidate is judged). Pass `look` = rule.looks (or
 * leave the rule's looks at 1) for a final verdict.
 */
export function gateVerdict(input: GateInput, rule: GateRule = DEFAULT_GATE, look = 1): GateVerdict {
  const { agents } = input;
  const tol = input.tolerance ?? 0.005;
  const usable = input.events.filter((e) => e.d !== 1 && agents.every((a) => typeof e.b[a] === 'number'));
  const n = usable.length;
  if (n < rule.minEvents) {
    return { pass: false, reason: `only ${n} decisions with an outcome logged since the candidate was trained; the gate needs ${rule.minEvents}`, events: n, comparisons: [] };
  }
  const refs: { against: 'serving' | 'default'; split: (ev: LoggedEvent) => GateTarget }[] = [];
  if (input.serving) refs.push({ against: 'serving', split: input.serving.split });
  refs.push({ against: 'default', split: input.defaultSplit });
  let unsupported = 0;
  // Per target (candidate, then the references): decisions whose played action is that target's split.
  const played = new Int32Array(refs.length + 1);
  const cols = refs.map(() => newColumn(n));
  cols.unshift(newColumn(n));
  const rows = usable.map((ev) => {
    const logged = agents.map((a) => ev.b[a]!);
    const r = input.reward ? input.reward(ev) : rewardOf(ev, input.costWeight);
    const h = input.value ? undefined : forward(input.candidate.weights, input.candidate.encoder.encode(ev.f));
    return { logged, r, h, raw: input.value ? input.value(ev, logged, ev.M) : predict(h!, logged) };
  });
  // λ > 0 and a token reward model: its direct part corrected by a cross-fitted linear term in the budgets (costCorrection).
  const corr = !input.value && input.costWeight > 0 ? costCorrection(rows.map((x) => x.logged), rows.map((x) => x.r - x.raw)) : undefined;
  usable.forEach((ev, i) => {
    const { logged, r, h } = rows[i]!;
    const q = (b: readonly number[], m?: readonly (string | null)[]) => (input.value ? input.value(ev, b, m) : predict(h!, b) + (corr ? corr(i, b) : 0));
    const qLogged = q(logged, ev.M);
    const dr = (target: GateTarget, slot: number) => {
      const { b: a, m } = targetOf(target);
      const iw = importanceWeight(ev, agents, a, tol, m);
      if (!iw.supported) unsupported++;
      if (iw.w > 0) played[slot] = played[slot]! + 1;
      setColumn(cols[slot]!, i, q(a, m), iw.w, iw.supported, r - qLogged);
    };
    dr(input.candidateSplit(ev), 0);
    refs.forEach((R, j) => dr(R.split(ev), j + 1));
  });
  const [cand, ...ref] = cols.map((c) => drOf(c, rule.controlVariate ?? 'none'));
  const minSupport = rule.minSupport ?? 0;
  const si = refs.findIndex((R) => R.against === 'serving');
  const ev = input.serving?.evidence;
  const chain = rule.lineage && si >= 0 && ev && (ev.value || ev.model) ? chainedDiff(usable, cand!, ref[si]!, ev, input.serving!.split, input.defaultSplit, agents, input.costWeight, tol, rule.controlVariate ?? 'none') : undefined;
  // A record that shows a change is not chained through (lineageCheck): the comparison with the default is the direct one.
  const changed = !!chain && rule.lineageCheck !== false && lineageShifted(chain.shift, rule);
  // Along the lineage the default's split is compared on M (the serving version's record), so its support is counted there.
  const lineageOk = !!chain && !changed && chain.played.every((p) => p >= minSupport);
  const thin = [{ against: 'candidate', n: played[0]! }, ...refs.map((R, j) => ({ against: R.against, n: R.against === 'default' && lineageOk ? chain!.played[1]! : played[j + 1]! }))].filter((x) => x.n < minSupport);
  if (thin.length > 0) {
    const reason = `too little support: ${thin.map((x) => `the ${x.against === 'default' ? 'default strategy' : x.against === 'serving' ? 'serving version' : 'candidate'}'s split was played on ${x.n}`).join(', ')} of ${n} decisions; the gate needs ${minSupport} each`;
    // No estimate: a candidate whose thin splits were all played waits for more decisions (GateRule.supportWaits),
    // on token and tier pipelines alike; one with a split played on none is refused (more decisions bring it none).
    const wait = look <= (rule.supportWaits ?? 0) && thin.every((x) => x.n > 0);
    return wait
      ? { pass: false, wait, look, reason: `${reason} (look ${look}; waits for support at up to ${rule.supportWaits} looks); judged again on more decisions`, events: n, comparisons: [] }
      : { pass: false, reason, events: n, comparisons: [] };
  }
  const looks = Math.max(1, rule.looks ?? 1);
  const alpha = (1 - normalCdf(rule.z)) / looks;
  const comparisons: GateComparison[] = refs.map((R, j) => {
    if (R.against === 'default' && chain && lineageOk) {
      const { mean: m, lo } = lowerBound(chain.u, alpha, rule.interval ?? 'bootstrap-t', rule.resamples ?? 2000, j);
      let mc = 0;
      for (let i = 0; i < n; i++) mc += cand![i]! / n;
      return { against: R.against, diff: m, lo, reference: mc - m, candidate: mc, lineage: { version: input.serving!.version, events: chain.m } };
    }
    const d = new Float64Array(n);
    let mc = 0;
    let mr = 0;
    for (let i = 0; i < n; i++) {
      d[i] = cand![i]! - ref[j]![i]!;
      mc += cand![i]! / n;
      mr += ref[j]![i]! / n;
    }
    const { mean: m, lo } = lowerBound(d, alpha, rule.interval ?? 'bootstrap-t', rule.resamples ?? 2000, j);
    if (R.against === 'default' && changed) {
      const { older, recent, olderEvents, recentEvents } = chain.shift;
      return { against: R.against, diff: m, lo, reference: mr, candidate: mc, lineageChanged: { version: input.serving!.version, older, recent, olderEvents, recentEvents } };
    }
    return { against: R.against, diff: m, lo, reference: mr, candidate: mc };
  });
  const belowFloor = (c: GateComparison) => rule.servingFloor !== undefined && c.against === 'serving' && !(c.diff >= rule.servingFloor);
  const failed = comparisons.filter((c) => !(c.lo >= -rule.delta) || belowFloor(c));
  const fmt = (c: GateComparison) =>
    `${c.against}${c.against === 'serving' && input.serving ? ` version ${input.serving.version}` : ''}: Δ ${c.diff.toFixed(4)}, lower bound ${c.lo.toFixed(4)}${c.lineage ? ` (along the lineage of version ${c.lineage.version}, on its ${c.lineage.events} held-out decisions)` : ''}${c.lineageChanged ? ` (direct, not along the lineage of version ${c.lineageChanged.version}: its record shows a change, Δ(serving, default) ${c.lineageChanged.recent.toFixed(4)} on the candidate's ${c.lineageChanged.recentEvents} decisions against ${c.lineageChanged.older.toFixed(4)} on its ${c.lineageChanged.olderEvents} older ones)` : ''}${belowFloor(c) ? ` (the estimate below the floor ${rule.servingFloor})` : ''}`;
  const tail = `(δ ${rule.delta}, ${n} decisions, look ${look}${look <= looks ? ` of ${looks}` : ''}, ${(100 * (1 - alpha)).toFixed(1)} % ${rule.interval ?? 'bootstrap-t'} bound${unsupported ? `, ${unsupported} target actions without support` : ''})`;
  if (failed.length === 0) return { pass: true, look, reason: `not worse than ${comparisons.map(fmt).join('; ')} ${tail}`, events: n, comparisons };
  const wait = look < looks && failed.every((c) => c.diff >= -rule.delta);
  return wait
    ? { pass: false, wait, look, reason: `not yet shown not worse than ${failed.map(fmt).join('; ')} ${tail}; judged again on more decisions`, events: n, comparisons }
    : { pass: false, look, reason: `possibly worse than ${failed.map(fmt).join('; ')} ${tail}`, events: n, comparisons };
}

/**
 * The lineage estimate of DR(candidate) − DR(default) (pure). M = the serving version's held-out decisions ∪ the
 * candidate's (N, by id); per decision i of M
 *
 *   u_i = b_i + 1[i ∈ N] · (|M| / |N|) · a_i,   a_i = DR_i(candidate) − DR_i(serving)   (the candidate's reward model)
 *                                               b_i = DR_i(serving) − DR_i(default)     (the serving version's reward model)
 *
 * so mean(u) = mean_N(a) + mean_M(b), an unbiased estimate of V(candidate) − V(default) (each DR term is unbiased:
 * every compared split is in every logged candidate set, and each direct part is a model that never saw those
 * decisions). Its bound is the gate's lower bound of mean(u), which carries the covariance of the two terms on
 * the shared decisions. The second term's evidence grows as long as the serving version serves, so a small step
 * from it (a ≈ 0) is judged against the default on far more than one retrain interval's decisions; a step that
 * loses against the serving version shows in a, so a version worse than the default is still refused.
 */
function chainedDiff(
  usable: readonly LoggedEvent[],
  cand: Float64Array,
  serv: Float64Array,
  ev: NonNullable<NonNullable<GateInput['serving']>['evidence']>,
  servingSplit: (ev: LoggedEvent) => GateTarget,
  defaultSplit: (ev: LoggedEvent) => GateTarget,
  agents: readonly string[],
  costWeight: number,
  tol: number,
  cv: 'none' | 'offset' = 'none',
): { u: Float64Array; m: number; played: number[]; shift: { older: number; recent: number; olderEvents: number; recentEvents: number; se: number } } {
  const n = usable.length;
  const inN = new Map(usable.map((e, i) => [e.id, i]));
  const extra = ev.events.filter((e) => !inN.has(e.id) && e.d !== 1 && agents.every((a) => typeof e.b[a] === 'number'));
  const all = [...extra, ...usable];
  const m = all.length;
  const u = new Float64Array(m);
  const played = [0, 0];
  const cols = [newColumn(m), newColumn(m)];
  const rows = all.map((e) => {
    const logged = agents.map((a) => e.b[a]!);
    const r = ev.reward ? ev.reward(e) : rewardOf(e, costWeight);
    const h = ev.value ? undefined : forward(ev.model!.weights, ev.model!.encoder.encode(e.f));
    return { logged, r, h, raw: ev.value ? ev.value(e, logged, e.M) : predict(h!, logged) };
  });
  const corr = !ev.value && costWeight > 0 ? costCorrection(rows.map((x) => x.logged), rows.map((x) => x.r - x.raw)) : undefined;
  all.forEach((e, i) => {
    const { logged, r, h } = rows[i]!;
    const q = (b: readonly number[], models?: readonly (string | null)[]) => (ev.value ? ev.value(e, b, models) : predict(h!, b) + (corr ? corr(i, b) : 0));
    const qLogged = q(logged, e.M);
    const dr = (target: GateTarget, slot: number) => {
      const { b: a, m: models } = targetOf(target);
      const iw = importanceWeight(e, agents, a, tol, models);
      if (iw.w > 0) played[slot]!++;
      setColumn(cols[slot]!, i, q(a, models), iw.w, iw.supported, r - qLogged);
    };
    dr(servingSplit(e), 0);
    dr(defaultSplit(e), 1);
  });
  const [sv, df] = cols.map((c) => drOf(c, cv));
  // Δ(serving, default) per decision, on the older part of the record (extra) and on the candidate's decisions (recent).
  const part = [
    { s: 0, s2: 0, k: 0 },
    { s: 0, s2: 0, k: 0 },
  ];
  for (let i = 0; i < m; i++) {
    const j = i - extra.length;
    const b = sv![i]! - df![i]!;
    u[i] = b + (j >= 0 ? (m / n) * (cand[j]! - serv[j]!) : 0);
    const p = part[j >= 0 ? 1 : 0]!;
    p.s += b;
    p.s2 += b * b;
    p.k++;
  }
  const [older, recent] = part.map((p) => {
    const mean = p.k > 0 ? p.s / p.k : 0;
    const v = p.k > 1 ? Math.max(0, (p.s2 - p.k * mean * mean) / (p.k - 1)) : 0;
    return { mean, v, k: p.k };
  }) as [{ mean: number; v: number; k: number }, { mean: number; v: number; k: number }];
  const shift = { older: older.mean, recent: recent.mean, olderEvents: older.k, recentEvents: recent.k, se: older.k > 1 && recent.k > 1 ? Math.sqrt(older.v / older.k + recent.v / recent.k) : Infinity };
  return { u, m, played, shift };
}

/**
 * Whether the serving version's record shows a change (GateRule.lineageCheck): its Δ(serving, default) on the
 * candidate's decisions below the same on its older held-out decisions by more than δ, and significantly (the upper
 * z bound of the difference below 0). Pure.
 */
export function lineageShifted(shift: { readonly older: number; readonly recent: number; readonly olderEvents: number; readonly se: number }, rule: GateRule): boolean {
  if (shift.olderEvents < 1 || !Number.isFinite(shift.se)) return false;
  const d = shift.recent - shift.older;
  return d < -rule.delta && d + rule.z * shift.se < 0;
}

/**
 * Mean |r − q̂(x, a)| above which costCorrection applies. A token reward model's residual on rewards in [0, 1] is
 * well below it (the dev worlds with a cost weight, λ = 1: their verdicts are unchanged); one that misses a −λ·cost
 * term of −40 … −240 is far above it. Below it the correction was measured to add variance: the mean residual over
 * all decisions (exploration included) is not the offset of the decisions that played the compared splits (dev
 * gen-11: 13 → 18 of 20 versions refused, gen-1 11 → 14).
 */
export const COST_CORRECTION_FROM = 0.5;

/**
 * The cost part of the direct method, for a token reward model under a cost weight λ > 0 (pure). The reward is
 * quality − λ·cost, but the token model is a product of saturating curves, r̂ ∈ (0, e]: it cannot represent −λ·cost once
 * that exceeds ~1 (λ 1,000 and $0.14 a request: rewards near −140), so every residual r − q̂ carried it and the paired
 * difference Δ_i ≈ (w_i(candidate) − w_i(reference))·(−140) swamped the gate: no version could pass. So the direct
 * part is q̂(x, b) + θ0 + θ1·Σ_i b_i/1000: a regression of the residual r − q̂(x, a) of the logged action on its
 * tokens, with an intercept — the offset the compared splits share (λ·cost grows with the request's total; the model's
 * own offset). Two parameters only: a slope per agent (a price each) adds parameters a few hundred decisions fit
 * poorly, and every split of one request uses its whole total in the cases this is for. Cross-fitted: decision i takes θ from the other half of the decisions
 * (alternate ones), so its direct part does not depend on its own reward, and DR keeps its expectation whatever θ:
 * adding a fixed c(b) to the direct part changes DR_i(π) by c(π(x_i)) − w_i·c(a_i), and with w_i = 1[a_i ≈ π(x_i)] /
 * P(a ≈ π(x_i)) (not self-normalised) E[w_i·c(a_i) | x_i] is the mean of c over the logged splits within the tolerance
 * of π(x_i), i.e. c(π(x_i)) up to that tolerance (0.5 % of the total: the smoothing DR's own q̂ already has). It only
 * moves variance: the shared offset and the cost differences leave the residuals the importance weights multiply.
 * Returns corr(i, b), or undefined when the residuals' mean size is at most COST_CORRECTION_FROM.
 */
export function costCorrection(logged: readonly (readonly number[])[], residual: ArrayLike<number>): ((i: number, b: readonly number[]) => number) | undefined {
  const n = logged.length;
  let abs = 0;
  for (let i = 0; i < n; i++) abs += Math.abs(residual[i]!) / Math.max(1, n);
  if (!(abs > COST_CORRECTION_FROM)) return undefined;
  const d = 2;
  const tokens = (b: readonly number[]) => b.reduce((x, y) => x + y, 0) / 1000;
  const fits = [0, 1].map((half) => {
    const A = Array.from({ length: d }, () => new Float64Array(d));
    const y = new Float64Array(d);
    let rows = 0;
    for (let i = half; i < n; i += 2) {
      const z = [1, tokens(logged[i]!)];
      for (let a = 0; a < d; a++) {
        y[a]! += z[a]! * residual[i]!;
        for (let b = 0; b < d; b++) A[a]![b]! += z[a]! * z[b]!;
      }
      rows++;
    }
    // A little ridge on the slope: with one total throughout it is collinear with the intercept (predictions are unaffected).
    for (let a = 1; a < d; a++) A[a]![a]! += 1e-6 * Math.max(1, rows) + 1e-9;
    if (rows === 0) return new Float64Array(d);
    return solve(A, y);
  });
  return (i, b) => {
    const th = fits[1 - (i & 1)]!;
    const v = th[0]! + th[1]! * tokens(b);
    return Number.isFinite(v) ? v : 0;
  };
}

/** Solves A·x = y (Gaussian elimination, partial pivoting); a singular column gets 0. */
function solve(A: Float64Array[], y: Float64Array): Float64Array {
  const d = y.length;
  const M = A.map((row, i) => [...row, y[i]!]);
  for (let c = 0; c < d; c++) {
    let p = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(M[r]![c]!) > Math.abs(M[p]![c]!)) p = r;
    [M[c], M[p]] = [M[p]!, M[c]!];
    const piv = M[c]![c]!;
    if (Math.abs(piv) < 1e-12) continue;
    for (let r = 0; r < d; r++) {
      if (r === c) continue;
      const f = M[r]![c]! / piv;
      if (f !== 0) for (let k = c; k <= d; k++) M[r]![k]! -= f * M[c]![k]!;
    }
  }
  const x = new Float64Array(d);
  for (let c = 0; c < d; c++) x[c] = Math.abs(M[c]![c]!) < 1e-12 ? 0 : M[c]![d]! / M[c]![c]!;
  return x;
}

/** One target's DR parts per decision: the direct value q̂(x, π(x)), the importance weight, support, the logged residual r − q̂(x, a). */
interface DrColumn {
  readonly q: Float64Array;
  readonly w: Float64Array;
  readonly sup: Uint8Array;
  readonly res: Float64Array;
}
const newColumn = (n: number): DrColumn => ({ q: new Float64Array(n), w: new Float64Array(n), sup: new Uint8Array(n), res: new Float64Array(n) });
function setColumn(c: DrColumn, i: number, q: number, w: number, sup: boolean, res: number): void {
  c.q[i] = q;
  c.w[i] = w;
  c.sup[i] = sup ? 1 : 0;
  c.res[i] = res;
}

/**
 * DR_i(π) = q̂_i + w_i·res_i, with the cross-fitted offset control variate (`offset`, GateRule.controlVariate):
 * − β·(w_i − 1) on supported decisions, β the w-weighted mean residual of the other half (alternate decisions).
 */
function drOf(c: DrColumn, cv: 'none' | 'offset'): Float64Array {
  const n = c.q.length;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = c.q[i]! + c.w[i]! * c.res[i]!;
  if (cv === 'none') return out;
  const sw = [0, 0];
  const swr = [0, 0];
  for (let i = 0; i < n; i++) {
    sw[i & 1]! += c.w[i]!;
    swr[i & 1]! += c.w[i]! * c.res[i]!;
  }
  for (let i = 0; i < n; i++) {
    if (!c.sup[i]) continue;
    const o = 1 - (i & 1);
    const beta = sw[o]! > 0 ? swr[o]! / sw[o]! : 0;
    out[i] = out[i]! - beta * (c.w[i]! - 1);
  }
  return out;
}

/**
 * After a detected change (drift.ts): whether the serving version should stop serving. It is put to the same rule
 * as a candidate against the default strategy, on the decisions logged since the change (`input.candidate` is the
 * serving version): retired iff it would be refused *and* its estimate is below −δ (estimated worse than the
 * default by more than the tolerance, not merely unproven). The safe start (the default strategy) then serves until
 * a candidate clears the gate. Without it a version that was good before the change keeps serving while every
 * candidate must also beat the default to replace it (measured on the named drift world: the stale version served
 * at 0.65 of the oracle, below uniform's 0.81, for 2,500 outcomes).
 */
export function retireVerdict(input: Omit<GateInput, 'serving'>, rule: GateRule = DEFAULT_GATE): { retire: boolean; verdict: GateVerdict } {
  const verdict = gateVerdict(input, { ...rule, looks: 1, supportWaits: 0 });
  const d = verdict.comparisons.find((c) => c.against === 'default');
  return { retire: !verdict.pass && d !== undefined && d.diff < -rule.delta, verdict };
}

/**
 * One-sided lower confidence bound (level 1 − alpha) for the mean of `d`: normal (mean − z·sd/√n) or
 * studentised bootstrap (mean − q·sd/√n, q the (1 − alpha) quantile of (mean_b − mean) / (sd_b / √n) over resamples
 * of the rows). The bootstrap's generator is seeded from the data, so the same data give the same bound.
 */
export function lowerBound(d: ArrayLike<number>, alpha: number, interval: 'bootstrap-t' | 'percentile' | 'normal' = 'bootstrap-t', resamples = 2000, salt = 0): { mean: number; sd: number; lo: number } {
  const n = d.length;
  let m = 0;
  for (let i = 0; i < n; i++) m += d[i]! / n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (d[i]! - m) ** 2 / (n - 1);
  const se = Math.sqrt(v / n);
  if (interval === 'normal' || n < 3 || se === 0) return { mean: m, sd: Math.sqrt(v), lo: m - normalQuantile(1 - alpha) * se };
  let h = (2166136261 ^ n ^ (salt * 0x9e3779b1)) >>> 0;
  for (let i = 0; i < n; i += Math.max(1, Math.floor(n / 64))) h = Math.imul(h ^ Math.round(d[i]! * 1e6), 16777619) >>> 0;
  const rng = mulberry32(h);
  const ts = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const x = d[Math.floor(rng() * n)]!;
      s += x;
      s2 += x * x;
    }
    const mb = s / n;
    const vb = Math.max(0, (s2 - n * mb * mb) / (n - 1));
    const seb = Math.sqrt(vb / n);
    ts[b] = interval === 'percentile' ? mb : seb > 0 ? (mb - m) / seb : mb > m ? Infinity : mb < m ? -Infinity : 0;
  }
  ts.sort();
  // Percentile: the alpha quantile of the resampled means.
  if (interval === 'percentile') return { mean: m, sd: Math.sqrt(v), lo: Math.min(m, ts[Math.max(0, Math.floor(alpha * resamples))]!) };
  const q = ts[Math.min(resamples - 1, Math.ceil((1 - alpha) * resamples) - 1)]!;
  return { mean: m, sd: Math.sqrt(v), lo: m - Math.max(0, q) * se };
}

/** Inverse of the standard normal CDF (bisection on normalCdf; enough for stating and using a level). */
export function normalQuantile(p: number): number {
  let lo = -10;
  let hi = 10;
  for (let i = 0; i < 80; i++) {
    const mid = (lo + hi) / 2;
    if (normalCdf(mid) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** Standard normal CDF (Abramowitz–Stegun 7.1.26 via erf), for stating the rule's level. */
function normalCdf(z: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(z / Math.SQRT2));
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-(z * z) / 2);
  return z >= 0 ? (1 + y) / 2 : (1 - y) / 2;
}

/** Named rules (benches: `bench/learner-gate.ts --rules`, `bench/learner.ts --gate`). */
export const GATE_RULES: Readonly<Record<string, GateRule>> = {
  default: DEFAULT_GATE,
  normal: NORMAL_GATE,
  direct: { ...DEFAULT_GATE, lineage: false },
  'lineage-unchecked': { ...DEFAULT_GATE, lineageCheck: false },
  'support-waits': { ...DEFAULT_GATE, supportWaits: 2 },
  /** The rule before 2026-12-04: no lineage check, too little support refuses. */
  before: { ...DEFAULT_GATE, lineageCheck: false, supportWaits: 0 },
  offset: { ...DEFAULT_GATE, controlVariate: 'offset' },
};
