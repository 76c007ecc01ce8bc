import type { Features } from '../../strategies/types.js';
import type { FeaturesBody, FeatureSpec } from '../features.js';
import { mulberry32, normal } from '../rng.js';
import { contextFeatures, expectedQuality, oracleBudgets, polishShares, sampleContext, simulateOutcome, worldFeatures, type SimContext, type World } from './world.js';
import { waterFill } from '../../strategies/fit.js';

/**
 * A simulated world as the learning loop and the bench see it (pure): what a request looks like, what a split
 * earns on it in expectation (the ground truth), a noisy outcome, and the oracle's split. Both the five
 * hand-written worlds (namedWorld) and the generated family (generateWorld) implement it.
 */
export interface SimWorld<C = unknown> {
  readonly name: string;
  readonly totalTokens: number;
  readonly agents: readonly { readonly name: string; readonly minTokens: number; readonly maxTokens: number }[];
  /** The declaration a user would write: no mean/std anywhere. */
  readonly declaration: FeaturesBody;
  /** λ of reward = quality − λ·costUsd. */
  readonly costWeight: number;
  /** Outcome index at which the world changes (phase 1), if it does. */
  readonly driftAt?: number;
  /** One line on what the world contains. */
  readonly summary: string;
  sample(rng: () => number): C;
  features(c: C): Features;
  /** Expected reward (quality − λ·cost) of a split in a phase. */
  expected(phase: 0 | 1, c: C, budgets: readonly number[]): number;
  outcome(phase: 0 | 1, c: C, budgets: readonly number[], rng: () => number): { readonly quality: number; readonly cost: number | null; readonly usage?: readonly number[] };
  /** USD per token per agent, as a pipeline would declare them (worlds with a cost). */
  readonly prices?: readonly number[];
  /** The split maximising expected reward (exact for the named worlds, a numerical optimum for generated ones). */
  oracle(phase: 0 | 1, c: C, total: number): number[];
}

export function phaseOf(world: SimWorld, t: number): 0 | 1 {
  return world.driftAt !== undefined && t >= world.driftAt ? 1 : 0;
}

/** A declaration with every mean/std removed (what the targets are measured with). */
export function plainDeclaration(body: FeaturesBody): FeaturesBody {
  return { features: body.features.map((f) => (f.type === 'categorical' ? f : (({ mean: _m, std: _s, ...rest }) => rest as FeatureSpec)(f))) };
}

