import { rewardOf, type LoggedEvent } from './events.js';
import type { FeatureEncoder } from './features.js';
import { forward, predict, type ModelWeights } from './model.js';
import type { StratumError } from './trainer.js';

export type { StratumError };

/**
 * Drift recovery (pure: no I/O). At every retrain the newest trained version is checked on the decisions logged
 * since it was trained (it never saw them): if its squared prediction error there is significantly above
 * `ratio` × its own held-out error, the world changed (or the model is badly off on new traffic; either way old
 * data misleads). The change is placed at the version's training time, and until `window` outcomes have passed
 * since, retrains use only the events since the change (at least `minWindow`) with a half-life of half of
 * them (at least `minHalfLife`, at most the configured one). The activation gate then compares candidates on
 * decisions logged after their training, i.e. after the change.
 *
 *   detected iff  n ≥ minEvents  and  (mean(e²) − ratio · holdoutMse) / (sd(e²)/√n) ≥ z   (one-sided)
 *
 * A version trained on fewer than `minRows` events (right after a change) is not checked: its held-out error is
 * too noisy to compare with, and the window is short anyway.
 *
 * Stratified (a version that stores its held-out errors per kind of action, `holdoutStrata`, checked with a
 * `stratum` of each decision: tier versions, by the served model assignment): the new decisions are compared with
 * the held-out rows of their own action only, so a shift of the actions served (e.g. from the default's all-opus
 * action the version was trained on to the cheaper assignments it then serves) is not taken for a change of the
 * world. Decisions whose stratum has fewer than `minStratumRows` held-out rows are left out; with m_s new decisions
 * of stratum s (n in all), mean squared error ē_s and sd s_s, and its held-out rows' n'_s, h_s and sd s'_s:
 *
 *   D = Σ_s (m_s/n)(ē_s − ratio·h_s),  SE² = Σ_s (m_s/n)² (s_s²/m_s + ratio²·s'_s²/n'_s)
 *   detected iff  n ≥ minEvents  and  D / SE ≥ z
 *
 * (the held-out rows of a stratum are few, so their own uncertainty is in the standard error). The reported
 * `holdoutMse` is then the held-out error matched to the new decisions' strata, Σ_s (m_s/n) h_s.
 *
 * A tier version also keys its strata by its own greedy choice (tierStratumOf's `/greedy`: the row's assignment is the
 * one the version would choose greedily for the row's request, keysGreedy): its own decisions are mostly its greedy
 * action, chosen where its predictions are highest and so too high on average (the optimizer's curse), and are then
 * compared with held-out rows it would have chosen too, not with rows of the same assignment that other choosers
 * served where it predicts no better than elsewhere.
 */
export interface DriftRule {
  readonly ratio: number;
  readonly z: number;
  readonly minEvents: number;
  readonly minRows: number;
  readonly minWindow: number;
  readonly minHalfLife: number;
  /**
   * What a change shortens: `halfLife` (default: the window stays, the recency half-life drops to half the
   * events since the change, at least minHalfLife, so the new data dominate while the old still anchor what did
   * not change) or `window` (train on the events since the change only).
   */
  readonly mode?: 'halfLife' | 'window';
  /**
   * The half-life after a change as a share of the events since it: the events before the change keep 2^(−1/share) of
   * the weight mass (6 % at DEFAULT_DRIFT's 0.25; 25 % at 0.5, taken when a rule leaves it out).
   */
  readonly halfLifeShare?: number;
  /** A stratified test (held-out errors per kind of action) leaves out strata with fewer held-out rows than this. Default 10. */
  readonly minStratumRows?: number;
  /**
   * Decisions a check should see (checkedVersions): when the newest version has fewer since it was trained (retrains
   * more often than this), the newest version that has at least `span` is checked too, so the test keeps the power
   * its z was set for (DEFAULT_DRIFT's numbers were tuned with a retrain every 500 outcomes). Unset (the default):
   * the newest only. Measured at 500 and not adopted (docs/learner.md, "Drift recovery"): it added false detections
   * before the change on test worlds.
   */
  readonly span?: number;
  /**
   * Forgetting (off unless `forgetAfter` is set): from `forgetAfter` outcomes after a detection on, the events logged
   * before the detection have their training weight (recency × …) multiplied by a factor that falls linearly from 1
   * to `forgetTo` over `forgetRamp` outcomes (0: at once; forgetWeight). Once the half-life grows back after a change,
   * events from before it otherwise pull new versions back towards the old world. Default forgetTo 0.25, forgetRamp 0.
   */
  readonly forgetAfter?: number;
  readonly forgetTo?: number;
  readonly forgetRamp?: number;
  /**
   * Safety against false detections (forgetSpan): `forgetKeepStart` (1: on) never forgets events logged before the
   * first trained version cleared the gate (the safe start's exploration; a detection before any version served
   * forgets nothing); `forgetConfirm` (1: on) forgets only once a second check agrees: the version the detection
   * was made on, checked again on the decisions logged since the detection (at least minEvents), still shows the change.
   */
  readonly forgetKeepStart?: number;
  readonly forgetConfirm?: number;
  /** (1: on) Forget only once drift recovery retired the serving version since the change the latest detection placed (gate.ts retireVerdict: the old world's policy is worse than the default strategy's in the new one). */
  readonly forgetOnRetire?: number;
}

