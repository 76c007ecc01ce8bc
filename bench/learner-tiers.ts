/**
 * The joint choice of model and tokens (src/learner/tiers-policy.ts) against the simulated worlds with model tiers
 * (experiments/tiers/, src/learner/sim/tiers.ts), every baseline measured in the same run on the same requests:
 *
 *   node --import tsx bench/learner-tiers.ts [--outcomes 5000] [--seed 1] [--worlds cheap-suffices,strong-needed]
 *
 * Per world, at the world's cost ceiling (planned cost, as the engine holds it): the served actions' mean expected
 * quality (exploration included) over the last quarter of the run ÷ the tier-aware oracle's on the same requests;
 * served − the best static choice with one model per agent (each assignment's best static shares as the engine
 * serves them under the ceiling, fitted on those requests), with a paired 95 % CI. Then, on cheap-suffices, the
 * same learner restricted to every agent on the expensive (first) model — the token-only learned strategy — at
 * the ceiling, and the tier learner at lower ceilings: the smallest whose quality reaches the token-only one, and
 * its mean planned cost ÷ the token-only one's (at equal quality).
 *
 * `--loop service` (with `--loop-seeds 1,2,…`: each world at every loop seed, then a summary per world) takes the same numbers through the service's own loop for a pipeline with model tiers
 * (src/learner/sim/tier-loop.ts: the engine's decisions of the served learned strategy, safe start, control arm,
 * candidate mixing, the training job's tier retrain every `trainEvery` outcomes, the activation gate, the runtime guard's
 * reverts and drift recovery, whose reverts and retirements it prints; `--guard false` / `--drift false` leave them
 * out). The token-only
 * reference is then the same loop on the pipeline declaring only the first model per agent (and, with
 * `--product true`, the product's token learner of src/learner/sim/loop.ts); `--ceilings 0.3,0.4,0.5` lists the
 * fractions of the ceiling tried for equal quality.
 *
 * `--ridge adam|decoupled` sets how the tier retrain's fit regularises (default the service's TIER_RIDGE, `decoupled`;
 * docs/tiers.md, "The fit's ridge"); `--decay x` its strength (the fit's `l2`; default TIER_DECAY for `decoupled`).
 * `--token-share 0.05 [--token-spread 0.7]` serves that share of a serving version's decisions as token perturbations
 * around its greedy action (the learned strategy's `tierTokenShare` / `tierTokenSpread`; docs/tiers.md, "Token
 * perturbations around the greedy action"); default the service's. `--epsilon-decay p` and `--gap-weight γ` set the
 * learned strategy's `tierEpsilonDecay` (the exploration rate budget·(from/v)^p) and `tierGapWeight` (the inverse-gap
 * weighting's γ) in the service's loop and the family runs (docs/tiers.md, "How fast the exploration rate decays");
 * `--epsilon-decay` also sets the bench loop's schedule, 0.3·(500/t)^p. `--control-margin x` sets `controlShareMargin`. `--control-min m` sets `controlShareMin`, the
 * guard's control share floor while the serving version leads the control (0.05: the fixed share; docs/learner.md,
 * "A smaller control arm while the learned arm leads"). `--train-every n` sets `trainEvery`, the outcomes between
 * the service's tier retrains (default TIER_TRAIN_EVERY; the bench loop's own interval is `--retrain-every`);
 * `--serving-floor x` the tier loop's gate rule (GateRule.servingFloor) in the family runs.
 *
 * `--family dev|test` (optionally `--seeds a,b`) runs the service's loop on generated tier worlds
 * (src/learner/sim/tier-family.ts, seeds in experiments/tiers/family-seeds.json): see familyLoop below.
 */
import { compileFeatures } from '../src/learner/features.js';
import { mulberry32 } from '../src/learner/rng.js';
import { bestStaticTier, loadTierWorld, servedStatic, type TierWorld } from '../src/learner/sim/tiers.js';
import { worldFeatures, type SimContext } from '../src/learner/sim/world.js';
import { decideTier, initialParams, retrainTier, TIER_RIDGE, type TierAgent, type TierEvent, type TierParams, type TierPolicyOptions } from '../src/learner/tiers-policy.js';
import { flag, tierPolicyFlags } from './lib.js';
import { loadTf } from '../src/learner/backend.js';
import { EXPLORE_DEFAULTS } from '../src/learner/policy.js';
import { TIER_TRAIN_EVERY } from '../src/learner/kind.js';
import { plainDeclaration, type SimWorld } from '../src/learner/sim/family.js';
import { runLoop } from '../src/learner/sim/loop.js';
import { normal } from '../src/learner/rng.js';
import { bestSplit } from '../src/learner/tiers-split.js';

