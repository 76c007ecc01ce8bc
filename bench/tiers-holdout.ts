/**
 * The tier retrain's held-out tenth, chosen by decision id (events.ts isHeldOut, the same decisions at every
 * retrain) against a draw at each retrain (the rule before, `holdout: 'draw'`), on worlds that do not change: every
 * change drift recovery detects there is a false one.
 *
 *   node --import tsx bench/tiers-holdout.ts [--worlds cheap-suffices,strong-needed] [--loop-seeds 1,2,3] [--family dev --seeds 1,2] [--outcomes 5000]
 *
 * Each world and loop seed runs the service's tier loop (src/learner/sim/tier-loop.ts, every default: safe start, gate,
 * control arm, runtime guard, drift recovery) twice in this process, once per rule. Per run: the changes detected, the
 * largest z of the residual test over the run's checks (a change iff ≥ 3), and served ÷ tier oracle by reward over
 * the last quarter. Why it matters: each version is warm-started from the fits before it, so a tenth drawn afresh
 * holds out decisions those fits trained on and the version's held-out error — what the test compares new decisions
 * with — is too low.
 */
import { readFileSync } from 'node:fs';
import { runTierLoop, type TierLoopResult } from '../src/learner/sim/tier-loop.js';
import { generateTierWorld } from '../src/learner/sim/tier-family.js';
import { loadTierWorld, type TierWorld } from '../src/learner/sim/tiers.js';
import { flag } from './lib.js';

const outcomes = Number(flag('outcomes', '5000'));
const family = flag('family', '');
const loopSeeds = flag('loop-seeds', family ? '1' : '1,2,3').split(',').map(Number);
const mean = (xs: readonly number[]) => xs.reduce((s, v) => s + v, 0) / Math.max(1, xs.length);

const worlds: { name: string; tw: TierWorld }[] = [];
if (family) {
  const seeds = JSON.parse(readFileSync(new URL('../experiments/tiers/family-seeds.json', import.meta.url), 'utf8')) as Record<string, number[]>;
  const list = flag('seeds', '') !== '' ? flag('seeds', '').split(',').map(Number) : seeds[family];
  if (!list) throw new Error(`--family ${family}: no such seed list (dev, test)`);
  for (const s of list) worlds.push({ name: `${family}-${s}`, tw: generateTierWorld(s).world });
} else {
  for (const name of flag('worlds', 'cheap-suffices,strong-needed').split(',')) worlds.push({ name, tw: loadTierWorld(name) });
}

function served(tw: TierWorld, r: TierLoopResult): number {
  const from = Math.floor(outcomes * 0.75);
  const ctx = r.contexts.slice(from);
  const s = ctx.map((_, k) => r.quality[from + k]! - tw.costWeight * r.cost[from + k]!);
  const o = ctx.map((c) => tw.oracle(c, tw.totalTokens, tw.maxCostUsd).reward);
  return mean(s) / mean(o);
}

const t0 = Date.now();
console.log(`bench/tiers-holdout: ${worlds.length} world(s) × loop seeds ${loopSeeds.join(',')}, ${outcomes} outcomes, the service's tier loop with every default; held-out tenth by decision id (now) against drawn at each retrain (before)`);
const tally = { id: { changes: 0, runs: 0, checks: 0, over2: 0, z: [] as number[], served: [] as number[] }, draw: { changes: 0, runs: 0, checks: 0, over2: 0, z: [] as number[], served: [] as number[] } };
for (const { name, tw } of worlds) {
  for (const seed of loopSeeds) {
    const line: string[] = [];
    for (const holdout of ['draw', 'id'] as const) {
      const r = runTierLoop({ world: tw, outcomes, seed, params: tw.costWeight > 0 ? { costWeight: tw.costWeight } : {}, holdout });
      const zs = r.checks.map((c) => c.z).filter(Number.isFinite);
      const maxZ = zs.length ? Math.max(...zs) : NaN;
      const ratio = served(tw, r);
      const t = tally[holdout];
      t.runs++;
      t.changes += r.changes.length;
      t.checks += zs.length;
      t.over2 += zs.filter((z) => z >= 2).length;
      t.z.push(...zs);
      t.served.push(ratio);
      line.push(`${holdout}: ${r.changes.length} change(s)${r.changes.length ? ` (at ${r.changes.map((c) => c.at).join(', ')})` : ''}, max z ${maxZ.toFixed(2)} over ${zs.length} checks, served ÷ oracle ${ratio.toFixed(4)}`);
    }
    console.log(`${name} seed ${seed}: ${line.join(' · ')}`);
  }
}
for (const k of ['draw', 'id'] as const) {
  const t = tally[k];
  console.log(`${k === 'id' ? 'by id (now)' : 'drawn (before)'}: ${t.changes} false change(s) in ${t.runs} runs; ${t.over2} of ${t.checks} checks at z ≥ 2; mean z ${mean(t.z).toFixed(2)}; served ÷ oracle mean ${mean(t.served).toFixed(4)}`);
}
const d = tally.id.served.map((v, i) => v - tally.draw.served[i]!);
const sd = Math.sqrt(d.reduce((s, v) => s + (v - mean(d)) ** 2, 0) / Math.max(1, d.length - 1));
console.log(`false changes by id ÷ drawn: ${tally.id.changes} / ${tally.draw.changes}; served, by id − drawn: mean ${mean(d).toFixed(4)} (standard error ${(sd / Math.sqrt(d.length)).toFixed(4)}), higher on ${d.filter((v) => v > 0.005).length}, lower on ${d.filter((v) => v < -0.005).length} of ${d.length} runs`);
console.log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
