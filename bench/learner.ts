/**
 * The learner against the simulated worlds (in-process: the service's policy, dataset and trainer code, no
 * HTTP), 20k outcomes per world, and retraining time on 100k logged events.
 *
 *   node --import tsx bench/learner.ts [--outcomes 20000] [--worlds support-basic,doc-heavy,drift] [--explorers squarecb,epsilon] [--seed 7]
 *
 * Prints, per world and explorer: learned ÷ oracle expected quality, the difference to the best static split
 * with its 95 % CI (paired over 1,000 held-out contexts), the share of uniform's tokens the learned policy
 * needs to match uniform's quality, the drift recovery time, and the regret of the served (exploring) decisions.
 * The baseline of every ratio (oracle, uniform, best static) is computed in the same run on the same contexts.
 */
import { loadTf } from '../src/learner/backend.js';
import { buildTrainingData, type LoggedEvent } from '../src/learner/events.js';
import { compileFeatures } from '../src/learner/features.js';
import { initialWeights } from '../src/learner/model.js';
import { candidateSet } from '../src/learner/policy.js';
import { mulberry32 } from '../src/learner/rng.js';
import { learnedValues, policyAgents, runLoop } from '../src/learner/sim/loop.js';
import { contextFeatures, expectedQuality, loadWorld, oracleBudgets, sampleContext, uniformBudgets, worldFeatures, type SimContext, type World } from '../src/learner/sim/world.js';
import { trainModel } from '../src/learner/trainer.js';
import { flag } from './lib.js';

const outcomes = Number(flag('outcomes', '20000'));
const worlds = flag('worlds', 'support-basic,doc-heavy,drift,generous-caps,uneven-needs').split(',');
const explorers = flag('explorers', 'squarecb,epsilon').split(',') as ('squarecb' | 'epsilon')[];
const seed = Number(flag('seed', '7'));

const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
function pairedCi(a: readonly number[], b: readonly number[]): { diff: number; lo: number; hi: number } {
  const d = a.map((v, i) => v - b[i]!);
  const m = mean(d);
  const sd = Math.sqrt(d.reduce((s, v) => s + (v - m) ** 2, 0) / (d.length - 1));
  const h = (1.96 * sd) / Math.sqrt(d.length);
  return { diff: m, lo: m - h, hi: m + h };
}

const { tf, backend } = await loadTf();
console.log(`bench/learner: backend ${backend}, ${outcomes} outcomes per world, seed ${seed}`);

/**
 * The least mean tokens (as a share of the total) at which the oracle matches uniform's mean quality when it may
 * also pick each request's total: per request it maximises quality − μ·tokens over 40 totals (oracle split at
 * each), with μ found by bisection. A bound on what choosing the total per request could add to this measure.
 */
function adaptiveOracleShare(world: World, phase: 0 | 1, contexts: readonly SimContext[], uniformMean: number): number {
  const minSum = world.agents.reduce((s, a) => s + a.minTokens, 0);
  const totals = Array.from({ length: 40 }, (_, k) => Math.round(minSum + ((k + 1) / 40) * (world.totalTokens - minSum)));
  const table = contexts.map((x) => totals.map((t) => expectedQuality(world, phase, x, oracleBudgets(world, phase, x, t))));
  let lo = 0;
  let hi = 1e-2;
  let best = 1;
  for (let it = 0; it < 50; it++) {
    const mu = (lo + hi) / 2;
    let q = 0;
    let tokens = 0;
    for (const row of table) {
      let k = 0;
      for (let j = 1; j < row.length; j++) if (row[j]! - mu * totals[j]! > row[k]! - mu * totals[k]!) k = j;
      q += row[k]!;
      tokens += totals[k]!;
    }
    if (q / table.length >= uniformMean) {
      best = tokens / table.length / world.totalTokens;
      lo = mu;
    } else hi = mu;
  }
  return best;
}