/** A hand-written world of experiments/worlds as a SimWorld (declared without mean/std). */
export function namedWorld(w: World): SimWorld<SimContext> {
  return {
    name: w.name,
    totalTokens: w.totalTokens,
    agents: w.agents,
    declaration: plainDeclaration(worldFeatures(w)),
    costWeight: 0,
    ...(w.drift ? { driftAt: w.drift.at } : {}),
    summary: `named world, ${w.agents.length} agents, ${w.curve}`,
    sample: (rng) => sampleContext(w, rng),
    features: (c) => contextFeatures(c),
    expected: (phase, c, b) => expectedQuality(w, phase, c, b),
    outcome: (phase, c, b, rng) => ({ quality: simulateOutcome(w, phase, c, b, rng).quality, cost: null }),
    oracle: (phase, c, total) => oracleBudgets(w, phase, c, total),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The generated family

type Shape = 'saturating' | 'threshold' | 'plateau';

interface GenAgent {
  readonly name: string;
  readonly minTokens: number;
  readonly maxTokens: number;
  readonly shape: Shape;
  /** need = base · taskMult[task] · (1 + sizeCoef·log1p(size/sizeScale)) · (1 + turnCoef·turns) · interaction. */
  readonly base: number;
  readonly taskMult: readonly number[];
  readonly sizeCoef: number;
  readonly turnCoef: number;
  /** weight = weightBase · taskWeight[task] (a one-task agent: ~0 except for one task, possibly one language too). */
  readonly weightBase: number;
  readonly taskWeight: readonly number[];
  /** Task × language: need × langMult on (task, lang) = combo. */
  readonly combo?: { readonly task: number; readonly lang: number; readonly needMult: number; readonly weight?: number };
  /** Below floor·need the request fails outright with this probability. */
  readonly hardFloor?: { readonly floor: number; readonly p: number };
  /** USD per token. */
  readonly price: number;
}

export interface GenContext {
  readonly task: number;
  readonly lang: number;
  readonly size: number;
  readonly turns: number;
  readonly noiseA: number;
  readonly hint: number;
  readonly extra: number | null;
}

export interface GenSpec {
  readonly seed: number;
  readonly tasks: number;
  readonly langs: number;
  readonly taskP: readonly number[];
  readonly sizeScale: number;
  readonly sizeLog: boolean;
  readonly noiseScale: number;
  readonly noise: number;
  readonly agents: readonly GenAgent[];
  /** Agent j's need shrinks by up to `strength` as agent i's response approaches 1. */
  readonly interaction?: { readonly i: number; readonly j: number; readonly strength: number };
  /** From driftAt on, task `from` behaves like task `to` (the label keeps its name). */
  readonly drift?: { readonly at: number; readonly from: number; readonly to: number };
  /** The misleading feature moves quality up or down by up to this share, whatever the split. */
  readonly hintEffect: number;
  readonly extraEffect: number;
}

const logUniform = (rng: () => number, lo: number, hi: number) => Math.exp(Math.log(lo) + rng() * (Math.log(hi) - Math.log(lo)));
const pick = <T>(rng: () => number, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;

/** The world's parameters for a seed (deterministic). See docs/learner.md "The generated family". */
export function generateSpec(seed: number, opts: { readonly driftAt?: number } = {}): GenSpec {
  const rng = mulberry32(seed * 2654435761 + 0x5bd1e995);
  const n = 2 + Math.floor(rng() * 11);
  const tasks = 2 + Math.floor(rng() * 4);
  const langs = 2 + Math.floor(rng() * 3);
  const raw = Array.from({ length: tasks }, () => 0.3 + rng());
  const taskP = raw.map((v) => v / raw.reduce((s, x) => s + x, 0));
  const sizeScale = Math.pow(10, rng() * 6);
  const perAgent = logUniform(rng, 300, 3000);
  const oneTask = n >= 3 && rng() < 0.7 ? Math.floor(rng() * n) : -1;
  const comboAgent = rng() < 0.7 ? Math.floor(rng() * n) : -1;
  const floorAgent = rng() < 0.35 ? Math.floor(rng() * n) : -1;
  const agents: GenAgent[] = Array.from({ length: n }, (_, i) => {
    const base = perAgent * logUniform(rng, 0.15, 1.5);
    const minTokens = Math.round(Math.min(base * 0.2, 50 + rng() * 200));
    const capped = rng() < 0.4;
    const a: GenAgent = {
      name: `agent${i}`,
      minTokens,
      maxTokens: capped ? Math.round(base * logUniform(rng, 1.5, 4)) + minTokens : 1_000_000,
      shape: pick(rng, ['saturating', 'saturating', 'threshold', 'plateau'] as const),
      base,
      taskMult: Array.from({ length: tasks }, () => logUniform(rng, 0.3, 3)),
      sizeCoef: rng() < 0.5 ? rng() * 1.5 : 0,
      turnCoef: rng() < 0.4 ? rng() * 0.08 : 0,
      weightBase: (0.15 + rng() * 0.8) * Math.min(1, 4 / n),
      taskWeight: Array.from({ length: tasks }, () => (rng() < 0.25 ? 0.15 + rng() * 0.3 : 0.7 + rng() * 0.3)),
      price: logUniform(rng, 0.5e-6, 15e-6),
    };
    if (i === oneTask) {
      const t = Math.floor(rng() * tasks);
      return { ...a, weightBase: 0.6 + rng() * 0.35, taskWeight: a.taskWeight.map((_, k) => (k === t ? 1 : 0.02)) };
    }
    if (i === comboAgent) return { ...a, combo: { task: Math.floor(rng() * tasks), lang: Math.floor(rng() * langs), needMult: logUniform(rng, 2.5, 6), weight: 0.9 } };
    if (i === floorAgent) return { ...a, hardFloor: { floor: 0.3 + rng() * 0.4, p: 0.5 + rng() * 0.5 } };
    return a;
  });
  const interaction = n >= 2 && rng() < 0.5 ? (() => {
    const i = Math.floor(rng() * n);
    let j = Math.floor(rng() * (n - 1));
    if (j >= i) j++;
    return { i, j, strength: 0.3 + rng() * 0.4 };
  })() : undefined;
  const driftAt = opts.driftAt;
  const drift = driftAt !== undefined && tasks >= 2 ? (() => {
    const from = Math.floor(rng() * tasks);
    let to = Math.floor(rng() * (tasks - 1));
    if (to >= from) to++;
    return { at: driftAt, from, to };
  })() : undefined;
  return {
    seed,
    tasks,
    langs,
    taskP,
    sizeScale,
    sizeLog: rng() < 0.5,
    noiseScale: Math.pow(10, 3 + rng() * 4),
    noise: 0.02 + rng() * 0.1,
    agents,
    ...(interaction ? { interaction } : {}),
    ...(drift ? { drift } : {}),
    hintEffect: rng() * 0.2,
    extraEffect: rng() < 0.5 ? 0.5 + rng() : 0,
  };
}

/** truth() per context object and phase (a context's truth is fixed; the oracle asks for it thousands of times). */
const truthCache = new WeakMap<GenContext, [Truth | undefined, Truth | undefined, GenSpec]>();
interface Truth {
  readonly need: number[];
  readonly weight: number[];
}

/** Per-agent need and weight for a context (phase 1 applies the drift), before interactions. Memoised per context. */
function truth(spec: GenSpec, phase: 0 | 1, c: GenContext): Truth {
  let e = truthCache.get(c);
  if (!e || e[2] !== spec) {
    e = [undefined, undefined, spec];
    truthCache.set(c, e);
  }
  return (e[phase] ??= computeTruth(spec, phase, c));
}

function computeTruth(spec: GenSpec, phase: 0 | 1, c: GenContext): Truth {
  const task = phase === 1 && spec.drift && c.task === spec.drift.from ? spec.drift.to : c.task;
  const need: number[] = [];
  const weight: number[] = [];
  for (const a of spec.agents) {
    let nd = a.base * a.taskMult[task]! * (1 + a.sizeCoef * Math.log1p(c.size / spec.sizeScale)) * (1 + a.turnCoef * c.turns);
    if (c.extra !== null && spec.extraEffect > 0) nd *= 1 + spec.extraEffect * Math.min(1, c.extra / 100);
    let w = a.weightBase * a.taskWeight[task]!;
    if (a.combo && a.combo.task === task && a.combo.lang === c.lang) {
      nd *= a.combo.needMult;
      if (a.combo.weight !== undefined) w = Math.max(w, a.combo.weight);
    }
    need.push(Math.max(1, nd));
    weight.push(Math.min(0.99, w));
  }
  return { need, weight };
}

function response(shape: Shape, w: number, need: number, b: number): number {
  switch (shape) {
    case 'saturating':
      return 1 - w * Math.exp(-b / need);
    case 'threshold':
      // A smooth step at the need: little below it, most of the value once past it.
      return 1 - w * (0.9 * (1 - 1 / (1 + Math.exp(-(b - need) / (0.12 * need)))) + 0.1 * Math.exp(-b / need));
    case 'plateau': {
      // Diminishing returns up to 2·need, flat after it.
      const u = Math.max(0, 1 - b / (2 * need));
      return 1 - w * u * u;
    }
  }
}

export function genQuality(spec: GenSpec, phase: 0 | 1, c: GenContext, budgets: readonly number[]): { quality: number; failP: number } {
  const { need, weight } = truth(spec, phase, c);
  const n = need.length;
  const resp = new Array<number>(n);
  const I = spec.interaction;
  let q = 1;
  let failP = 0;
  // The interaction's source agent first (its response sets the other's need), then the rest in order.
  for (let o = I ? -1 : 0; o < n; o++) {
    const i = o < 0 ? I!.i : o;
    if (I && o >= 0 && i === I.i) continue;
    let nd = need[i]!;
    if (I && i === I.j) nd *= 1 - I.strength * Math.max(0, Math.min(1, (resp[I.i]! - (1 - weight[I.i]!)) / Math.max(1e-9, weight[I.i]!)));
    const a = spec.agents[i]!;
    resp[i] = response(a.shape, weight[i]!, nd, budgets[i]!);
    q *= resp[i]!;
    if (a.hardFloor && budgets[i]! < a.hardFloor.floor * nd) failP = 1 - (1 - failP) * (1 - a.hardFloor.p);
  }
  const hint = 1 - spec.hintEffect + spec.hintEffect * 2 * (c.hint / (1 + c.hint));
  return { quality: Math.min(1, q * hint), failP };
}

export function genCost(spec: GenSpec, phase: 0 | 1, c: GenContext, budgets: readonly number[]): number {
  const { need } = truth(spec, phase, c);
  let cost = 0;
  spec.agents.forEach((a, i) => (cost += Math.min(budgets[i]!, 1.3 * need[i]!) * a.price));
  return cost;
}

/** Tokens each agent uses (what an outcome reports): its demand 1.3 × need, cut at its budget; the cost is charged on these. */
export function genUsage(spec: GenSpec, phase: 0 | 1, c: GenContext, budgets: readonly number[]): number[] {
  const { need } = truth(spec, phase, c);
  return spec.agents.map((_, i) => Math.round(Math.min(budgets[i]!, 1.3 * need[i]!)));
}

/**
 * Numerical oracle for a concave-or-not expected reward: marginal allocation with look-ahead, then pairwise
 * transfers; also polished from each of `starts` (e.g. uniform and need-proportional splits), best kept.
 */
export function numericOracle(value: (b: readonly number[]) => number, mins: readonly number[], caps: readonly number[], total: number, starts: readonly number[][] = []): number[] {
  let best = marginalOracle(value, mins, caps, total);
  let bestV = value(best);
  for (const s of starts) {
    const b = polish(value, s.slice(), mins, caps, Math.min(total, caps.reduce((a, v) => a + v, 0)));
    const v = value(b);
    if (v > bestV) {
      best = b;
      bestV = v;
    }
  }
  return best;
}

function marginalOracle(value: (b: readonly number[]) => number, mins: readonly number[], caps: readonly number[], total: number): number[] {
  const n = mins.length;
  const target = Math.min(total, caps.reduce((s, v) => s + v, 0));
  const b = mins.slice();
  let rest = target - b.reduce((s, v) => s + v, 0);
  if (rest <= 0) return b;
  const chunk = rest / 64;
  let cur = value(b);
  while (rest > 1e-6) {
    let best = -1;
    let bestRate = -Infinity;
    let bestStep = 0;
    for (let i = 0; i < n; i++) {
      // Look ahead up to 12 chunks: a threshold pays only once crossed.
      for (const k of [1, 3, 12]) {
        const step = Math.min(k * chunk, rest, caps[i]! - b[i]!);
        if (step <= 1e-9) break;
        b[i]! += step;
        const rate = (value(b) - cur) / step;
        b[i]! -= step;
        if (rate > bestRate) {
          bestRate = rate;
          best = i;
          bestStep = Math.min(chunk, step);
        }
      }
    }
    if (best < 0) break;
    b[best]! += bestStep;
    rest -= bestStep;
    cur = value(b);
  }
  return polish(value, b, mins, caps, target);
}

function polish(value: (b: readonly number[]) => number, b: number[], mins: readonly number[], caps: readonly number[], target: number): number[] {
  const n = b.length;
  let cur = value(b);
  for (const step of [target / 16, target / 64, target / 256]) {
    let improved = true;
    for (let it = 0; improved && it < 6; it++) {
      improved = false;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          if (i === j) continue;
          const s = Math.min(step, b[j]! - mins[j]!, caps[i]! - b[i]!);
          if (s <= 1e-9) continue;
          b[i]! += s;
          b[j]! -= s;
          const v = value(b);
          if (v > cur + 1e-12) {
            cur = v;
            improved = true;
          } else {
            b[i]! -= s;
            b[j]! += s;
          }
        }
      }
    }
  }
  return b;
}

/** A generated world from its seed. `driftAt`: the outcome at which one task starts to behave like another. */
export function generateWorld(seed: number, opts: { readonly driftAt?: number } = {}): SimWorld<GenContext> & { readonly spec: GenSpec } {
  const spec = generateSpec(seed, opts);
  const n = spec.agents.length;
  const costWeight = mulberry32(seed ^ 0xc0ffee)() < 0.3 ? 1 : 0;
  const totalTokens = Math.round((spec.agents.reduce((s, a) => s + a.base * 1.5, 0) * logUniform(mulberry32(seed ^ 0xbeef), 0.8, 2.5)) / 100) * 100;
  const sizeSpec: FeatureSpec = spec.sizeLog ? { name: 'size', type: 'numeric', transform: 'log' } : { name: 'size', type: 'numeric' };
  const declaration: FeaturesBody = {
    features: [
      { name: 'task', type: 'categorical', values: Array.from({ length: spec.tasks }, (_, k) => `task${k}`) },
      { name: 'lang', type: 'categorical', values: Array.from({ length: spec.langs }, (_, k) => `lang${k}`) },
      sizeSpec,
      { name: 'turns', type: 'numeric' },
      { name: 'noiseA', type: 'numeric' },
      { name: 'hint', type: 'numeric' },
      { name: 'extra', type: 'numeric', transform: 'log' },
      { name: 'region', type: 'numeric' },
    ],
  };
  const mins = spec.agents.map((a) => a.minTokens);
  const caps = spec.agents.map((a) => a.maxTokens);
  const expected = (phase: 0 | 1, c: GenContext, b: readonly number[]) => {
    const { quality, failP } = genQuality(spec, phase, c, b);
    return quality * (1 - failP) - costWeight * genCost(spec, phase, c, b);
  };
  const parts = [
    `${n} agents (${spec.agents.map((a) => a.shape[0]).join('')})`,
    `${spec.tasks}×${spec.langs} task×lang`,
    `size scale ${spec.sizeScale.toExponential(0)}${spec.sizeLog ? ' log' : ' raw'}`,
    `noise ${spec.noise.toFixed(2)}`,
    spec.agents.some((a) => a.taskWeight.filter((w) => w > 0.05).length === 1) ? 'one-task agent' : '',
    spec.agents.some((a) => a.combo) ? 'combo' : '',
    spec.agents.some((a) => a.hardFloor) ? 'hard floor' : '',
    spec.interaction ? 'interaction' : '',
    costWeight ? 'cost' : '',
    spec.drift ? `drift@${spec.drift.at}` : '',
  ].filter(Boolean);
  return {
    name: `gen-${seed}`,
    spec,
    totalTokens,
    agents: spec.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens })),
    declaration,
    costWeight,
    ...(costWeight ? { prices: spec.agents.map((a) => a.price) } : {}),
    ...(spec.drift ? { driftAt: spec.drift.at } : {}),
    summary: parts.join(', '),
    sample(rng) {
      let u = rng();
      let task = spec.tasks - 1;
      for (let k = 0; k < spec.tasks; k++) {
        if (u < spec.taskP[k]!) {
          task = k;
          break;
        }
        u -= spec.taskP[k]!;
      }
      // Heavy-tailed size (Pareto α 1.1, 10 % zero), scaled to 1..1e6 raw units.
      const size = rng() < 0.1 ? 0 : spec.sizeScale * Math.min(1e4, 0.2 / Math.pow(Math.max(rng(), 1e-9), 1 / 1.1));
      return {
        task,
        lang: Math.floor(rng() * spec.langs),
        size,
        turns: 1 + Math.floor(-Math.log(Math.max(rng(), 1e-9)) * 6),
        noiseA: spec.noiseScale * rng() * 10,
        hint: Math.exp(normal(rng)),
        extra: rng() < 0.15 ? Math.round(rng() * 200) : null,
      };
    },
    features: (c) => ({
      task: `task${c.task}`,
      lang: `lang${c.lang}`,
      size: c.size,
      turns: c.turns,
      noiseA: c.noiseA,
      hint: c.hint,
      ...(c.extra !== null ? { extra: c.extra } : {}),
      region: 42,
    }),
    expected,
    outcome(phase, c, b, rng) {
      const { quality, failP } = genQuality(spec, phase, c, b);
      const failed = rng() < failP;
      const q = failed ? 0 : Math.min(1, Math.max(0, quality + spec.noise * normal(rng)));
      return { quality: q, cost: costWeight ? genCost(spec, phase, c, b) : null, usage: genUsage(spec, phase, c, b) };
    },
    oracle: (phase, c, total) => {
      const { need } = truth(spec, phase, c);
      const agentsB = spec.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens }));
      const starts = [waterFill(agentsB.map((a) => ({ ...a, weight: 1 })), total), waterFill(agentsB.map((a, i) => ({ ...a, weight: need[i]! })), total)];
      return numericOracle((b) => expected(phase, c, b), mins, caps, total, starts);
    },
  };
}

