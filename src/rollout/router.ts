import type { Route, Router } from '../allocation/service.js';
import type { ControlView } from '../control/view.js';
import type { Pipeline } from '../pipelines/schema.js';
import { BUILTIN_UNIFORM_ID } from '../strategies/schema.js';
import type { Versioned } from '../control/store.js';
import { cumulative, chooseVariant, hashUnit, seedOf, unitBytes } from './bucketing.js';
import { effectiveCoverage } from './model.js';
import type { ExperimentDoc } from './schema.js';
import { compileTargeting, type Predicate } from './targeting.js';
import { routeDistribution } from './propensity.js';

/** One experiment compiled for the hot path: seeds hashed, weights accumulated, targeting compiled. */
interface CompiledExperiment {
  readonly id: string;
  readonly type: string;
  readonly phase: number;
  readonly hashVersion: number;
  readonly eligible: Predicate;
  readonly coverage: number;
  readonly inclusionSeed: number;
  readonly variantSeed: number;
  readonly layer?: { readonly id: string; readonly seed: number; readonly range: readonly [number, number] };
  readonly cum: readonly number[];
  readonly variants: readonly { readonly name: string; readonly strategy: string }[];
  readonly rolledBack: boolean;
  readonly controlStrategy: string;
  /** Holdouts: the pipeline default the current phase compares against (absent: not recorded). */
  readonly exposedDefault?: string;
}

interface PipelineTable {
  readonly holdout?: CompiledExperiment;
  readonly experiments: readonly CompiledExperiment[];
}

function compile(id: string, d: ExperimentDoc): CompiledExperiment {
  const live = d.variants.map((v) => v.weight);
  return {
    id,
    type: d.type,
    phase: d.state.phase,
    hashVersion: d.hashVersion,
    eligible: compileTargeting(d.targeting),
    coverage: effectiveCoverage(d),
    inclusionSeed: seedOf(d.seed, d.type === 'holdout' ? 'holdout' : 'inclusion'),
    variantSeed: seedOf(d.seed, 'variant'),
    ...(d.layer ? { layer: { id: d.layer.id, seed: seedOf(d.layer.id, 'layer'), range: d.layer.range } } : {}),
    cum: cumulative(live),
    variants: d.variants.map((v) => ({ name: v.name, strategy: v.strategy })),
    rolledBack: d.state.status === 'rolled_back',
    controlStrategy: d.variants.find((v) => v.name === d.control)?.strategy ?? BUILTIN_UNIFORM_ID,
    ...(d.state.exposedDefault !== undefined ? { exposedDefault: d.state.exposedDefault } : {}),
  };
}

/** Per-snapshot routing tables by pipeline: rebuilt only when the control plane changes. */
export function routingTables(view: ControlView): ReadonlyMap<string, PipelineTable> {
  return view.memo('rollout:tables', () => {
    const byPipeline = new Map<string, { holdout?: CompiledExperiment; experiments: CompiledExperiment[] }>();
    const docs = [...(view.raw.kinds.experiments as ReadonlyMap<string, Versioned<ExperimentDoc>>).values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const v of docs) {
      const d = v.doc;
      if (d.state.status !== 'running' && d.state.status !== 'rolled_back') continue;
      const c = compile(v.id, d);
      if (c.coverage <= 0) continue;
      const t = byPipeline.get(d.pipeline) ?? { experiments: [] };
      if (d.type === 'holdout') {
        if (d.state.status === 'running') t.holdout = c;
      } else t.experiments.push(c);
      byPipeline.set(d.pipeline, t);
    }
    return byPipeline;
  });
}

/**
 * Routes a request through the pipeline's running experiments (pure, snapshot-only):
 *   no unitKey → pass (not eligible: the pipeline default serves, reason `default`);
 *   in the holdout → the strategy the holdout froze when it started (the default then), reason `holdout`;
 *   first experiment (by id) whose targeting matches, whose layer slot holds the unit and whose
 *   coverage includes it → its variant, reason `experiment` (a rolled-back experiment sends its units
 *   to control, without a variant, so they no longer count in its results);
 *   otherwise the default, with the holdout noted when there is one (the `exposed` population).
 */
export function routeExperiments(view: ControlView, pipeline: Pipeline, unitKey: string | undefined, features: Readonly<Record<string, string | number | boolean | null>>): Route | undefined {
  if (unitKey === undefined) return undefined;
  const table = routingTables(view).get(pipeline.id);
  if (!table) return undefined;
  const dflt = pipeline.defaultStrategy ?? BUILTIN_UNIFORM_ID;
  const key = unitBytes(unitKey);
  const h = table.holdout;
  let holdout: Record<string, unknown> | undefined;
  if (h && h.eligible(features, unitKey)) {
    // The default changed since this phase began (outside a promote, which starts the new phase in the
    // same write): until the rollout job starts the next phase, neither population is counted, so no
    // phase mixes two defaults. Held-out units keep their frozen strategy either way.
    const current = h.exposedDefault === undefined || h.exposedDefault === dflt;
    if (hashUnit(key, h.inclusionSeed, h.hashVersion) < h.coverage) {
      return { strategyId: h.controlStrategy, reason: 'holdout', details: current ? { experiment: h.id, variant: 'holdout', phase: h.phase } : { experiment: h.id, variant: 'holdout' } };
    }
    if (current) holdout = { holdout: h.id, holdoutPhase: h.phase };
  }
  let layerHashes: Map<string, number> | undefined;
  for (const e of table.experiments) {
    if (!e.eligible(features, unitKey)) continue;
    if (e.layer) {
      layerHashes ??= new Map();
      let lh = layerHashes.get(e.layer.id);
      if (lh === undefined) {
        lh = hashUnit(key, e.layer.seed, e.hashVersion);
        layerHashes.set(e.layer.id, lh);
      }
      if (lh < e.layer.range[0] || lh >= e.layer.range[1]) continue;
    }
    if (hashUnit(key, e.inclusionSeed, e.hashVersion) >= e.coverage) continue;
    if (e.rolledBack) {
      return { strategyId: e.controlStrategy, reason: 'experiment', details: { experiment: e.id, rolledBack: true, phase: e.phase, ...holdout } };
    }
    const v = e.variants[chooseVariant(e.cum, hashUnit(key, e.variantSeed, e.hashVersion))]!;
    return {
      strategyId: v.strategy,
      reason: 'experiment',
      // Kept small: the response echoes it (schema-less values serialize slowly); type and layer follow from the id.
      details: holdout ? { experiment: e.id, variant: v.name, phase: e.phase, ...holdout } : { experiment: e.id, variant: v.name, phase: e.phase },
    };
  }
  return holdout ? { strategyId: dflt, reason: 'default', details: holdout } : undefined;
}

export const experimentRouter: Router = {
  name: 'rollout',
  route: (view, pipeline, req) => routeExperiments(view, pipeline, req.unitKey, req.features),
  distribution: (view, pipeline, req) => routeDistribution(view, pipeline, req.unitKey, req.features),
};
