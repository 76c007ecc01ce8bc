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

export const GUARD_DEFAULTS = { alpha: 0.05, minPerArm: 30, margin: 0, tuningN: 2000, controlShare: 0.05, holdOutcomes: 1000 } as const;

/** Running sums of one arm's rewards. */
export interface ArmSums {
  readonly n: number;
  readonly sum: number;
  readonly sumSq: number;
}

export const EMPTY_ARM: ArmSums = { n: 0, sum: 0, sumSq: 0 };

export function addReward(a: ArmSums, r: number): ArmSums {
  return { n: a.n + 1, sum: a.sum + r, sumSq: a.sumSq + r * r };
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
  const arms = { learned: { n: l.n, mean: l.mean }, control: { n: c.n, mean: c.mean } };
  const d = sequentialDiff(l, c, alpha, opts.tuningN ?? GUARD_DEFAULTS.tuningN);
  if (!d) return { status: 'insufficient', diff: null, ci: null, pValue: null, ...arms };
  const enough = l.n >= minPerArm && c.n >= minPerArm;
  const status = !enough ? 'insufficient' : d.ci[1] < -margin ? 'worse' : 'ok';
  return { status, diff: d.diff, ci: d.ci, pValue: d.pValue, ...arms };
}

/** What the guard records on a version it took out of service. */
export interface GuardRevert {
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
 * Where to revert to (pure): the newest version older than `failing` that served before and was never
 * reverted, or 0 (the control strategy) when there is none. Versions are only ever walked backwards and a
 * reverted version is never chosen again, so a chain of reverts ends at the control strategy.
 */
export function lastGoodVersion(versions: readonly { readonly version: number; readonly activatedAt?: number; readonly reverted?: unknown }[], failing: number): number {
  let best = 0;
  for (const v of versions) {
    if (v.version < failing && v.version > best && v.activatedAt !== undefined && v.reverted === undefined) best = v.version;
  }
  return best;
}
