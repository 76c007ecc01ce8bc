/**
 * Where the tier learner loses against the tier-aware oracle and the best static choice, by the world's truth:
 *
 *   nice -n 10 node --import tsx bench/tiers-gap.ts --family dev [--seeds 1,2] [--outcomes 5000] [--loop-seed 1] [--detail true] [--dump DIR] [--ridge decoupled] [--decay 0.01] [--token-share 0.05] [--token-spread 0.7] [--epsilon-decay 1] [--gap-weight 20] [--control-min 0.01] [--control-margin 0.05] [--train-every 500] [--serving-floor 0] [--gate-truth 0] [--worlds cheap-suffices --seed 1]
 *
 * Per generated tier world (src/learner/sim/tier-family.ts, seeds in experiments/tiers/family-seeds.json), the
 * service's loop (tier-loop.ts) runs as `bench/learner-tiers.ts --family` runs it. On the requests of the last quarter
 * and by expected reward (quality − λ·planned cost, the world's λ), with the run's final active version (the loop's
 * `final`: after its last retrain, so possibly activated after the last decision; a second line gives the same split
 * on the version serving at the end when that is another one):
 *
 * - served: what the loop served (exploration, control arm and candidate share included);
 * - greedy: that version's greedy joint action (models and tokens);
 * - right models, best tokens: the true best split on the greedy action's models (at the ceiling and, with λ > 0,
 *   at 0.8, 0.64, … 0.1× of it, as the oracle tries);
 * - oracle: the tier-aware oracle; best static: the best static single-model-per-agent choice (fitted on a fifth).
 *
 * The loss oracle − served splits into exploration (greedy − served; of which the control arm's decisions, with the
 * share of the decisions the control arm served), model choice (oracle − right models/best tokens) and token split
 * (right models/best tokens − greedy), the last with its cost overspend λ·(greedy's planned cost − the best split's on
 * those models) apart.
 * Printed as fractions of the oracle's mean reward. `--detail true` adds per agent the fitted need ÷ the true one, the
 * fitted and true weights and the mean budgets (greedy, and the true best split on the same models), and which version
 * served which decisions, the gate's verdicts and the reverts.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { tierAgentsOf } from '@apportion/sdk/engine';
import { compileFeatures } from '../src/learner/features.js';
import { generateTierWorld } from '../src/learner/sim/tier-family.js';
import { runTierLoop, type TierLoopVersion } from '../src/learner/sim/tier-loop.js';
import { bestStaticTier, loadTierWorld, servedStatic, type TierWorld } from '../src/learner/sim/tiers.js';
import { worldFeatures, type SimContext } from '../src/learner/sim/world.js';
import { curvesOf, deserializeTierParams, TIER_RIDGE, tierGreedy } from '../src/learner/tiers-policy.js';
import { bestSplit, floorSplit } from '../src/learner/tiers-split.js';
import { mulberry32 } from '../src/learner/rng.js';
import { flag, tierPolicyFlags } from './lib.js';

const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / Math.max(1, xs.length);

/** The true best (reward) split on fixed models, at the ceiling and (λ > 0) at the oracle's smaller fractions. */
export function bestOnModels(tw: TierWorld, c: SimContext, assign: readonly number[], total: number, ceiling: number): { budgets: number[]; reward: number } {
  const cv = tw.curves(c);
  const fractions = tw.costWeight > 0 ? [1, 0.8, 0.64, 0.5, 0.4, 0.3, 0.2, 0.1] : [1];
  let best = { budgets: tw.agents.map((a) => a.minTokens), reward: -Infinity };
  for (const f of fractions) {
    const s = bestSplit(cv.map((row, i) => row[assign[i]!]!), assign.map((k) => tw.rates[k]!), tw.agents.map((a) => a.minTokens), tw.agents.map((a) => a.maxTokens), total, ceiling * f);
    if (!s) break;
    const b = floorSplit(s, tw.agents.map((a) => a.minTokens));
    const r = tw.reward(c, assign, b);
    if (r > best.reward) best = { budgets: b, reward: r };
  }
  return best;
}

type TierWorldVersion = NonNullable<ReturnType<typeof runTierLoop>['final']>;