const outcomes = Number(flag('outcomes', '5000'));
const seed = Number(flag('seed', '1'));
const worlds = flag('worlds', 'cheap-suffices,strong-needed').split(',');
const retrainEvery = Number(flag('retrain-every', '250'));
const windowSize = Number(flag('window', '100000'));
const restart = flag('restart', 'true') === 'true';
const equalQuality = flag('equal-quality', 'true') !== 'false';
// Also the product's learned strategy (src/learner/sim/loop.ts: tfjs reward model, gate, safe start, guard) as the
// token-only baseline: every agent on the first model, where a ceiling C is exactly a token total of C / rate.
const product = flag('product', 'true') !== 'false';
// `--ridge adam|decoupled`: how the tier retrain's fit regularises (tiers-policy.ts TierRidge) in the service's
// loop and the family runs; default the service's (TIER_RIDGE).
const ridge = flag('ridge', '');
if (ridge !== '' && ridge !== 'adam' && ridge !== 'decoupled') throw new Error(`--ridge ${ridge}: adam or decoupled`);
// `--decay x`: the tier fit's regularisation strength (fitTier's `l2`; default the ridge's, TIER_DECAY for `decoupled`).
const decay = flag('decay', '');
if (decay !== '' && !(Number(decay) >= 0)) throw new Error(`--decay ${decay}: a number ≥ 0`);
const ridgeOpt = { ...(ridge === '' ? {} : { ridge: ridge as 'adam' | 'decoupled' }), ...(decay === '' ? {} : { decay: Number(decay) }) };
// `--token-share`, `--token-spread`, `--epsilon-decay`, `--gap-weight`, `--control-min`, `--control-margin`, `--train-every`, `--serving-floor`: bench/lib.ts tierPolicyFlags.
const policy = tierPolicyFlags();
const { epsilonDecay } = policy;
const tokenParams = policy.params;
const tokenLabel = policy.label;

/** The tier world with every agent on its first model, as the product's token-only learner sees it. */
function firstModelWorld(tw: TierWorld, ceiling: number): SimWorld<SimContext> {
  const total = Math.floor(ceiling / tw.rates[0]!);
  const first = tw.agents.map(() => 0);
  return {
    name: `${tw.name}@${tw.models[0]}`,
    totalTokens: total,
    agents: tw.agents,
    declaration: plainDeclaration(worldFeatures(tw.world)),
    costWeight: 0,
    summary: 'tier world on the first model',
    sample: (rng) => tw.sample(rng),
    features: (c) => tw.features(c),
    expected: (_p, c, b) => tw.quality(c, first, b),
    outcome: (_p, c, b, rng) => ({ quality: Math.min(1, Math.max(0, tw.quality(c, first, b) + tw.world.noise * normal(rng))), cost: null }),
    oracle: (_p, c, T) =>
      bestSplit(
        tw.curves(c).map((row) => row[0]!),
        tw.agents.map(() => 1),
        tw.agents.map((a) => a.minTokens),
        tw.agents.map((a) => a.maxTokens),
        T,
        T,
      )!,
  };
}

const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / Math.max(1, xs.length);
function pairedCi(a: readonly number[], b: readonly number[]) {
  const d = a.map((v, i) => v - b[i]!);
  const m = mean(d);
  const sd = Math.sqrt(d.reduce((s, v) => s + (v - m) ** 2, 0) / (d.length - 1));
  const h = (1.96 * sd) / Math.sqrt(d.length);
  return { diff: m, lo: m - h, hi: m + h };
}

interface Run {
  readonly contexts: SimContext[];
  /** Expected quality and planned cost of the served action, per request of the last quarter. */
  readonly quality: number[];
  readonly cost: number[];
  readonly onCheap: number[];
}

