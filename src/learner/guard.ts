import { fromWelford } from '../stats/moments.js';
import { sequentialDiff } from '../stats/sequential.js';

/**
 * The runtime guard's statistics (pure, no I/O).
 *
 * While a learned strategy serves, a share `s` of its decisions (drawn per decision, independently of the
 * request) gets the control strategy instead. For the model version serving now, the realised rewards of the
 * two arms are compared with the always-valid confidence sequence the rollout guardrails use
 * (src/stats/sequential.ts): the interval for learned − control covers the true difference at every sample
 * size at once with probability ≥ 1 − α, so the guard may look after every outcome without inflating false
 * alarms. The verdict is `worse` when both arms have at least `minPerArm` outcomes and the whole interval
 * lies below −margin.
 */
export interface GuardOptions {
  /** Level of the confidence sequence. Default 0.05. */
  readonly alpha?: number;
  /** Outcomes each arm needs before a verdict (variance estimates from fewer are unreliable). Default 30. */
  readonly minPerArm?: number;
  /** Reward the learned arm may fall short of control before it counts as worse. Default 0. */
  readonly margin?: number;
  /** Total outcomes where the sequence is tightest. Default 2000. */
  readonly tuningN?: number;
}

export const GUARD_DEFAULTS = { alpha: 0.05, minPerArm: 30, margin: 0, tuningN: 2000, controlShare: 0.05, holdOutcomes: 1000, segmentOutcomes: 2000 } as const;

/**
 * Two tests run side by side on a segment (from the guard's start, its last revert or a manual activation to
 * the next), each at half the level:
 *   - the cumulative test, on all the segment's decisions, at α/2: it finds small persistent shortfalls;
 *   - the sub-segment tests: evidence is pooled over at most `segmentOutcomes` decisions, then the test
 *     restarts, so a model that did well for a long time and then turns bad is not protected by its old
 *     record. Sub-segment j runs at (α/2)/(j(j+1)); Σ_j 1/(j(j+1)) = 1.
 * By the union bound the probability of any false revert in a segment stays ≤ α.
 */
export function subSegmentAlpha(alpha: number, j: number): number {
  return alpha / 2 / (j * (j + 1));
}

/**
 * Running sums of one arm's rewards as the test sees them (each realised reward less its decision's offset, when it
 * has one: ControlMeta `z`), and `raw`, the sum of the realised rewards themselves, once an offset was used (absent:
 * equal to `sum`).
 */
export interface ArmSums {
  readonly n: number;
  readonly sum: number;
  readonly sumSq: number;
  readonly raw?: number;
}

export const EMPTY_ARM: ArmSums = { n: 0, sum: 0, sumSq: 0 };

/**
 * Adds one realised reward r, tested as r − offset. The offset must be fixed before the arm is drawn and not depend
 * on it (the guard's: the serving version's predicted reward of the control's split for the request), so the
 * difference of two arms' means keeps its expectation; a good predictor of the reward shrinks its variance.
 */
export function addReward(a: ArmSums, r: number, offset = 0): ArmSums {
  const x = r - offset;
  const next = { n: a.n + 1, sum: a.sum + x, sumSq: a.sumSq + x * x };
  return offset !== 0 || a.raw !== undefined ? { ...next, raw: (a.raw ?? a.sum) + r } : next;
}

/** The mean realised reward of an arm (0 when empty). */
export function realisedMean(a: ArmSums): number {
  return a.n > 0 ? (a.raw ?? a.sum) / a.n : 0;
}

export function momentsOf(a: ArmSums) {
  const mean = a.n > 0 ? a.sum / a.n : 0;
  // m2 from the sums; clamped at 0 against rounding.
  const m2 = Math.max(0, a.sumSq - a.n * mean * mean);
  return fromWelford(a.n, mean, m2);
}

export interface GuardVerdict {
  readonly status: 'insufficient' | 'ok' | 'worse';
  /** learned − control, with its always-valid interval (null before both arms have 2 outcomes). */
  readonly diff: number | null;
  readonly ci: readonly [number, number] | null;
  readonly pValue: number | null;
  readonly learned: { readonly n: number; readonly mean: number };
  readonly control: { readonly n: number; readonly mean: number };
}

