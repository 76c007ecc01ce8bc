import { stratumErrors, tierStratumOf } from './drift.js';
import { isHeldOut, type LoggedEvent } from './events.js';
import { compileFeatures, fitScaling } from './features.js';
import { mulberry32 } from './rng.js';
import { deserializeTierParams, loggedPrior, plannedCostOf, retrainTier, serializeTierParams, tierErrors, tierGreedy, type TierAction, type TierEvent } from './tiers-policy.js';
import type { FeatureScaling, FeatureSpec } from './features.js';
import type { SerializedWeights } from './model.js';
import type { TrainJobOutput } from './trainer.js';
import type { SerializedTierParams, TierAgent, TierRidge } from './tiers-policy.js';

/** The tier learner's part of a training job (TrainJobInput.tiers). */
export interface TierJobInput {
  /** Bounds and per-model rates (pipeline agent order). */
  readonly agents: readonly TierAgent[];
  /** Candidate models per agent (pipeline order; empty for an agent without models): an event's served models map to indices by them. */
  readonly models: readonly (readonly string[])[];
  /** The newest tier version's parameters (warm start), absent for the first fit. */
  readonly init?: SerializedTierParams;
  readonly needGuess: number;
  /** How the fit regularises (tiers-policy.ts TierRidge); default TIER_RIDGE (`decoupled`). */
  readonly ridge?: TierRidge;
  /** The fit's regularisation strength (fitTier's `l2`); default the ridge's (TIER_DECAY for `decoupled`). */
  readonly decay?: number;
  /**
   * How the held-out tenth is chosen: `id` (default: events.ts isHeldOut, the same decisions at every retrain) or
   * `draw` (a seeded draw at each retrain, the rule before 2026-12-06; kept for bench/tiers-holdout.ts's comparison).
   */
  readonly holdout?: 'id' | 'draw';
}

/** What a tier retrain reads of the job (TrainJobInput) and answers (TrainJobOutput). */
interface JobPart {
  readonly features: readonly FeatureSpec[];
  readonly agents: readonly string[];
  readonly init: SerializedWeights;
  readonly initScaling?: FeatureScaling;
  readonly seed: number;
  /** Recency half-life in events (TrainJobInput.halfLife): absent, the window's events weigh the same. */
  readonly halfLife?: number;
  /** λ of reward = quality − λ·cost (the version's greedy choice, by which its held-out errors are keyed too). Default 0. */
  readonly costWeight?: number;
}

/**
 * A retrain of the joint model-and-tokens reward model (tiers-policy.ts) for a pipeline with model tiers, on the
 * newest `window` logged events (pure CPU; it runs in the trainer child like the token model's retrain).
 *
 * Each event becomes (features, served models and budgets, observed quality, cost). Its cost is the reported cost
 * (usage priced at the served model) or, without one, the planned cost of the served action. The first version is
 * fitted from the prior (need guess: the default total over the agents); later ones refit the newest tier version
 * warm and from the prior (retrainTier), and a refit replaces it only if it explains the window significantly
 * better (fitsBetter): otherwise no version is trained (the newest stays). The feature scaling of the first tier
 * version is kept by the later ones, so the warm start's parameters keep their meaning. A tenth of the rows is
 * held out for the metrics only, chosen by decision id among the newest (events.ts isHeldOut): the same decisions
 * at every retrain.
 */