/** One learning run: decide, observe a noisy outcome, retrain every `retrainEvery` outcomes. */
function run(tw: TierWorld, ceiling: number, restrict: TierPolicyOptions['assignments'], runSeed: number): Run {
  const rng = mulberry32(runSeed);
  const draw = mulberry32(runSeed + 7);
  const noise = mulberry32(runSeed + 13);
  const encoder = compileFeatures(worldFeatures(tw.world).features);
  const agents: TierAgent[] = tw.agents.map((a) => ({ min: a.minTokens, cap: a.maxTokens, rates: tw.rates }));
  let params: TierParams = initialParams(agents, encoder.dim, 1000);
  const events: TierEvent[] = [];
  const out: Run = { contexts: [], quality: [], cost: [], onCheap: [] };
  const from = Math.floor(outcomes * 0.75);
  for (let t = 0; t < outcomes; t++) {
    const c = tw.sample(rng);
    const x = encoder.encode(tw.features(c));
    // Exploration decays with experience: ε = 0.3 until the first fit, then 0.3·(500/t)^p (p = 0.5: √), at least 0.04.
    const p = epsilonDecay === '' ? 0.5 : Number(epsilonDecay);
    const epsilon = t < retrainEvery ? 0.3 : Math.max(0.04, 0.3 * (p === 0.5 ? Math.sqrt(500 / t) : Math.pow(500 / t, p)));
    const d = decideTier(params, agents, x, tw.totalTokens, ceiling, { epsilon, perturbation: 0.4, costWeight: 0, ...(restrict ? { assignments: restrict } : {}) }, draw);
    if (!d) throw new Error('no action fits the ceiling');
    const o = tw.outcome(c, d.action.assign, d.action.budgets, noise);
    events.push({ x: Float32Array.from(x), action: d.action, quality: o.quality, cost: o.cost });
    if (t >= from) {
      out.contexts.push(c);
      out.quality.push(tw.quality(c, d.action.assign, d.action.budgets));
      out.cost.push(tw.plannedCost(d.action.assign, d.action.budgets));
      out.onCheap.push(d.action.assign.filter((m) => m > 0).length);
    }
    if ((t + 1) % retrainEvery === 0) params = retrainTier(params, agents, events.slice(-windowSize), encoder.dim, { early: t < 1000, restart });
  }
  return out;
}

const t0 = Date.now();
if (flag('family', '') !== '') {
  await familyLoop(flag('family', 'dev'));
  console.log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  process.exit(0);
}
if (flag('loop', 'bench') === 'service') {
  await serviceLoop();
  console.log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  process.exit(0);
}
console.log(`bench/learner-tiers: ${outcomes} outcomes per run, seed ${seed}, retrain every ${retrainEvery} (warm start${restart ? ' and a fresh fit' : ''}; the serving fit replaced only when significantly better), window ${windowSize}; last quarter measured`);
for (const name of worlds) {
  const tw = loadTierWorld(name);
  const C = tw.maxCostUsd;
  const r = run(tw, C, undefined, seed);
  const oracle = r.contexts.map((c) => tw.oracle(c, tw.totalTokens, C));
  const fitOn = r.contexts.filter((_, i) => i % 5 === 0);
  const st = bestStaticTier(tw, fitOn, tw.totalTokens, C);
  const sb = servedStatic(tw, st.assign, st.shares, tw.totalTokens, C);
  const staticQ = r.contexts.map((c) => tw.quality(c, st.assign, sb));
  const ratio = mean(r.quality) / mean(oracle.map((o) => o.quality));
  const ci = pairedCi(r.quality, staticQ);
  console.log(
    `${name}: ceiling ${C} USD: learned ÷ tier oracle ${ratio.toFixed(4)} (learned ${mean(r.quality).toFixed(4)}, oracle ${mean(oracle.map((o) => o.quality)).toFixed(4)}); ` +
      `learned − best static [${st.assign.map((m) => tw.models[m]).join(', ')}] ${ci.diff.toFixed(4)} (95 % CI ${ci.lo.toFixed(4)} … ${ci.hi.toFixed(4)}); ` +
      `mean planned cost ${mean(r.cost).toFixed(4)} (oracle ${mean(oracle.map((o) => tw.plannedCost(o.assign, o.budgets))).toFixed(4)}); agents on a cheaper model per request ${mean(r.onCheap).toFixed(2)} (oracle ${mean(oracle.map((o) => o.assign.filter((m) => m > 0).length)).toFixed(2)})`,
  );
  console.log(`ROW ${JSON.stringify({ world: name, ceiling: C, ratio, diff: ci })}`);
  if (name !== 'cheap-suffices' || !equalQuality) continue;
  // Equal quality: the token-only learner with every agent on the expensive model, at the ceiling.
  const tokenOnly = run(tw, C, [tw.agents.map(() => 0)], seed);
  const q0 = mean(tokenOnly.quality);
  const c0 = mean(tokenOnly.cost);
  console.log(`${name}: token-only learned (this learner, first models only) on ${tw.models[0]} at ${C} USD: quality ${q0.toFixed(4)}, mean planned cost ${c0.toFixed(4)}`);
  let bestQ = q0;
  let bestC = c0;
  if (product) {
    const { tf } = await loadTf();
    const world = firstModelWorld(tw, C);
    const res = await runLoop(tf, { world, outcomes, seed, explore: { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, budget: EXPLORE_DEFAULTS.budget, decayFrom: EXPLORE_DEFAULTS.decayFrom }, evalContexts: 0, checkpointEvery: outcomes });
    const from = Math.floor(outcomes * 0.75);
    const qp = mean(Array.from(res.served.subarray(from)));
    const cp = world.totalTokens * tw.rates[0]!;
    console.log(`${name}: token-only learned (the product's learned strategy) on ${tw.models[0]} at ${C} USD (= ${world.totalTokens} tokens): quality ${qp.toFixed(4)}, planned cost at most ${cp.toFixed(4)}`);
    if (qp > bestQ) {
      bestQ = qp;
      bestC = cp;
    }
  }
  const q0b = bestQ;
  let found: { f: number; q: number; c: number } | undefined;
  for (const f of [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1]) {
    const rr = run(tw, C * f, undefined, seed);
    const q = mean(rr.quality);
    const c = mean(rr.cost);
    console.log(`${name}: tier learned at ${(C * f).toFixed(4)} USD (${f}×): quality ${q.toFixed(4)}, mean planned cost ${c.toFixed(4)}`);
    if (q >= q0b) {
      found = { f, q, c };
      break;
    }
  }
  if (found) console.log(`${name}: at equal quality (${found.q.toFixed(4)} ≥ ${q0b.toFixed(4)}, the best token-only learner) the tier learner's cost ÷ that learner's: ${(found.c / bestC).toFixed(3)}`);
  else console.log(`${name}: the tier learner did not reach the token-only quality at any ceiling tried`);
}
console.log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);