/**
 * The stratum of a tier decision (its kind of action): the model assignment (indices of the agents' served models,
 * pipeline order) and who chose it — `default` (the safe start or the runtime guard's control arm: the default
 * strategy's action) or `learned` (a trained version's action, exploration and candidate mixing included: chosen
 * where a reward model predicted well, so its residuals are not those of the default's actions), e.g. `0,0,1/learned`.
 */
export const tierStratumOf = (assign: readonly number[], e: Pick<LoggedEvent, 'm' | 'a'>, greedy?: boolean): string =>
  `${assign.join(',')}/${!e.m || e.a === 1 ? 'default' : 'learned'}${greedy ? '/greedy' : ''}`;

/**
 * Whether a version keys its held-out errors by its own greedy choice too (`…/greedy`: the row's model assignment is
 * the one the version itself would choose greedily for the row's request). A version's own decisions are mostly its
 * greedy action, where its predictions are highest and so, on average, too high (the optimizer's curse): compared
 * with held-out rows of the same assignment that other choosers served, their residuals are larger on a world that
 * did not change. Keyed by the greedy choice, its decisions are compared with held-out rows it would have chosen
 * as well. A version that stores no such key (trained before) is checked by assignment and chooser only.
 */
export const keysGreedy = (strata: Readonly<Record<string, StratumError>>): boolean => Object.keys(strata).some((k) => k.endsWith('/greedy'));

/** Per stratum (key) the held-out rows' squared errors summarised (what a version stores for the stratified residual test). */
export function stratumErrors(keys: readonly string[], squaredErrors: readonly number[]): Record<string, StratumError> {
  const acc = new Map<string, { n: number; s: number; s2: number }>();
  keys.forEach((k, i) => {
    const e = squaredErrors[i]!;
    const a = acc.get(k) ?? { n: 0, s: 0, s2: 0 };
    a.n++;
    a.s += e;
    a.s2 += e * e;
    acc.set(k, a);
  });
  const out: Record<string, StratumError> = {};
  for (const [k, a] of [...acc].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
    const mse = a.s / a.n;
    out[k] = { n: a.n, mse, sd: a.n > 1 ? Math.sqrt(Math.max(0, (a.s2 - a.n * mse * mse) / (a.n - 1))) : 0 };
  }
  return out;
}

/**
 * After a detected change (within the training window), while no trained version serves — drift recovery retired the
 * serving one, or the runtime guard reverted to the safe start — a retrain starts from the untrained prior, not from
 * the newest fit: that fit learned the world before the change, and the decisions since (the safe start's, around the
 * default strategy) do not show enough to move it (docs/learner.md, "Drift recovery").
 */
export const COLD_AFTER_CHANGE_DEFAULT = true;

export const DEFAULT_DRIFT: DriftRule = { ratio: 1.25, z: 3, minEvents: 200, minRows: 1000, minWindow: 500, minHalfLife: 250, mode: 'halfLife', halfLifeShare: 0.25 };

/**
 * Which trained versions a retrain checks, given the decisions logged since each was trained (newest version first):
 * the newest (index 0), and, when it has fewer than `rule.span` decisions, also the newest that has at least that many
 * (its index). Each is checked on the decisions since it was trained; the first (newest) that shows a change places it
 * where it was trained. With retrains every 250 outcomes the newest version has 250 decisions, and a shift the test
 * finds on 500 (the interval DEFAULT_DRIFT was tuned at) goes unseen on 250: z grows as √n.
 */
export function checkedVersions(sinceTrained: readonly number[], rule: DriftRule = DEFAULT_DRIFT): number[] {
  if (sinceTrained.length === 0) return [];
  if (rule.span === undefined || sinceTrained[0]! >= rule.span) return [0];
  const i = sinceTrained.findIndex((n) => n >= rule.span!);
  return i > 0 ? [0, i] : [0];
}

