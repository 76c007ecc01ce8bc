import type { ControlView } from '../control/view.js';
import type { Pipeline } from '../pipelines/schema.js';
import { BUILTIN_UNIFORM_ID } from '../strategies/schema.js';
import { routingTables } from './router.js';

/** One strategy a request could have been routed to, with its probability. */
export interface RouteOption {
  readonly strategyId: string;
  readonly q: number;
}

/**
 * The probability of every strategy the experiment router could have sent this request to (pure,
 * snapshot-only), by strategy, summing to 1; undefined when routing was not random for it (no unit key, no
 * experiment on the pipeline, or a single possible route).
 *
 * Mirrors routeExperiments: the holdout, the layer slot, each experiment's inclusion and its variant are
 * independent hash draws of the unit key (bucketing.ts), so over the population of units they are
 * independent uniform draws; targeting depends on the request and is conditioned on. With that:
 *   P(holdout) = h, the holdout's coverage (ramp included), when the request is eligible;
 *   P(experiment e routes) = (1 − h) · width(e's layer range) · coverage_e · P(no earlier experiment took
 *   the unit | it is in e's slot), where earlier experiments of e's own layer cannot take it (their ranges
 *   are disjoint from e's), those of one other layer take it with Σ width·coverage (disjoint, so additive)
 *   and those without a layer with their coverage, independently;
 *   P(variant v of e) = P(e routes) · weight_v (normalised); a rolled-back experiment sends its share to
 *   its control strategy; whatever no experiment takes goes to the pipeline default.
 */
export function routeDistribution(
  view: ControlView,
  pipeline: Pipeline,
  unitKey: string | undefined,
  features: Readonly<Record<string, string | number | boolean | null>>,
): readonly RouteOption[] | undefined {
  if (unitKey === undefined) return undefined;
  const table = routingTables(view).get(pipeline.id);
  if (!table) return undefined;
  const dflt = pipeline.defaultStrategy ?? BUILTIN_UNIFORM_ID;
  const out = new Map<string, number>();
  const add = (s: string, q: number) => q > 0 && out.set(s, (out.get(s) ?? 0) + q);
  let reach = 1;
  const h = table.holdout;
  if (h && h.eligible(features, unitKey)) {
    add(dflt, h.coverage);
    reach = 1 - h.coverage;
  }
  type E = (typeof table.experiments)[number];
  const eligible: E[] = table.experiments.filter((e) => e.eligible(features, unitKey));
  const width = (e: E) => (e.layer ? e.layer.range[1] - e.layer.range[0] : 1);
  /** P(none of `earlier` takes the unit), given it is in the slot of layer `ownLayer` (undefined: none). */
  const noneTakes = (earlier: readonly E[], ownLayer: string | undefined): number => {
    const byLayer = new Map<string, number>();
    let p = 1;
    for (const f of earlier) {
      if (!f.layer) p *= 1 - f.coverage;
      else if (f.layer.id !== ownLayer) byLayer.set(f.layer.id, (byLayer.get(f.layer.id) ?? 0) + width(f) * f.coverage);
    }
    for (const taken of byLayer.values()) p *= Math.max(0, 1 - taken);
    return p;
  };
  eligible.forEach((e, i) => {
    const pe = reach * width(e) * e.coverage * noneTakes(eligible.slice(0, i), e.layer?.id);
    if (e.rolledBack) return add(e.controlStrategy, pe);
    let prev = 0;
    e.variants.forEach((v, j) => {
      add(v.strategy, pe * (e.cum[j]! - prev));
      prev = e.cum[j]!;
    });
  });
  add(dflt, reach * noneTakes(eligible, undefined));
  if (out.size <= 1) return undefined;
  return [...out].map(([strategyId, q]) => ({ strategyId, q }));
}
