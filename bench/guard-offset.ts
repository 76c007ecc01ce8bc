/**
 * How much an offset would shorten the runtime guard's detection time on worlds it was never tuned on:
 *
 *   node --import tsx bench/guard-offset.ts [--seeds test] [--shard k/n] [--outcomes 5000]
 *
 * The guard compares the realised rewards of the learned arm and the control arm (5 %) with an always-valid
 * confidence sequence; for a small shortfall its time to detect grows with the variance of the difference of the
 * arms' means, Var_l/n_l + Var_c/n_c. Subtracting from every reward a number fixed before the arm is drawn — here
 * z = r̂(x, control split), the serving version's predicted quality of the control's split for that request — leaves
 * the expected difference unchanged (the arm is drawn independently of the request and the model) and replaces
 * each arm's variance by that of r − z. So the ratio of the two variances of the difference is the factor by which
 * the offset would shorten detection of a small shortfall (time ∝ variance / gap²).
 *
 * Per generated world (experiments/family/seeds.json; every fourth a drift world, as bench/learner.ts runs it),
 * the in-process loop with the service's defaults; over every decision made while a trained version served
 * (as the guard judges), per arm Var(r) and Var(r − z), and the ratio for the difference. Both figures come from
 * the same decisions of the same run.
 *
 * Then the guard replayed on the same log, as the worker's tick would run it every 250 outcomes (guard.ts judge,
 * all trained versions pooled from the first one's decisions on), with realised rewards and with the offset, against
 * the longest stretch of 250-outcome windows in which a trained version served and the learned arm's splits were
 * worth less than the default strategy's on the same requests (by the world's truth; bench/learner.ts's "worse than
 * default"). The loop itself runs no serving-version guard, so this is when the guard would first have said worse
 * on a log that went on without it: the detection time on the shortfalls the learner produces by itself.
 */
import { readFileSync } from 'node:fs';
import { loadTf } from '../src/learner/backend.js';
import { rewardOf } from '../src/learner/events.js';
import { accumulate, GUARD_DEFAULTS, judge, NEW_RUN, type GuardRun } from '../src/learner/guard.js';
import { forward, predict } from '../src/learner/model.js';
import { generateWorld, uniformSplitOf } from '../src/learner/sim/family.js';
import { EXPLORE_DEFAULTS } from '../src/learner/policy.js';
import { armWindows, runLoop } from '../src/learner/sim/loop.js';
import { flag } from './lib.js';

const seedsFile = JSON.parse(readFileSync(new URL('../experiments/family/seeds.json', import.meta.url), 'utf8')) as Record<string, number[]>;
const which = flag('seeds', 'test');
const seeds = seedsFile[which] ?? which.split(',').map(Number);
const [shardK, shardN] = flag('shard', '1/1').split('/').map(Number) as [number, number];
const outcomes = Number(flag('outcomes', '5000'));
// The service's exploration defaults, as bench/learner.ts runs the loop.
const explore = { explorer: 'squarecb' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5, ...EXPLORE_DEFAULTS };
const { tf, backend } = await loadTf();

const variance = (xs: readonly number[]) => {
  const m = xs.reduce((s, v) => s + v, 0) / xs.length;
  return xs.reduce((s, v) => s + (v - m) ** 2, 0) / Math.max(1, xs.length - 1);
};
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

