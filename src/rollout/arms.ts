import type { DecisionRecord } from '../allocation/decisions.js';
import type { ControlView } from '../control/view.js';
import type { Versioned } from '../control/store.js';
import type { Arm, ArmResolver } from '../feedback/arms.js';
import { CEILING_HIT_SHARE } from '../feedback/observations.js';
import type { OutcomeSink } from '../feedback/processor.js';
import { unitSpec } from '../feedback/units.js';
import type { Keys } from '../redis/keys.js';
import type { ExperimentDoc } from './schema.js';

/**
 * Statistics of one experiment variant in one phase live in the pipeline's slot, beside the strategy
 * stats, and are updated by the same `apply-outcome` call (exactly once per decision):
 *   <p>:{pipeline:<id>}:stats:exp:<experiment>:g<generation>:<phase>:<variant>         summary (Welford moments)
 *   <p>:{pipeline:<id>}:stats:exp:<experiment>:g<generation>:<phase>:<variant>:agents  per-agent counters
 *   <p>:{pipeline:<id>}:stats:exp:<experiment>:g<generation>:<phase>:<variant>:obs     capped list of observations
 *   <p>:{pipeline:<id>}:stats:exp:<experiment>:g<generation>:<phase>:<variant>:buckets unit-bucket sums (cluster-robust variance)
 *   <p>:{pipeline:<id>}:stats:exp:<experiment>:g<generation>:<phase>:_units             the phase's unit bitmap (SRM unit counts),
 *                                                                                       shared by its arms (`_`: no variant name starts so)
 * The generation (which creation of the experiment id, ExperimentDoc.generation) keeps an experiment deleted and
 * created again from counting the late outcomes of its predecessor. A document without one (created before
 * generations existed) keeps the layout without the `g<generation>` segment.
 */
/**
 * The suffixes an arm's keys add to its base (`<phase base>:<variant>`). Variant names may contain ':' (names stored
 * before this rule kept), so a variant named `<another variant>:<suffix>` would share that one's key: experiment writes
 * refuse such a set of names (`src/rollout/model.ts`, `checkArmKeys`). A new per-arm key takes a suffix from here.
 */
export const ARM_KEY_SUFFIXES = ['agents', 'obs', 'buckets'] as const;

export function experimentArm(
  keys: Keys,
  pipeline: string,
  experiment: string,
  generation: number | undefined,
  phase: number,
  variant: string,
): Arm & { obs: string; units: { bitmap: string; buckets: string } } {
  const phaseBase =
    generation === undefined
      ? keys.pipeline(pipeline, 'stats', 'exp', experiment, String(phase))
      : keys.pipeline(pipeline, 'stats', 'exp', experiment, `g${generation}`, String(phase));
  const base = `${phaseBase}:${variant}`;
  const [agents, obs, buckets] = ARM_KEY_SUFFIXES.map((s) => `${base}:${s}`) as [string, string, string];
  return { summary: base, agents, obs, units: { bitmap: `${phaseBase}:_units`, buckets } };
}

interface ArmRef {
  readonly experiment: string;
  readonly generation: number | undefined;
  readonly phase: number;
  readonly variant: string;
}

const generationOf = (x: unknown): number | undefined => (typeof x === 'number' ? x : undefined);

/** The experiment arms a decision counts toward: its variant, and the holdout's exposed population. */
export function armRefs(d: DecisionRecord): ArmRef[] {
  const r = d.route;
  if (!r) return [];
  const out: ArmRef[] = [];
  if (typeof r.experiment === 'string' && typeof r.variant === 'string' && typeof r.phase === 'number') {
    out.push({ experiment: r.experiment, generation: generationOf(r.generation), phase: r.phase, variant: r.variant });
  }
  if (typeof r.holdout === 'string' && typeof r.holdoutPhase === 'number') {
    out.push({ experiment: r.holdout, generation: generationOf(r.holdoutGeneration), phase: r.holdoutPhase, variant: 'exposed' });
  }
  return out;
}

/**
 * Whether the control plane shows that the arm's experiment was deleted since the decision: its id now names a
 * later creation (generations only grow). Such an outcome would land in keys no experiment reads, so it is not
 * written. When the id is absent the snapshot cannot tell a deleted experiment from one this process has not seen
 * yet, so the arm is written (to its own generation's keys, which no later creation reads).
 */