for (const name of worlds) {
  const world = loadWorld(name);
  for (const explorer of explorers) {
    const t0 = Date.now();
    const res = await runLoop(tf, {
      world,
      outcomes,
      seed,
      explore: { explorer, epsilon: 0.1, gamma: 200, perturbation: 0.5 },
      checkpointEvery: 500,
    });
    const last = res.checkpoints.at(-1)!;
    const phase = last.phase;
    const ev = res.evaluations[phase]!;
    const learned = learnedValues(world, phase, res.weights, res.encoder, ev.contexts);
    const ci = pairedCi(learned, ev.bestStatic);
    // Tokens to match uniform: smallest share f of the total at which the learned split's mean quality
    // reaches uniform's at the full total (bisection; quality grows with the total).
    const uni = mean(ev.uniform);
    let lo = 0.1;
    let hi = 1;
    if (mean(learnedValues(world, phase, res.weights, res.encoder, ev.contexts, world.totalTokens)) < uni) lo = hi = 1;
    for (let it = 0; it < 12 && hi - lo > 0.005; it++) {
      const mid = (lo + hi) / 2;
      if (mean(learnedValues(world, phase, res.weights, res.encoder, ev.contexts, Math.round(world.totalTokens * mid))) >= uni) hi = mid;
      else lo = mid;
    }
    // The same measure for the oracle: how far below uniform's tokens any split can go in this world.
    let olo = 0.1;
    let ohi = 1;
    for (let it = 0; it < 12 && ohi - olo > 0.005; it++) {
      const mid = (olo + ohi) / 2;
      const q = mean(ev.contexts.map((x) => expectedQuality(world, phase, x, oracleBudgets(world, phase, x, Math.round(world.totalTokens * mid)))));
      if (q >= uni) ohi = mid;
      else olo = mid;
    }
    const adaptive = adaptiveOracleShare(world, phase, ev.contexts, uni);
    const servedRegret = 1 - mean(res.checkpoints.slice(1).filter((c) => c.phase === phase).map((c) => c.served / c.oracle));
    console.log(`\n[${name} · ${explorer}] ${((Date.now() - t0) / 1000).toFixed(1)} s, ${res.trainMs.length} retrains (mean ${mean(res.trainMs).toFixed(0)} ms)`);
    console.log(
      `  oracle ${last.oracle.toFixed(4)}  learned ${mean(learned).toFixed(4)}  best static ${last.bestStatic.toFixed(4)}  uniform ${last.uniform.toFixed(4)}`,
    );
    console.log(`  learned/oracle = ${(mean(learned) / last.oracle).toFixed(3)}  (target ≥ 0.95)`);
    console.log(`  learned − best static = ${ci.diff.toFixed(4)}  95% CI [${ci.lo.toFixed(4)}, ${ci.hi.toFixed(4)}]  (target: CI above 0)`);
    console.log(
      `  tokens to match uniform = ${hi.toFixed(3)}× uniform's  (target ≤ 0.6; the oracle needs ${ohi.toFixed(3)}×, or ${adaptive.toFixed(3)}× when it may also choose each request's total)`,
    );
    console.log(`  served (exploring) decisions: ${(100 * servedRegret).toFixed(1)} % below the oracle over the run`);
    if (world.drift) {
      const after = res.checkpoints.filter((c) => c.outcomes > world.drift!.at);
      const back = after.find((c) => c.learned / c.oracle >= 0.9);
      const dip = Math.min(...after.map((c) => c.learned / c.oracle));
      console.log(
        `  drift at ${world.drift.at}: dipped to ${dip.toFixed(3)} of the new oracle; back ≥ 0.90 after ${back ? back.outcomes - world.drift.at : 'never'} outcomes (target ≤ 5000, checkpoints every 500)`,
      );
    }
    console.log(`  curve (outcomes: learned/oracle) ${res.checkpoints.filter((c) => c.outcomes % 2000 === 0).map((c) => `${c.outcomes}:${(c.learned / c.oracle).toFixed(3)}`).join(' ')}`);
  }
}

// Retraining cost on 100k logged events (the buffer's cap), with the service's trainer settings.
{
  const world = loadWorld('support-basic');
  const rng = mulberry32(seed);
  const encoder = compileFeatures(worldFeatures(world).features);
  const agents = policyAgents(world);
  const names = world.agents.map((a) => a.name);
  const prior = initialWeights(encoder.dim, names.length, world.totalTokens, mulberry32(1));
  const events: LoggedEvent[] = [];
  for (let i = 0; i < 100_000; i++) {
    const x = sampleContext(world, rng);
    const cands = candidateSet({ need: new Float64Array(names.length).fill(1000), weight: new Float64Array(names.length).fill(0.5), shape: new Float64Array(names.length).fill(3) }, agents, world.totalTokens, 0.5);
    const b = cands[Math.floor(rng() * cands.length)] ?? uniformBudgets(world, world.totalTokens);
    const rec: Record<string, number> = {};
    names.forEach((a, j) => (rec[a] = b[j]!));
    events.push({ id: String(i), t: i, s: 'x', f: contextFeatures(x), T: world.totalTokens, b: rec, q: expectedQuality(world, 0, x, b), c: null });
  }
  const t0 = Date.now();
  const data = buildTrainingData(events, encoder, names, { costWeight: 0, halfLife: 1_000_000 });
  const prep = Date.now() - t0;
  const { metrics } = await trainModel(tf, data, prior, { epochs: 4, maxSteps: 1_000_000 });
  console.log(`\nretrain on 100,000 events: ${((prep + metrics.ms) / 1000).toFixed(1)} s (encode ${prep} ms, ${metrics.steps} steps, holdout MSE ${metrics.holdoutMse.toFixed(5)} vs variance ${metrics.holdoutVariance.toFixed(5)}) (target ≤ 60 s)`);
}
