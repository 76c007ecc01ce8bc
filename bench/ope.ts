/**
 * Off-policy evaluation coverage: how often the 95 % bootstrap CI of IPS, SNIPS and DR contains the
 * target policy's true (on-policy) value, over repeated logging trials with known ground truth, on logs made
 * by (a) the learner, (b) an A/B experiment, (c) a mix of both.
 *
 *   node --import tsx bench/ope.ts [--trials 100] [--events 1000] [--resamples 200] [--world support-basic] [--setups a,b,c]
 *
 * A model is first trained in-process (3,000 outcomes), then frozen. Logging policies (each decision is a new
 * unit, so routing draws are independent per decision):
 *   (a) the learned strategy: SquareCB exploration, with the runtime guard's control arm (5 % uniform);
 *   (b) an A/B experiment at 80 % coverage: static A (the best static split) 50 %, static B (A with its
 *       largest share halved) 50 %; the other 20 % get the pipeline default (uniform);
 *   (c) a 10 % holdout (uniform), then an experiment: the learned strategy (with its control arm) 50 %,
 *       static A 50 %.
 * Each decision is logged as the service logs it (decision record meta and routing →
 * hooks.ts loggingPolicyOf → the event's C/P/k) and evaluated with the same code as GET /v1/pipelines/:id/ope.
 * Truth: the target's mean expected observed reward (quality + noise, clipped to [0, 1] as the outcomes are)
 * over 50,000 fresh contexts. Also printed for (b) and (c): the
 * coverage when every routed decision is logged with probability 1 (what the service did before).
 */
import type { DecisionRecord, RouteAlternative } from '../src/allocation/decisions.js';
import { loadTf } from '../src/learner/backend.js';
import type { ControlMeta } from '../src/learner/control-arm.js';
import type { LoggedEvent } from '../src/learner/events.js';
import { loggingPolicyOf } from '../src/learner/hooks.js';
import type { LearnerMeta } from '../src/learner/kind.js';
import { forward, predict, type ModelWeights } from '../src/learner/model.js';
import { importanceWeight } from '../src/learner/ope-service.js';
import { decide, greedyBudgets, signedPerturbation } from '../src/learner/policy.js';
import { mulberry32 } from '../src/learner/rng.js';
import { policyAgents, runLoop } from '../src/learner/sim/loop.js';
import { bestStaticShares, contextFeatures, expectedQuality, loadWorld, sampleContext, simulateOutcome, staticBudgets, uniformBudgets, type SimContext } from '../src/learner/sim/world.js';
import type { Pipeline } from '../src/pipelines/schema.js';
import { normalCdf } from '../src/stats/distributions.js';
import { offPolicyReport, type OpeSample } from '../src/stats/ope.js';
import { flag } from './lib.js';

const trials = Number(flag('trials', '100'));
const nEvents = Number(flag('events', '1000'));
const resamples = Number(flag('resamples', '200'));
const world = loadWorld(flag('world', 'support-basic'));
const setups = flag('setups', 'a,b,c').split(',');
const CONTROL_SHARE = 0.05;

const { tf } = await loadTf();
const t0 = Date.now();
const explore = { explorer: 'squarecb' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5 };
const trained = await runLoop(tf, { world, outcomes: 3000, seed: 11, explore, evalContexts: 200, checkpointEvery: 3000 });
const weights: ModelWeights = trained.weights;
const { encoder } = trained;
const agents = policyAgents(world);
const names = world.agents.map((a) => a.name);
const T = world.totalTokens;
const pipeline = { id: 'bench', version: 1, defaultTotalTokens: T, agents: world.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens })) } as unknown as Pipeline;
const shareRng = mulberry32(3);
const sharesA = bestStaticShares(world, 0, Array.from({ length: 400 }, () => sampleContext(world, shareRng)), T);
const sharesB = (() => {
  const top = sharesA.indexOf(Math.max(...sharesA));
  const s = sharesA.map((v, i) => (i === top ? v / 2 : v + sharesA[top]! / 2 / (sharesA.length - 1)));
  return s;
})();

type Policy = (x: SimContext) => number[];
const uniform: Policy = () => uniformBudgets(world, T);
const staticA: Policy = () => staticBudgets(world, sharesA, T);
const staticB: Policy = () => staticBudgets(world, sharesB, T);
const greedy: Policy = (x) => greedyBudgets(forward(weights, encoder.encode(contextFeatures(x))), agents, T);

