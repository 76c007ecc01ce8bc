import { rewardOf, type LoggedEvent } from './events.js';
import type { FeatureEncoder } from './features.js';
import { forward, predict, type ModelWeights } from './model.js';

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
}

export const DEFAULT_DRIFT: DriftRule = { ratio: 1.25, z: 3, minEvents: 200, minRows: 1000, minWindow: 500, minHalfLife: 250, mode: 'halfLife', halfLifeShare: 0.25 };

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
  model: { readonly holdoutMse: number; readonly rows: number },
  rule: DriftRule = DEFAULT_DRIFT,
): DriftCheck {
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

/** The training window and half-life `sinceChange` events after a detected change (the configured ones once it is past `window`). */
export function windowAfterChange(sinceChange: number, window: number, halfLife: number, rule: DriftRule = DEFAULT_DRIFT): { readonly window: number; readonly halfLife: number; readonly shortened: boolean } {
  if (sinceChange >= window) return { window, halfLife, shortened: false };
  const w = Math.min(window, Math.max(rule.minWindow, sinceChange));
  const h = Math.min(halfLife, Math.max(rule.minHalfLife, w * (rule.halfLifeShare ?? 0.5)));
  if (h >= halfLife) return { window, halfLife, shortened: false };
  return { window: rule.mode === 'window' ? w : window, halfLife: h, shortened: true };
}
