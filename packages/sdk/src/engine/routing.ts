import murmurhash from 'murmurhash';
import { BUILTIN_UNIFORM_ID, type ControlView, type Features, type Pipeline, type Route, type Versioned } from './types.js';

/**
 * Experiment routing (pure, snapshot-only): deterministic sticky bucketing, targeting rules, the routing tables
 * of a control view, the route of a request and the probability of every route it could have taken. The
 * server's experiment router and the SDK's local mode run this same code.
 */

// ---- Bucketing ----------------------------------------------------------------------------------------------

/**
 * Hash version 1: h = murmur3_x86_32(utf8(unitKey), seed32) / 2^32, a number in [0, 1), where
 * seed32 = murmur3_x86_32(utf8(`${seed}|${purpose}`), 0). Each purpose (`inclusion`, `variant`,
 * `holdout`, and `layer` with the layer id as seed) gets its own 32-bit seed, so the draws are
 * independent: whether a unit is in an experiment says nothing about which variant it gets.
 * A new hash version would get a new number; documents record the version they were created with.
 */
export const HASH_VERSION = 1;

export type HashPurpose = 'inclusion' | 'variant' | 'holdout' | 'layer';

const enc = new TextEncoder();

export function seedOf(seed: string, purpose: HashPurpose): number {
  return murmurhash.v3(enc.encode(`${seed}|${purpose}`), 0);
}

/**
 * UTF-8 bytes of a unit key. The router encodes a key once per request and hashes the bytes for every
 * purpose: murmurhash's string path re-encodes on each call (~0.5 µs), the byte path takes ~30 ns.
 */
export function unitBytes(unitKey: string): Uint8Array {
  // ASCII (the usual user or session id) is its own UTF-8: copied directly, without the encoder's call overhead.
  const n = unitKey.length;
  if (n > 64) return enc.encode(unitKey);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = unitKey.charCodeAt(i);
    if (c > 0x7f) return enc.encode(unitKey);
    out[i] = c;
  }
  return out;
}

/** The unit's position in [0, 1) for a precomputed 32-bit seed (key as a string or its UTF-8 bytes). */
export function hashUnit(unitKey: string | Uint8Array, seed32: number, version = HASH_VERSION): number {
  if (version !== 1) throw new Error(`unknown hash version ${version}`);
  return murmurhash.v3(typeof unitKey === 'string' ? unitBytes(unitKey) : unitKey, seed32) / 4294967296;
}

/** Convenience: hash for a (seed, purpose) pair. */
export function bucket(unitKey: string, seed: string, purpose: HashPurpose, version = HASH_VERSION): number {
  return hashUnit(unitKey, seedOf(seed, purpose), version);
}

/** Cumulative upper bounds of normalised weights (last one forced to exactly 1). */
export function cumulative(weights: readonly number[]): number[] {
  const sum = weights.reduce((s, w) => s + w, 0);
  if (!(sum > 0)) throw new Error('weights must sum to a positive number');
  const out: number[] = [];
  let acc = 0;
  for (const w of weights) {
    acc += w / sum;
    out.push(acc);
  }
  // Float sums may stop short of 1: the last positive weight (and any zero weights after it) end at 1 exactly.
  let last = weights.length - 1;
  while (last > 0 && !(weights[last]! > 0)) last--;
  for (let i = last; i < out.length; i++) out[i] = 1;
  return out;
}

/** Index of the variant whose cumulative range holds h (h in [0, 1)). Zero-weight variants are never chosen. */
export function chooseVariant(cum: readonly number[], h: number): number {
  for (let i = 0; i < cum.length; i++) if (h < cum[i]!) return i;
  return cum.length - 1;
}

export interface BucketInput {
  readonly unitKey: string;
  readonly seed: string;
  readonly coverage: number;
  readonly weights: readonly number[];
  readonly hashVersion?: number;
}

/** What assigning a unit to one experiment's variants takes, with its seeds hashed and weights accumulated once. */
export interface Assignment {
  readonly hashVersion: number;
  readonly coverage: number;
  readonly inclusionSeed: number;
  readonly variantSeed: number;
  readonly cum: readonly number[];
}

/**
 * A unit's variant index in one experiment, or -1 when outside the coverage: a unit is in when its inclusion hash
 * is below the coverage (so raising coverage only adds units), and its variant hash picks the variant whose
 * cumulative range holds it. The router (routeExperiments) assigns with this; `cum` is read only for a unit inside.
 */
