/**
 * Is the reward model's misfit the model class or the data it sees? Per generated world, the greedy split ÷ oracle
 * (expected reward on held-out contexts) of the model fitted three ways, each from fresh weights with many gradient
 * steps: (a) the version serving at the end of a loop run (what bench/learner measures); (b) refitted on that run's
 * newest logged decisions (the same data, long training: the optimiser's share); (c) fitted on as many decisions
 * whose splits are drawn at random over the simplex (broad support: what the model class can represent); and
 * (d) fitted on (b)'s data with every feature set to 0: a context-free fit, i.e. a static split learned from the log.
 *
 *   node --import tsx bench/learner-capacity.ts [--seeds 3,5,7,11] [--rows 8000] [--steps 1000] [--contexts 150] [--global-head on] [--wide off]
 *     [--loop off] [--ideal on] [--ideal-random 0.5] [--hidden 16] [--l2 1e-5] [--family dev|test [--count 50]]
 *
 * `--wide off` skips (c). `--loop off` skips the loop run and so (a), (b) and (d): (c) alone is the model class's
 * reach on broad data, seconds per world. `--ideal on` adds (e): the model fitted on an ideal log, half of it splits at
 * random over the simplex and half the oracle's split with every agent scaled by e^{u}, u uniform in [−0.5, 0.5]
 * (what a learner that explored perfectly around the optimum would have logged): the model class's ceiling.
 * `--ideal-random s` sets the share of random splits in it (default 0.5; 0: the oracle's neighbourhood only).
 * `--hidden n` sets the hidden layer's width for every fit (the service's is DEFAULT_HIDDEN), `--l2` the trainer's L2. `--family test` takes
 * the first `--count` seeds of experiments/family/seeds.json's test list (a diagnostic of the ceiling; choose nothing
 * by it); `--family dev` dev seeds 1–12.
 *
 * Choose by the dev seeds only (docs/learner.md); `--family test` measures the ceiling on the held-out list as a diagnostic.
 */
import { readFileSync } from 'node:fs';
import { loadTf } from '../src/learner/backend.js';
import { buildTrainingData, type LoggedEvent } from '../src/learner/events.js';
import { compileFeatures, fitScaling } from '../src/learner/features.js';
import { DEFAULT_HIDDEN, forward, initialWeights, predict, type ModelWeights } from '../src/learner/model.js';
import { EXPLORE_DEFAULTS, greedyBudgets } from '../src/learner/policy.js';
import { generateWorld, staticSplit, bestStatic } from '../src/learner/sim/family.js';
import { policyAgents, runLoop } from '../src/learner/sim/loop.js';
import { mulberry32 } from '../src/learner/rng.js';
import { trainModel } from '../src/learner/trainer.js';
import { waterFill } from '../src/strategies/fit.js';
import { flag, rankQuantile as q } from './lib.js';

const family = flag('family', '');
const seeds = family === 'test'
  ? (JSON.parse(readFileSync(new URL('../experiments/family/seeds.json', import.meta.url), 'utf8')) as { test: number[] }).test.slice(0, Number(flag('count', '50')))
  : family === 'dev'
    ? Array.from({ length: 12 }, (_, i) => i + 1)
    : flag('seeds', '3,5,7,11').split(',').map(Number);