export function guardVerdict(learned: ArmSums, control: ArmSums, opts: GuardOptions = {}): GuardVerdict {
  const alpha = opts.alpha ?? GUARD_DEFAULTS.alpha;
  const minPerArm = Math.max(2, opts.minPerArm ?? GUARD_DEFAULTS.minPerArm);
  const margin = opts.margin ?? GUARD_DEFAULTS.margin;
  const l = momentsOf(learned);
  const c = momentsOf(control);
  // The arms' realised means; the difference and its interval are those of the offset rewards (addReward).
  const arms = { learned: { n: l.n, mean: realisedMean(learned) }, control: { n: c.n, mean: realisedMean(control) } };
  const d = sequentialDiff(l, c, alpha, opts.tuningN ?? GUARD_DEFAULTS.tuningN);
  if (!d) return { status: 'insufficient', diff: null, ci: null, pValue: null, ...arms };
  const enough = l.n >= minPerArm && c.n >= minPerArm;
  const status = !enough ? 'insufficient' : d.ci[1] < -margin ? 'worse' : 'ok';
  return { status, diff: d.diff, ci: d.ci, pValue: d.pValue, ...arms };
}

/**
 * The control arm's share while a trained version serves and leads it clearly (docs/learner.md, "A smaller control arm
 * while the learned arm leads"). Every control decision costs the difference between the arms; when the learned arm's
 * realised reward exceeds the control's by far more than any shortfall the guard exists to catch, that cost buys
 * little: for the serving version to fall below the control the world must take away the whole lead, and a change that
 * large is seen on fewer control outcomes. So with L the lower bound of learned − control (the segment's offset
 * rewards, mean difference − 2 standard errors, both arms ≥ minPerArm), the share is `base` while L ≤ margin and
 * base · margin / L beyond (halved when the lead doubles), rounded up to a level base · 2^(−k/2) so it changes in few
 * steps, and never below `min`. `min` ≥ base turns it off.
 *
 * The other way, a **probation** (docs/learner.md, "Probation: a larger control arm until the serving version has
 * shown it is not worse"): the guard's power is set by the control arm's outcomes, and a version that passed the gate
 * by chance while truly worse than the control would serve for as long as a 5 % arm needs to show it (time ∝
 * 1/(share · shortfall²)). So until the serving version has shown that it is no worse than the control by more than
 * `probation` (L > −probation, both arms ≥ minPerArm) the share is `max` (when above base). A version that is not
 * worse leaves probation quickly where it leads (the time falls as 1/(lead + probation)²), and where it does not lead,
 * a control decision costs nearly nothing; a version that is worse stays on probation until the guard reverts it.
 * `max` ≤ base turns it off.
 */
export const CONTROL_SHARE_DEFAULTS = { min: 0.01, margin: 0.05, max: 0.2, probation: 0.02 } as const;

/**
 * The probation share a learned strategy runs with: its `probationShare`, else 0.2 — except on a pipeline with model
 * tiers, where probation is opt-in (no gain on the held-out tier worlds: docs/learner.md, "Probation").
 */
export function probationShareOf(probationShare: number | undefined, tiers: boolean): number {
  return probationShare ?? (tiers ? 0 : CONTROL_SHARE_DEFAULTS.max);
}

export function adaptiveControlShare(base: number, total: GuardEvidence, opts: { readonly min?: number | undefined; readonly margin?: number | undefined; readonly minPerArm?: number | undefined; readonly max?: number | undefined; readonly probation?: number | undefined } = {}): number {
  const min = opts.min ?? CONTROL_SHARE_DEFAULTS.min;
  const margin = opts.margin ?? CONTROL_SHARE_DEFAULTS.margin;
  const max = opts.max ?? CONTROL_SHARE_DEFAULTS.max;
  const probation = opts.probation ?? CONTROL_SHARE_DEFAULTS.probation;
  if (!(base > 0)) return base;
  const raised = max > base ? max : base;
  const l = momentsOf(total.learned);
  const c = momentsOf(total.control);
  const minPerArm = Math.max(2, opts.minPerArm ?? GUARD_DEFAULTS.minPerArm);
  if (l.n < minPerArm || c.n < minPerArm) return raised;
  const lower = l.mean - c.mean - 2 * Math.sqrt(l.variance / l.n + c.variance / c.n);
  if (!(lower > -probation)) return raised;
  if (min >= base) return base;
  if (!(lower > margin)) return base;
  const raw = (base * margin) / lower;
  // The smallest level base · 2^(−k/2) at or above raw (a little tolerance for rounding).
  const k = Math.floor(2 * Math.log2(base / raw) + 1e-9);
  return Math.max(min, base * 2 ** (-k / 2));
}

