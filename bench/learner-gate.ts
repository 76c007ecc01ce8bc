/**
 * The activation gate against the world's truth: which rule refuses the versions that would have helped, and how
 * often a version that is truly worse passes. Runs the in-process loop (sim/loop.ts, as bench/learner.ts) and at
 * every gate look values the candidate's, the serving version's and the default strategy's greedy splits with the
 * world's expected reward (300 requests of the current phase), then judges the same input under each rule listed
 * in `--rules` (paired: identical decisions, so the rules differ only in how they decide).
 *
 *   node --import tsx bench/learner-gate.ts [--seeds dev|<n,n,…>] [--rules default,<name>,…] [--act default]
 *                                           [--bad 0|<k>] [--guard-candidate true|false] [--candidate-share 0.1] [--train-every 500] [--outcomes 5000]
 *
 * `--act`: the rule the loop acts on (its verdicts decide what serves). `--bad k`: every k-th version is trained
 * on 1 − quality (a deliberately bad candidate; not the next retrain's warm start), the safety harness: with
 * `--guard-candidate false` the runtime guard's candidate arm does not drop it before the gate sees it.
 *
 * A version *helps* when its true value is above what serves now (the serving version's greedy split, or the
 * default strategy's during the safe start) and not below the default's by more than δ; it is *worse* when its
 * true value is below the default strategy's (the safety target) — `worse by > δ` is reported apart.
 */
import { readFileSync } from 'node:fs';
import { loadTf } from '../src/learner/backend.js';
import { forward, predict } from '../src/learner/model.js';
import { rewardOf } from '../src/learner/events.js';
import { importanceWeight } from '../src/learner/ope-service.js';
import { EXPLORE_DEFAULTS, greedyBudgets } from '../src/learner/policy.js';
import { GATE_RULES, gateVerdict, type GateRule, type GateVerdict } from '../src/learner/gate.js';
import { generateWorld, uniformSplitOf, type SimWorld } from '../src/learner/sim/family.js';
import { mulberry32 } from '../src/learner/rng.js';
import { policyAgents, runLoop, type LoopVersion } from '../src/learner/sim/loop.js';
import { DEFAULT_MIN_STEPS } from '../src/learner/trainer.js';
import { flag } from './lib.js';

const seedsFile = JSON.parse(readFileSync(new URL('../experiments/family/seeds.json', import.meta.url), 'utf8')) as { test: number[]; dev: number[] };
const seedArg = flag('seeds', 'dev');
const seeds = seedArg === 'dev' ? seedsFile.dev : seedArg === 'test' ? seedsFile.test : seedArg.split(',').map(Number);
const ruleNames = flag('rules', 'default').split(',');
const actName = flag('act', 'default');
const bad = Number(flag('bad', '0'));
const guardCandidate = flag('guard-candidate', 'true') !== 'false';
const candShare = flag('candidate-share', '');
const trainEvery = flag('train-every', '');
const outcomes = Number(flag('outcomes', '5000'));
const driftOutcomes = Number(flag('drift-outcomes', '9000'));
const ruleOf = (name: string): GateRule => {
  if (name === 'truth') return GATE_RULES.default!;
  const r = GATE_RULES[name];
  if (!r) throw new Error(`unknown rule ${name}; known: ${Object.keys(GATE_RULES).join(', ')}`);
  return r;
};
const rules = ruleNames.map((n) => ({ name: n, rule: ruleOf(n) }));
// `--act truth`: the loop serves a candidate iff its true value is at least what serves now and not below the
// default's by more than δ (an upper bound on what any rule could gain; the default rule still runs for the record).
const actRule = ruleOf(actName === 'truth' ? 'default' : actName);
const explore = { explorer: 'squarecb' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5, ...EXPLORE_DEFAULTS };

/** Why a rule refused: the first failing rule of the verdict. */
function cause(v: GateVerdict, delta: number): string {
  if (v.pass) return 'pass';
  if (v.comparisons.length === 0) return v.reason.startsWith('too little support') ? `support(${(v.reason.match(/the ([a-z ]+)'s split/g) ?? []).map((s) => s.replace(/^the |'s split$/g, '')).join('+')})` : 'events';
  const failed = v.comparisons.filter((c) => !(c.lo >= -delta));
  return failed.map((c) => `${c.against}${c.lineage ? '(lineage)' : ''}:${c.diff < -delta ? 'mean' : 'width'}`).join('+');
}

