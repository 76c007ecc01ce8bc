import { blendedRate } from '@apportion/sdk/engine';
import { catalogPrice } from '../../pipelines/tiers.js';
import { mulberry32 } from '../rng.js';
import { tierWorld, type TierWorld, type TierWorldDoc } from './tiers.js';
import { sampleContext, truthOf, type AgentTruth, type World } from './world.js';

/**
 * A generated family of tier worlds (pure; deterministic per seed), as family.ts generates token worlds. A seed
 * gives a tier world document (sim/tiers.ts reads it as it reads the named ones):
 *
 * - 2–6 agents and one provider's line of 2 or 3 real models, strongest (dearest) first, priced by the price table
 *   the engine uses (`catalogPrice`, blended). Every agent declares the same models; 3 models only with at most
 *   3 agents, so that every world has at most 64 model assignments and the learned strategy chooses models
 *   jointly on it (`MAX_JOINT_ASSIGNMENTS`).
 * - Per agent a need and a weight that depend on the request (world.ts truth: a base, per message, per document
 *   token, per task category multipliers) and a weight per task (the critical path changes with the task).
 * - Per agent a role: `cheap` (a cheaper model with more tokens does the job: reach 0.9–1 on the cheapest, paces
 *   1.1–1.8) or `strong` (the strong model is needed: reach 0.2–0.6 on the cheapest). Every world has at least one
 *   of each; strong agents weigh more (critical), cheap ones less (peripheral). A middle model sits between.
 * - A cost ceiling of 0.25–1.2× what the mean needs cost on the strongest model (so models and tokens trade off),
 *   a token total of 1.5–5× the mean needs, and for about a third of the seeds a cost weight λ (reward =
 *   quality − λ·cost) such that spending the whole ceiling costs 0.03–0.15 of quality.
 */
export interface TierFamilyWorld {
  readonly seed: number;
  readonly doc: TierWorldDoc;
  readonly world: TierWorld;
  /** Per agent (pipeline order). */
  readonly roles: readonly ('cheap' | 'strong')[];
}

/** Provider lines (strongest first); a 2-model world keeps the first and one cheaper model. */
export const MODEL_LINES: readonly (readonly string[])[] = [
  ['claude-opus-4-1', 'claude-sonnet-4-5', 'claude-haiku-4-5'],
  ['gpt-5', 'gpt-5-mini', 'gpt-5-nano'],
  ['gpt-4.1', 'gpt-4.1-mini', 'gpt-4.1-nano'],
  ['gemini-2.5-pro', 'gemini-2.5-flash', 'gemini-2.5-flash-lite'],
];

const TASKS = ['qa', 'code', 'summarize', 'extract'];
const PRICED_AT = Date.UTC(2026, 0, 1);

const logUniform = (rng: () => number, lo: number, hi: number) => Math.exp(Math.log(lo) + rng() * (Math.log(hi) - Math.log(lo)));
const uniform = (rng: () => number, lo: number, hi: number) => lo + rng() * (hi - lo);
const round = (v: number, d = 3) => Number(v.toFixed(d));