/** What the guard records on a version it took out of service. */
export interface GuardRevert {
  /** Absent on records written before the reason was kept: a guard revert too. */
  readonly reason?: 'guard';
  /** The version reverted from, and what serves instead (a version, or 0 = the control strategy). */
  readonly from: number;
  readonly to: number;
  readonly at: number;
  readonly diff: number;
  readonly ci: readonly [number, number];
  readonly learned: { readonly n: number; readonly mean: number };
  readonly control: { readonly n: number; readonly mean: number; readonly strategy: string };
}

/**
 * What drift recovery records on a serving version it retired after a detected change (training.ts
 * retireIfWorse; gate.ts retireVerdict): the gate's doubly robust estimate on the decisions logged since the change,
 * not the guard's realised-reward test (neither arm's realised mean nor an always-valid interval exists for it).
 */
export interface DriftRetire {
  readonly reason: 'drift';
  readonly from: number;
  /** Always 0: the control strategy serves until a candidate clears the gate. */
  readonly to: 0;
  readonly at: number;
  /** Estimated value of the retired version's split − the default strategy's (= estimate.serving − estimate.default). */
  readonly diff: number;
  readonly estimate: {
    /** Decisions with an outcome, logged since `since` (epoch ms: the change as drift recovery placed it, or the version's activation if later). */
    readonly events: number;
    readonly since: number;
    /** DR estimates of the retired version's split and of the default strategy's, on those decisions. */
    readonly serving: number;
    readonly default: number;
    readonly defaultStrategy: string;
    /** One-sided lower confidence bound of diff at `level` (bootstrap-t); retired because it is below −delta and diff < −delta. */
    readonly lower: number;
    readonly level: number;
    readonly delta: number;
  };
}

/** A model version taken out of service: by the runtime guard or by drift recovery. */
export type RevertRecord = GuardRevert | DriftRetire;

/**
 * The guard's evidence since its segment began (the guard's start, its last revert, or a manual activation):
 * both arms pooled over every model version that served (the learner is judged as a whole, so retrains every
 * few hundred outcomes do not restart the test), and per version (to choose where to revert to).
 */
export interface GuardEvidence {
  readonly learned: ArmSums;
  readonly control: ArmSums;
  readonly byVersion: Readonly<Record<string, { readonly learned: ArmSums; readonly control: ArmSums }>>;
}

export const EMPTY_EVIDENCE: GuardEvidence = { learned: EMPTY_ARM, control: EMPTY_ARM, byVersion: {} };

/** Adds one realised reward of a decision made while `version` served (arm 1 = control), tested less `offset` (addReward). */
export function addEvidence(e: GuardEvidence, version: number, arm: 0 | 1, r: number, offset = 0): GuardEvidence {
  const v = e.byVersion[version] ?? { learned: EMPTY_ARM, control: EMPTY_ARM };
  const nv = arm === 1 ? { ...v, control: addReward(v.control, r, offset) } : { ...v, learned: addReward(v.learned, r, offset) };
  return {
    learned: arm === 1 ? e.learned : addReward(e.learned, r, offset),
    control: arm === 1 ? addReward(e.control, r, offset) : e.control,
    byVersion: { ...e.byVersion, [version]: nv },
  };
}

/** The guard's running tests within one segment: the sub-segment index j (from 1), its evidence, and the whole segment's. */
export interface GuardRun {
  readonly j: number;
  readonly evidence: GuardEvidence;
  readonly total: GuardEvidence;
}

export const NEW_RUN: GuardRun = { j: 1, evidence: EMPTY_EVIDENCE, total: EMPTY_EVIDENCE };