const loop = flag('loop', 'on') === 'on';
const ideal = flag('ideal', 'off') === 'on';
const hidden = Number(flag('hidden', String(DEFAULT_HIDDEN)));
const l2 = flag('l2', '');
// The ideal log's share of random splits (the rest near the oracle's split).
const idealRandom = Number(flag('ideal-random', '0.5'));
const rows = Number(flag('rows', '8000'));
const steps = Number(flag('steps', '1000'));
const nCtx = Number(flag('contexts', '150'));
const globalHead = flag('global-head', 'off') === 'on';
const wideFit = flag('wide', 'on') === 'on';
const explore = { explorer: 'squarecb' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5, budget: EXPLORE_DEFAULTS.budget, decayFrom: EXPLORE_DEFAULTS.decayFrom };
const { tf } = await loadTf();
const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
console.log(`bench/learner-capacity: seeds ${seeds.join(',')}; ${rows} rows; ${steps} steps; ${nCtx} held-out contexts; hidden ${hidden}; l2 ${l2 || 'default'}; global head ${globalHead ? 'on' : 'off'}; loop ${loop ? 'on' : 'off'}`);
const rowsOut: { stat: number; uniform: number; c: number; e: number }[] = [];
for (const seed of seeds) {
  const world = generateWorld(seed);
  const names = world.agents.map((a) => a.name);
  const agents = policyAgents(world);
  const T = world.totalTokens;
  const res = loop ? await runLoop(tf, { world, outcomes: 5000, seed, explore, evalContexts: 0, checkpointEvery: 5000, hidden: DEFAULT_HIDDEN, globalHead, halfLife: 1000, window: 8000, train: { epochs: 4 } }) : undefined;
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
    const r = await trainModel(tf, data, initialWeights(enc.dim, names.length, T, mulberry32(seed + 1), hidden, globalHead), { seed, yieldToEventLoop: false, minSteps: steps, maxSteps: steps, ...(l2 ? { l2: Number(l2) } : {}) });
    const g = contextFree ? mean(ctx.map((x) => world.expected(0, x, greedyBudgets(forward(r.weights, new Float32Array(enc.dim)), agents, T)))) / oracle : greedyOf(r.weights, enc);
    // The fit's own view: r̂(its greedy split) − r̂(the oracle's split). Below 0, the greedy split misses the fit's
    // own optimum (the optimiser); above 0 while the truth says otherwise, the fit misjudges.
    const own = contextFree ? NaN : mean(ctx.map((x) => {
      const h = forward(r.weights, enc.encode(world.features(x)));
      return predict(h, greedyBudgets(h, agents, T)) - predict(h, world.oracle(0, x, T));
    }));
    return { g, mse: r.metrics.holdoutMse, v: r.metrics.holdoutVariance, own };
  };
  const uniform = mean(ctx.map((x) => world.expected(0, x, staticSplit(world, world.agents.map(() => 1 / names.length), T)))) / oracle;
  // Broad support: shares drawn uniformly over the simplex (Dirichlet(1)), fitted to the agents' bounds; with
  // `near`, the oracle's split with every agent scaled by e^{u}, u ~ U[−0.5, 0.5] (its neighbourhood).
  const logOf = (salt: number, near: (t: number) => boolean) => {
    const brng = mulberry32(seed ^ salt);
    const out: LoggedEvent[] = [];
    for (let t = 0; t < rows; t++) {
      const x = world.sample(brng);
      const o = near(t) ? world.oracle(0, x, T) : undefined;
      const e = o ? o.map((b) => Math.max(b, 1) * Math.exp(brng() - 0.5)) : names.map(() => -Math.log(Math.max(brng(), 1e-12)));
      const b = waterFill(agents.map((a, i) => ({ min: a.min, cap: a.cap, weight: e[i]! })), T);
      const res = world.outcome(0, x, b, brng);
      const bb: Record<string, number> = {};
      names.forEach((a, i) => (bb[a] = b[i]!));
      out.push({ id: String(t), t, s: 'learned', f: world.features(x), T, b: bb, q: res.quality, c: res.cost });
    }
    return out;
  };
  const wide = wideFit ? await fit(logOf(0xb40ad, () => false)) : { g: NaN, mse: NaN, v: NaN, own: NaN };
  const best = ideal ? await fit(logOf(0x1dea1, (t) => Math.floor((t + 1) * (1 - idealRandom)) > Math.floor(t * (1 - idealRandom)))) : { g: NaN, mse: NaN, v: NaN, own: NaN };
  rowsOut.push({ stat: stat / oracle, uniform, c: wide.g, e: best.g });
  const tailC = `(c) random splits, ${steps} steps ${wide.g.toFixed(3)} (MSE ${wide.mse.toFixed(4)} of ${wide.v.toFixed(4)})${ideal ? `  (e) ideal log ${best.g.toFixed(3)} (MSE ${best.mse.toFixed(4)} of ${best.v.toFixed(4)}; r̂(greedy) − r̂(oracle) ${best.own.toFixed(4)})` : ''}`;
  if (!res) {
    console.log(`${world.name.padEnd(7)} static ${(stat / oracle).toFixed(3)} uniform ${uniform.toFixed(3)}  greedy ÷ oracle: ${tailC}  | ${world.summary}`);
    continue;
  }
  const served = res.serving ? greedyOf(res.serving.weights, res.serving.encoder) : NaN;
  const logged = await fit(res.events);
  const free = await fit(res.events, true);
  console.log(`${world.name.padEnd(7)} (d) context-free fit of the logged data: ${free.g.toFixed(3)} (MSE ${free.mse.toFixed(4)} of ${free.v.toFixed(4)}); uniform ${uniform.toFixed(3)}`);
  console.log(`${world.name.padEnd(7)} static ${(stat / oracle).toFixed(3)}  greedy ÷ oracle: (a) serving ${served.toFixed(3)}  (b) logged data, ${steps} steps ${logged.g.toFixed(3)} (held-out MSE ${logged.mse.toFixed(4)} of variance ${logged.v.toFixed(4)})  ${tailC}  | ${world.summary}`);
}
const summary = (name: string, xs: number[]) => console.log(`  ${name.padEnd(28)} median ${q(xs, 0.5).toFixed(3)}  p10 ${q(xs, 0.1).toFixed(3)}  min ${q(xs, 0).toFixed(3)}`);
console.log(`summary over ${rowsOut.length} worlds (greedy ÷ oracle on held-out contexts):`);
summary('best static', rowsOut.map((r) => r.stat));
summary('uniform', rowsOut.map((r) => r.uniform));
if (wideFit) summary('(c) random splits', rowsOut.map((r) => r.c));
if (ideal) summary('(e) ideal log', rowsOut.map((r) => r.e));
if (ideal) console.log(`  (e) below 0.97 on ${rowsOut.filter((r) => r.e < 0.97).length} of ${rowsOut.length}; below the best static split on ${rowsOut.filter((r) => r.e < r.stat).length}`);