/** The numbers of the issue's targets through the service's loop (tier-loop.ts); baselines in the same run. */
async function serviceLoop(): Promise<void> {
  const { runTierLoop } = await import('../src/learner/sim/tier-loop.js');
  const product = flag('product', 'false') === 'true';
  const fractions = flag('ceilings', '0.3,0.4,0.5,0.6,0.7').split(',').map(Number);
  // The learned strategy's parameters: the service's defaults unless `--control-share` (the runtime guard's control arm) is given.
  const cs = flag('control-share', '');
  const params = cs === '' && Object.keys(tokenParams).length === 0 ? undefined : { ...(cs !== '' ? { controlShare: Number(cs) } : {}), ...tokenParams };
  // `--guard false` / `--drift false`: without the runtime guard's reverts / drift recovery (the service runs both).
  const guard = flag('guard', 'true') !== 'false';
  const drift = flag('drift', 'true') !== 'false';
  const loopOpts = { ...(guard ? {} : { guard: false }), ...(drift ? {} : { driftRecovery: null }), ...ridgeOpt, ...policy.loop };
  console.log(`bench/learner-tiers --loop service: ${outcomes} outcomes per run, seed ${seed}; fit ridge ${ridge || TIER_RIDGE}, decay ${decay || 'default'}; ${tokenLabel}; the service's loop (engine decisions, safe start, control arm ${cs !== '' ? `${Number(cs) * 100} %` : '5 % (default)'}, candidate mixing 10 %, tier retrain every ${policy.trainEvery || TIER_TRAIN_EVERY}, activation gate, runtime guard ${guard ? 'on' : 'off'}, drift recovery ${drift ? 'on' : 'off'}); last quarter of the served decisions (exploration included) measured`);
  // `--loop-seeds 1,2,…`: every world at each loop seed (the requests, outcome noise and every draw), then a summary per world.
  const loopSeeds = flag('loop-seeds', '') !== '' ? flag('loop-seeds', '').split(',').map(Number) : [seed];
  const summary: { name: string; seed: number; ratio: number; lo: number; hi: number }[] = [];
  for (const seed of loopSeeds) for (const name of worlds) {
    if (loopSeeds.length > 1) console.log(`loop seed ${seed}`);
    const tw = loadTierWorld(name);
    const C = tw.maxCostUsd;
    const r = runTierLoop({ world: tw, outcomes, seed, ...(params ? { params } : {}), ...loopOpts });
    const from = Math.floor(outcomes * 0.75);
    const ctx = r.contexts.slice(from);
    const q = Array.from(r.quality.subarray(from));
    const oracle = ctx.map((c) => tw.oracle(c, tw.totalTokens, C));
    const st = bestStaticTier(tw, ctx.filter((_, i) => i % 5 === 0), tw.totalTokens, C);
    const sb = servedStatic(tw, st.assign, st.shares, tw.totalTokens, C);
    const staticQ = ctx.map((c) => tw.quality(c, st.assign, sb));
    const ratio = mean(q) / mean(oracle.map((x) => x.quality));
    const ci = pairedCi(q, staticQ);
    const cheap = r.assign.slice(from).map((a) => a.filter((m) => m > 0).length);
    console.log(
      `${name}: ceiling ${C} USD: served ÷ tier oracle ${ratio.toFixed(4)} (served ${mean(q).toFixed(4)}, oracle ${mean(oracle.map((x) => x.quality)).toFixed(4)}); ` +
        `served − best static [${st.assign.map((m) => tw.models[m]).join(', ')}] ${ci.diff.toFixed(4)} (95 % CI ${ci.lo.toFixed(4)} … ${ci.hi.toFixed(4)}); ` +
        `mean planned cost ${mean(Array.from(r.cost.subarray(from))).toFixed(4)}; agents on a cheaper model per request ${mean(cheap).toFixed(2)} (oracle ${mean(oracle.map((o) => o.assign.filter((m) => m > 0).length)).toFixed(2)}); ` +
        `versions trained ${r.trained}, serving at the end ${r.version[outcomes - 1]}, first served at outcome ${r.version.findIndex((v) => v > 0)}`,
    );
    for (const g of r.gates) console.log(`  gate at ${g.at}: version ${g.version} ${g.status}: ${g.reason}`);
    // The runtime guard and drift recovery, as the service runs them (tier-loop.ts).
    const guardReverts = r.reverts.filter((x) => x.reason === 'guard');
    const retired = r.reverts.filter((x) => x.reason === 'drift');
    console.log(
      `  runtime guard: ${guardReverts.length} revert(s); drift recovery: ${r.changes.length} change(s) detected, ${retired.length} retirement(s); the control strategy served ${(100 * mean(Array.from(r.control))).toFixed(1)} % of decisions (${(100 * mean(Array.from(r.control.subarray(from)))).toFixed(1)} % of the last quarter)`,
    );
    for (const x of r.reverts) console.log(`  ${x.reason === 'guard' ? 'guard revert' : 'drift retirement'} at outcome ${x.at}: version ${x.from} → ${x.to > 0 ? `version ${x.to}` : 'the control strategy'} (learned − control ${x.diff.toFixed(4)})`);
    for (const x of r.changes) console.log(`  drift: change detected at the retrain at outcome ${x.at} on version ${x.version} (placed at ${x.changeAt}): squared error ${x.mse.toFixed(4)} on ${x.n} decisions vs held-out ${x.holdoutMse.toFixed(4)}`);
    console.log(`ROW ${JSON.stringify({ loop: 'service', world: name, seed, ceiling: C, ratio, diff: ci, reverts: r.reverts, changes: r.changes })}`);
    summary.push({ name, seed, ratio, lo: ci.lo, hi: ci.hi });
    if (name !== 'cheap-suffices' || !equalQuality) continue;
    // Token-only: the service's learned strategy on the pipeline declaring only the expensive first model.
    const tok = runTierLoop({ world: tw, outcomes, seed, models: [0], ...(params ? { params } : {}), ...loopOpts });
    let q0 = mean(Array.from(tok.quality.subarray(from)));
    let c0 = mean(Array.from(tok.cost.subarray(from)));
    console.log(`${name}: token-only learned (the service's loop, every agent on ${tw.models[0]} only) at ${C} USD: quality ${q0.toFixed(4)}, mean planned cost ${c0.toFixed(4)} (versions trained ${tok.trained}, first served at ${tok.version.findIndex((v) => v > 0)})`);
    if (product) {
      const { tf } = await loadTf();
      const world = firstModelWorld(tw, C);
      const res = await runLoop(tf, { world, outcomes, seed, explore: { explorer: 'squarecb', epsilon: 0.1, gamma: 200, perturbation: 0.5, budget: EXPLORE_DEFAULTS.budget, decayFrom: EXPLORE_DEFAULTS.decayFrom }, evalContexts: 0, checkpointEvery: outcomes });
      const qp = mean(Array.from(res.served.subarray(from)));
      const cp = world.totalTokens * tw.rates[0]!;
      console.log(`${name}: token-only learned (the product's token learner, sim/loop.ts) at ${world.totalTokens} tokens: quality ${qp.toFixed(4)}, planned cost at most ${cp.toFixed(4)}`);
      if (qp > q0) {
        q0 = qp;
        c0 = cp;
      }
    }
    let found: { f: number; q: number; c: number } | undefined;
    for (const f of fractions) {
      const rr = runTierLoop({ world: tw, outcomes, seed, maxCostUsd: C * f, ...(params ? { params } : {}), ...loopOpts });
      const qq = mean(Array.from(rr.quality.subarray(from)));
      const cc = mean(Array.from(rr.cost.subarray(from)));
      console.log(`${name}: tier learned (service loop) at ${(C * f).toFixed(4)} USD (${f}×): quality ${qq.toFixed(4)}, mean planned cost ${cc.toFixed(4)}`);
      if (qq >= q0) {
        found = { f, q: qq, c: cc };
        break;
      }
    }
    if (found) console.log(`${name}: at equal quality (${found.q.toFixed(4)} ≥ ${q0.toFixed(4)}) the tier learner's mean planned cost ÷ the token-only one's: ${(found.c / c0).toFixed(3)}`);
    else console.log(`${name}: the tier learner did not reach the token-only quality at the ceilings tried`);
  }
  if (loopSeeds.length < 2) return;
  for (const name of worlds) {
    const xs = summary.filter((x) => x.name === name);
    const rs = xs.map((x) => x.ratio);
    console.log(
      `${name} over loop seeds ${loopSeeds.join(',')}: served ÷ tier oracle mean ${mean(rs).toFixed(4)}, min ${Math.min(...rs).toFixed(4)}, ≥ 0.95 on ${rs.filter((r) => r >= 0.95).length} of ${rs.length}; ` +
        `served − best static: CI above 0 on ${xs.filter((x) => x.lo > 0).length}, below 0 on ${xs.filter((x) => x.hi < 0).length}`,
    );
  }
}