/**
 * Adds one decision's realised reward (tested less its `offset`, the decision's logged ControlMeta `z`; 0 when it
 * has none), starting the next sub-segment once this one holds `segmentOutcomes`.
 */
export function accumulate(run: GuardRun, version: number, arm: 0 | 1, r: number, segmentOutcomes: number = GUARD_DEFAULTS.segmentOutcomes, offset = 0): GuardRun {
  const full = run.evidence.learned.n + run.evidence.control.n >= segmentOutcomes;
  const j = full ? run.j + 1 : run.j;
  return { j, evidence: addEvidence(full ? EMPTY_EVIDENCE : run.evidence, version, arm, r, offset), total: addEvidence(run.total, version, arm, r, offset) };
}

/** The verdict on a run: `worse` when either test says so (that test's verdict is returned), else the cumulative one. */
export function judge(run: GuardRun, opts: GuardOptions = {}): GuardVerdict {
  const alpha = opts.alpha ?? GUARD_DEFAULTS.alpha;
  const sub = guardVerdict(run.evidence.learned, run.evidence.control, { ...opts, alpha: subSegmentAlpha(alpha, run.j) });
  if (sub.status === 'worse') return sub;
  return guardVerdict(run.total.learned, run.total.control, { ...opts, alpha: alpha / 2 });
}

/**
 * Where to revert to (pure). Walking back from the failing version: the newest earlier version that served
 * before (`activatedAt`), was never reverted, and did not do worse than the control on its own decisions in
 * this segment (point estimate; a version without decisions in the segment counts as not worse). 0 (the
 * control strategy) when there is none, and always when the segment began with a revert to a version
 * (`steppedBack`): the guard steps back one version at most, then goes to the control. So a chain of reverts
 * is at most two long, and never returns to a reverted version.
 */
export function revertTarget(
  versions: readonly { readonly version: number; readonly activatedAt?: number; readonly reverted?: unknown }[],
  failing: number,
  evidence: GuardEvidence,
  steppedBack: boolean,
): number {
  if (steppedBack) return 0;
  const older = versions.filter((v) => v.version < failing && v.activatedAt !== undefined && v.reverted === undefined).sort((a, b) => b.version - a.version);
  for (const v of older) {
    const ev = evidence.byVersion[v.version];
    if (!ev || ev.learned.n === 0 || ev.control.n === 0) return v.version;
    if (momentsOf(ev.learned).mean >= momentsOf(ev.control).mean) return v.version;
  }
  return 0;
}

// ---- The candidate arm ----------------------------------------------------------------------------------------

/**
 * The pending candidate version's split is mixed into CANDIDATE_SHARE of the learned strategy's decisions by a
 * coin drawn per decision (policy.ts withCandidate; logged as LearnerMeta `cw`, the event's `v`) until the
 * activation gate judges it — also during the safe start, when no version serves and the serving-version guard
 * above has nothing to judge. The candidate arm's realised rewards, from its proposal on, are compared with the same
 * always-valid confidence sequence against two concurrent arms, each test at α/2 (union bound: a false refusal
 * has probability ≤ α per candidate):
 *   - `default`: the control arm (the default strategy, `a` = 1);
 *   - `serving`: the rest of the learned strategy's decisions (the serving version's policy, or the safe start's
 *     exploration around the default strategy).
 * All three arms are drawn per decision independently of the request, so each difference of means is an unbiased
 * estimate of the difference of the policies' values. `worse` against either: the candidate is refused at once.
 */
export interface CandidateEvidence {
  readonly candidate: ArmSums;
  readonly control: ArmSums;
  readonly serving: ArmSums;
}

export const EMPTY_CANDIDATE_EVIDENCE: CandidateEvidence = { candidate: EMPTY_ARM, control: EMPTY_ARM, serving: EMPTY_ARM };

export type CandidateArm = keyof CandidateEvidence;

/** The arm of one logged decision of a learned strategy made since `version` was proposed (undefined: it counts for none). */
export function candidateArmOf(e: { readonly a?: 0 | 1; readonly v?: number }, version: number): CandidateArm | undefined {
  if (e.a === 1) return 'control';
  if (e.v === undefined) return 'serving';
  return e.v === version ? 'candidate' : undefined;
}