export function assignUnit(unit: string | Uint8Array, a: Assignment): number {
  if (hashUnit(unit, a.inclusionSeed, a.hashVersion) >= a.coverage) return -1;
  return chooseVariant(a.cum, hashUnit(unit, a.variantSeed, a.hashVersion));
}

/** Full assignment for one unit from an experiment's seed and weights: assignUnit with them hashed here. */
export function assign(input: BucketInput): number {
  return assignUnit(input.unitKey, {
    hashVersion: input.hashVersion ?? HASH_VERSION,
    coverage: input.coverage,
    inclusionSeed: seedOf(input.seed, 'inclusion'),
    variantSeed: seedOf(input.seed, 'variant'),
    // Weights that do not sum to a positive number throw only for a unit inside the coverage, as before.
    get cum() {
      return cumulative(input.weights);
    },
  });
}

// ---- Targeting ----------------------------------------------------------------------------------------------

export type ConditionOp = 'in' | 'not_in' | 'eq' | 'neq' | 'gt' | 'gte' | 'lt' | 'lte' | 'prefix' | 'contains' | 'exists';

export interface Condition {
  readonly attribute: string;
  readonly op: ConditionOp;
  readonly value?: string | number | boolean;
  readonly values?: readonly (string | number | boolean)[];
  readonly not?: boolean;
}

export interface Targeting {
  readonly all?: readonly Condition[];
  readonly any?: readonly Condition[];
  readonly invert?: boolean;
}

/** A compiled targeting rule: true when the request is eligible. Pure. */
export type Predicate = (features: Features, unitKey: string) => boolean;

type Scalar = string | number | boolean;

function attr(features: Features, unitKey: string, name: string): Scalar | null | undefined {
  // Own properties only: a rule on `constructor` or `toString` reads the request's attribute, not Object's.
  return name === 'unitKey' ? unitKey : Object.hasOwn(features, name) ? features[name] : undefined;
}

function compileCondition(c: Condition): Predicate {
  const set = new Set<Scalar>(c.values ?? (c.value !== undefined ? [c.value] : []));
  const v = c.value;
  const num = typeof v === 'number' ? v : Number.NaN;
  const str = v === undefined ? '' : String(v);
  let test: (x: Scalar | null | undefined) => boolean;
  switch (c.op) {
    case 'in':
      test = (x) => x !== undefined && x !== null && set.has(x);
      break;
    case 'not_in':
      test = (x) => x === undefined || x === null || !set.has(x);
      break;
    case 'eq':
      test = (x) => x === v;
      break;
    case 'neq':
      // A missing attribute is not "a different value": like every comparison, it fails (docs/rollout.md).
      test = (x) => x !== undefined && x !== null && x !== v;
      break;
    case 'gt':
      test = (x) => typeof x === 'number' && x > num;
      break;
    case 'gte':
      test = (x) => typeof x === 'number' && x >= num;
      break;
    case 'lt':
      test = (x) => typeof x === 'number' && x < num;
      break;
    case 'lte':
      test = (x) => typeof x === 'number' && x <= num;
      break;
    case 'prefix':
      test = (x) => typeof x === 'string' && x.startsWith(str);
      break;
    case 'contains':
      test = (x) => typeof x === 'string' && x.includes(str);
      break;
    case 'exists':
      test = (x) => x !== undefined && x !== null;
      break;
  }
  const name = c.attribute;
  return c.not ? (f, u) => !test(attr(f, u, name)) : (f, u) => test(attr(f, u, name));
}

/** Problems a schema cannot express (a numeric op needs a numeric value…); returns messages naming the field. */
export function targetingProblems(t: Targeting, path: string): string[] {
  const out: string[] = [];
  const check = (list: readonly Condition[] | undefined, name: string) =>
    list?.forEach((c, i) => {
      const at = `${path}/${name}/${i}`;
      if (['gt', 'gte', 'lt', 'lte'].includes(c.op) && typeof c.value !== 'number') out.push(`${at}/value: op ${c.op} needs a numeric value`);
      if (['in', 'not_in'].includes(c.op) && c.values === undefined && c.value === undefined) out.push(`${at}/values: op ${c.op} needs values`);
      if (['eq', 'neq', 'prefix', 'contains'].includes(c.op) && c.value === undefined) out.push(`${at}/value: op ${c.op} needs a value`);
      if (['prefix', 'contains'].includes(c.op) && typeof c.value !== 'string') out.push(`${at}/value: op ${c.op} needs a string value`);
    });
  check(t.all, 'all');
  check(t.any, 'any');
  return out;
}