/** A version's greedy joint action for a request of the world (its encoder and parameters built once). */
function greedyOf(tw: TierWorld, v: Pick<TierWorldVersion, 'tiers' | 'scaling'>, T: number, C: number, lam: number) {
  const agents = tierAgentsOf(tw.pipeline);
  const encoder = compileFeatures(worldFeatures(tw.world).features, v.scaling);
  const params = deserializeTierParams(v.tiers, agents, encoder.dim);
  return { encoder, params, act: (c: SimContext) => tierGreedy(params, agents, encoder.encode(tw.features(c)), T, C, { epsilon: 0, perturbation: 0.5, costWeight: lam })! };
}

/** The mean true reward of a version's greedy action over requests. */
function greedyValue(tw: TierWorld, v: Pick<TierWorldVersion, 'tiers' | 'scaling'>, ctxs: readonly SimContext[], T: number, C: number, lam: number): number {
  const { act } = greedyOf(tw, v, T, C, lam);
  return mean(ctxs.map((c) => {
    const g = act(c);
    return tw.reward(c, g.assign, g.budgets);
  }));
}

/** The `--gate-truth` verdict: true values of the versions' greedy actions (cached per version) and of the default's. */
function truthGate(tw: TierWorld, T: number, C: number, lam: number, delta: number): NonNullable<Parameters<typeof runTierLoop>[0]['gateOverride']> {
  const rng = mulberry32(9_131);
  const ctxs = Array.from({ length: 200 }, () => tw.sample(rng));
  const cache = new Map<number, number>();
  let dflt: number | undefined;
  const valueOf = (v: TierLoopVersion) => {
    const key = v.version ?? 0;
    if (!cache.has(key)) cache.set(key, greedyValue(tw, v, ctxs, T, C, lam));
    return cache.get(key)!;
  };
  return (cand, serving, defaultAction) => {
    dflt ??= mean(ctxs.map((c) => {
      const a = defaultAction(tw.features(c), T, C);
      return tw.reward(c, a.assign, a.budgets);
    }));
    const vc = valueOf(cand);
    return vc >= dflt - delta && (!serving || vc >= valueOf(serving) - delta);
  };
}