/** Adds one realised reward to an arm, tested less `offset` (the decision's ControlMeta `z`; addReward). */
export function addCandidateEvidence(e: CandidateEvidence, arm: CandidateArm, r: number, offset = 0): CandidateEvidence {
  return { ...e, [arm]: addReward(e[arm], r, offset) };
}

export interface CandidateVerdict extends GuardVerdict {
  /** The reference the verdict is against (the one found worse, else `default`). */
  readonly against: 'default' | 'serving';
}

/**
 * Outcomes the candidate arm needs before a verdict (the reference arm still needs `minPerArm`). Fewer than the
 * serving guard's 30: a candidate lives only until the next retrain (500 outcomes by default, ~50 of them its
 * own), so at 30 the guard would rarely get to judge it before the gate does; a refused candidate costs little
 * (the next retrain proposes another), a bad one mixed in costs 10 % of its shortfall for as long as it lives.
 */
export const CANDIDATE_MIN_OUTCOMES = 10;

/** One test of the candidate arm against a reference arm. */
function candidateTest(candidate: ArmSums, reference: ArmSums, opts: GuardOptions, alpha: number): GuardVerdict {
  const v = guardVerdict(candidate, reference, { ...opts, alpha, minPerArm: 2 });
  const enough = candidate.n >= CANDIDATE_MIN_OUTCOMES && reference.n >= Math.max(2, opts.minPerArm ?? GUARD_DEFAULTS.minPerArm);
  return v.status === 'worse' && !enough ? { ...v, status: 'insufficient' } : v.status === 'ok' && !enough ? { ...v, status: 'insufficient' } : v;
}

/** The verdict on the candidate arm: `worse` when either test (at α/2) says so; else the `default` test's verdict. */
export function candidateVerdict(e: CandidateEvidence, opts: GuardOptions = {}): CandidateVerdict {
  const alpha = (opts.alpha ?? GUARD_DEFAULTS.alpha) / 2;
  const vsDefault = candidateTest(e.candidate, e.control, opts, alpha);
  if (vsDefault.status === 'worse') return { ...vsDefault, against: 'default' };
  const vsServing = candidateTest(e.candidate, e.serving, opts, alpha);
  if (vsServing.status === 'worse') return { ...vsServing, against: 'serving' };
  return { ...vsDefault, against: 'default' };
}

/**
 * The backoff after candidates the guard refused in a row: the k-th consecutive refusal (k ≥ 1) at `outcomes` holds
 * the next candidate until outcome outcomes + trainEvery·2^min(k, CANDIDATE_BACKOFF_MAX) (k = 1: two retrain intervals
 * instead of one). Reset when a candidate passes the gate. Without it, every retrain proposed another candidate at
 * once, warm-started from the refused one, so a bad candidate was mixed into a share of decisions almost all the time.
 */
export const CANDIDATE_BACKOFF_MAX = 5;
/**
 * The retrain interval the backoff counts in: `trainEvery`, or the outcomes between the last two retrains when fewer
 * (`trainGap`: retrains by time, `trainIntervalSeconds`, or on request; after the first retrain, the outcomes before
 * it). Counted in trainEvery alone, a pipeline retrained hourly with trainEvery 1,000,000 never trained again after
 * one refused candidate.
 */
export function backoffUnit(trainEvery: number, trainGap: number): number {
  return trainGap > 0 ? Math.min(trainEvery, trainGap) : trainEvery;
}

export function candidateAfter(outcomes: number, k: number, trainEvery: number): number {
  return outcomes + trainEvery * 2 ** Math.min(Math.max(1, k), CANDIDATE_BACKOFF_MAX);
}

/**
 * Whether the activation gate's refusals that show harm count in the backoff after refused candidates, beside the
 * runtime guard's (the strategy's `candidateBackoffGate`; the in-process loop's `candidateBackoffGate`): always,
 * never, or only while no trained version serves ('safe-start').
 */
export type CandidateBackoffGate = boolean | 'safe-start';
export const CANDIDATE_BACKOFF_GATE_DEFAULT: CandidateBackoffGate = 'safe-start';