export interface DriftCheck {
  readonly changed: boolean;
  /** Mean squared error on the new decisions, the version's held-out MSE, the test statistic and n. */
  readonly mse: number;
  readonly holdoutMse: number;
  readonly z: number;
  readonly n: number;
  readonly reason: string;
}

/** The residual test of a trained token version on decisions logged since it was trained. */
export function residualCheck(
  events: readonly LoggedEvent[],
  model: { readonly weights: ModelWeights; readonly encoder: FeatureEncoder; readonly holdoutMse: number; readonly rows: number },
  agents: readonly string[],
  costWeight: number,
  rule: DriftRule = DEFAULT_DRIFT,
): DriftCheck {
  return residualTest(
    events,
    (e) => (agents.every((a) => typeof e.b[a] === 'number') ? predict(forward(model.weights, model.encoder.encode(e.f)), agents.map((a) => e.b[a]!)) - rewardOf(e, costWeight) : undefined),
    model,
    rule,
  );
}

/**
 * The residual test of any trained version: `residual` answers its predicted minus observed reward for a logged
 * decision, or undefined when the version cannot predict it (e.g. an agent's budget or model missing); those
 * decisions are left out. The held-out MSE must be of the same residual on the version's own held-out events.
 */
export function residualTest(
  events: readonly LoggedEvent[],
  residual: (e: LoggedEvent) => number | undefined,
  model: { readonly holdoutMse: number; readonly rows: number; readonly holdoutStrata?: Readonly<Record<string, StratumError>> },
  rule: DriftRule = DEFAULT_DRIFT,
  /** The decision's kind of action (tier versions: tier-gate.ts tierStratum); with the version's `holdoutStrata`, the test is stratified. */
  stratum?: (e: LoggedEvent) => string | undefined,
): DriftCheck {
  if (stratum && model.holdoutStrata) return stratifiedTest(events, residual, { ...model, holdoutStrata: model.holdoutStrata }, rule, stratum);
  const errs: number[] = [];
  for (const e of events) {
    const r = residual(e);
    if (r !== undefined && Number.isFinite(r)) errs.push(r);
  }
  const n = errs.length;
  const none = (reason: string): DriftCheck => ({ changed: false, mse: NaN, holdoutMse: model.holdoutMse, z: NaN, n, reason });
  if (model.rows < rule.minRows) return none(`the version was trained on ${model.rows} events (< ${rule.minRows}): not checked`);
  if (n < rule.minEvents) return none(`${n} decisions since the version was trained (< ${rule.minEvents})`);
  let s = 0;
  let s2 = 0;
  for (const err of errs) {
    s += err * err;
    s2 += err ** 4;
  }
  const mse = s / n;
  const sd = Math.sqrt(Math.max(0, (s2 - n * mse * mse) / (n - 1)));
  const z = sd > 0 ? (mse - rule.ratio * model.holdoutMse) / (sd / Math.sqrt(n)) : mse > rule.ratio * model.holdoutMse ? Infinity : -Infinity;
  const changed = z >= rule.z;
  return {
    changed,
    mse,
    holdoutMse: model.holdoutMse,
    z,
    n,
    reason: `squared error on ${n} new decisions ${mse.toFixed(4)} vs held-out ${model.holdoutMse.toFixed(4)} (z ${z.toFixed(2)} against ${rule.ratio}×; change iff ≥ ${rule.z})`,
  };
}

