import type { ShadowHook } from '../allocation/service.js';
import type { ControlView } from '../control/view.js';
import type { OutcomeSink } from '../feedback/processor.js';
import type { OutcomeJob } from '../kernel/outcome.js';
import type { Pipeline } from '../pipelines/schema.js';
import type { Keys } from '../redis/keys.js';
import type { StrategyKinds } from '../kernel/extension-points.js';
import type { Features } from '../strategies/types.js';
import { learnedShadow } from '@apportion/sdk/engine';
import type { LoggedEvent } from './events.js';
import { decisionSecond, type DecisionRecord } from '../allocation/decisions.js';
import { DEFAULT_GRACE_MS, learnerMetaOf, pendingTicketOf, waitWindowMs, type LearnedParams } from './kind.js';
import { indexOfAction, mixDistributions, type WeightedDistribution } from './propensity.js';
import { learnerKeys } from './keys.js';
import { learnedStrategies } from './learned-strategies.js';
import { keyed, modelKey, servedModels, unkey } from './tiers.js';

/** Pipelines whose outcomes are logged for learning and evaluation: those with a learned strategy or a feature declaration. */
export function logsPipeline(view: ControlView, pipeline: Pipeline): boolean {
  return view.raw.kinds.features.has(pipeline.id) || learnedStrategies(view, pipeline).length > 0;
}

/** Most undeclared features a logged event keeps (see loggedFeatures). */
export const LOGGED_UNDECLARED_MAX = 32;
/** Longest string value (characters) a logged event keeps; a longer one is left out (it reads as missing). */
export const LOGGED_STRING_MAX = 256;

/**
 * The features a training event keeps of a decision's: the training buffer holds 100,000 events per pipeline, so what
 * one request can put there is bounded. Every declared feature (the name the encoder reads: `<name>Tokens` for a
 * `tokens` feature) is kept, and beside them at most LOGGED_UNDECLARED_MAX undeclared ones, in the request's order,
 * so a feature declared later has history to learn from and off-policy evaluation can replay a default strategy
 * that reads features of its own. A string value longer than LOGGED_STRING_MAX characters is not kept, declared or
 * not: no categorical value of a declaration is that long, so it encodes as the unknown value it would have served as
 * (a hashed categorical excepted, which then reads as missing). Numbers, booleans and null are kept.
 */
export function loggedFeatures(view: ControlView, pipeline: string, features: Features): Features {
  const declared = view.memo(`learner:declared:${pipeline}`, () => {
    const decl = view.raw.kinds.features.get(pipeline)?.doc as { features?: readonly { name: string; type: string }[] } | undefined;
    return new Set((decl?.features ?? []).map((f) => (f.type === 'tokens' ? `${f.name}Tokens` : f.name)));
  });
  const out: Record<string, string | number | boolean | null> = {};
  let undeclared = 0;
  for (const name of Object.keys(features)) {
    const v = features[name];
    if (v === undefined || (typeof v === 'string' && v.length > LOGGED_STRING_MAX)) continue;
    if (!declared.has(name)) {
      if (undeclared >= LOGGED_UNDECLARED_MAX) continue;
      undeclared++;
    }
    out[name] = v;
  }
  return out;
}

/**
 * The training-buffer sink: one event per applied outcome, pushed (with the learner's ticket, if any) onto
 * the pipeline's incoming list in the same Lua call that applies the outcome, so it is logged exactly once.
 * An outcome received after its decision's wait window is not logged (the default reward stands in for it): a late
 * marker (`<ticket>|`, no event) takes its place, which ingest counts as late and drops (learner-ingest.lua),
 * leaving the ticket pending for its default reward.
 */