/** Whether a gate refusal judged with `servingVersion` serving (0: the safe start) is one the rule counts. */
export function gateBackoffApplies(rule: CandidateBackoffGate, servingVersion: number): boolean {
  return rule === true || (rule === 'safe-start' && servingVersion === 0);
}

/**
 * A gate verdict that counts in the backoff like a guard refusal (pure): refused (not passed, not waiting for another
 * look) with the point estimate against some reference (the default strategy or the serving version) below −δ. A
 * refusal for too few decisions or too little support has no comparisons and does not count; nor does a refusal whose
 * estimates are all within δ (only its bound fell short).
 */
export function gateShowsHarm(verdict: { readonly pass: boolean; readonly wait?: boolean; readonly comparisons: readonly { readonly diff: number }[] }, delta: number): boolean {
  return !verdict.pass && !verdict.wait && verdict.comparisons.some((c) => c.diff < -delta);
}

/** What the guard records (in the version's gate record) on a candidate it refused. */
export interface CandidateRefusal {
  readonly reason: 'guard';
  readonly at: number;
  readonly against: 'default' | 'serving';
  /** Candidate arm − reference arm, with its always-valid interval (at α/2). */
  readonly diff: number;
  readonly ci: readonly [number, number];
  readonly candidate: { readonly n: number; readonly mean: number };
  /** The reference arm; `strategy`: the control strategy's id when against `default`. */
  readonly reference: { readonly n: number; readonly mean: number; readonly strategy?: string };
}

// ---- The safe start's learned traffic ---------------------------------------------------------------------------

/**
 * While no trained version serves (the safe start, also after a revert to the control), the learned strategy's
 * traffic — the default strategy explored around, with the pending candidate mixed in — is judged as a whole against
 * its control arm (the default strategy alone, `a` = 1) with the same always-valid test as a serving version. Each
 * time it is found worse, the safe start's exploration scale is halved (policy.ts: the exploration rate
 * SAFE_START_EPSILON × scale, the candidate's share safeStartCandidateShare), down to SAFE_START_MIN_SCALE, and the
 * evidence restarts (it described the traffic at the old scale). The j-th test (j = shrinks so far + 1) runs at
 * α/(j(j+1)): these sum to α, so the chance of any shrink while the learned traffic is not worse stays ≤ α. The state
 * lives in the models document (`guard.safeStart`, read by serving) and is dropped when a version activates or a
 * revert starts a new segment: a new safe start begins at full scale.
 */
export interface SafeStartState {
  /** Exploration scale in (0, 1]. */
  readonly scale: number;
  /** How many times the guard shrank it. */
  readonly shrinks: number;
  /**
   * The latest shrink: when, which test (`control`: learned − control; `cost`: the exploration's shortfall per decision
   * against the default split, safeStartCostVerdict; absent in states written before the cost test), why, that test's
   * difference and interval, and the control test's arms.
   */
  readonly by?: 'control' | 'cost';
  /**
   * The exploration rate's own factor in (0, 1] that the cost test halves (absent: 1): the safe start explores at
   * SAFE_START_EPSILON × scale × exploration; the candidate's share follows `scale` alone.
   */
  readonly exploration?: number;
  readonly at?: number;
  readonly reason?: string;
  readonly diff?: number;
  readonly ci?: readonly [number, number];
  readonly learned?: { readonly n: number; readonly mean: number };
  readonly control?: { readonly n: number; readonly mean: number; readonly strategy?: string };
}

/** The safe start's evidence: both arms' realised rewards since the scale was last set. */
export interface SafeStartEvidence {
  readonly learned: ArmSums;
  readonly control: ArmSums;
  /** The cost test's evidence (safeStartCostVerdict). Absent in evidence stored before the test existed: empty. */
  readonly cost?: SafeStartCostEvidence;
}

/**
 * The cost test's arms: every decision that served the default strategy's split (the control arm's, and the learned
 * arm's that drew it), the learned arm's other decisions (its exploration: the perturbations of the default split), and
 * how many learned-arm decisions it counted. Kept apart from the control test's arms: decisions the cost test does not
 * judge are left out of all three — the pending candidate's plays (the runtime guard's candidate arm judges those) and
 * explore-first's (whose cost the strategy's owner chose).
 */
