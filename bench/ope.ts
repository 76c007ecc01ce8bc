/**
 * Off-policy evaluation coverage: how often the 95 % bootstrap CI of IPS, SNIPS and DR contains the
 * target policy's true (on-policy) value, over repeated logging trials with known ground truth.
 *
 *   node --import tsx bench/ope.ts [--trials 100] [--events 2000] [--resamples 200] [--world support-basic]
 *
 * A model is first trained in-process (3,000 outcomes). Logging policy: that model with SquareCB exploration,
 * frozen. Targets: the uniform split (always among the logged candidates) and the model's greedy split. Truth:
 * the target's mean expected quality over 50,000 fresh contexts. Each trial logs `events` decisions with noisy
 * outcomes, runs the same estimator code as GET /v1/pipelines/:id/ope, and checks the intervals.
 */
import { loadTf } from '../src/learner/backend.js';
import type { LoggedEvent } from '../src/learner/events.js';
import { forward, predict } from '../src/learner/model.js';
import { importanceWeight } from '../src/learner/ope-service.js';
import { decide, greedyBudgets } from '../src/learner/policy.js';
import { mulberry32 } from '../src/learner/rng.js';
import { policyAgents, runLoop } from '../src/learner/sim/loop.js';
import { contextFeatures, expectedQuality, loadWorld, sampleContext, simulateOutcome, uniformBudgets } from '../src/learner/sim/world.js';
import { offPolicyReport, type OpeSample } from '../src/stats/ope.js';
import { flag } from './lib.js';

const trials = Number(flag('trials', '100'));
const nEvents = Number(flag('events', '2000'));
const resamples = Number(flag('resamples', '200'));
const world = loadWorld(flag('world', 'support-basic'));

const { tf } = await loadTf();
const t0 = Date.now();
const trained = await runLoop(tf, { world, outcomes: 3000, seed: 11, explore: { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5 }, evalContexts: 200, checkpointEvery: 3000 });
const { weights, encoder } = trained;
const agents = policyAgents(world);
const names = world.agents.map((a) => a.name);
const T = world.totalTokens;
const explore = { explorer: 'squarecb' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5 };

const targets: Record<string, (x: ReturnType<typeof sampleContext>) => number[]> = {
  uniform: () => uniformBudgets(world, T),
  'learned-greedy': (x) => greedyBudgets(forward(weights, encoder.encode(contextFeatures(x))), agents, T),
};

const truthRng = mulberry32(99);
const truthContexts = Array.from({ length: 50_000 }, () => sampleContext(world, truthRng));
const truth: Record<string, number> = {};
for (const [name, pol] of Object.entries(targets)) truth[name] = truthContexts.reduce((s, x) => s + expectedQuality(world, 0, x, pol(x)), 0) / truthContexts.length;
let loggingValue = 0;
{
  const r = mulberry32(5);
  for (let i = 0; i < 20_000; i++) {
    const x = sampleContext(world, r);
    loggingValue += expectedQuality(world, 0, x, decide(forward(weights, encoder.encode(contextFeatures(x))), agents, T, explore, r).budgets) / 20_000;
  }
}
console.log(`bench/ope: ${world.name}, ${trials} trials × ${nEvents} logged events, ${resamples} bootstrap resamples (setup ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
console.log(`true values: logging policy ${loggingValue.toFixed(4)}, ${Object.entries(truth).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')}`);

type Est = 'ips' | 'snips' | 'dr';
const covered: Record<string, Record<Est, number>> = {};
const width: Record<string, Record<Est, number>> = {};
const bias: Record<string, Record<Est, number>> = {};
const essSum: Record<string, number> = {};
for (const k of Object.keys(targets)) {
  covered[k] = { ips: 0, snips: 0, dr: 0 };
  width[k] = { ips: 0, snips: 0, dr: 0 };
  bias[k] = { ips: 0, snips: 0, dr: 0 };
  essSum[k] = 0;
}
const t1 = Date.now();
for (let trial = 0; trial < trials; trial++) {
  const rng = mulberry32(1000 + trial);
  const logs: { ev: LoggedEvent; x: ReturnType<typeof sampleContext> }[] = [];
  for (let i = 0; i < nEvents; i++) {
    const x = sampleContext(world, rng);
    const f = contextFeatures(x);
    const dec = decide(forward(weights, encoder.encode(f)), agents, T, explore, rng);
    const out = simulateOutcome(world, 0, x, dec.budgets, rng);
    const b: Record<string, number> = {};
    names.forEach((a, j) => (b[a] = dec.budgets[j]!));
    logs.push({ x, ev: { id: String(i), t: i, s: 'learned', f, T, b, q: out.quality, c: null, C: dec.candidates, P: dec.probs, k: dec.chosen } });
  }
  for (const [name, pol] of Object.entries(targets)) {
    const samples: OpeSample[] = logs.map(({ ev, x }) => {
      const a = pol(x);
      const { w } = importanceWeight(ev, names, a, 0.02);
      const h = forward(weights, encoder.encode(ev.f));
      return { r: ev.q, w, dmTarget: predict(h, a), dmLogged: predict(h, names.map((n) => ev.b[n]!)) };
    });
    const rep = offPolicyReport(samples, { resamples, rng: mulberry32(trial * 7 + 1) });
    essSum[name]! += rep.ess;
    for (const e of ['ips', 'snips', 'dr'] as const) {
      const iv = rep[e];
      if (iv.lo <= truth[name]! && truth[name]! <= iv.hi) covered[name]![e]++;
      width[name]![e] += (iv.hi - iv.lo) / trials;
      bias[name]![e] += (iv.value - truth[name]!) / trials;
    }
  }
}
for (const name of Object.keys(targets)) {
  console.log(`\ntarget ${name} (true ${truth[name]!.toFixed(4)}, mean ESS ${(essSum[name]! / trials).toFixed(0)} of ${nEvents})`);
  for (const e of ['ips', 'snips', 'dr'] as const) {
    console.log(
      `  ${e.padEnd(5)} CI coverage ${((100 * covered[name]![e]) / trials).toFixed(0)} %  (target ≥ 90 %)  mean CI width ${width[name]![e].toFixed(4)}  mean error ${bias[name]![e] >= 0 ? '+' : ''}${bias[name]![e].toFixed(4)}`,
    );
  }
}
console.log(`\n${trials} trials in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