/**
 * Compiles a rule: every `all` condition AND (when `any` is given) at least one `any` condition; then
 * `invert` takes the complement. Missing attributes fail comparisons (and pass `not_in`). No rule: everyone.
 */
export function compileTargeting(t: Targeting | undefined): Predicate {
  if (!t) return () => true;
  const all = (t.all ?? []).map(compileCondition);
  const any = (t.any ?? []).map(compileCondition);
  const base: Predicate = (f, u) => {
    for (const p of all) if (!p(f, u)) return false;
    if (any.length === 0) return true;
    for (const p of any) if (p(f, u)) return true;
    return false;
  };
  return t.invert ? (f, u) => !base(f, u) : base;
}

// ---- Experiment documents and routing tables ----------------------------------------------------------------

/** What routing reads of a stored experiment document (the server's ExperimentDoc has more). */
export interface RoutedExperiment {
  /** Which creation of the experiment id this is (absent on documents from before generations): decisions record it. */
  readonly generation?: number;
  readonly pipeline: string;
  readonly type: string;
  readonly variants: readonly { readonly name: string; readonly strategy: string; readonly weight: number }[];
  readonly control: string;
  readonly coverage: number;
  readonly seed: string;
  readonly hashVersion: number;
  readonly targeting?: Targeting;
  readonly layer?: { readonly id: string; readonly range: readonly [number, number] };
  readonly ramp?: { readonly steps: readonly { readonly share: number }[] };
  readonly state: { readonly status: string; readonly phase: number; readonly rampStep?: number; readonly exposedDefault?: string };
}

/** The current ramp step's share of the coverage (1 without a ramp). */
export function rampShare(doc: Pick<RoutedExperiment, 'ramp' | 'state'>): number {
  const steps = doc.ramp?.steps;
  if (!steps || steps.length === 0) return 1;
  return steps[Math.min(doc.state.rampStep ?? 0, steps.length - 1)]!.share;
}

/** Coverage actually routed: 0 unless running (rolled-back experiments keep their last coverage for control). */
export function effectiveCoverage(doc: Pick<RoutedExperiment, 'ramp' | 'state' | 'coverage'>): number {
  if (doc.state.status !== 'running' && doc.state.status !== 'rolled_back') return 0;
  return doc.coverage * rampShare(doc);
}

/** One experiment compiled for the hot path: seeds hashed, weights accumulated (Assignment), targeting compiled. */
interface CompiledExperiment extends Assignment {
  readonly id: string;
  /** The experiment's generation, recorded in its decisions' routes so that outcomes count in that creation only. */
  readonly gen: { readonly generation: number } | undefined;
  readonly holdoutGen: { readonly holdoutGeneration: number } | undefined;
  readonly type: string;
  readonly phase: number;
  readonly eligible: Predicate;
  readonly layer?: { readonly id: string; readonly seed: number; readonly range: readonly [number, number] };
  readonly variants: readonly { readonly name: string; readonly strategy: string }[];
  readonly rolledBack: boolean;
  /** Paused: the units it includes get the pipeline default (uncounted) until it resumes, and no other experiment. */
  readonly paused: boolean;
  readonly controlStrategy: string;
  /** Holdouts: the pipeline default the current phase compares against (absent: not recorded). */
  readonly exposedDefault?: string;
}

interface PipelineTable {
  readonly holdout?: CompiledExperiment;
  readonly experiments: readonly CompiledExperiment[];
}

function compile(id: string, d: RoutedExperiment): CompiledExperiment {
  const live = d.variants.map((v) => v.weight);
  return {
    id,
    gen: d.generation !== undefined ? { generation: d.generation } : undefined,
    holdoutGen: d.generation !== undefined ? { holdoutGeneration: d.generation } : undefined,
    type: d.type,
    phase: d.state.phase,
    hashVersion: d.hashVersion,
    eligible: compileTargeting(d.targeting),
    // A paused experiment keeps its units (coverage as if running): they get the default, not another experiment.
    coverage: d.state.status === 'paused' ? d.coverage * rampShare(d) : effectiveCoverage(d),
    inclusionSeed: seedOf(d.seed, d.type === 'holdout' ? 'holdout' : 'inclusion'),
    variantSeed: seedOf(d.seed, 'variant'),
    ...(d.layer ? { layer: { id: d.layer.id, seed: seedOf(d.layer.id, 'layer'), range: d.layer.range } } : {}),
    cum: cumulative(live),
    variants: d.variants.map((v) => ({ name: v.name, strategy: v.strategy })),
    rolledBack: d.state.status === 'rolled_back',
    paused: d.state.status === 'paused',
    controlStrategy: d.variants.find((v) => v.name === d.control)?.strategy ?? BUILTIN_UNIFORM_ID,
    ...(d.state.exposedDefault !== undefined ? { exposedDefault: d.state.exposedDefault } : {}),
  };
}