export interface SafeStartCostEvidence {
  readonly atDefault: ArmSums;
  readonly away: ArmSums;
  readonly learnedN: number;
}

export const EMPTY_SAFE_START_COST: SafeStartCostEvidence = { atDefault: EMPTY_ARM, away: EMPTY_ARM, learnedN: 0 };

export const EMPTY_SAFE_START: SafeStartEvidence = { learned: EMPTY_ARM, control: EMPTY_ARM };

/**
 * Adds one safe-start decision's realised reward: `control` (the guard's control arm served it), else the learned arm's;
 * `atDefault` whether the split served was the default strategy's (the control arm's always is).
 */
export function addSafeStartReward(e: SafeStartEvidence, r: number, control: boolean, atDefault: boolean, judgeCost = true): SafeStartEvidence {
  const arms = control ? { control: addReward(e.control, r) } : { learned: addReward(e.learned, r) };
  if (!judgeCost) return { ...e, ...arms };
  const c = e.cost ?? EMPTY_SAFE_START_COST;
  const learnedN = c.learnedN + (control ? 0 : 1);
  const cost = atDefault || control ? { ...c, atDefault: addReward(c.atDefault, r), learnedN } : { ...c, away: addReward(c.away, r), learnedN };
  return { ...e, ...arms, cost };
}

/** Level of the safe start's test after `shrinks` shrinks. */
export function safeStartAlpha(alpha: number, shrinks: number): number {
  const j = shrinks + 1;
  return alpha / (j * (j + 1));
}

/** The verdict on the safe start's learned traffic (guardVerdict at safeStartAlpha). */
export function safeStartVerdict(e: SafeStartEvidence, shrinks: number, opts: GuardOptions = {}): GuardVerdict {
  return guardVerdict(e.learned, e.control, { ...opts, alpha: safeStartAlpha(opts.alpha ?? GUARD_DEFAULTS.alpha, shrinks) });
}

/**
 * The cost test's verdict: what the safe start's exploration loses per decision against the default strategy's split,
 * estimated from the randomisation inside the learned arm rather than from the small control arm alone.
 *
 * During the safe start each learned decision that is not the candidate's play serves the default split with
 * probability 1 − ε (ε = SAFE_START_EPSILON × scale × exploration), drawn independently of the request, and a
 * perturbation of it otherwise; every control decision serves the default split too. With p = the share of those
 * learned decisions that served a perturbation, the exploration's shortfall against the default is p × (mean of those
 * decisions − mean of the decisions at the default split) per decision. The interval is the always-valid one of that
 * difference of means, scaled by p (p is read from the counts; at a few hundred decisions its own error is small beside
 * the difference's). Against the control arm alone (safeStartVerdict) the interval is about nine times wider at the
 * same traffic (variance ≈ 21 σ²/n against 0.25 σ²/n at p = 0.2): the control arm has 5 % of the decisions, the
 * default split here about 80 %.
 *
 * Worse: the whole interval lies below −margin (the shortfall per decision the safe start may spend on exploring:
 * strategy parameter `safeStartMargin`); the guard then halves the exploration rate alone (SafeStartState
 * `exploration`), not the candidate's share. The estimate assumes the chance of a perturbation does not depend on the
 * request, which holds for the safe start's own draws; it does not when requests carry very different totals or bounds
 * (the number of distinct perturbations then varies, and a request whose perturbations all coincide with the default
 * split always serves it).
 */
export interface SafeStartCostVerdict {
  readonly status: 'insufficient' | 'ok' | 'worse';
  /** The exploration's shortfall per learned decision against the default split (negative: below it), and its interval. */
  readonly cost: number | null;
  readonly ci: readonly [number, number] | null;
  /** Share of the learned decisions it counted (the candidate's plays left out) that served a perturbation. */
  readonly share: number;
  readonly margin: number;
  readonly away: { readonly n: number; readonly mean: number };
  readonly atDefault: { readonly n: number; readonly mean: number };
}

