import { readFileSync } from 'node:fs';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { fileURLToPath } from 'node:url';
import { waterFill } from '../../strategies/fit.js';
import type { FeaturesBody } from '../features.js';
import { normal } from '../rng.js';

/**
 * Simulated worlds with known ground truth (pure functions of a world document in experiments/worlds/).
 *
 * Final quality is a product of per-agent saturating responses to the agent's budget b:
 *   exp:  c_i(b) = 1 − w_i(x) · exp(−b / need_i(x))
 *   hill: c_i(b) = 1 − w_i(x) · need_i(x) / (b + need_i(x))
 * need_i(x) = (base + perMessage·messages + perDocToken·documentTokens) · task multiplier, and w_i(x) (how much
 * the agent matters: the context-dependent critical path) depends on the task. Observed quality adds
 * Gaussian noise and is clipped to [0, 1]. Document sizes are Pareto (heavy-tailed); `tier` and
 * `sessionAge` are irrelevant features. A `drift` block replaces parts of the truth from outcome `at` on.
 */
export interface AgentTruth {
  readonly base: number;
  readonly perMessage?: number;
  readonly perDocToken?: number;
  readonly task?: Readonly<Record<string, number>>;
  readonly weight: number;
  readonly weightByTask?: Readonly<Record<string, number>>;
}

export interface World {
  readonly name: string;
  readonly description: string;
  readonly totalTokens: number;
  readonly curve: 'exp' | 'hill';
  readonly noise: number;
  readonly agents: readonly { readonly name: string; readonly minTokens: number; readonly maxTokens: number }[];
  readonly tasks: Readonly<Record<string, number>>;
  readonly messages: { readonly min: number; readonly max: number };
  readonly documents: { readonly xm: number; readonly alpha: number; readonly cap: number; readonly pNone: number };
  readonly truth: Readonly<Record<string, AgentTruth>>;
  readonly drift?: { readonly at: number; readonly truth: Readonly<Record<string, AgentTruth>> } | undefined;
}

export interface SimContext {
  readonly taskType: string;
  readonly messageCount: number;
  readonly documentTokens: number;
  readonly tier: string;
  readonly sessionAge: number;
}

export const WORLDS_DIR = fileURLToPath(new URL('../../../experiments/worlds/', import.meta.url));
export const WORLD_NAMES = ['support-basic', 'doc-heavy', 'drift', 'generous-caps', 'uneven-needs'] as const;

const Num = Type.Number();
const NonNeg = Type.Number({ minimum: 0 });
const Multipliers = Type.Record(Type.String(), NonNeg);
const AgentTruthSchema = Type.Object({
  base: NonNeg,
  perMessage: Type.Optional(NonNeg),
  perDocToken: Type.Optional(NonNeg),
  task: Type.Optional(Multipliers),
  weight: Type.Number({ minimum: 0, maximum: 1 }),
  weightByTask: Type.Optional(Type.Record(Type.String(), Type.Number({ minimum: 0, maximum: 1 }))),
});
/** A world document's shape (checked when a world file is loaded: a user's file names its wrong field, not a TypeError later). */
const WorldSchema = Type.Object({
  name: Type.String({ minLength: 1 }),
  description: Type.String(),
  totalTokens: Type.Integer({ minimum: 1 }),
  curve: Type.Union([Type.Literal('exp'), Type.Literal('hill')]),
  noise: NonNeg,
  agents: Type.Array(Type.Object({ name: Type.String({ minLength: 1 }), minTokens: Type.Integer({ minimum: 0 }), maxTokens: Type.Integer({ minimum: 1 }) }), { minItems: 1 }),
  tasks: Type.Record(Type.String(), NonNeg, { minProperties: 1 }),
  messages: Type.Object({ min: Type.Integer({ minimum: 0 }), max: Type.Integer({ minimum: 0 }) }),
  documents: Type.Object({ xm: Type.Number({ exclusiveMinimum: 0 }), alpha: Type.Number({ exclusiveMinimum: 0 }), cap: NonNeg, pNone: Type.Number({ minimum: 0, maximum: 1 }) }),
  truth: Type.Record(Type.String(), AgentTruthSchema),
  drift: Type.Optional(Type.Object({ at: Num, truth: Type.Record(Type.String(), AgentTruthSchema) })),
});

/**
 * A world by name (experiments/worlds/) or from a JSON file. A file that is not a world is refused with an error
 * naming the file and the first wrong field (its path in the document), before anything is simulated.
 */