/** Per-snapshot routing tables by pipeline: rebuilt only when the control plane changes. */
export function routingTables(view: ControlView): ReadonlyMap<string, PipelineTable> {
  return view.memo('rollout:tables', () => {
    const byPipeline = new Map<string, { holdout?: CompiledExperiment; experiments: CompiledExperiment[] }>();
    const docs = [...(view.raw.kinds.experiments as ReadonlyMap<string, Versioned<RoutedExperiment>>).values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const v of docs) {
      const d = v.doc;
      if (d.state.status !== 'running' && d.state.status !== 'rolled_back' && d.state.status !== 'paused') continue;
      const c = compile(v.id, d);
      if (c.coverage <= 0) continue;
      const t = byPipeline.get(d.pipeline) ?? { experiments: [] };
      if (d.type === 'holdout') {
        if (d.state.status === 'running' || d.state.status === 'paused') t.holdout = c;
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
 *   a paused experiment (or holdout) keeps the units it includes: they get the pipeline default, counted nowhere
 *   (a paused experiment's units do not move into another experiment and back when it resumes);
 *   otherwise the default, with the holdout noted when there is one (the `exposed` population).
 * Routes name the experiment's (and holdout's) generation when its document has one: an outcome counts only in the
 * creation of the experiment that served the decision.
 */
export function routeExperiments(view: ControlView, pipeline: Pipeline, unitKey: string | undefined, features: Features): Route | undefined {
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
    const current = !h.paused && (h.exposedDefault === undefined || h.exposedDefault === dflt);
    if (hashUnit(key, h.inclusionSeed, h.hashVersion) < h.coverage) {
      if (h.paused) return undefined;
      return {
        strategyId: h.controlStrategy,
        reason: 'holdout',
        details: current ? { experiment: h.id, variant: 'holdout', phase: h.phase, ...h.gen } : { experiment: h.id, variant: 'holdout', ...h.gen },
      };
    }
    if (current) holdout = { holdout: h.id, holdoutPhase: h.phase, ...h.holdoutGen };
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
    const i = assignUnit(key, e);
    if (i < 0) continue;
    if (e.paused) break;
    if (e.rolledBack) {
      return { strategyId: e.controlStrategy, reason: 'experiment', details: { experiment: e.id, rolledBack: true, phase: e.phase, ...e.gen, ...holdout } };
    }
    const v = e.variants[i]!;
    return {
      strategyId: v.strategy,
      reason: 'experiment',
      // Kept small: the response echoes it (schema-less values serialize slowly); type and layer follow from the id.
      details: holdout ? { experiment: e.id, variant: v.name, phase: e.phase, ...e.gen, ...holdout } : { experiment: e.id, variant: v.name, phase: e.phase, ...e.gen },
    };
  }
  return holdout ? { strategyId: dflt, reason: 'default', details: holdout } : undefined;
}

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
 *   P(holdout) = h, the holdout's coverage (ramp included), when the request is eligible, given to the strategy it froze;
 *   P(experiment e routes) = (1 − h) · width(e's layer range) · coverage_e · P(no earlier experiment took
 *   the unit | it is in e's slot), where earlier experiments of e's own layer cannot take it (their ranges
 *   are disjoint from e's), those of one other layer take it with Σ width·coverage (disjoint, so additive)
 *   and those without a layer with their coverage, independently;
 *   P(variant v of e) = P(e routes) · weight_v (normalised); a rolled-back experiment sends its share to
 *   its control strategy, a paused one to the pipeline default; whatever no experiment takes goes to the default.
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
    // Held-out units get the strategy the holdout froze at its start (the default then, whatever it is now); a
    // paused holdout's get the current default (routeExperiments).
    add(h.paused ? dflt : h.controlStrategy, h.coverage);
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
    if (e.paused) return add(dflt, pe);
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