interface Judged {
  world: string;
  t: number;
  version: number;
  flipped: boolean;
  vc: number;
  vs: number;
  vd: number;
  serving: number;
  /** The candidate's split on the judged decisions: plays, and the residual r − q̂ (its own model) over them: mean and rms. */
  plays: number;
  resMean: number;
  resRms: number;
  verdicts: Record<string, GateVerdict>;
}

const { tf } = await loadTf();
const all: Judged[] = [];
const ratios: number[] = [];
const t0 = Date.now();
console.log(`bench/learner-gate: ${seeds.length} seeds (${seedArg}); act ${actName}; rules ${ruleNames.join(', ')}; bad every ${bad || '—'}; candidate share ${candShare || 'default'}; train every ${trainEvery || 500}; guard candidate arm ${guardCandidate}`);
for (const [i, seed] of seeds.entries()) {
  const w0 = Date.now();
  const drift = seedArg === 'test' || seedArg === 'dev' ? i % 4 === 3 : false;
  const world = generateWorld(seed, drift ? { driftAt: Math.round(driftOutcomes / 2) } : {}) as SimWorld;
  const N = world.driftAt !== undefined ? Math.max(driftOutcomes, world.driftAt + 5000) : outcomes;
  const agents = policyAgents(world);
  const uni = uniformSplitOf(world, world.totalTokens);
  const evalRng = mulberry32(seed ^ 0x51ed);
  const ctx = Array.from({ length: 300 }, () => world.sample(evalRng));
  const value = (phase: 0 | 1, m: LoopVersion | undefined) => {
    let s = 0;
    for (const x of ctx) s += world.expected(phase, x, m ? greedyBudgets(forward(m.weights, m.encoder.encode(world.features(x))), agents, world.totalTokens) : uni);
    return s / ctx.length;
  };
  const mine: Judged[] = [];
  const res = await runLoop(tf, {
    world,
    outcomes: N,
    seed,
    explore,
    evalContexts: 0,
    checkpointEvery: N,
    halfLife: 1000,
    window: 8000,
    train: { epochs: 4, minSteps: DEFAULT_MIN_STEPS },
    gate: actRule,
    guardCandidate,
    ...(candShare ? { candidateShare: Number(candShare) } : {}),
    ...(trainEvery ? { trainEvery: Number(trainEvery) } : {}),
    ...(bad > 0 ? { flipReward: (v: number) => v % bad === 0 } : {}),
    onJudge: ({ t, phase, look, candidate, serving, input }) => {
      const verdicts: Record<string, GateVerdict> = {};
      for (const r of rules) verdicts[r.name] = gateVerdict(input, r.rule, look);
      let plays = 0;
      let s1 = 0;
      let s2 = 0;
      for (const e of input.events) {
        if (e.d === 1) continue;
        const a = input.candidateSplit(e) as readonly number[];
        if (importanceWeight(e, input.agents, a, 0.005).w <= 0) continue;
        const res = rewardOf(e, world.costWeight) - predict(forward(candidate.weights, candidate.encoder.encode(e.f)), input.agents.map((n) => e.b[n]!));
        plays++;
        s1 += res;
        s2 += res * res;
      }
      const vc = value(phase, candidate);
      const vs = value(phase, serving);
      const vd = value(phase, undefined);
      const truth: GateVerdict | undefined = actName === 'truth' ? { ...verdicts[ruleNames[0]!]!, pass: vc >= vs && vc >= vd - 0.02 } : undefined;
      mine.push({ plays, resMean: plays ? s1 / plays : 0, resRms: plays ? Math.sqrt(s2 / plays) : 0, world: world.name, t, version: candidate.version, flipped: bad > 0 && candidate.version % bad === 0, vc, vs, vd, serving: serving?.version ?? 0, verdicts });
      return truth;
    },
  });
  all.push(...mine);
  // Served ÷ oracle over the last quarter (every 4th request), as bench/learner.ts --eval-stride 4 computes it.
  const from = Math.floor(N * 0.75);
  const ph = world.driftAt !== undefined && from >= world.driftAt ? 1 : 0;
  let sv = 0;
  let so = 0;
  for (let k = from; k < N; k += 4) {
    sv += res.served[k]!;
    so += world.expected(ph, res.contexts[k], world.oracle(ph, res.contexts[k], world.totalTokens));
  }
  ratios.push(sv / so);
  const helps = mine.filter((j) => j.vc > j.vs && j.vc >= j.vd - 0.02);
  console.log(
    `${world.name.padEnd(10)} served/oracle ${ratios.at(-1)!.toFixed(3)}; ${res.versions.length} versions, ${mine.length} verdicts, ${helps.length} would help; ` +
      rules.map((r) => `${r.name}: passed ${mine.filter((j) => j.verdicts[r.name]!.pass).length} (of those helping ${helps.filter((j) => j.verdicts[r.name]!.pass).length}; worse than default ${mine.filter((j) => j.verdicts[r.name]!.pass && j.vc < j.vd).length})`).join('; ') +
      `  ${((Date.now() - w0) / 1000).toFixed(0)}s`,
  );
  for (const j of mine) {
    console.log(
      `  v${j.version}${j.flipped ? '(bad)' : ''}@${j.t} serving v${j.serving}: true c−s ${(j.vc - j.vs).toFixed(4)}, c−d ${(j.vc - j.vd).toFixed(4)}; cand plays ${j.plays}, residual mean ${j.resMean.toFixed(3)} rms ${j.resRms.toFixed(3)} | ` +
        rules
          .map((r) => {
            const v = j.verdicts[r.name]!;
            return `${r.name} ${cause(v, r.rule.delta)} ${v.comparisons.map((c) => `${c.against[0]}:${c.diff.toFixed(3)}/${c.lo.toFixed(3)}`).join(' ')}`;
          })
          .join(' | '),
    );
  }
}