export function trainingSink(deps: { readonly view: () => ControlView; readonly keys: Keys; readonly retentionSeconds: number }): OutcomeSink {
  return {
    entry(job, { costUsd }) {
      const d = job.decision;
      const view = deps.view();
      const pipeline = view.pipelines.get(d.pipeline);
      if (!pipeline || !logsPipeline(view, pipeline)) return undefined;
      const policy = loggingPolicyOf(d, pipeline);
      const tk = pendingTicketOf(d.meta, d.id);
      // Not the decision's learner event (received after its wait window, or after the default-reward sweep claimed
      // it): a late marker, which ingest counts as late and drops (the decision keeps its one default reward).
      if (!outcomeIsEvent(view, job, deps.retentionSeconds)) return { key: learnerKeys(deps.keys, d.pipeline).incoming, value: `${tk}|` };
      const shadow = d.shadow?.learner as Record<string, { b?: number[]; m?: (string | null)[] }> | undefined;
      let sh: Record<string, number[]> | undefined;
      let sM: Record<string, (string | null)[]> | undefined;
      for (const [id, s] of Object.entries(shadow ?? {})) {
        if (!Array.isArray(s.b)) continue;
        (sh ??= {})[id] = s.b;
        if (Array.isArray(s.m)) (sM ??= {})[id] = s.m;
      }
      const ev: LoggedEvent = {
        id: d.id,
        t: d.ts,
        s: d.strategy,
        f: loggedFeatures(view, d.pipeline, d.features),
        T: d.totalTokens,
        b: d.budgets,
        q: job.outcome.quality,
        c: costUsd ?? null,
        ...policy,
        ...(d.maxCostUsd !== undefined ? { X: d.maxCostUsd } : {}),
        ...(sh ? { sh } : {}),
        ...(sM ? { sM } : {}),
      };
      return { key: learnerKeys(deps.keys, d.pipeline).incoming, value: `${tk}|${JSON.stringify(ev)}` };
    },
  };
}

/**
 * Whether the training sink logs this outcome as a learner event (an event for the training buffer) rather than a
 * late marker: every outcome of a logged pipeline, except one of a learned decision (with a pending ticket) that is
 * not its decision's learner event (outcomeLogged). The retrain trigger (`trainEvery`, TrainingService.countOutcome)
 * counts exactly these, so an outcome that adds no training event does not bring a retrain closer.
 */
export function outcomeIsEvent(view: ControlView, job: Pick<OutcomeJob, 'decision' | 'learner' | 'receivedAt'>, retentionSeconds: number): boolean {
  const d = job.decision;
  return !pendingTicketOf(d.meta, d.id) || outcomeLogged(view, d, job, retentionSeconds);
}

/**
 * Whether an outcome is the learner event of a learned decision (one with a pending ticket): received within the
 * decision's wait window, and before the default-reward sweep claimed the decision (`learner`, from the outcome's
 * receipt: false when the sweep came first; absent for jobs queued before receipts, which only the window decides).
 * The sink logs the outcome exactly when this holds, and the sweep gives no default reward exactly when it holds for
 * an outcome received before its claim, so a decision gets one learner event.
 */
export function outcomeLogged(view: ControlView, d: Pick<DecisionRecord, 'strategy' | 'ts'>, o: { readonly learner?: boolean | undefined; readonly receivedAt: number }, retentionSeconds: number): boolean {
  if (o.learner === false) return false;
  const params = (view.strategies.get(d.strategy)?.params ?? {}) as LearnedParams;
  const waitMs = waitWindowMs(params, retentionSeconds);
  return !(waitMs > 0 && o.receivedAt > d.ts + waitMs);
}

/**
 * Until when (epoch ms) the default-reward sweep waits for the job of a learned decision's outcome that was received in
 * time (outcomeLogged) but not applied yet: its due time (the wait window + 30 s after the decision) plus the wait
 * window again, and no later than 30 s before the decision record expires (the default-reward event is built from the
 * record). The outcome is the decision's learner event if its job is applied before then; otherwise the decision gets
 * the default reward, and the outcome, if its job is applied after all, is dropped as late (learner-default.lua). An
 * outcome whose job was lost (503 OUTCOME_UNCONFIRMED never retried) would else leave its decision with no event.
 */
export function outcomeWatchEnd(view: ControlView, d: Pick<DecisionRecord, 'id' | 'strategy' | 'ts'>, retentionSeconds: number): number {
  const params = (view.strategies.get(d.strategy)?.params ?? {}) as LearnedParams;
  const waitMs = waitWindowMs(params, retentionSeconds);
  const due = d.ts + waitMs + DEFAULT_GRACE_MS;
  const expires = ((decisionSecond(d.id) ?? Math.floor(d.ts / 1000)) + retentionSeconds + 1) * 1000;
  return Math.max(due, Math.min(due + waitMs, expires - DEFAULT_GRACE_MS));
}

/** The logging fields of an event: the logging policy's action distribution, model version and guard arm. */
export type LoggingPolicy = Pick<LoggedEvent, 'C' | 'P' | 'k' | 'm' | 'a' | 'z' | 'v' | 'M' | 'CM'>;

/**
 * The logging policy of one decision (propensity.ts): the served strategy's own distribution (a learned
 * decision's candidates with the guard's control arm mixed in; a deterministic strategy's single split),
 * weighted by the probability of the route that served, plus every other route's distribution weighted by
 * its probability (DecisionRouting). Empty when the decision was certain. Used for outcomes and
 * default-reward events alike, so every logged decision carries its true propensity.
 */
