/**
 * Where the reward model is wrong: for the version serving at the end of a loop run (sim/loop.ts, the same loop and
 * defaults as bench/learner.ts), its predicted reward r̂ against the world's expected reward on held-out contexts,
 * for four splits per context: the oracle's, the model's greedy split, uniform and the best static split.
 *
 *   node --import tsx bench/learner-fit.ts [--seeds dev|<n,n,…>] [--outcomes 5000] [--contexts 300] [--global-head on|off]
 *
 * Per world it prints, per split, the mean truth and prediction; the model's view of the ranking (r̂(greedy) −
 * r̂(oracle), r̂(greedy) − r̂(static), against the truth of the same differences: a model that fits must not rate
 * its greedy split above the oracle's by much when the truth rates it below); the correlation of the residual on
 * the oracle split with each numeric feature (a split-independent level the model does not explain); per agent,
 * the greedy share minus the oracle share and the predicted against true loss of halving the agent's oracle
 * budget (which agents the model misjudges); and per task the greedy split's truth ÷ oracle (which contexts).
 * Tuning on dev seeds only (docs/learner.md).
 */
import { readFileSync } from 'node:fs';
import { loadTf } from '../src/learner/backend.js';
import { DEFAULT_HIDDEN } from '../src/learner/model.js';
import { EXPLORE_DEFAULTS } from '../src/learner/policy.js';
import { generateWorld, phaseOf } from '../src/learner/sim/family.js';
import { runLoop } from '../src/learner/sim/loop.js';
import { fitReport } from './_fit-lib.js';
import { flag } from './lib.js';

const seedsFile = JSON.parse(readFileSync(new URL('../experiments/family/seeds.json', import.meta.url), 'utf8')) as { test: number[]; dev: number[] };
const seedArg = flag('seeds', 'dev');
const seeds = seedArg === 'dev' ? seedsFile.dev : seedArg.split(',').map(Number);
const outcomes = Number(flag('outcomes', '5000'));
const nCtx = Number(flag('contexts', '300'));
const globalHead = flag('global-head', 'off') === 'on';
const explore = { explorer: 'squarecb' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5, budget: EXPLORE_DEFAULTS.budget, decayFrom: EXPLORE_DEFAULTS.decayFrom };
const { tf } = await loadTf();
console.log(`bench/learner-fit: seeds ${seeds.join(',')}; ${outcomes} outcomes; ${nCtx} held-out contexts; global head ${globalHead ? 'on' : 'off'}`);

const summary: string[] = [];
for (const seed of seeds) {
  // Drift worlds as bench/learner runs the dev list (every 4th); the model is judged in the phase it ends in.
  const drift = seedArg === 'dev' && seeds.indexOf(seed) % 4 === 3;
  const N = drift ? 9500 : outcomes;
  const world = generateWorld(seed, drift ? { driftAt: 4500 } : {});
  const res = await runLoop(tf, { world, outcomes: N, seed, explore, evalContexts: 0, checkpointEvery: N, hidden: DEFAULT_HIDDEN, globalHead, halfLife: 1000, window: 8000, train: { epochs: 4 } });
  summary.push(fitReport(world, res.serving, phaseOf(world, N - 1), seed, nCtx));
}
console.log(`\nsummary (global head ${globalHead ? 'on' : 'off'}):\n${summary.join('\n')}`);