export function loadWorld(nameOrPath: string): World {
  const file = nameOrPath.endsWith('.json') ? nameOrPath : `${WORLDS_DIR}${nameOrPath}.json`;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`world ${file}: ${e instanceof SyntaxError ? 'not JSON' : 'cannot be read'} (${(e as Error).message})`);
  }
  const err = Value.Errors(WorldSchema, raw).First();
  if (err) throw new Error(`world ${file}: ${err.path || '/'} ${err.message}`);
  const world = raw as World;
  const missing = world.agents.find((a) => world.truth[a.name] === undefined);
  if (missing) throw new Error(`world ${file}: /truth has no entry for agent "${missing.name}" (every agent needs its truth)`);
  if (world.messages.min > world.messages.max) throw new Error(`world ${file}: /messages/min (${world.messages.min}) is above /messages/max (${world.messages.max})`);
  return world;
}

/** Phase 0 before the drift point, 1 after it. */
export function phaseAt(world: World, outcomes: number): 0 | 1 {
  return world.drift && outcomes >= world.drift.at ? 1 : 0;
}

const TIERS = ['free', 'pro', 'team'];

export function sampleContext(world: World, rng: () => number): SimContext {
  let u = rng();
  let taskType = Object.keys(world.tasks)[0]!;
  for (const [t, p] of Object.entries(world.tasks)) {
    if (u < p) {
      taskType = t;
      break;
    }
    u -= p;
  }
  const { min, max } = world.messages;
  const messageCount = min + Math.floor(rng() * (max - min + 1));
  const d = world.documents;
  const documentTokens = rng() < d.pNone ? 0 : Math.min(d.cap, Math.round(d.xm / Math.pow(Math.max(rng(), 1e-9), 1 / d.alpha)));
  return { taskType, messageCount, documentTokens, tier: TIERS[Math.floor(rng() * TIERS.length)]!, sessionAge: Math.round(-Math.log(Math.max(rng(), 1e-9)) * 600) };
}

/** Ground-truth need and weight per agent (pipeline order) for a context and phase. */
export function truthOf(world: World, phase: 0 | 1, x: SimContext): { need: number[]; weight: number[] } {
  const need: number[] = [];
  const weight: number[] = [];
  for (const a of world.agents) {
    const t = (phase === 1 ? world.drift?.truth[a.name] : undefined) ?? world.truth[a.name]!;
    let n = t.base + (t.perMessage ?? 0) * x.messageCount + (t.perDocToken ?? 0) * x.documentTokens;
    n *= t.task?.[x.taskType] ?? 1;
    need.push(Math.max(1, n));
    weight.push(t.weightByTask?.[x.taskType] ?? t.weight);
  }
  return { need, weight };
}

export function expectedQuality(world: World, phase: 0 | 1, x: SimContext, budgets: readonly number[]): number {
  const { need, weight } = truthOf(world, phase, x);
  let q = 1;
  for (let i = 0; i < need.length; i++) {
    const b = budgets[i]!;
    q *= world.curve === 'exp' ? 1 - weight[i]! * Math.exp(-b / need[i]!) : 1 - (weight[i]! * need[i]!) / (b + need[i]!);
  }
  return q;
}

export interface SimOutcome {
  readonly quality: number;
  readonly usage: Record<string, { inputTokens: number; outputTokens: number; truncated: boolean }>;
}

/** One noisy outcome. Agents consume up to 1.3 × their need; truncated when the budget is below the need. */
export function simulateOutcome(world: World, phase: 0 | 1, x: SimContext, budgets: readonly number[], rng: () => number): SimOutcome {
  const q = expectedQuality(world, phase, x, budgets) + world.noise * normal(rng);
  const { need } = truthOf(world, phase, x);
  const usage: SimOutcome['usage'] = {};
  world.agents.forEach((a, i) => {
    const used = Math.min(budgets[i]!, Math.round(need[i]! * 1.3));
    usage[a.name] = { inputTokens: Math.round(used * 0.7), outputTokens: used - Math.round(used * 0.7), truncated: budgets[i]! < need[i]! };
  });
  return { quality: Math.min(1, Math.max(0, q)), usage };
}

const clamp = (v: number, lo: number, hi: number) => (v < lo ? lo : v > hi ? hi : v);

