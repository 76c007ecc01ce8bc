import type { DecisionRecord } from '../allocation/decisions.js';
import type { Arm, ArmResolver } from '../feedback/arms.js';
import { CEILING_HIT_SHARE } from '../feedback/observations.js';
import type { OutcomeSink } from '../feedback/processor.js';
import type { Keys } from '../redis/keys.js';

/**
 * Statistics of one experiment variant in one phase live in the pipeline's slot, beside the strategy
 * stats, and are updated by the same `apply-outcome` call (exactly once per decision):
 *   <p>:{pipeline:<id>}:stats:exp:<experiment>:<phase>:<variant>         summary (Welford moments)
 *   <p>:{pipeline:<id>}:stats:exp:<experiment>:<phase>:<variant>:agents  per-agent counters
 *   <p>:{pipeline:<id>}:stats:exp:<experiment>:<phase>:<variant>:obs     capped list of observations
 */
export function experimentArm(keys: Keys, pipeline: string, experiment: string, phase: number, variant: string): Arm & { obs: string } {
  const base = keys.pipeline(pipeline, 'stats', 'exp', experiment, String(phase), variant);
  return { summary: base, agents: `${base}:agents`, obs: `${base}:obs` };
}

interface ArmRef {
  readonly experiment: string;
  readonly phase: number;
  readonly variant: string;
}

/** The experiment arms a decision counts toward: its variant, and the holdout's exposed population. */
export function armRefs(d: DecisionRecord): ArmRef[] {
  const r = d.route;
  if (!r) return [];
  const out: ArmRef[] = [];
  if (typeof r.experiment === 'string' && typeof r.variant === 'string' && typeof r.phase === 'number') {
    out.push({ experiment: r.experiment, phase: r.phase, variant: r.variant });
  }
  if (typeof r.holdout === 'string' && typeof r.holdoutPhase === 'number') {
    out.push({ experiment: r.holdout, phase: r.holdoutPhase, variant: 'exposed' });
  }
  return out;
}

export const experimentArms =
  (keys: Keys): ArmResolver =>
  (d) =>
    armRefs(d).map((a) => experimentArm(keys, d.pipeline, a.experiment, a.phase, a.variant));

/**
 * One compact observation per outcome and experiment arm: [quality, cost|null, truncated agents,
 * ceiling-hit agents, and on a probe's cut arm [cut budget, base budget]]. Written in the same atomic
 * step as the moments.
 */
export function experimentSinks(keys: Keys): OutcomeSink[] {
  // The processor asks each sink for one entry; an outcome can count toward two arms (variant and
  // exposed), so two sinks exist, one per arm position.
  return [0, 1].map(
    (i): OutcomeSink => ({
      entry(job, ctx) {
        const ref = armRefs(job.decision)[i];
        if (!ref) return undefined;
        const trunc: string[] = [];
        const hits: string[] = [];
        for (const [agent, u] of Object.entries(job.outcome.usage ?? {})) {
          const b = job.decision.budgets[agent];
          if (b === undefined) continue;
          const used = (u.inputTokens ?? 0) + (u.outputTokens ?? 0);
          if (u.truncated) trunc.push(agent);
          if (u.truncated || (b > 0 && used >= CEILING_HIT_SHARE * b)) hits.push(agent);
        }
        // A probe's cut decision records the cut agent's budget and what the base strategy gave it: the
        // critical-path analysis reads the cut from here, so it needs no usage reports.
        const probe = job.decision.meta?.probe as { agent?: unknown; baseTokens?: unknown } | undefined;
        const cut = probe && typeof probe.agent === 'string' && typeof probe.baseTokens === 'number' ? job.decision.budgets[probe.agent] : undefined;
        const entry: unknown[] = [job.outcome.quality, ctx.costUsd ?? null, trunc, hits];
        if (cut !== undefined) entry.push([cut, probe!.baseTokens]);
        const value = JSON.stringify(entry);
        return { key: experimentArm(keys, job.decision.pipeline, ref.experiment, ref.phase, ref.variant).obs, value };
      },
    }),
  );
}