console.log(`bench/guard-offset: backend ${backend}; ${which} seeds shard ${shardK}/${shardN}; ${outcomes} outcomes per world (drift worlds twice that, change at the middle)`);
const ratios: number[] = [];
const replays: { seed: number; stretch: { start: number; len: number; gap: number }; fire: (number | undefined)[] }[] = [];
for (const [i, seed] of seeds.entries()) {
  if (i % shardN !== shardK - 1) continue;
  const drift = i % 4 === 3;
  const N = drift ? 2 * outcomes : outcomes;
  const world = generateWorld(seed, drift ? { driftAt: N / 2 } : {});
  const t0 = Date.now();
  const res = await runLoop(tf, { world, outcomes: N, seed, explore, evalContexts: 0, checkpointEvery: N });
  const uniform = uniformSplitOf(world, world.totalTokens);
  const byVersion = new Map(res.versions.map((v) => [v.version, v]));
  const arms: Record<0 | 1, { r: number[]; z: number[] }> = { 0: { r: [], z: [] }, 1: { r: [], z: [] } };
  if (res.events.length !== N) throw new Error(`expected ${N} events, got ${res.events.length}`);
  for (const [t, e] of res.events.entries()) {
    if (!e.m) continue;
    const arm = res.controlServed[t] === 1 ? 1 : 0;
    const v = byVersion.get(e.m);
    if (!v) continue;
    const heads = forward(v.weights, v.encoder.encode(e.f));
    arms[arm].r.push(rewardOf(e, world.costWeight));
    arms[arm].z.push(predict(heads, uniform));
  }
  // The longest worse-than-default stretch (as bench/learner.ts) and the guard replayed with and without the offset.
  let stretch = { start: -1, len: 0, gap: 0 };
  let runDv = 0;
  let runN = 0;
  let run = 0;
  let from = 0;
  for (const { start: st, trained, dv, n: armN } of armWindows(world, res, uniform)) {
    const worse = trained && armN > 0 && dv / armN < 0;
    if (worse && run === 0) {
      from = st;
      runDv = 0;
      runN = 0;
    }
    run = worse ? run + 250 : 0;
    if (worse) {
      runDv += dv;
      runN += armN;
    }
    // gap: the learned arm's mean shortfall against the default over the stretch (true expected reward).
    if (run > stretch.len) stretch = { start: from, len: run, gap: runDv / runN };
  }
  const fire: (number | undefined)[] = [undefined, undefined];
  let runs: [GuardRun, GuardRun] = [NEW_RUN, NEW_RUN];
  for (const [t, e] of res.events.entries()) {
    if (e.m) {
      const v = byVersion.get(e.m)!;
      const a = res.controlServed[t] === 1 ? 1 : 0;
      const r = rewardOf(e, world.costWeight);
      const z = predict(forward(v.weights, v.encoder.encode(e.f)), uniform);
      runs = [accumulate(runs[0], e.m, a, r), accumulate(runs[1], e.m, a, r, GUARD_DEFAULTS.segmentOutcomes, z)];
    }
    if ((t + 1) % 250 === 0) for (const k of [0, 1] as const) if (fire[k] === undefined && judge(runs[k]).status === 'worse') fire[k] = t + 1;
  }
  const fmtFire = (f: number | undefined) => (f === undefined ? 'never' : stretch.len > 0 && f >= stretch.start ? `${f} (${f - stretch.start} into it)` : `${f}`);
  console.log(`gen-${seed}: worse than default ${stretch.len} in a row${stretch.len ? ` from ${stretch.start} (mean shortfall ${stretch.gap.toFixed(4)})` : ''}; guard replayed: realised rewards ${fmtFire(fire[0])}, offset ${fmtFire(fire[1])}`);
  replays.push({ seed, stretch, fire });
  const [l, c] = [arms[0], arms[1]];
  if (l.r.length < 30 || c.r.length < 30) {
    console.log(`gen-${seed}: too few judged decisions (learned ${l.r.length}, control ${c.r.length})`);
    continue;
  }
  const off = (a: { r: number[]; z: number[] }) => a.r.map((r, k) => r - a.z[k]!);
  const before = variance(l.r) / l.r.length + variance(c.r) / c.r.length;
  const after = variance(off(l)) / l.r.length + variance(off(c)) / c.r.length;
  const ratio = after / before;
  ratios.push(ratio);
  console.log(
    `gen-${seed}${drift ? ' (drift)' : ''}: judged ${l.r.length} learned / ${c.r.length} control; Var(r) learned ${variance(l.r).toFixed(5)} control ${variance(c.r).toFixed(5)}; Var(r − z) learned ${variance(off(l)).toFixed(5)} control ${variance(off(c)).toFixed(5)}; variance of the difference, offset ÷ realised ${ratio.toFixed(3)}  (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
  );
  console.log(`ROW ${JSON.stringify({ seed, drift, ratio, nl: l.r.length, nc: c.r.length, stretch, fire })}`);
}
if (ratios.length) console.log(`\n${ratios.length} worlds: offset ÷ realised variance of the arms' difference, median ${median(ratios).toFixed(3)}, min ${Math.min(...ratios).toFixed(3)}, max ${Math.max(...ratios).toFixed(3)}; above 1 on ${ratios.filter((r) => r > 1).length}`);
const long = replays.filter((r) => r.stretch.len >= 500);
if (long.length) console.log(`worse-than-default stretches of ≥ 500 outcomes: ${long.length}; mean shortfall over the stretch median ${median(long.map((r) => r.stretch.gap)).toFixed(4)}, largest ${Math.min(...long.map((r) => r.stretch.gap)).toFixed(4)}`);
for (const [k, label] of [[0, 'realised rewards'], [1, 'offset']] as const) {
  const delays = long.filter((r) => r.fire[k] !== undefined && r.fire[k]! >= r.stretch.start).map((r) => r.fire[k]! - r.stretch.start);
  const early = replays.filter((r) => r.fire[k] !== undefined && (r.stretch.len === 0 || r.fire[k]! < r.stretch.start)).length;
  console.log(
    `guard replayed (${label}): of ${long.length} worlds with a worse-than-default stretch of ≥ 500 outcomes, said worse during or after it on ${delays.length}` +
      (delays.length ? ` (outcomes into the stretch: median ${median(delays)}, max ${Math.max(...delays)})` : '') +
      `; said worse before any such stretch, or on a world without one, on ${early} of ${replays.length}`,
  );
}