/** The learned strategy's decision as kind.ts logs it (meta.learner with the control arm), and what it serves. */
function learnedDecision(x: SimContext, rng: () => number): { budgets: number[]; learner: LearnerMeta } {
  const dec = decide(forward(weights, encoder.encode(contextFeatures(x))), agents, T, explore, rng);
  const xm: ControlMeta = { s: CONTROL_SHARE, a: rng() < CONTROL_SHARE ? 1 : 0, b: uniform(x), c: '@uniform' };
  const learner: LearnerMeta = { m: 1, k: dec.chosen, p: dec.probs[dec.chosen]!, g: dec.candidates[0]!, d: signedPerturbation(explore), P: dec.probs, x: xm };
  return { budgets: xm.a === 1 ? xm.b : dec.budgets, learner };
}

interface Route {
  readonly id: string;
  readonly q: number;
}
interface Setup {
  readonly routes: readonly Route[];
  readonly targets: Readonly<Record<string, Policy>>;
}
const SETUPS: Record<string, Setup> = {
  a: { routes: [{ id: 'learned', q: 1 }], targets: { uniform, 'learned-greedy': greedy } },
  b: { routes: [{ id: 'static-a', q: 0.4 }, { id: 'static-b', q: 0.4 }, { id: '@uniform', q: 0.2 }], targets: { 'static-a': staticA, 'static-b': staticB, uniform } },
  c: { routes: [{ id: '@uniform', q: 0.1 }, { id: 'learned', q: 0.45 }, { id: 'static-a', q: 0.45 }], targets: { uniform, 'static-a': staticA, 'learned-greedy': greedy } },
};
const deterministic: Record<string, Policy> = { 'static-a': staticA, 'static-b': staticB, '@uniform': uniform };

/** One logged decision: the record the service would write, turned into the event the sink would log. */
function logOne(setup: Setup, x: SimContext, rng: () => number): { ev: LoggedEvent; naive: LoggedEvent } {
  let u = rng();
  let served = setup.routes[setup.routes.length - 1]!;
  for (const r of setup.routes) {
    if (u < r.q) {
      served = r;
      break;
    }
    u -= r.q;
  }
  const act = (id: string) => (id === 'learned' ? learnedDecision(x, rng) : { budgets: deterministic[id]!(x), learner: undefined });
  const mine = act(served.id);
  const alt: RouteAlternative[] = setup.routes
    .filter((r) => r.id !== served.id)
    .map((r) => {
      const a = act(r.id);
      return { s: r.id, q: r.q, b: a.budgets, ...(a.learner ? { l: a.learner as unknown as Record<string, unknown> } : {}) };
    });
  const budgets: Record<string, number> = {};
  names.forEach((n, i) => (budgets[n] = mine.budgets[i]!));
  const record: Pick<DecisionRecord, 'meta' | 'budgets' | 'totalTokens' | 'routing'> = {
    budgets,
    totalTokens: T,
    ...(mine.learner ? { meta: { learner: mine.learner } } : {}),
    ...(setup.routes.length > 1 ? { routing: { q: served.q, alt } } : {}),
  };
  const out = simulateOutcome(world, 0, x, mine.budgets, rng);
  const base: LoggedEvent = { id: '', t: 0, s: served.id, f: contextFeatures(x), T, b: budgets, q: out.quality, c: null };
  const { routing: _routing, ...naiveRecord } = record;
  return { ev: { ...base, ...loggingPolicyOf(record, pipeline) }, naive: { ...base, ...loggingPolicyOf(naiveRecord, pipeline) } };
}

const truthRng = mulberry32(99);
const truthContexts = Array.from({ length: 50_000 }, () => sampleContext(world, truthRng));
/**
 * The expected observed reward: outcomes are expected quality + N(0, σ²) clipped to [0, 1], so near 1 the clip
 * lowers the mean. E[clip(Y)] for Y ~ N(μ, σ²) = μ − E[(Y − 1)⁺] + E[(−Y)⁺], with
 * E[(Y − c)⁺] = σφ((μ − c)/σ) + (μ − c)Φ((μ − c)/σ).
 */