function superseded(view: ControlView, ref: ArmRef): boolean {
  const cur = (view.raw.kinds.experiments as ReadonlyMap<string, Versioned<ExperimentDoc>>).get(ref.experiment);
  if (!cur) return false;
  return (cur.doc.generation ?? -1) > (ref.generation ?? -1);
}

/**
 * Whether the control plane shows that the experiment never had the arm's variant in that phase (a record an SDK
 * shipped with a route of its own making): its keys could be another arm's (`x:agents` is `x`'s per-agent key), so
 * nothing is written. Unknown when the experiment or that phase's variants are not in the snapshot: then it is written.
 */
function unknownVariant(view: ControlView, ref: ArmRef): boolean {
  const cur = (view.raw.kinds.experiments as ReadonlyMap<string, Versioned<ExperimentDoc>>).get(ref.experiment)?.doc;
  if (!cur || cur.generation !== ref.generation) return false;
  const variants = ref.phase === cur.state.phase ? cur.variants : cur.state.earlierPhases?.find((p) => p.phase === ref.phase)?.variants;
  return variants !== undefined && !variants.some((x) => x.name === ref.variant);
}

/** The arms (and observation lists) an outcome of this decision counts toward, in the experiment creation that served it. */
function liveArmRefs(view: () => ControlView, d: DecisionRecord): ArmRef[] {
  const refs = armRefs(d);
  if (refs.length === 0) return refs;
  const v = view();
  return refs.filter((a) => !superseded(v, a) && !unknownVariant(v, a));
}

export const experimentArms =
  (keys: Keys, view: () => ControlView): ArmResolver =>
  (d) =>
    liveArmRefs(view, d).map((a) => experimentArm(keys, d.pipeline, a.experiment, a.generation, a.phase, a.variant));

/**
 * One compact observation per outcome and experiment arm: [quality, cost|null, truncated agents, ceiling-hit agents,
 * on a probe's cut arm [cut budget, base budget] (else null), agents the outcome reported usage for, the unit's bucket
 * (src/feedback/units.ts) or null]. Written in the same atomic step as the moments.
 */
export function experimentSinks(keys: Keys, view: () => ControlView): OutcomeSink[] {
  // The processor asks each sink for one entry; an outcome can count toward two arms (variant and
  // exposed), so two sinks exist, one per arm position.
  return [0, 1].map(
    (i): OutcomeSink => ({
      entry(job, ctx) {
        const ref = liveArmRefs(view, job.decision)[i];
        if (!ref) return undefined;
        const trunc: string[] = [];
        const hits: string[] = [];
        const reported: string[] = [];
        for (const [agent, u] of Object.entries(job.outcome.usage ?? {})) {
          // Own properties only, as the per-agent statistics (observe()): a usage entry named `constructor` is no agent.
          const b = Object.hasOwn(job.decision.budgets, agent) ? job.decision.budgets[agent] : undefined;
          if (typeof b !== 'number') continue;
          reported.push(agent);
          const used = (u.inputTokens ?? 0) + (u.outputTokens ?? 0);
          if (u.truncated) trunc.push(agent);
          if (u.truncated || (b > 0 && used >= CEILING_HIT_SHARE * b)) hits.push(agent);
        }
        // A probe's cut decision records the cut agent's budget and what the base strategy gave it: the
        // critical-path analysis reads the cut from here, so it needs no usage reports.
        const probe = job.decision.meta?.probe as { agent?: unknown; baseTokens?: unknown } | undefined;
        const cut = probe && typeof probe.agent === 'string' && typeof probe.baseTokens === 'number' ? job.decision.budgets[probe.agent] : undefined;
        // The unit's bucket (the cluster of the variances computed from observations), or null without a unit key.
        const bucket = job.decision.unitKey !== undefined ? unitSpec(job.decision.unitKey).bucket : null;
        const entry: unknown[] = [job.outcome.quality, ctx.costUsd ?? null, trunc, hits, cut !== undefined ? [cut, probe!.baseTokens] : null, reported, bucket];
        const value = JSON.stringify(entry);
        return { key: experimentArm(keys, job.decision.pipeline, ref.experiment, ref.generation, ref.phase, ref.variant).obs, value };
      },
    }),
  );
}
