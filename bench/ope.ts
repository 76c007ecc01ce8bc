/**
 * Off-policy evaluation coverage: how often the 95 % bootstrap CI of IPS, SNIPS and DR contains the
 * target policy's true (on-policy) value, over repeated logging trials with known ground truth, on logs made
 * by (a) the learner, (b) an A/B experiment, (c) a mix of both, (d) an A/B of two nearby static splits.
 *
 *   node --import tsx bench/ope.ts [--trials 100] [--events 1000] [--resamples 200] [--world support-basic] [--setups a,b,c,d]
 *                                  [--tolerances 0.005,0.02] [--near 0.015]
 *
 * `--tolerances`: the action-match tolerances compared on the same logs (default: the service's, OPE_TOLERANCE);
 * each row reports coverage, mean CI width, mean error (bias) and mean support, and whether the service would
 * withhold IPS and SNIPS for partial support (below IPS_MIN_SUPPORT).
 *
 * A model is first trained in-process (3,000 outcomes), then frozen. Logging policies (each decision is a new
 * unit, so routing draws are independent per decision):
 *   (a) the learned strategy: SquareCB exploration, with the runtime guard's control arm (5 % uniform);
 *   (b) an A/B experiment at 80 % coverage: static A (the best static split) 50 %, static B (A with its
 *       largest share halved) 50 %; the other 20 % get the pipeline default (uniform);
 *   (c) a 10 % holdout (uniform), then an experiment: the learned strategy (with its control arm) 50 %,
 *       static A 50 %;
 *   (d) an A/B of static B and a nearby variant of it (`--near` of the total moved between two agents, default
 *       0.015), 50 % each: what an action-match tolerance wider than their distance merges.
 * Targets: (a) uniform, static A (never logged exactly: only explored candidates come near it) and the learned greedy
 * split; (b) both variants and uniform; (c) uniform, static A and the learned greedy split; (d) both variants.
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
import { IPS_MIN_SUPPORT, importanceWeight, OPE_TOLERANCE } from '../src/learner/ope-service.js';
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
const setups = flag('setups', 'a,b,c,d').split(',');
const tolerances = flag('tolerances', String(OPE_TOLERANCE)).split(',').map(Number);
if (tolerances.some((t) => !(t >= 0 && t < 1))) throw new Error('--tolerances: shares of the total in [0, 1), comma-separated');
/** The probability-1 comparison is computed at the first tolerance only. */
const naiveTolerance = tolerances[0]!;
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
/**
 * Static B with `--near` (default 0.015) of the total moved from its largest budget to its smallest one (within
 * min/max): a nearby variant, as an A/B of a small tweak is; its half-L1 distance from B is `near`. (Around static A,
 * the best static split, the reward is flat to first order and a nearby variant earns the same.)
 */