/** The oracle: the real-valued split maximising expected quality (exact, by KKT bisection). */
export function oracleBudgets(world: World, phase: 0 | 1, x: SimContext, total: number): number[] {
  const { need, weight } = truthOf(world, phase, x);
  const mins = world.agents.map((a) => a.minTokens);
  const caps = world.agents.map((a) => a.maxTokens);
  const target = Math.min(total, caps.reduce((s, v) => s + v, 0));
  // b_i(μ): where the derivative of log c_i equals μ.
  const at = (mu: number) =>
    need.map((N, i) => {
      const w = weight[i]!;
      let b: number;
      if (world.curve === 'exp') b = N * Math.log(w * (1 + 1 / (mu * N)));
      else {
        const A = N * (1 - w);
        const d = N - A;
        b = (-(A + N) + Math.sqrt(d * d + (4 * d) / mu)) / 2;
      }
      return clamp(Number.isFinite(b) ? b : 0, mins[i]!, caps[i]!);
    });
  let lo = -40;
  let hi = 10;
  for (let it = 0; it < 80; it++) {
    const mid = (lo + hi) / 2;
    if (at(Math.exp(mid)).reduce((s, v) => s + v, 0) > target) lo = mid;
    else hi = mid;
  }
  const b = at(Math.exp(hi));
  const rest = target - b.reduce((s, v) => s + v, 0);
  if (rest > 1e-6) {
    const room = b.map((v, i) => caps[i]! - v);
    const roomSum = room.reduce((s, v) => s + v, 0);
    return b.map((v, i) => v + (rest * room[i]!) / roomSum);
  }
  return b;
}

/** A fixed split (shares, normalised) fitted to the agents' bounds exactly as the static strategy does. */
export function staticBudgets(world: World, shares: readonly number[], total: number): number[] {
  return waterFill(world.agents.map((a, i) => ({ min: a.minTokens, cap: a.maxTokens, weight: shares[i]! })), total);
}

export function uniformBudgets(world: World, total: number): number[] {
  return staticBudgets(world, world.agents.map(() => 1), total);
}

/**
 * The best static split for a phase: the shares maximising mean expected quality over `contexts`, by
 * pairwise share transfers with a shrinking step, started from the oracle's mean shares.
 */
export function bestStaticShares(world: World, phase: 0 | 1, contexts: readonly SimContext[], total: number): number[] {
  const n = world.agents.length;
  const value = (s: readonly number[]) => {
    let v = 0;
    for (const x of contexts) v += expectedQuality(world, phase, x, staticBudgets(world, s, total));
    return v / contexts.length;
  };
  let shares = new Array<number>(n).fill(0);
  for (const x of contexts) oracleBudgets(world, phase, x, total).forEach((b, i) => (shares[i]! += b / total / contexts.length));
  return polishShares(shares, value, n);
}

/** The pipeline a world runs on (PUT /v1/pipelines/:id body). */
export function worldPipeline(world: World): { defaultTotalTokens: number; agents: { name: string; minTokens: number; maxTokens: number }[] } {
  return { defaultTotalTokens: world.totalTokens, agents: world.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens })) };
}

/** The feature declaration the simulator uses (the irrelevant features are declared too, on purpose). */
export function worldFeatures(world: World): FeaturesBody {
  return {
    features: [
      { name: 'taskType', type: 'categorical', values: Object.keys(world.tasks) },
      { name: 'messageCount', type: 'numeric', transform: 'log', mean: 2.5, std: 1 },
      { name: 'document', type: 'tokens', mean: 6, std: 2.5 },
      { name: 'tier', type: 'categorical', values: TIERS },
      { name: 'sessionAge', type: 'numeric', transform: 'log', mean: 6, std: 1.5 },
    ],
  };
}

/** Request features for the API (documentTokens stands for a documentText the service would tokenize). */
export function contextFeatures(x: SimContext): Record<string, string | number> {
  return { taskType: x.taskType, messageCount: x.messageCount, documentTokens: x.documentTokens, tier: x.tier, sessionAge: x.sessionAge };
}

/**
 * Pairwise-transfer hill climb on static shares (pure): moves `step` of share from one agent to another while
 * that raises `value`, halving the step from 0.08 down to 0.002. Returns the best shares found from `start`.
 */
export function polishShares(start: number[], value: (shares: number[]) => number, n = start.length): number[] {
  let shares = start;
  let best = value(shares);
  for (let step = 0.08; step > 0.002; step /= 2) {
    let improved = true;
    while (improved) {
      improved = false;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          if (i === j || shares[j]! < step) continue;
          const s = shares.slice();
          s[i]! += step;
          s[j]! -= step;
          const v = value(s);
          if (v > best + 1e-12) {
            best = v;
            shares = s;
            improved = true;
          }
        }
      }
    }
  }
  return shares;
}
