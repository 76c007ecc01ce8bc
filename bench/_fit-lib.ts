/**
 * The reward-model fit report of bench/learner-fit.ts (also printed per world by bench/learner.ts --fit-report true):
 * the serving version's predicted reward against the world's expected reward on held-out contexts, for the oracle's,
 * the greedy, the uniform and the best static split. See bench/learner-fit.ts.
 */
import { forward, predict, type ModelWeights } from '../src/learner/model.js';
import type { FeatureEncoder } from '../src/learner/features.js';
import { greedyBudgets } from '../src/learner/policy.js';
import { bestStatic, staticSplit, uniformSplitOf, type GenContext, type GenSpec, type SimWorld } from '../src/learner/sim/family.js';
import { policyAgents } from '../src/learner/sim/loop.js';
import { mulberry32 } from '../src/learner/rng.js';

const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
const corr = (a: readonly number[], b: readonly number[]) => {
  const ma = mean(a);
  const mb = mean(b);
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < a.length; i++) {
    sab += (a[i]! - ma) * (b[i]! - mb);
    saa += (a[i]! - ma) ** 2;
    sbb += (b[i]! - mb) ** 2;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
};
const f3 = (v: number) => (v >= 0 ? ' ' : '') + v.toFixed(3);

/** Prints the report for one world; returns its one-line summary. */
export function fitReport(world: SimWorld<GenContext> & { readonly spec: GenSpec }, model: { readonly weights: ModelWeights; readonly encoder: FeatureEncoder; readonly version: number } | undefined, phase: 0 | 1, seed: number, nCtx: number): string {
  if (!model) {
    console.log(`${world.name}: no version serves at the end`);
    return `${world.name.padEnd(7)} no version serves`;
  }
  const rng = mulberry32(seed ^ 0x5eed);
  const ctx: GenContext[] = Array.from({ length: nCtx }, () => world.sample(rng));
  const T = world.totalTokens;
  const agents = policyAgents(world);
  const heads = ctx.map((x) => forward(model.weights, model.encoder.encode(world.features(x))));
  const st = staticSplit(world, bestStatic(world, phase, ctx.slice(0, 100), T), T);
  const uni = uniformSplitOf(world, T);
  const splits = {
    oracle: ctx.map((x) => world.oracle(phase, x, T)),
    greedy: heads.map((h) => greedyBudgets(h, agents, T)),
    uniform: ctx.map(() => uni),
    static: ctx.map(() => st),
  };
  const truth: Record<string, number[]> = {};
  const pred: Record<string, number[]> = {};
  for (const [k, bs] of Object.entries(splits)) {
    truth[k] = ctx.map((x, i) => world.expected(phase, x, bs[i]!));
    pred[k] = heads.map((h, i) => predict(h, bs[i]!));
  }
  const o = mean(truth.oracle!);
  console.log(`\n${world.name} (v${model.version}, ${world.summary})`);
  for (const k of Object.keys(splits)) console.log(`  ${k.padEnd(8)} truth ${mean(truth[k]!).toFixed(3)} (÷oracle ${(mean(truth[k]!) / o).toFixed(3)})  predicted ${mean(pred[k]!).toFixed(3)}  bias ${f3(mean(pred[k]!) - mean(truth[k]!))}  rmse ${Math.sqrt(mean(pred[k]!.map((p, i) => (p - truth[k]![i]!) ** 2))).toFixed(3)}`);
  const d = (a: string, b: string, m: Record<string, number[]>) => mean(m[a]!.map((v, i) => v - m[b]![i]!));
  console.log(`  ranking  greedy−oracle: predicted ${f3(d('greedy', 'oracle', pred))} true ${f3(d('greedy', 'oracle', truth))};  greedy−static: predicted ${f3(d('greedy', 'static', pred))} true ${f3(d('greedy', 'static', truth))};  oracle−static: predicted ${f3(d('oracle', 'static', pred))} true ${f3(d('oracle', 'static', truth))}`);
  // A split-independent level the model misses: the residual on the oracle split against each numeric feature.
  const resid = pred.oracle!.map((p, i) => truth.oracle![i]! - p);
  const feats = Object.keys(world.features(ctx[0]!)).filter((k) => typeof world.features(ctx[0]!)[k] === 'number');
  console.log(`  residual (truth − r̂ on the oracle split) correlation with: ${feats.map((k) => `${k} ${f3(corr(resid, ctx.map((x) => Number(world.features(x)[k] ?? 0))))}`).join('  ')}  (log hint ${f3(corr(resid, ctx.map((x) => Math.log(x.hint))))})`);
  // Per agent: greedy share − oracle share, and the loss of halving its oracle budget (the freed tokens to the others in proportion), predicted vs true.
  const rows: string[] = [];
  for (let a = 0; a < world.agents.length; a++) {
    const shareDiff = mean(ctx.map((_, i) => (splits.greedy[i]![a]! - splits.oracle[i]![a]!) / T));
    const cut = (b: readonly number[]) => {
      const out = b.slice();
      const take = Math.max(0, out[a]! - Math.max(agents[a]!.min, out[a]! / 2));
      out[a] = out[a]! - take;
      const rest = out.reduce((s, v, j) => (j === a ? s : s + v), 0);
      for (let j = 0; j < out.length; j++) if (j !== a) out[j] = Math.min(agents[j]!.cap, out[j]! + (take * out[j]!) / Math.max(1, rest));
      return out;
    };
    const lossT = mean(ctx.map((x, i) => truth.oracle![i]! - world.expected(phase, x, cut(splits.oracle[i]!))));
    const lossP = mean(heads.map((h, i) => pred.oracle![i]! - predict(h, cut(splits.oracle[i]!))));
    // The same at the greedy split (where the logged data is): a local misfit shows here, an extrapolation error only above.
    const gLossT = mean(ctx.map((x, i) => truth.greedy![i]! - world.expected(phase, x, cut(splits.greedy[i]!))));
    const gLossP = mean(heads.map((h, i) => pred.greedy![i]! - predict(h, cut(splits.greedy[i]!))));
    rows.push(`    ${world.agents[a]!.name.padEnd(8)} ${world.spec.agents[a]!.shape.padEnd(10)} greedy−oracle share ${f3(shareDiff)}  halving loss at the oracle split: predicted ${f3(lossP)} true ${f3(lossT)}; at the greedy split: predicted ${f3(gLossP)} true ${f3(gLossT)}`);
  }
  console.log(`  per agent:\n${rows.join('\n')}`);
  const tasks = [...new Set(ctx.map((x) => x.task))].sort((a, b) => a - b);
  console.log(`  per task greedy÷oracle (truth): ${tasks.map((t) => { const ix = ctx.map((x, i) => (x.task === t ? i : -1)).filter((i) => i >= 0); return `task${t} ${(mean(ix.map((i) => truth.greedy![i]!)) / mean(ix.map((i) => truth.oracle![i]!))).toFixed(3)} (n ${ix.length})`; }).join('  ')}`);
  return (`${world.name.padEnd(7)} greedy÷oracle ${(mean(truth.greedy!) / o).toFixed(3)} static÷oracle ${(mean(truth.static!) / o).toFixed(3)}  r̂ bias on oracle ${f3(mean(pred.oracle!) - o)}  greedy−oracle predicted ${f3(d('greedy', 'oracle', pred))} true ${f3(d('greedy', 'oracle', truth))}`);
}