const outcomes = Number(flag('outcomes', '5000'));
const detail = flag('detail', 'false') === 'true';
const dump = flag('dump', '');
// `--ridge adam|decoupled`: how the tier retrain's fit regularises (tiers-policy.ts TierRidge); default the service's.
const ridge = flag('ridge', '') as '' | 'adam' | 'decoupled';
// `--decay x`: the tier fit's regularisation strength (fitTier's `l2`; default the ridge's, TIER_DECAY for `decoupled`).
const decay = flag('decay', '');
if (decay !== '' && !(Number(decay) >= 0)) throw new Error(`--decay ${decay}: a number ≥ 0`);
// `--token-share`, `--token-spread`, `--epsilon-decay`, `--gap-weight`, `--control-min`, `--control-margin`, `--train-every`, `--serving-floor`: bench/lib.ts tierPolicyFlags.
const policy = tierPolicyFlags();
const tokenParams = policy.params;
const loopSeed = Number(flag('loop-seed', flag('seed', '1')));
// `--gate-truth δ` (diagnostic): the activation gate's verdict replaced by the world's truth — a candidate serves iff its
// greedy action's true mean reward on 200 fixed requests is at least the serving version's and the default strategy's
// minus δ (reward units) — to measure what the gate's estimates cost.
const gateTruth = flag('gate-truth', '');
if (gateTruth !== '' && !(Number(gateTruth) >= 0)) throw new Error(`--gate-truth ${gateTruth}: a number ≥ 0`);
const which = flag('family', 'dev');
const seeds = JSON.parse(readFileSync(new URL('../experiments/tiers/family-seeds.json', import.meta.url), 'utf8')) as Record<string, number[]>;
// `--worlds cheap-suffices,strong-needed`: the named tier worlds instead of the family (`--seed` the loop seed).
const named = flag('worlds', '') !== '' ? flag('worlds', '').split(',') : [];
const list: (number | string)[] = named.length ? named : flag('seeds', '') !== '' ? flag('seeds', '').split(',').map(Number) : seeds[which]!;
const t0 = Date.now();
console.log(`bench/tiers-gap --family ${which}: ${list.length} worlds, ${outcomes} outcomes each (loop seed ${loopSeed}, fit ridge ${ridge || TIER_RIDGE}, decay ${decay || 'default'}, ${policy.label}${gateTruth !== '' ? `, gate replaced by the truth (δ ${gateTruth})` : ''}); last quarter, by true expected reward, as fractions of the oracle's`);
const sums: Record<string, number[]> = {};
for (const seed of list) {
  const fw = typeof seed === 'string' ? { world: loadTierWorld(seed), doc: { description: seed } } : generateTierWorld(seed);
  const tw = fw.world;
  const C = tw.maxCostUsd;
  const T = tw.totalTokens;
  const lam = tw.costWeight;
  const r = runTierLoop({
    world: tw,
    outcomes,
    seed: loopSeed,
    params: { ...(lam > 0 ? { costWeight: lam } : {}), ...tokenParams },
    ...(ridge ? { ridge } : {}),
    ...(decay !== '' ? { decay: Number(decay) } : {}),
    ...(gateTruth !== '' ? { gateOverride: truthGate(tw, T, C, lam, Number(gateTruth)) } : {}),
    ...policy.loop,
  });
  const from = Math.floor(outcomes * 0.75);
  const ctx = r.contexts.slice(from);
  const served = ctx.map((_, k) => r.quality[from + k]! - lam * r.cost[from + k]!);
  const oracle = ctx.map((c) => tw.oracle(c, T, C));
  const st = bestStaticTier(tw, ctx.filter((_, i) => i % 5 === 0), T, C, { polishTop: 4 });
  const sb = servedStatic(tw, st.assign, st.shares, T, C);
  const staticR = ctx.map((c) => tw.reward(c, st.assign, sb));
  const fin = r.final;
  if (!fin) {
    console.log(`seed ${seed}: no version trained`);
    continue;
  }
  const agents = tierAgentsOf(tw.pipeline);
  /** A version's greedy action on the last quarter's requests, and the true best split on its models. */
  const splitOf = (v: Pick<TierWorldVersion, 'tiers' | 'scaling'>) => {
    const { encoder: enc, params: p, act } = greedyOf(tw, v, T, C, lam);
    const g = ctx.map(act);
    return { encoder: enc, params: p, greedy: g, greedyR: g.map((a, k) => tw.reward(ctx[k]!, a.assign, a.budgets)), right: g.map((a, k) => bestOnModels(tw, ctx[k]!, a.assign, T, C)) };
  };
  const { encoder, params, greedy, greedyR, right } = splitOf(fin);
  const overspend = greedy.map((g, k) => lam * (tw.plannedCost(g.assign, g.budgets) - tw.plannedCost(g.assign, right[k]!.budgets)));
  const O = mean(oracle.map((o) => o.reward));
  const n = ctx.length;
  const explCtl = ctx.reduce((s, _, k) => s + (r.control[from + k] ? greedyR[k]! - served[k]! : 0), 0) / n;
  const controlN = ctx.reduce((s, _, k) => s + (r.control[from + k] ? 1 : 0), 0);
  const expl = mean(greedyR) - mean(served);
  const modelLoss = O - mean(right.map((x) => x.reward));
  const tokenLoss = mean(right.map((x) => x.reward)) - mean(greedyR);
  const wrongModels = mean(greedy.map((g, k) => g.assign.reduce((s, m, i) => s + (m !== oracle[k]!.assign[i] ? 1 : 0), 0)));
  const cheapG = mean(greedy.map((g) => g.assign.filter((m) => m > 0).length));
  const cheapO = mean(oracle.map((o) => o.assign.filter((m) => m > 0).length));
  const row = {
    served: mean(served) / O,
    greedy: mean(greedyR) / O,
    staticR: mean(staticR) / O,
    exploration: expl / O,
    explControl: explCtl / O,
    controlShare: controlN / n,
    model: modelLoss / O,
    tokens: tokenLoss / O,
    overspend: mean(overspend) / O,
  };
  for (const [k, v] of Object.entries(row)) (sums[k] ??= []).push(v);
  console.log(
    `seed ${seed}: ${fw.doc.description}; λ ${lam}; serving at the end v${r.version[outcomes - 1]} (final v${fin.version}): ` +
      `served ${row.served.toFixed(4)}, greedy ${row.greedy.toFixed(4)}, best static ${row.staticR.toFixed(4)} [${st.assign.map((m) => tw.models[m]).join(', ')}] of the oracle; ` +
      `loss: exploration ${row.exploration.toFixed(4)} (control arm ${row.explControl.toFixed(4)}, on ${(100 * row.controlShare).toFixed(1)} % of the decisions), model choice ${row.model.toFixed(4)}, token split ${row.tokens.toFixed(4)} (cost overspend ${row.overspend.toFixed(4)}); ` +
      `agents per request on another model than the oracle's ${wrongModels.toFixed(2)}, on a cheaper model: greedy ${cheapG.toFixed(2)}, oracle ${cheapO.toFixed(2)}`,
  );
  console.log(`ROW ${JSON.stringify({ family: which, seed, ...row })}`);
  // The split above is of the newest version; when another one served the end of the run, the same split on it.
  const servingAtEnd = r.trainedVersions.find((v) => v.version === r.version[outcomes - 1]);
  if (servingAtEnd && servingAtEnd.version !== fin.version) {
    const sv = splitOf(servingAtEnd);
    const svR = mean(sv.greedyR);
    const svRight = mean(sv.right.map((x) => x.reward));
    console.log(
      `  on v${servingAtEnd.version}, the version serving at the end: greedy ${(svR / O).toFixed(4)}; loss: exploration ${((svR - mean(served)) / O).toFixed(4)}, model choice ${((O - svRight) / O).toFixed(4)}, token split ${((svRight - svR) / O).toFixed(4)}`,
    );
  }
  if (detail) {
    // Every trained version's greedy action, by the truth, on a fifth of the last quarter's requests.
    const some = ctx.filter((_, i) => i % 5 === 0);
    const O5 = mean(some.map((c) => tw.oracle(c, T, C).reward));
    const vs = r.trainedVersions.map((v) => `v${v.version}@${v.at}${v.activated ? '*' : ''} ${(greedyValue(tw, v, some, T, C, lam) / O5).toFixed(3)}`);
    console.log(`  greedy ÷ oracle per trained version (* activated): ${vs.join(', ')}`);
    // Which version served which decisions (0: the safe start or the control), the gate's verdicts and the reverts.
    const segs: string[] = [];
    for (let t = 1, start = 0; t <= outcomes; t++) {
      if (t === outcomes || r.version[t] !== r.version[start]) {
        segs.push(`v${r.version[start]} ${start}–${t - 1}`);
        start = t;
      }
    }
    console.log(`  serving: ${segs.join(', ')}`);
    console.log(`  gates: ${r.gates.map((g) => `v${g.version}@${g.at} ${g.status}${g.reason ? ` (${g.reason})` : ''}`).join('; ') || 'none'}`);
    if (r.reverts.length) console.log(`  reverts: ${r.reverts.map((x) => `@${x.at} ${x.reason} v${x.from} → v${x.to} (${x.diff.toFixed(4)})`).join('; ')}`);
    // Per agent: the fitted curve on the greedy's model against the truth (geometric mean ratio of the need, mean
    // weight), and the mean budgets of the greedy and of the true best split on the same models.
    // The fitted and the true curves of every request, once for all agents.
    const fitted = ctx.map((c) => curvesOf(params, agents, encoder.encode(tw.features(c))));
    const truth = ctx.map((c) => tw.curves(c));
    tw.agents.forEach((a, i) => {
      let lr = 0;
      let fw = 0;
      let tw0 = 0;
      let gb = 0;
      let bb = 0;
      let reachF = 0;
      let reachT = 0;
      ctx.forEach((_, k) => {
        const m = greedy[k]!.assign[i]!;
        const f = fitted[k]![i]![m]!;
        const t = truth[k]![i]![m]!;
        lr += Math.log(f.N / t.N) / n;
        fw += (f.A + f.B) / n;
        tw0 += (t.A + t.B) / n;
        reachF += f.B / (f.A + f.B) / n;
        reachT += t.B / (t.A + t.B) / n;
        gb += greedy[k]!.budgets[i]! / n;
        bb += right[k]!.budgets[i]! / n;
      });
      console.log(`  ${a.name}: fitted need ÷ true ×${Math.exp(lr).toFixed(2)} (geometric mean), weight fitted ${fw.toFixed(3)} true ${tw0.toFixed(3)}, reach on the greedy's model fitted ${reachF.toFixed(2)} true ${reachT.toFixed(2)}; mean budget greedy ${gb.toFixed(0)}, best on those models ${bb.toFixed(0)}`);
    });
  }
  // `--dump DIR`: the final version and the logged events, to refit offline.
  if (dump !== '') writeFileSync(`${dump}/tiers-gap-${which}-${seed}.json`, JSON.stringify({ final: fin, events: r.events }));
}
const med = (xs: number[]) => {
  const s = xs.slice().sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
console.log(`mean over ${sums['served']?.length ?? 0} worlds: ${Object.entries(sums).map(([k, v]) => `${k} ${mean(v).toFixed(4)}`).join(', ')}`);
console.log(`median: ${Object.entries(sums).map(([k, v]) => `${k} ${med(v).toFixed(4)}`).join(', ')}`);
console.log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