/** The tier world document of a seed (deterministic). */
export function generateTierDoc(seed: number): { doc: TierWorldDoc; roles: ('cheap' | 'strong')[] } {
  const rng = mulberry32((seed * 2246822519 + 0x27d4eb2f) >>> 0);
  const n = 2 + Math.floor(rng() * 5);
  const line = MODEL_LINES[Math.floor(rng() * MODEL_LINES.length)]!;
  const three = n <= 3 && rng() < 0.6;
  const models = three ? line.slice() : [line[0]!, line[1 + Math.floor(rng() * 2)]!];
  const rates = models.map((m) => blendedRate(catalogPrice(m, undefined, PRICED_AT)!));
  // Roles: at least one of each.
  const roles: ('cheap' | 'strong')[] = Array.from({ length: n }, () => (rng() < 0.5 ? 'cheap' : 'strong'));
  const forced = Math.floor(rng() * n);
  let other = Math.floor(rng() * (n - 1));
  if (other >= forced) other++;
  roles[forced] = 'strong';
  roles[other] = 'cheap';
  const nTasks = 2 + Math.floor(rng() * 3);
  const taskNames = TASKS.slice(0, nTasks);
  const rawP = taskNames.map(() => 0.4 + rng());
  const sumP = rawP.reduce((s, v) => s + v, 0);
  const tasks = Object.fromEntries(taskNames.map((t, k) => [t, round(rawP[k]! / sumP, 4)]));
  const scale = Math.min(1, Math.sqrt(3 / n));
  const agents: World['agents'][number][] = [];
  const truth: Record<string, AgentTruth> = {};
  const response: Record<string, Record<string, { reach: number; pace: number }>> = {};
  roles.forEach((role, i) => {
    const name = `agent${i}`;
    const minTokens = Math.round(uniform(rng, 80, 300));
    agents.push({ name, minTokens, maxTokens: rng() < 0.3 ? Math.round(uniform(rng, 8000, 20000)) : 32000 });
    const weight = round(scale * (role === 'strong' ? uniform(rng, 0.5, 0.85) : uniform(rng, 0.2, 0.5)));
    const task: Record<string, number> = {};
    const weightByTask: Record<string, number> = {};
    for (const t of taskNames) {
      if (rng() < 0.6) task[t] = round(logUniform(rng, 0.4, 2.5));
      // The critical path moves with the task: this agent matters more, or much less, for some categories.
      if (rng() < 0.5) weightByTask[t] = round(Math.min(0.95, weight * logUniform(rng, 0.3, 1.7)));
    }
    truth[name] = {
      base: Math.round(logUniform(rng, 300, 2500)),
      ...(rng() < 0.5 ? { perMessage: round(uniform(rng, 5, 40), 1) } : {}),
      ...(rng() < 0.4 ? { perDocToken: round(uniform(rng, 0.05, 0.25)) } : {}),
      ...(Object.keys(task).length ? { task } : {}),
      weight,
      ...(Object.keys(weightByTask).length ? { weightByTask } : {}),
    };
    const r: Record<string, { reach: number; pace: number }> = {};
    const last = models.length - 1;
    const cheapest = role === 'cheap' ? { reach: round(uniform(rng, 0.9, 1)), pace: round(uniform(rng, 1.1, 1.8)) } : { reach: round(uniform(rng, 0.2, 0.6)), pace: round(uniform(rng, 1.2, 2)) };
    r[models[last]!] = cheapest;
    if (last === 2) {
      // The middle model: between the strongest (reach 1, pace 1) and the cheapest.
      const mix = uniform(rng, 0.3, 0.7);
      r[models[1]!] = { reach: round(1 - mix * (1 - cheapest.reach)), pace: round(1 + mix * (cheapest.pace - 1)) };
    }
    response[name] = r;
  });
  const world: World = {
    name: `tier-family-${seed}`,
    description: 'generated tier world',
    totalTokens: 200000,
    curve: 'exp',
    noise: round(uniform(rng, 0.03, 0.08)),
    agents,
    tasks,
    messages: { min: 1, max: 10 + Math.floor(rng() * 30) },
    documents: { xm: 400, alpha: round(uniform(rng, 1.1, 1.8)), cap: 30000, pNone: round(uniform(rng, 0.1, 0.5)) },
    truth,
  };
  // Mean needs (on the strongest model) over sampled requests: the ceiling and the total are set relative to them.
  const sr = mulberry32(seed + 101);
  let needSum = 0;
  const S = 400;
  for (let k = 0; k < S; k++) needSum += truthOf(world, 0, sampleContext(world, sr)).need.reduce((s, v) => s + v, 0) / S;
  const minSum = agents.reduce((s, a) => s + a.minTokens, 0);
  const totalTokens = Math.max(minSum * 2, Math.round(needSum * uniform(rng, 1.5, 5)));
  const maxCostUsd = round(Math.max(minSum * rates[0]! * 1.5, needSum * rates[0]! * logUniform(rng, 0.25, 1.2)), 6);
  const costWeight = rng() < 0.35 ? round(uniform(rng, 0.03, 0.15) / maxCostUsd, 3) : 0;
  const doc: TierWorldDoc = {
    name: `tier-family-${seed}`,
    description: `generated tier world (seed ${seed}): ${n} agents (${roles.join(', ')}), models ${models.join(' > ')}`,
    maxCostUsd,
    world: { ...world, totalTokens },
    models,
    response,
    ...(costWeight > 0 ? { costWeight } : {}),
  };
  return { doc, roles };
}

/** The tier world of a seed. */
export function generateTierWorld(seed: number): TierFamilyWorld {
  const { doc, roles } = generateTierDoc(seed);
  return { seed, doc, world: tierWorld(doc), roles };
}