function expectedObserved(x: SimContext, budgets: readonly number[]): number {
  const mu = expectedQuality(world, 0, x, budgets);
  const sd = world.noise;
  if (!(sd > 0)) return Math.min(1, Math.max(0, mu));
  const phi = (z: number) => Math.exp(-0.5 * z * z) / Math.sqrt(2 * Math.PI);
  const over = (c: number) => sd * phi((mu - c) / sd) + (mu - c) * normalCdf((mu - c) / sd);
  const under = sd * phi(-mu / sd) - mu * normalCdf(-mu / sd);
  return mu - over(1) + under;
}
const truthOf = (pol: Policy) => truthContexts.reduce((s, x) => s + expectedObserved(x, pol(x)), 0) / truthContexts.length;
const truth = new Map<Policy, number>([uniform, staticA, staticB, greedy].map((p) => [p, truthOf(p)]));
console.log(`bench/ope: ${world.name}, ${trials} trials × ${nEvents} logged events, ${resamples} bootstrap resamples (setup ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
console.log(`true values: uniform ${truth.get(uniform)!.toFixed(4)}, static-a ${truth.get(staticA)!.toFixed(4)}, static-b ${truth.get(staticB)!.toFixed(4)}, learned-greedy ${truth.get(greedy)!.toFixed(4)}`);

type Est = 'ips' | 'snips' | 'dr';
const ESTS: readonly Est[] = ['ips', 'snips', 'dr'];
for (const name of setups) {
  const setup = SETUPS[name];
  if (!setup) throw new Error(`unknown setup ${name} (a, b, c)`);
  const t1 = Date.now();
  const acc = new Map<string, { covered: Record<Est, number>; naive: Record<Est, number>; width: Record<Est, number>; err: Record<Est, number>; nulls: number; ess: number }>();
  for (const t of Object.keys(setup.targets)) acc.set(t, { covered: { ips: 0, snips: 0, dr: 0 }, naive: { ips: 0, snips: 0, dr: 0 }, width: { ips: 0, snips: 0, dr: 0 }, err: { ips: 0, snips: 0, dr: 0 }, nulls: 0, ess: 0 });
  for (let trial = 0; trial < trials; trial++) {
    const rng = mulberry32(1000 + trial + 7919 * name.charCodeAt(0));
    const logs = Array.from({ length: nEvents }, () => {
      const x = sampleContext(world, rng);
      return { x, ...logOne(setup, x, rng) };
    });
    for (const [tname, pol] of Object.entries(setup.targets)) {
      const truthV = truth.get(pol)!;
      const a = acc.get(tname)!;
      const samples = (which: 'ev' | 'naive'): OpeSample[] =>
        logs.map((l) => {
          const ev = l[which];
          const target = pol(l.x);
          const h = forward(weights, encoder.encode(ev.f));
          return { r: ev.q, w: importanceWeight(ev, names, target, 0.02).w, dmTarget: predict(h, target), dmLogged: predict(h, names.map((n) => ev.b[n]!)) };
        });
      const rep = offPolicyReport(samples('ev'), { resamples, rng: mulberry32(trial * 7 + 1) });
      a.ess += rep.ess / trials;
      if (rep.reason) a.nulls++;
      for (const e of ESTS) {
        const iv = rep[e];
        if (!iv) continue;
        if (iv.lo <= truthV && truthV <= iv.hi) a.covered[e]++;
        a.width[e] += (iv.hi - iv.lo) / trials;
        a.err[e] += (iv.value - truthV) / trials;
      }
      if (setup.routes.length > 1) {
        const old = offPolicyReport(samples('naive'), { resamples, rng: mulberry32(trial * 7 + 1) });
        for (const e of ESTS) {
          const iv = old[e];
          if (iv && iv.lo <= truthV && truthV <= iv.hi) a.naive[e]++;
        }
      }
    }
  }
  const label = { a: '(a) learner', b: '(b) A/B experiment', c: '(c) mix: holdout + experiment learned vs static' }[name];
  console.log(`\n${label}  [${setup.routes.map((r) => `${r.id} ${r.q}`).join(', ')}]  (${((Date.now() - t1) / 1000).toFixed(1)} s)`);
  for (const [tname, a] of acc) {
    const pol = setup.targets[tname]!;
    console.log(`  target ${tname} (true ${truth.get(pol)!.toFixed(4)}, mean ESS ${a.ess.toFixed(0)} of ${nEvents}${a.nulls ? `, null in ${a.nulls} trials` : ''})`);
    for (const e of ESTS) {
      const pct = (v: number) => `${((100 * v) / trials).toFixed(0)} %`;
      console.log(
        `    ${e.padEnd(5)} CI coverage ${pct(a.covered[e])}  (target ≥ 90 %)  mean CI width ${a.width[e].toFixed(4)}  mean error ${a.err[e] >= 0 ? '+' : ''}${a.err[e].toFixed(4)}${setup.routes.length > 1 ? `  | logged with probability 1: ${pct(a.naive[e])}` : ''}`,
      );
    }
  }
}