const near = Number(flag('near', '0.015'));
const budgetsNear = (() => {
  const b = staticB({} as SimContext);
  const top = b.indexOf(Math.max(...b));
  const order = b.map((v, i) => [v, i] as const).sort((x, y) => x[0] - y[0]);
  const low = order.find(([, i]) => i !== top && b[i]! + near * T <= world.agents[i]!.maxTokens)![1];
  const moved = Math.round(near * T);
  return b.map((v, i) => (i === top ? v - moved : i === low ? v + moved : v));
})();
const staticNear: Policy = () => budgetsNear;
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
  a: { routes: [{ id: 'learned', q: 1 }], targets: { uniform, 'static-a': staticA, 'learned-greedy': greedy } },
  b: { routes: [{ id: 'static-a', q: 0.4 }, { id: 'static-b', q: 0.4 }, { id: '@uniform', q: 0.2 }], targets: { 'static-a': staticA, 'static-b': staticB, uniform } },
  c: { routes: [{ id: '@uniform', q: 0.1 }, { id: 'learned', q: 0.45 }, { id: 'static-a', q: 0.45 }], targets: { uniform, 'static-a': staticA, 'learned-greedy': greedy } },
  d: { routes: [{ id: 'static-b', q: 0.5 }, { id: 'static-near', q: 0.5 }], targets: { 'static-b': staticB, 'static-near': staticNear } },
};
const deterministic: Record<string, Policy> = { 'static-a': staticA, 'static-b': staticB, 'static-near': staticNear, '@uniform': uniform };

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
const truth = new Map<Policy, number>([uniform, staticA, staticB, staticNear, greedy].map((p) => [p, truthOf(p)]));
console.log(`bench/ope: ${world.name}, ${trials} trials × ${nEvents} logged events, ${resamples} bootstrap resamples (setup ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
console.log(`true values: uniform ${truth.get(uniform)!.toFixed(4)}, static-a ${truth.get(staticA)!.toFixed(4)}, static-b ${truth.get(staticB)!.toFixed(4)}, static-near ${truth.get(staticNear)!.toFixed(4)}, learned-greedy ${truth.get(greedy)!.toFixed(4)}`);

type Est = 'ips' | 'snips' | 'dr';
const ESTS: readonly Est[] = ['ips', 'snips', 'dr'];
for (const name of setups) {
  const setup = SETUPS[name];
  if (!setup) throw new Error(`unknown setup ${name} (a, b, c, d)`);
  const t1 = Date.now();
  type Acc = { covered: Record<Est, number>; naive: Record<Est, number>; width: Record<Est, number>; err: Record<Est, number>; nulls: number; ess: number; support: number; partial: number };
  const acc = new Map<string, Acc>();
  const keyOf = (t: string, tol: number) => `${t}@${tol}`;
  for (const t of Object.keys(setup.targets))
    for (const tol of tolerances)
      acc.set(keyOf(t, tol), { covered: { ips: 0, snips: 0, dr: 0 }, naive: { ips: 0, snips: 0, dr: 0 }, width: { ips: 0, snips: 0, dr: 0 }, err: { ips: 0, snips: 0, dr: 0 }, nulls: 0, ess: 0, support: 0, partial: 0 });
  for (let trial = 0; trial < trials; trial++) {
    const rng = mulberry32(1000 + trial + 7919 * name.charCodeAt(0));
    const logs = Array.from({ length: nEvents }, () => {
      const x = sampleContext(world, rng);
      return { x, ...logOne(setup, x, rng) };
    });
    for (const [tname, pol] of Object.entries(setup.targets)) {
      const truthV = truth.get(pol)!;
      // The target's action and the direct method per logged decision, shared by every tolerance.
      const per = logs.map((l) => {
        const target = pol(l.x);
        const h = forward(weights, encoder.encode(l.ev.f));
        return { target, dmTarget: predict(h, target), dmLogged: predict(h, names.map((n) => l.ev.b[n]!)) };
      });
      for (const tol of tolerances) {
        const a = acc.get(keyOf(tname, tol))!;
        let supported = 0;
        const samples = (which: 'ev' | 'naive'): OpeSample[] =>
          logs.map((l, i) => {
            const ev = l[which];
            const iw = importanceWeight(ev, names, per[i]!.target, tol);
            if (which === 'ev' && iw.supported) supported++;
            return { r: ev.q, w: iw.w, dmTarget: per[i]!.dmTarget, dmLogged: per[i]!.dmLogged };
          });
        const rep = offPolicyReport(samples('ev'), { resamples, rng: mulberry32(trial * 7 + 1) });
        a.ess += rep.ess / trials;
        a.support += supported / nEvents / trials;
        if (supported / nEvents < IPS_MIN_SUPPORT) a.partial++;
        if (rep.reason) a.nulls++;
        for (const e of ESTS) {
          const iv = rep[e];
          if (!iv) continue;
          if (iv.lo <= truthV && truthV <= iv.hi) a.covered[e]++;
          a.width[e] += (iv.hi - iv.lo) / trials;
          a.err[e] += (iv.value - truthV) / trials;
        }
        if (setup.routes.length > 1 && tol === naiveTolerance) {
          const old = offPolicyReport(samples('naive'), { resamples, rng: mulberry32(trial * 7 + 1) });
          for (const e of ESTS) {
            const iv = old[e];
            if (iv && iv.lo <= truthV && truthV <= iv.hi) a.naive[e]++;
          }
        }
      }
    }
  }
  const label = { a: '(a) learner', b: '(b) A/B experiment', c: '(c) mix: holdout + experiment learned vs static', d: `(d) A/B of two nearby static splits (${near} of the total apart)` }[name];
  console.log(`\n${label}  [${setup.routes.map((r) => `${r.id} ${r.q}`).join(', ')}]  (${((Date.now() - t1) / 1000).toFixed(1)} s)`);
  for (const [tname, pol] of Object.entries(setup.targets)) {
    console.log(`  target ${tname} (true ${truth.get(pol)!.toFixed(4)})`);
    for (const tol of tolerances) {
      const a = acc.get(keyOf(tname, tol))!;
      const withheld = a.partial ? `, IPS/SNIPS withheld (support < ${IPS_MIN_SUPPORT}) in ${a.partial} trials` : '';
      console.log(`   tolerance ${tol}: mean support ${a.support.toFixed(3)}, mean ESS ${a.ess.toFixed(0)} of ${nEvents}${a.nulls ? `, null in ${a.nulls} trials` : ''}${withheld}`);
      for (const e of ESTS) {
        const pct = (v: number) => `${((100 * v) / trials).toFixed(0)} %`;
        const naive = setup.routes.length > 1 && tol === naiveTolerance ? `  | logged with probability 1: ${pct(a.naive[e])}` : '';
        console.log(
          `    ${e.padEnd(5)} CI coverage ${pct(a.covered[e])}  (target ≥ 90 %)  mean CI width ${a.width[e].toFixed(4)}  mean error ${a.err[e] >= 0 ? '+' : ''}${a.err[e].toFixed(4)}${naive}`,
        );
      }
    }
  }
}