export function trainTiers(input: JobPart, t: TierJobInput, events: readonly LoggedEvent[], fetched: number): TrainJobOutput {
  const t0 = Date.now();
  const scaling = t.init && input.initScaling ? input.initScaling : fitScaling(input.features, events.map((e) => e.f));
  const encoder = compileFeatures(input.features, scaling);
  const rows: TierEvent[] = [];
  // Each row's kind of action, for the held-out errors per stratum (drift recovery's stratified residual test).
  const strata: { assign: number[]; e: LoggedEvent; age: number }[] = [];
  // Recency as for the token model (events.ts buildTrainingData): the newest usable event weighs 1, one half-life older ½.
  const decay = input.halfLife !== undefined ? Math.LN2 / input.halfLife : 0;
  for (const [age, e] of events.entries()) {
    const budgets = input.agents.map((a) => e.b[a]);
    if (budgets.some((b) => typeof b !== 'number')) continue;
    const assign = t.models.map((ms, i) => (ms.length === 0 ? 0 : ms.indexOf(e.M?.[i] ?? '')));
    if (assign.some((m) => m < 0)) continue;
    const action: TierAction = { assign, budgets: budgets as number[] };
    strata.push({ assign, e, age });
    rows.push({ x: encoder.encode(e.f), action, quality: e.q, cost: e.c ?? plannedCostOf(t.agents, action), ...(decay > 0 ? { weight: Math.exp(-decay * rows.length) } : {}) });
  }
  if (rows.length < 20) return { trained: false, reason: `only ${rows.length} events name every agent's budget and one of its candidate models`, events: events.length, fetched };
  const rng = mulberry32(input.seed || 1);
  const order = rows.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  // The held-out tenth is chosen by decision id among the newest events (events.ts isHeldOut), the same rows at every
  // retrain: a version is warm-started from earlier fits, so rows drawn afresh each time would include rows its
  // ancestors trained on, and its held-out error (what drift recovery compares new decisions with) would be too low.
  const drawn = new Set(t.holdout === 'draw' ? order.slice(0, Math.floor(rows.length * 0.1)) : []);
  const isHeld = rows.length < 50 ? strata.map(() => false) : t.holdout === 'draw' ? strata.map((_, i) => drawn.has(i)) : strata.map(({ e, age }) => isHeldOut(e.id, age));
  const holdIdx = order.filter((i) => isHeld[i]);
  const hold = holdIdx.map((i) => rows[i]!);
  const train = order.filter((i) => !isHeld[i]).map((i) => rows[i]!);
  const dim = encoder.dim;
  const early = t.init === undefined;
  const prior = loggedPrior(t.agents, dim, t.needGuess, train);
  const p0 = t.init ? deserializeTierParams(t.init, t.agents, dim) : prior;
  const next = retrainTier(p0, t.agents, train, dim, { early, needGuess: t.needGuess, restart: true, prior, ...(t.ridge ? { ridge: t.ridge } : {}), ...(t.decay !== undefined ? { decay: t.decay } : {}) });
  if (next === p0) {
    return { trained: false, reason: 'no refit explains the logged decisions significantly better than the newest tier version (it stays)', events: events.length, fetched };
  }
  const mse = (xs: readonly TierEvent[]) => (xs.length ? tierErrors(next, t.agents, xs).reduce((s, v) => s + v, 0) / xs.length : 0);
  // Keyed by assignment, chooser and whether the assignment is the new version's own greedy choice for the row's
  // request (drift.ts tierStratumOf): its own decisions are then compared with held-out rows it would have chosen too.
  const opts = { epsilon: 0, perturbation: 0.5, costWeight: input.costWeight ?? 0 };
  const keyOf = ({ assign, e }: { assign: number[]; e: LoggedEvent }) => {
    const g = tierGreedy(next, t.agents, encoder.encode(e.f), e.T, e.X ?? Infinity, opts)?.assign;
    return tierStratumOf(assign, e, !!g && g.every((v, i) => v === assign[i]));
  };
  const holdoutStrata = stratumErrors(holdIdx.map((i) => keyOf(strata[i]!)), tierErrors(next, t.agents, hold));
  const mean = hold.reduce((s, e) => s + e.quality, 0) / Math.max(1, hold.length);
  const holdoutVariance = hold.reduce((s, e) => s + (e.quality - mean) ** 2, 0) / Math.max(1, hold.length);
  return {
    trained: true,
    events: events.length,
    fetched,
    weights: input.init,
    tiers: serializeTierParams(next),
    scaling,
    metrics: { rows: rows.length, steps: early ? 300 : 550, ms: Date.now() - t0, trainMse: mse(train.slice(0, 5000)), holdoutMse: mse(hold), holdoutVariance, holdoutStrata, backend: 'tiers' },
  };
}
