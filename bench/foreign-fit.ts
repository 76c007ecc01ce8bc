/**
 * Where the reward model goes wrong on a world outside its class (docs/learner.md, "Worlds outside the model's class:
 * the defaults and explore-first"): runs the in-process loop (sim/loop.ts, bench/learner's defaults) on one foreign
 * world, then, per request kind, prints the mean shares and the true value of the oracle's split, the serving
 * version's greedy split, the best static split and uniform on 200 held-out requests, each beside the value the
 * serving version predicts for it.
 *
 *   node --import tsx bench/foreign-fit.ts [--index 15] [--outcomes 5000]   (--index: entry of experiments/family/foreign-seeds.json)
 */
import { loadTf } from '../src/learner/backend.js';
import { forward, predict } from '../src/learner/model.js';
import { EXPLORE_DEFAULTS, greedyBudgets } from '../src/learner/policy.js';
import { mulberry32 } from '../src/learner/rng.js';
import { bestStatic, staticSplit, uniformSplitOf } from '../src/learner/sim/family.js';
import type { ForeignContext } from '../src/learner/sim/foreign.js';
import { policyAgents, runLoop } from '../src/learner/sim/loop.js';
import { flag, foreignWorlds } from './lib.js';

const index = Number(flag('index', '15'));
const outcomes = Number(flag('outcomes', '5000'));
const { seed, world } = foreignWorlds([index])[0]!;
console.log(`${world.name}: ${world.summary}`);
const { tf } = await loadTf();
const res = await runLoop(tf, { world, outcomes, seed, explore: { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, ...EXPLORE_DEFAULTS }, evalContexts: 0, checkpointEvery: outcomes });
const model = res.serving;
if (!model) {
  console.log('no version serves at the end');
  process.exit(0);
}
const rng = mulberry32(9);
const contexts = Array.from({ length: 200 }, () => world.sample(rng));
const T = world.totalTokens;
const agents = policyAgents(world);
const st = staticSplit(world, bestStatic(world, 0, contexts, T), T);
const uni = uniformSplitOf(world, T);
const heads = (c: ForeignContext) => forward(model.weights, model.encoder.encode(world.features(c)));
const greedy = (c: ForeignContext) => greedyBudgets(heads(c), agents, T);
const splits: [string, (c: ForeignContext) => readonly number[]][] = [
  ['oracle', (c) => world.oracle(0, c, T)],
  ['greedy', greedy],
  ['best static', () => st],
  ['uniform', () => uni],
];
for (let k = 0; k < world.spec.kinds; k++) {
  const sub = contexts.filter((c) => c.kind === k);
  console.log(`kind${k} (${sub.length} requests): mean shares | true value | predicted`);
  for (const [name, f] of splits) {
    const shares = new Array<number>(world.agents.length).fill(0);
    let truth = 0;
    let pred = 0;
    for (const c of sub) {
      const b = f(c);
      b.forEach((v, i) => (shares[i]! += v / T / sub.length));
      truth += world.expected(0, c, b) / sub.length;
      pred += predict(heads(c), b) / sub.length;
    }
    console.log(`  ${name.padEnd(11)} ${shares.map((s) => s.toFixed(2)).join(' ')} | ${truth.toFixed(3)} | ${pred.toFixed(3)}`);
  }
}