function stratifiedTest(
  events: readonly LoggedEvent[],
  residual: (e: LoggedEvent) => number | undefined,
  model: { readonly holdoutMse: number; readonly rows: number; readonly holdoutStrata: Readonly<Record<string, StratumError>> },
  rule: DriftRule,
  stratum: (e: LoggedEvent) => string | undefined,
): DriftCheck {
  const minRows = rule.minStratumRows ?? 10;
  const acc = new Map<string, { m: number; s: number; s2: number; held: StratumError }>();
  let n = 0;
  let unsupported = 0;
  for (const e of events) {
    const r = residual(e);
    if (r === undefined || !Number.isFinite(r)) continue;
    const k = stratum(e);
    const held = k !== undefined && Object.hasOwn(model.holdoutStrata, k) ? model.holdoutStrata[k] : undefined;
    if (!held || held.n < minRows) {
      unsupported++;
      continue;
    }
    const a = acc.get(k!) ?? { m: 0, s: 0, s2: 0, held };
    a.m++;
    a.s += r * r;
    a.s2 += r ** 4;
    acc.set(k!, a);
    n++;
  }
  const left = unsupported > 0 ? `; ${unsupported} left out: their action had fewer than ${minRows} held-out rows` : '';
  const none = (reason: string): DriftCheck => ({ changed: false, mse: NaN, holdoutMse: model.holdoutMse, z: NaN, n, reason: reason + left });
  if (model.rows < rule.minRows) return none(`the version was trained on ${model.rows} events (< ${rule.minRows}): not checked`);
  if (n < rule.minEvents) return none(`${n} decisions since the version was trained whose action it has held-out errors for (< ${rule.minEvents})`);
  let mse = 0;
  let ref = 0;
  let v = 0;
  for (const a of acc.values()) {
    const w = a.m / n;
    const mean = a.s / a.m;
    const sd2 = a.m > 1 ? Math.max(0, (a.s2 - a.m * mean * mean) / (a.m - 1)) : 0;
    mse += w * mean;
    ref += w * a.held.mse;
    v += w * w * (sd2 / a.m + (rule.ratio * rule.ratio * a.held.sd * a.held.sd) / a.held.n);
  }
  const d = mse - rule.ratio * ref;
  const z = v > 0 ? d / Math.sqrt(v) : d > 0 ? Infinity : -Infinity;
  return {
    changed: z >= rule.z,
    mse,
    holdoutMse: ref,
    z,
    n,
    reason: `squared error on ${n} new decisions ${mse.toFixed(4)} vs held-out ${ref.toFixed(4)} on the same ${acc.size} kinds of action (z ${z.toFixed(2)} against ${rule.ratio}×; change iff ≥ ${rule.z})${left}`,
  };
}

/** The training window and half-life `sinceChange` events after a detected change (the configured ones once it is past `window`). */
export function windowAfterChange(sinceChange: number, window: number, halfLife: number, rule: DriftRule = DEFAULT_DRIFT): { readonly window: number; readonly halfLife: number; readonly shortened: boolean } {
  if (sinceChange >= window) return { window, halfLife, shortened: false };
  const w = Math.min(window, Math.max(rule.minWindow, sinceChange));
  const h = Math.min(halfLife, Math.max(rule.minHalfLife, w * (rule.halfLifeShare ?? 0.5)));
  if (h >= halfLife) return { window, halfLife, shortened: false };
  return { window: rule.mode === 'window' ? w : window, halfLife: h, shortened: true };
}

/**
 * The factor forgetting multiplies the training weight of events logged before a detection by, `sinceDetection`
 * outcomes after it: 1 before `forgetAfter` (and always when the rule does not forget), then linearly down to
 * `forgetTo` over `forgetRamp` outcomes, `forgetTo` after.
 */
export function forgetWeight(sinceDetection: number, rule: DriftRule = DEFAULT_DRIFT): number {
  if (rule.forgetAfter === undefined || !(sinceDetection >= rule.forgetAfter)) return 1;
  const to = rule.forgetTo ?? 0.25;
  const ramp = rule.forgetRamp ?? 0;
  const k = ramp > 0 ? Math.min(1, (sinceDetection - rule.forgetAfter) / ramp) : 1;
  return 1 - (1 - to) * k;
}

/** What a retrain forgets: events logged in [from, before) get their weight multiplied by `weight` (events.ts DatasetOptions.forget). */
export interface ForgetSpan {
  readonly from: number;
  readonly before: number;
  readonly weight: number;
}

/**
 * The span a retrain forgets (undefined: none), in the clock of the events' `t` (outcomes in the loop, epoch ms in
 * the service): `detectedAt` is where the latest detection was made (undefined: none), `since` the outcomes since
 * it, `firstServedAt` where the first trained version cleared the gate (undefined: none yet), `confirmed` whether the
 * second check agreed (read only with forgetConfirm), `retired` whether drift recovery retired the serving version since the
 * change the latest detection placed (read only with forgetOnRetire).
 */
export function forgetSpan(
  s: { readonly detectedAt: number | undefined; readonly since: number; readonly firstServedAt: number | undefined; readonly confirmed?: boolean; readonly retired?: boolean },
  rule: DriftRule = DEFAULT_DRIFT,
): ForgetSpan | undefined {
  if (s.detectedAt === undefined || rule.forgetAfter === undefined) return undefined;
  const weight = forgetWeight(s.since, rule);
  if (weight >= 1) return undefined;
  if (rule.forgetConfirm && !s.confirmed) return undefined;
  if (rule.forgetOnRetire && !s.retired) return undefined;
  const from = rule.forgetKeepStart ? s.firstServedAt : -Infinity;
  if (from === undefined || from >= s.detectedAt) return undefined;
  return { from, before: s.detectedAt, weight };
}