export function loggingPolicyOf(d: Pick<DecisionRecord, 'meta' | 'budgets' | 'totalTokens' | 'routing' | 'models'>, pipeline: Pipeline): LoggingPolicy {
  const meta = learnerMetaOf(d, pipeline);
  const served = pipeline.agents.map((a) => d.budgets[a.name] ?? 0);
  // Model tiers (tiers.ts): the served models, and the routing mixture over (budgets, models).
  const M = servedModels(d, pipeline);
  // The candidate arm (LoggedEvent `v`): the candidate share's draw chose the candidate's split and the control did not serve.
  const v = meta && meta.cw === 1 && typeof meta.cv === 'number' && meta.x?.a !== 1 ? { v: meta.cv } : {};
  // The guard's offset only as a finite number of a sane size (a local-mode client ships its own meta).
  const z = meta?.x && typeof meta.x.z === 'number' && Number.isFinite(meta.x.z) && Math.abs(meta.x.z) <= 1e6 ? { z: meta.x.z } : {};
  const own: LoggingPolicy = { ...(meta ? { m: meta.m, ...(meta.x ? { a: meta.x.a, ...z } : {}), ...v } : {}), ...(M ? { M } : {}) };
  const r = d.routing;
  const ownCM = meta?.CM ? { CM: meta.CM } : {};
  if (!r || !(r.q > 0) || !Array.isArray(r.alt)) return meta ? { ...own, C: meta.C, ...ownCM, P: meta.P, k: meta.k } : own;
  const key = M ? modelKey(pipeline, M) : undefined;
  const k0 = (b: readonly number[], m?: readonly (string | null)[]) => (key ? keyed(b, m ? modelKey(pipeline, m) : key) : (b as number[]));
  const parts: WeightedDistribution[] = [meta ? { q: r.q, C: meta.C.map((c, i) => k0(c, meta.CM?.[i])), P: meta.P } : { q: r.q, C: [k0(served)], P: [1] }];
  for (const alt of r.alt) {
    if (!Array.isArray(alt.b) || alt.b.length !== served.length) continue;
    const budgets: Record<string, number> = {};
    pipeline.agents.forEach((a, i) => (budgets[a.name] = alt.b[i]!));
    const am = Array.isArray(alt.m) && alt.m.length === served.length ? alt.m : undefined;
    // On a pipeline with model tiers a learned alternative's joint candidates are read back against the models it
    // would have served as well as its budgets; without them its whole distribution collapsed to its one draw.
    const models: Record<string, string> = {};
    if (am) pipeline.agents.forEach((a, i) => typeof am[i] === 'string' && (models[a.name] = am[i]));
    const lm = alt.l ? learnerMetaOf({ meta: { learner: alt.l }, budgets, totalTokens: d.totalTokens, ...(am ? { models } : {}) }, pipeline) : undefined;
    parts.push(lm ? { q: alt.q, C: lm.C.map((c, i) => k0(c, lm.CM?.[i] ?? am)), P: lm.P } : { q: alt.q, C: [k0(alt.b, am)], P: [1] });
  }
  const mix = mixDistributions(parts);
  const total = mix.P.reduce((s, p) => s + p, 0);
  const k = indexOfAction(mix.C, k0(meta ? meta.C[meta.k]! : served, meta?.CM?.[meta.k]));
  if (k < 0 || !(total > 0)) return meta ? { ...own, C: meta.C, ...ownCM, P: meta.P, k: meta.k } : own;
  // Normalised: an alternative that could not be computed at decision time is left out of the mixture.
  const P = mix.P.map((p) => p / total);
  if (!key) return { ...own, C: mix.C, P, k };
  const split = unkey(pipeline, mix.C);
  return { ...own, C: split.C, CM: split.CM, P, k };
}

/**
 * Shadow mode: every learned strategy with `shadow: true` computes its greedy action beside each allocation of its
 * pipeline (while another strategy serves) and logs it with its agreement with the served action and both actions'
 * predicted reward — on a pipeline with model tiers the joint action, models included. The engine's `learnedShadow`,
 * which the SDK's local mode calls too.
 */
export function shadowHook(deps: { readonly kinds: StrategyKinds }): ShadowHook {
  return {
    name: 'learner',
    observe: (view, pipeline, input, served) => learnedShadow(deps.kinds, view, pipeline, input, served),
  };
}