/**
 * The shortfall per decision against the default split the safe start's exploration may show before the cost test
 * halves its rate (the strategy's `safeStartMargin`); null: the test does not act (the control test alone decides, at
 * its full level), and the guard still lists its estimate. Not on by default: docs/learner.md, "The safe start's cost test".
 */
export const SAFE_START_MARGIN_DEFAULT: number | null = null;

export function safeStartCostVerdict(e: SafeStartEvidence, opts: GuardOptions & { readonly margin: number }): SafeStartCostVerdict {
  const { away, atDefault: at, learnedN } = e.cost ?? EMPTY_SAFE_START_COST;
  const share = learnedN > 0 ? away.n / learnedN : 0;
  const v = guardVerdict(away, at, { ...opts, margin: 0 });
  const arms = { share, margin: opts.margin, away: v.learned, atDefault: v.control };
  if (v.diff === null || v.ci === null || share === 0) return { status: 'insufficient', cost: null, ci: null, ...arms };
  const ci = [share * v.ci[0], share * v.ci[1]] as const;
  const status = v.status === 'insufficient' ? 'insufficient' : ci[1] < -opts.margin ? 'worse' : 'ok';
  return { status, cost: share * v.diff, ci, ...arms };
}

/**
 * The safe start's check: the control test (safeStartVerdict) and, when `costMargin` is set, the cost test beside it,
 * each at half of safeStartAlpha so that the chance of a shrink while the learned traffic is neither worse than the
 * control nor short of the default split by more than the margin stays ≤ α. Worse when either says so.
 */
export interface SafeStartCheckVerdict {
  readonly status: 'insufficient' | 'ok' | 'worse';
  /** Which test found it worse. */
  readonly by?: 'control' | 'cost';
  readonly control: GuardVerdict;
  readonly cost?: SafeStartCostVerdict;
}

export function safeStartCheck(e: SafeStartEvidence, shrinks: number, opts: GuardOptions = {}, costMargin?: number): SafeStartCheckVerdict {
  if (costMargin === undefined) {
    const control = safeStartVerdict(e, shrinks, opts);
    return { status: control.status, ...(control.status === 'worse' ? { by: 'control' as const } : {}), control };
  }
  const alpha = safeStartAlpha(opts.alpha ?? GUARD_DEFAULTS.alpha, shrinks) / 2;
  const control = guardVerdict(e.learned, e.control, { ...opts, alpha });
  const cost = safeStartCostVerdict(e, { ...opts, alpha, margin: costMargin });
  if (control.status === 'worse') return { status: 'worse', by: 'control', control, cost };
  if (cost.status === 'worse') return { status: 'worse', by: 'cost', control, cost };
  return { status: control.status === 'ok' || cost.status === 'ok' ? 'ok' : 'insufficient', control, cost };
}

/** The safe start's two factors (SafeStartState): `scale` (the control test's), `exploration` (the cost test's; absent: 1). */
export interface SafeStartFactors {
  readonly scale: number;
  readonly exploration?: number;
}

/**
 * One safe-start check and what it changes, for the service's guard and the in-process loop alike: the cost test runs
 * with `margin` only while the exploration factor is above `min` (null or undefined: the control test alone);
 * `next` is the factors after a shrink — `scale` halved when the control test found it worse and can still fall,
 * `exploration` halved when the cost test did — and absent when nothing shrinks.
 */
export function safeStartStep(
  e: SafeStartEvidence,
  shrinks: number,
  f: SafeStartFactors,
  margin: number | null | undefined,
  opts: GuardOptions,
  min: number,
): { readonly check: SafeStartCheckVerdict; readonly next?: { readonly scale: number; readonly exploration: number } } {
  const exploration = f.exploration ?? 1;
  const costCan = margin !== null && margin !== undefined && exploration > min;
  const check = safeStartCheck(e, shrinks, opts, costCan ? margin : undefined);
  if (check.by === 'control' && f.scale > min) return { check, next: { scale: shrunkScale(f.scale, min), exploration } };
  if (check.by === 'cost') return { check, next: { scale: f.scale, exploration: shrunkScale(exploration, min) } };
  return { check };
}

/** The next scale after a `worse` verdict (halved, at least `min`). */
export function shrunkScale(scale: number, min: number): number {
  return Math.max(min, scale / 2);
}