/**
 * `--family dev|test`: the service's loop (tier-loop.ts) on every generated tier world of the seed list
 * (experiments/tiers/family-seeds.json, src/learner/sim/tier-family.ts), the learned strategy with the world's cost
 * weight. Per world, over the served decisions of the last quarter: served reward ÷ the tier oracle's (reward =
 * quality − λ·planned cost; quality when λ = 0), and served − the best static one-model-per-agent choice with a
 * paired 95 % CI, both baselines on the same requests in the same run; then their distribution.
 */
async function familyLoop(which: string): Promise<void> {
  const { runTierLoop } = await import('../src/learner/sim/tier-loop.js');
  const { generateTierWorld } = await import('../src/learner/sim/tier-family.js');
  const { readFileSync } = await import('node:fs');
  const seeds = JSON.parse(readFileSync(new URL('../experiments/tiers/family-seeds.json', import.meta.url), 'utf8')) as Record<string, number[]>;
  const list = flag('seeds', '') !== '' ? flag('seeds', '').split(',').map(Number) : seeds[which];
  if (!list) throw new Error(`--family ${which}: no such seed list (dev, test)`);
  const loopSeed = Number(flag('loop-seed', '1'));
  console.log(`bench/learner-tiers --family ${which}: ${list.length} generated tier worlds, ${outcomes} outcomes each through the service's loop (loop seed ${loopSeed}, fit ridge ${ridge || TIER_RIDGE}, decay ${decay || 'default'}, ${tokenLabel}); last quarter of the served decisions (exploration, control arm and candidate mixing included)`);
  const rows: { seed: number; ratio: number; staticRatio: number; diff: ReturnType<typeof pairedCi>; served: number; start: { ratio: number; outcomes: number } }[] = [];
  for (const seed of list) {
    const fw = generateTierWorld(seed);
    const tw = fw.world;
    const C = tw.maxCostUsd;
    const T = tw.totalTokens;
    const r = runTierLoop({ world: tw, outcomes, seed: loopSeed, params: { ...(tw.costWeight > 0 ? { costWeight: tw.costWeight } : {}), ...tokenParams }, ...ridgeOpt, ...policy.loop });
    const from = Math.floor(outcomes * 0.75);
    const ctx = r.contexts.slice(from);
    const served = ctx.map((_, k) => r.quality[from + k]! - tw.costWeight * r.cost[from + k]!);
    const oracle = ctx.map((c) => tw.oracle(c, T, C).reward);
    const st = bestStaticTier(tw, ctx.filter((_, i) => i % 5 === 0), T, C, { polishTop: 4 });
    const sb = servedStatic(tw, st.assign, st.shares, T, C);
    const staticR = ctx.map((c) => tw.reward(c, st.assign, sb));
    const ratio = mean(served) / mean(oracle);
    const staticRatio = mean(staticR) / mean(oracle);
    const ci = pairedCi(served, staticR);
    const firstServed = r.version.findIndex((v) => v > 0);
    // What the safe start served (before the first trained version served; the whole run when none did), on every 4th request.
    const startEnd = firstServed < 0 ? outcomes : firstServed;
    const startIdx = Array.from({ length: Math.ceil(startEnd / 4) }, (_, k) => 4 * k);
    const startRatio = mean(startIdx.map((t) => r.quality[t]! - tw.costWeight * r.cost[t]!)) / mean(startIdx.map((t) => tw.oracle(r.contexts[t]!, T, C).reward));
    rows.push({ seed, ratio, staticRatio, diff: ci, served: firstServed, start: { ratio: startRatio, outcomes: startEnd } });
    const cheap = r.assign.slice(from).map((a) => a.filter((m) => m > 0).length);
    const ocheap = ctx.map((c) => tw.oracle(c, T, C).assign.filter((m) => m > 0).length);
    console.log(
      `seed ${seed}: ${fw.doc.description}; ceiling ${C} USD, ${T} tokens, λ ${tw.costWeight}: served ÷ tier oracle ${ratio.toFixed(4)} (served ${mean(served).toFixed(4)}, oracle ${mean(oracle).toFixed(4)}); ` +
        `best static [${st.assign.map((m) => tw.models[m]).join(', ')}] ÷ oracle ${staticRatio.toFixed(4)}; served − best static ${ci.diff.toFixed(4)} (95 % CI ${ci.lo.toFixed(4)} … ${ci.hi.toFixed(4)}); ` +
        `agents on a cheaper model per request ${mean(cheap).toFixed(2)} (oracle ${mean(ocheap).toFixed(2)}); versions trained ${r.trained}, first served at ${firstServed}, serving at the end ${r.version[outcomes - 1]}; the safe start served ${startRatio.toFixed(4)} of the oracle over ${startEnd} outcomes`,
    );
    console.log(`ROW ${JSON.stringify({ family: which, seed, ratio, staticRatio, diff: ci, firstServed, startRatio })}`);
  }
  const q = (xs: number[], p: number) => {
    const s = xs.slice().sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.max(0, Math.floor(p * (s.length - 1) + 1e-9)))]!;
  };
  const ratios = rows.map((x) => x.ratio);
  const diffs = rows.map((x) => x.diff.diff);
  console.log(
    `family ${which} (${rows.length} worlds): served ÷ tier oracle median ${q(ratios, 0.5).toFixed(4)}, p10 ${q(ratios, 0.1).toFixed(4)}, min ${Math.min(...ratios).toFixed(4)}; ≥ 0.95 on ${ratios.filter((v) => v >= 0.95).length}; ` +
      `served − best static median ${q(diffs, 0.5).toFixed(4)}; CI above 0 on ${rows.filter((x) => x.diff.lo > 0).length}, below 0 on ${rows.filter((x) => x.diff.hi < 0).length}; ` +
      `best static ÷ oracle median ${q(rows.map((x) => x.staticRatio), 0.5).toFixed(4)}; no version served on ${rows.filter((x) => x.served < 0).length}; the safe start served ${mean(rows.map((x) => x.start.ratio)).toFixed(4)} of the oracle over ${mean(rows.map((x) => x.start.outcomes)).toFixed(0)} outcomes (means over worlds)`,
  );
}