const sorted = [...ratios].sort((a, b) => a - b);
console.log(`\nserved ÷ oracle (last quarter): median ${(sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2).toFixed(3)}, mean ${(ratios.reduce((a, b) => a + b, 0) / ratios.length).toFixed(4)}`);
console.log(`over ${all.length} verdicts on ${seeds.length} worlds:`);
const helps = all.filter((j) => j.vc > j.vs && j.vc >= j.vd - 0.02);
const worse = all.filter((j) => j.vc < j.vd);
const worseDelta = all.filter((j) => j.vc < j.vd - 0.02 || (j.serving > 0 && j.vc < j.vs - 0.02));
for (const r of rules) {
  const passed = (j: Judged) => j.verdicts[r.name]!.pass;
  const causes = new Map<string, { n: number; gain: number }>();
  for (const j of helps.filter((x) => !passed(x))) {
    const c = cause(j.verdicts[r.name]!, r.rule.delta);
    const e = causes.get(c) ?? { n: 0, gain: 0 };
    causes.set(c, { n: e.n + 1, gain: e.gain + (j.vc - j.vs) });
  }
  const gain = helps.filter(passed).reduce((s, j) => s + (j.vc - j.vs), 0);
  const lost = helps.filter((x) => !passed(x)).reduce((s, j) => s + (j.vc - j.vs), 0);
  console.log(
    `${r.name.padEnd(12)} passed ${all.filter(passed).length}/${all.length}; helping ${helps.filter(passed).length}/${helps.length} (true gain passed ${gain.toFixed(3)}, refused ${lost.toFixed(3)}); ` +
      `truly worse than default passed ${worse.filter(passed).length}/${worse.length} (flipped ${worse.filter((j) => j.flipped && passed(j)).length}/${worse.filter((j) => j.flipped).length}); worse than a reference by > δ passed ${worseDelta.filter(passed).length}/${worseDelta.length}`,
  );
  console.log(`  helping but refused, by cause: ${[...causes.entries()].sort((a, b) => b[1].n - a[1].n).map(([c, e]) => `${c} ${e.n} (gain ${e.gain.toFixed(3)})`).join('; ') || 'none'}`);
}
console.log(`\nbench/learner-gate took ${((Date.now() - t0) / 60000).toFixed(1)} min`);
