/**
 * Is the reward model's misfit the model class or the data it sees? Per generated world, the greedy split ÷ oracle
 * (expected reward on held-out contexts) of the model fitted three ways, each from fresh weights with many gradient
 * steps: (a) the version serving at the end of a loop run (what bench/learner measures); (b) refitted on that run's
 * newest logged decisions (the same data, long training: the optimiser's share); (c) fitted on as many decisions
 * whose splits are drawn at random over the simplex (broad support: what the model class can represent); and
 * (d) fitted on (b)'s data with every feature set to 0: a context-free fit, i.e. a static split learned from the log.
 *
 *   node --import tsx bench/learner-capacity.ts [--seeds 3,5,7,11] [--rows 8000] [--steps 1000] [--contexts 150] [--global-head on] [--wide off]
 *
 * `--wide off` skips (c).
 *
 * Dev seeds only (docs/learner.md).
 */
import { loadTf } from '../src/learner/backend.js';
import { buildTrainingData, type LoggedEvent } from '../src/learner/events.js';
import { compileFeatures, fitScaling } from '../src/learner/features.js';
import { DEFAULT_HIDDEN, forward, initialWeights, type ModelWeights } from '../src/learner/model.js';
import { EXPLORE_DEFAULTS, greedyBudgets } from '../src/learner/policy.js';
import { generateWorld, staticSplit, bestStatic } from '../src/learner/sim/family.js';
import { policyAgents, runLoop } from '../src/learner/sim/loop.js';
import { mulberry32 } from '../src/learner/rng.js';
import { trainModel } from '../src/learner/trainer.js';
import { waterFill } from '../src/strategies/fit.js';
import { flag } from './lib.js';

const seeds = flag('seeds', '3,5,7,11').split(',').map(Number);
const rows = Number(flag('rows', '8000'));
const steps = Number(flag('steps', '1000'));
const nCtx = Number(flag('contexts', '150'));
const globalHead = flag('global-head', 'off') === 'on';
const wideFit = flag('wide', 'on') === 'on';
const explore = { explorer: 'squarecb' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5, budget: EXPLORE_DEFAULTS.budget, decayFrom: EXPLORE_DEFAULTS.decayFrom };
const { tf } = await loadTf();
const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
console.log(`bench/learner-capacity: seeds ${seeds.join(',')}; ${rows} rows; ${steps} steps; ${nCtx} held-out contexts; global head ${globalHead ? 'on' : 'off'}`);
for (const seed of seeds) {
  const world = generateWorld(seed);
  const names = world.agents.map((a) => a.name);
  const agents = policyAgents(world);
  const T = world.totalTokens;
  const res = await runLoop(tf, { world, outcomes: 5000, seed, explore, evalContexts: 0, checkpointEvery: 5000, hidden: DEFAULT_HIDDEN, globalHead, halfLife: 1000, window: 8000, train: { epochs: 4 } });
  const erng = mulberry32(seed ^ 0x5eed);
  const ctx = Array.from({ length: nCtx }, () => world.sample(erng));
  const oracle = mean(ctx.map((x) => world.expected(0, x, world.oracle(0, x, T))));
  const st = staticSplit(world, bestStatic(world, 0, ctx.slice(0, 100), T), T);
  const stat = mean(ctx.map((x) => world.expected(0, x, st)));
  const greedyOf = (w: ModelWeights, enc: ReturnType<typeof compileFeatures>) => mean(ctx.map((x) => world.expected(0, x, greedyBudgets(forward(w, enc.encode(world.features(x))), agents, T)))) / oracle;
  const fit = async (events: readonly LoggedEvent[], contextFree = false) => {
    const recent = events.slice(-rows).reverse();
    const enc = compileFeatures(world.declaration.features, fitScaling(world.declaration.features, recent.map((e) => e.f)));
    // No recency weighting: every row counts (half-life longer than the data).
    const data = buildTrainingData(recent, enc, names, { costWeight: world.costWeight, halfLife: 1e9 });
    // Context-free: every request looks the same to the model (one split per total: a learned static split).
    if (contextFree) data.x.fill(0);
    const r = await trainModel(tf, data, initialWeights(enc.dim, names.length, T, mulberry32(seed + 1), DEFAULT_HIDDEN, globalHead), { seed, yieldToEventLoop: false, minSteps: steps, maxSteps: steps });
    const g = contextFree ? mean(ctx.map((x) => world.expected(0, x, greedyBudgets(forward(r.weights, new Float32Array(enc.dim)), agents, T)))) / oracle : greedyOf(r.weights, enc);
    return { g, mse: r.metrics.holdoutMse, v: r.metrics.holdoutVariance };
  };
  const served = res.serving ? greedyOf(res.serving.weights, res.serving.encoder) : NaN;
  const logged = await fit(res.events);
  // Broad support: shares drawn uniformly over the simplex (Dirichlet(1)), fitted to the agents' bounds.
  const brng = mulberry32(seed ^ 0xb40ad);
  const broad: LoggedEvent[] = [];
  for (let t = 0; t < rows; t++) {
    const x = world.sample(brng);
    const e = names.map(() => -Math.log(Math.max(brng(), 1e-12)));
    const b = waterFill(agents.map((a, i) => ({ min: a.min, cap: a.cap, weight: e[i]! })), T);
    const out = world.outcome(0, x, b, brng);
    const bb: Record<string, number> = {};
    names.forEach((a, i) => (bb[a] = b[i]!));
    broad.push({ id: String(t), t, s: 'learned', f: world.features(x), T, b: bb, q: out.quality, c: out.cost });
  }
  const free = await fit(res.events, true);
  console.log(`${world.name.padEnd(7)} (d) context-free fit of the logged data: ${free.g.toFixed(3)} (MSE ${free.mse.toFixed(4)} of ${free.v.toFixed(4)}); uniform ${(mean(ctx.map((x) => world.expected(0, x, staticSplit(world, world.agents.map(() => 1 / names.length), T)))) / oracle).toFixed(3)}`);
  const wide = wideFit ? await fit(broad) : { g: NaN, mse: NaN, v: NaN };
  console.log(`${world.name.padEnd(7)} static ${(stat / oracle).toFixed(3)}  greedy ÷ oracle: (a) serving ${served.toFixed(3)}  (b) logged data, ${steps} steps ${logged.g.toFixed(3)} (held-out MSE ${logged.mse.toFixed(4)} of variance ${logged.v.toFixed(4)})  (c) random splits, ${steps} steps ${wide.g.toFixed(3)} (MSE ${wide.mse.toFixed(4)} of ${wide.v.toFixed(4)})  | ${world.summary}`);
}