/** A fixed split fitted to a world's bounds (as the static strategy does). */
export function staticSplit(world: SimWorld, shares: readonly number[], total: number): number[] {
  return waterFill(world.agents.map((a, i) => ({ min: a.minTokens, cap: a.maxTokens, weight: shares[i]! })), total);
}

export function uniformSplitOf(world: SimWorld, total: number): number[] {
  return staticSplit(world, world.agents.map(() => 1), total);
}

/** The best static split's shares over `contexts` (pairwise share transfers with a shrinking step from the oracle's mean shares). */
export function bestStatic<C>(world: SimWorld<C>, phase: 0 | 1, contexts: readonly C[], total: number): number[] {
  const n = world.agents.length;
  const value = (s: readonly number[]) => {
    const b = staticSplit(world, s, total);
    let v = 0;
    for (const x of contexts) v += world.expected(phase, x, b);
    return v / contexts.length;
  };
  let shares = new Array<number>(n).fill(0);
  for (const x of contexts) world.oracle(phase, x, total).forEach((b, i) => (shares[i]! += b / total / contexts.length));
  let best = value(shares);
  const uni = world.agents.map(() => 1 / n);
  if (value(uni) > best) {
    shares = uni;
    best = value(uni);
  }
  return polishShares(shares, value, n);
}
