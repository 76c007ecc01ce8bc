/**
 * The tier reward model's fit (`fitTier`, src/learner/tiers-policy.ts: what every tier retrain runs, in the trainer
 * child and in the benches' loops) against the same function at another commit, on the same logged events:
 * CPU per fit, the ratio this ÷ baseline, and whether the two return the same parameters to the last bit.
 *
 *   node --import tsx bench/tier-fit.ts --base REF [--rounds 5] [--steps 150] [--events 1500]
 *
 * REF is a git revision (e.g. the commit before a change to the fit): its tiers-policy.ts and tiers-split.ts are
 * written to a scratch folder under the repository and imported beside this checkout's. Events: random joint actions
 * (each agent's model and a random split of 8,000 tokens, the world's outcome for them) on the named tier worlds and
 * on generated tier worlds of the dev seed list (2–6 agents), half of them with recency weights; the fits are the
 * retrain's two (a warm fit from a fitted start at lr 0.01, a fresh one from the prior at lr 0.03), each ridge.
 * The two implementations alternate `--rounds` times; the figure is the median of the rounds' CPU per fit.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { tierAgentsOf } from '@apportion/sdk/engine';
import { compileFeatures } from '../src/learner/features.js';
import { mulberry32 } from '../src/learner/rng.js';
import { generateTierWorld } from '../src/learner/sim/tier-family.js';
import { loadTierWorld, type TierWorld } from '../src/learner/sim/tiers.js';
import { worldFeatures } from '../src/learner/sim/world.js';
import * as current from '../src/learner/tiers-policy.js';
import type { TierAgent, TierEvent, TierParams, TierRidge } from '../src/learner/tiers-policy.js';
import { randomTierRows } from '../test/helpers/tier-server.js';
import { flag, median, ROOT } from './lib.js';

const base = flag('base', '');
const rounds = Number(flag('rounds', '5'));
const steps = Number(flag('steps', '150'));
const nEvents = Number(flag('events', '1500'));
if (base === '') {
  console.error('usage: node --import tsx bench/tier-fit.ts --base REF [--rounds 5] [--steps 150] [--events 1500]');
  process.exit(2);
}
if (!(Number.isInteger(rounds) && rounds >= 1 && Number.isInteger(steps) && steps >= 1 && Number.isInteger(nEvents) && nEvents >= 20)) {
  console.error('--rounds, --steps and --events must be integers (≥ 1, ≥ 1, ≥ 20)');
  process.exit(2);
}

const repo = ROOT;
const scratch = path.join(repo, '.bench-tier-fit', String(process.pid));
type Fit = typeof current.fitTier;
let baseline: Fit;
try {
  mkdirSync(path.join(scratch, 'src', 'learner'), { recursive: true });
  for (const f of ['tiers-policy.ts', 'tiers-split.ts']) {
    writeFileSync(path.join(scratch, 'src', 'learner', f), execFileSync('git', ['show', `${base}:src/learner/${f}`], { cwd: repo, encoding: 'utf8' }));
  }
  baseline = ((await import(pathToFileURL(path.join(scratch, 'src', 'learner', 'tiers-policy.ts')).href)) as { fitTier: Fit }).fitTier;
} finally {
  rmSync(scratch, { recursive: true, force: true });
  // The parent folder too once no other run of the bench uses it.
  try {
    rmdirSync(path.dirname(scratch));
  } catch {
    // another run's scratch is still there
  }
}

interface Case {
  readonly label: string;
  readonly agents: readonly TierAgent[];
  readonly events: readonly TierEvent[];
  readonly start: TierParams;
  readonly prior: TierParams;
  readonly dim: number;
}
const cases: Case[] = [];
const addCase = (label: string, tw: TierWorld, seed: number): void => {
  const agents = tierAgentsOf(tw.pipeline);
  const enc = compileFeatures(worldFeatures(tw.world).features);
  const rows = randomTierRows(tw, enc, nEvents, mulberry32(seed));
  const events = seed % 2 === 0 ? rows.map((r, i) => ({ ...r, weight: 0.5 ** ((rows.length - 1 - i) / 700) })) : rows;
  const prior = current.initialParams(agents, enc.dim, 1000);
  // A fitted start for the warm fit, as a retrain has: a short fit from the prior.
  const start = current.fitTier(prior, agents, events, { steps: 50, lr: 0.03 }).params;
  cases.push({ label, agents, events, start, prior, dim: enc.dim });
};
for (const name of ['cheap-suffices', 'strong-needed']) addCase(name, loadTierWorld(name), 1);
const devSeeds = (JSON.parse(readFileSync(path.join(repo, 'experiments', 'tiers', 'family-seeds.json'), 'utf8')) as { dev: number[] }).dev;
for (const seed of devSeeds.slice(0, 4)) addCase(`dev ${seed}`, generateTierWorld(seed).world, seed);

const fits: { c: Case; opts: Parameters<Fit>[3]; from: 'start' | 'prior' }[] = [];
for (const c of cases) {
  for (const ridge of ['decoupled', 'adam'] as TierRidge[]) {
    fits.push({ c, opts: { steps, lr: 0.01, ridge, centre: c.prior }, from: 'start' });
    fits.push({ c, opts: { steps, lr: 0.03, ridge, centre: c.prior }, from: 'prior' });
  }
}

const same = (a: ReturnType<Fit>, b: ReturnType<Fit>): boolean => {
  if (!Object.is(a.loss, b.loss)) return false;
  const parts = (p: TierParams) => [...p.u, ...p.theta, ...p.eta, ...p.kappa];
  const pa = parts(a.params);
  const pb = parts(b.params);
  return pa.length === pb.length && pa.every((x, i) => x.length === pb[i]!.length && x.every((v, j) => Object.is(v, pb[i]![j])));
};
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const runAll = (fit: Fit): { ms: number; out: ReturnType<Fit>[] } => {
  const t0 = cpuMs();
  const out = fits.map((f) => fit(f.from === 'start' ? f.c.start : f.c.prior, f.c.agents, f.c.events, f.opts));
  return { ms: cpuMs() - t0, out };
};

console.log(
  `bench/tier-fit: ${fits.length} fits of ${steps} steps on ${nEvents} events (${cases.map((c) => `${c.label}: ${c.agents.length} agents, dim ${c.dim}`).join('; ')}); this checkout against ${base}, ${rounds} alternating rounds`,
);
const mine: number[] = [];
const theirs: number[] = [];
let identical = true;
for (let r = 0; r < rounds; r++) {
  const b = runAll(baseline);
  const m = runAll(current.fitTier);
  theirs.push(b.ms);
  mine.push(m.ms);
  identical &&= m.out.every((o, i) => same(o, b.out[i]!));
  console.log(`round ${r + 1}: baseline ${(b.ms / fits.length).toFixed(1)} ms per fit, this ${(m.ms / fits.length).toFixed(1)} ms per fit`);
}
console.log(
  `CPU per fit: this ${(median(mine) / fits.length).toFixed(1)} ms, baseline (${base}) ${(median(theirs) / fits.length).toFixed(1)} ms; ratio this ÷ baseline ${(median(mine) / median(theirs)).toFixed(3)} (medians of ${rounds} rounds); parameters and losses identical to the last bit: ${identical ? 'yes' : 'NO'}`,
);
