/**
 * The learner judged as a user meets it: the real server (`apportion serve`: API, workers, trainer child, real
 * Redis under its own key prefix, one fresh server per world), driven over HTTP on generated worlds it was never
 * tuned on. Per world: PUT the pipeline, the plain feature declaration (no mean/std; family.ts), a `learned`
 * strategy with the service's defaults (only `costWeight` set, where the world has a cost; the pipeline's default
 * strategy left unset, so the default strategy is uniform), then POST /v1/allocations and POST /v1/outcomes (quality,
 * and costUsd where the world has one), `--concurrency` requests in flight, and the service retrains on its own
 * schedule (trainEvery 500 / trainIntervalSeconds 60, the gate, the guard, drift recovery: all defaults).
 *
 *   nice -n 10 node --import tsx bench/learner-http.ts [--seeds 243931,…] [--drift 193092] [--outcomes 5000]
 *        [--drift-at 2500] [--rps 40] [--concurrency 12] [--window 500] [--stride 4] [--loop true] [--http true]
 *        [--guard-candidate true] [--variant '{"exploreFirst":1500}'] [--foreign i,j]
 *
 * `--variant JSON`: each world is served twice over HTTP, first with the defaults (the baseline), then with these
 * learned-strategy parameters added, on the same requests (contexts drawn from the world's seed); the bench prints the
 * paired difference variant − baseline of the served split's value per world and its mean over the worlds.
 *
 * Seeds: test seeds of experiments/family/seeds.json spread over 2–12 agents (with cost, hard floors, one with
 * drift), plus 742712, a seed drawn once for this bench (node: crypto.randomInt(100000, 1000000) on 2026-12-02,
 * not in seeds.json). A drift world runs `--drift-at` + 5,000 outcomes.
 *
 * Every figure is the expected value (the world's noise-free truth) of what the service actually served, read
 * back from its decision records (model version, guard arm), against baselines on the same requests in the same
 * run: oracle, uniform (= the default strategy here), best static (fitted per phase). Per 500-outcome window and
 * over the last quarter. `--loop true` (default) then runs the in-process loop (sim/loop.ts, bench/learner's
 * settings) on the same world and values it the same way: the difference is what serving over HTTP costs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { ApportionClient } from '@apportion/sdk';
import { learnerKeys } from '../src/learner/keys.js';
import { generateWorld, type SimWorld } from '../src/learner/sim/family.js';
import { createKeys } from '../src/redis/keys.js';
import { declare, drive, longestWorse, outcomesBy, pairedDiff, servedMeta, summarise, valueRun, windows, type Call, type Valued, type WindowRow } from '../test/helpers/drive-world.js';
import { flag, foreignWorlds, REDIS_URL, spawnServer } from './lib.js';

// `--foreign i,j`: entries i, j of experiments/family/foreign-seeds.json (worlds outside the model's class, sim/foreign.ts)
// instead of the generated family's seeds.
const foreignArg = flag('foreign', '');
const foreign = foreignArg ? new Map(foreignWorlds(foreignArg.split(',').map(Number)).map(({ seed, world }) => [seed, world as SimWorld])) : undefined;
const seeds = foreign ? [...foreign.keys()] : flag('seeds', '243931,812414,793218,910934,193092,590657,742712').split(',').map(Number);
const driftSeeds = new Set(flag('drift', '193092').split(',').filter(Boolean).map(Number));
const outcomes = Number(flag('outcomes', '5000'));
const driftAt = Number(flag('drift-at', '2500'));
const concurrency = Number(flag('concurrency', '12'));
// Requests per second sent (open loop; 0: as fast as the server answers). At full speed (~190/s here) 1,500
// outcomes went by before the trainer child (idle CPU priority, a loaded machine) finished a first retrain.
const rps = Number(flag('rps', '40'));
const winSize = Number(flag('window', '500'));
const stride = Number(flag('stride', '4'));
const withLoop = flag('loop', 'true') !== 'false';
// `--http false`: the in-process loop alone (to complete a comparison whose HTTP run was measured before).
const withHttp = flag('http', 'true') !== 'false';
// `--guard-candidate false`: the runtime guard leaves the pending candidate's arm unjudged (the rule before), to
// measure the candidate arm's guard against it.
const guardCandidate = flag('guard-candidate', 'true') !== 'false';
const variantArg = flag('variant', '');
const variant = variantArg ? (JSON.parse(variantArg) as Record<string, unknown>) : undefined;

const f3 = (x: number) => x.toFixed(3);
const sg = (x: number, d = 3) => `${x >= 0 ? '+' : ''}${x.toFixed(d)}`;

interface Summary {
  readonly name: string;
  readonly summary: string;
  readonly last: WindowRow;
  readonly lastVsStatic: { diff: number; lo: number; hi: number };
  readonly worst: WindowRow;
  readonly worse: { outcomes: number; windows: number; total: number };
  readonly firstServed: number | null;
  readonly extra: string;
  /** Per request: the served split's expected value ÷ … (valueRun), for paired comparisons. */
  readonly valued: Valued;
}

function report(label: string, world: SimWorld, v: Valued, meta: { version: Int32Array; control: Uint8Array }, extra: string): Summary {
  const N = v.served.length;
  const rows = windows(v, meta, winSize);
  console.log(`  ${label}: window        v   trained  served÷O  uniform÷O  static÷O  default÷O  learned arm − default [95 % CI]`);
  for (const r of rows) {
    console.log(
      `  ${label}: ${String(r.from).padStart(5)}–${String(r.to).padEnd(5)} ${String(r.version).padStart(3)}  ${(r.trained * 100).toFixed(0).padStart(5)} %   ${f3(r.served)}     ${f3(r.uniform)}      ${f3(r.bestStatic)}     ${f3(r.defaultR)}      ${sg(r.armVsDefault.diff, 4)} [${sg(r.armVsDefault.lo, 4)}, ${sg(r.armVsDefault.hi, 4)}]${r.armVsDefault.hi < 0 && r.trained > 0.5 ? '  WORSE' : ''}`,
    );
  }
  const from = Math.floor(N * 0.75);
  const last = summarise(v, meta, from, N);
  const idx = Array.from({ length: N - from }, (_, i) => from + i);
  const lastVsStatic = pairedDiff(v.served, v.bestStatic, idx);
  // The worst window relative to the default strategy: the learned arm's shortfall against the default's split on the same requests, as a share of the oracle.
  const worst = rows.reduce((a, r) => (r.armVsDefault.diff < a.armVsDefault.diff ? r : a));
  const worse = longestWorse(rows);
  let firstServed: number | null = null;
  for (let t = 0; t < N; t++)
    if (meta.version[t]! > 0) {
      firstServed = t;
      break;
    }
  console.log(
    `  ${label}: last quarter served ÷ oracle ${f3(last.served)} (uniform ${f3(last.uniform)}, best static ${f3(last.bestStatic)}, default ${f3(last.defaultR)}); served − static ${sg(lastVsStatic.diff, 4)} [${sg(lastVsStatic.lo, 4)}, ${sg(lastVsStatic.hi, 4)}]; ` +
      `first trained version served at request ${firstServed ?? 'never'}; worst window ${worst.from}–${worst.to}: learned arm − default ${sg(worst.armVsDefault.diff, 4)} [${sg(worst.armVsDefault.lo, 4)}, ${sg(worst.armVsDefault.hi, 4)}] (served ${f3(worst.served)} vs default ${f3(worst.defaultR)} of the oracle); ` +
      `significantly worse than the default: longest ${worse.outcomes} outcomes, ${worse.total} in all${extra ? `; ${extra}` : ''}`,
  );
  return { name: world.name, summary: world.summary, last, lastVsStatic, worst, worse, firstServed, extra, valued: v };
}

async function metricsOf(url: string): Promise<string[]> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text.split('\n').filter((l) => /^apportion_learner_(retrains|guard_reverts|events)_total/.test(l));
}

// A server this bench started is killed if the bench stops on an error.
let current: { child: { kill: (s: NodeJS.Signals) => boolean } } | undefined;
process.on('exit', () => current?.child.kill('SIGKILL'));

async function overHttp(world: SimWorld, N: number, seed: number, params: Record<string, unknown> = {}, label = 'http'): Promise<Summary> {
  const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-bench-http-models-'));
  // LOG_LEVEL info (spawnServer's): it waits for the "apportion started" line; the log is discarded after it.
  const server = await spawnServer({ APPORTION_MODELS_DIR: modelsDir });
  current = server;
  const redis = new Redis(REDIS_URL);
  try {
    const adminC = new ApportionClient({ url: server.url, key: server.adminKey, timeoutMs: 60_000 });
    const userC = new ApportionClient({ url: server.url, key: server.clientKey, timeoutMs: 60_000 });
    const admin: Call = (m, p, b) => adminC.request(m, p, b);
    const user: Call = (m, p, b) => userC.request(m, p, b);
    const pipeline = `w${seed}`;
    const strategy = `learn-${seed}`;
    await declare({ world, pipeline, strategy, admin, params: { ...(guardCandidate ? {} : { guardCandidate: false }), ...params } });
    const models = () => admin('GET', `/v1/models/${pipeline}`);
    const run = await drive({
      world,
      pipeline,
      strategy,
      admin,
      user,
      outcomes: N,
      concurrency,
      ...(rps > 0 ? { rps } : {}),
      seed,
      progressEvery: 1000,
      onProgress: async (done) => {
        const m = await models();
        const ss = m.guard?.safeStart as { scale: number; exploration?: number; shrinks: number; by?: string } | undefined;
        const safe = ss ? `, safe start scale ${ss.scale} exploration ${ss.exploration ?? 1} (${ss.shrinks} shrinks${ss.by ? `, last by ${ss.by}` : ''})` : '';
        process.stdout.write(`  http: ${done} outcomes, ${((Date.now() - t0w) / 1000).toFixed(0)} s, versions ${m.versions.length}, serving ${m.active ?? 'default'}, candidate ${m.candidate ?? '—'}${safe}\n`);
      },
    });
    // Let the service apply the last outcomes (the worker) before reading its model list and counters.
    const counters = learnerKeys(createKeys(server.prefix), pipeline).counters;
    for (let i = 0; i < 120 && Number((await redis.hget(counters, 'outcomes')) ?? 0) < N - run.unreported; i++) await new Promise((r) => setTimeout(r, 250));
    const list = await models();
    const mets = await metricsOf(server.url);
    const meta = await servedMeta(redis, createKeys(server.prefix), run.ids);
    const versions = list.versions as { version: number; createdAt: number; gate?: { status: string; reason?: string }; reverted?: { reason: string }; metrics: { rows: number; steps: number; holdoutMse: number; holdoutVariance: number; ms: number } }[];
    const refused = versions.filter((x) => x.gate?.status === 'refused').length;
    const passed = versions.filter((x) => x.gate?.status === 'passed').length;
    const trainedAt = versions.map((x) => outcomesBy(run, x.createdAt)).reverse();
    const reverts = (list.guard?.reverts ?? []) as { reason: string; version: number }[];
    const changes = (list.drift?.changes ?? []) as unknown[];
    console.log(`  http: ${N} requests in ${(run.ms / 1000).toFixed(0)} s (${(N / (run.ms / 1000)).toFixed(0)}/s, at most ${concurrency} in flight); ${run.unrecorded} answered recorded: false (${run.unreported} of their outcomes not accepted: the record never landed), ${run.retries} calls retried after a 5xx or a dropped connection; ${meta.missing} decision records missing`);
    console.log(`  http: ${versions.length} versions trained, at outcomes ${trainedAt.join(', ')}; gate passed ${passed}, refused ${refused}; guard reverts ${reverts.filter((r) => r.reason === 'guard').length}, drift retirements ${reverts.filter((r) => r.reason === 'drift').length}, changes detected ${changes.length}; serving at the end ${list.active ?? 'default strategy'}`);
    for (const x of versions.filter((v) => v.gate?.status === 'refused').slice(0, 3)) console.log(`  http: v${x.version} refused: ${x.gate!.reason}`);
    for (const x of versions.filter((v) => v.gate?.status === 'passed').slice(-2)) console.log(`  http: v${x.version} passed: ${x.gate!.reason}`);
    // Each version's own fit (rows, steps, held-out MSE against the held-out rewards' variance, training ms): tells a bad fit from a bad evaluation.
    console.log(`  http: fits ${[...versions].reverse().map((x) => `v${x.version} ${x.metrics.rows}r/${x.metrics.steps}s ${x.metrics.holdoutMse.toFixed(4)}/${x.metrics.holdoutVariance.toFixed(4)} ${x.metrics.ms}ms ${x.gate?.status ?? ''}`).join('; ')}`);
    console.log(`  http: /metrics ${mets.join('; ')}`);
    const v = valueRun(world, run.contexts, run.budgets, stride);
    return report(label, world, v, meta, `${versions.length} versions (${refused} refused), guard reverts ${reverts.filter((r) => r.reason === 'guard').length}, drift retirements ${reverts.filter((r) => r.reason === 'drift').length}, ${(N / (run.ms / 1000)).toFixed(0)} outcomes/s`);
  } finally {
    redis.disconnect();
    await server.close();
    current = undefined;
    rmSync(modelsDir, { recursive: true, force: true });
  }
}

async function inProcess(world: SimWorld, N: number, seed: number): Promise<Summary> {
  const { loadTf } = await import('../src/learner/backend.js');
  const { runLoop } = await import('../src/learner/sim/loop.js');
  const { EXPLORE_DEFAULTS } = await import('../src/learner/policy.js');
  const { GUARD_DEFAULTS } = await import('../src/learner/guard.js');
  const { DEFAULT_MIN_STEPS } = await import('../src/learner/trainer.js');
  const { tf } = await loadTf();
  // bench/learner's defaults (the service's).
  const explore = { explorer: 'squarecb' as const, epsilon: 0.1, gamma: 200, perturbation: 0.5, budget: EXPLORE_DEFAULTS.budget, decayFrom: EXPLORE_DEFAULTS.decayFrom };
  const res = await runLoop(tf, { world, outcomes: N, seed, explore, evalContexts: 0, checkpointEvery: N, controlShare: GUARD_DEFAULTS.controlShare, halfLife: 1000, window: 8000, train: { epochs: 4, minSteps: DEFAULT_MIN_STEPS }, guardCandidate });
  const v = valueRun(world, res.contexts, res.served, stride);
  const refused = res.versions.filter((x) => !x.active).length;
  console.log(`  loop: ${res.versions.length} versions trained (every 500), refused ${refused} (by the guard's candidate arm: ${res.guardRefused.length ? res.guardRefused.map((v) => `v${v}`).join(', ') : 'none'}); changes detected ${res.changes.length}, retired ${res.retired.length}`);
  return report('loop', world, v, { version: res.servingVersion, control: res.controlServed }, `${res.versions.length} versions (${refused} refused), drift retirements ${res.retired.length}`);
}

let t0w = Date.now();
const t0 = Date.now();
console.log(`bench/learner-http: ${seeds.length} worlds (${seeds.join(', ')}; drift at ${driftAt}: ${[...driftSeeds].join(', ') || 'none'}), ${outcomes} outcomes each (${driftAt + 5000} with drift), ${rps > 0 ? `${rps} requests/s, ` : 'as fast as answered, '}at most ${concurrency} in flight, windows of ${winSize}, oracle on every ${stride}th request; in-process loop ${withLoop ? 'too' : 'not run'}`);
const rows: { http?: Summary; loop?: Summary; variant?: Summary }[] = [];
for (const seed of seeds) {
  const drift = driftSeeds.has(seed);
  const world: SimWorld = foreign?.get(seed) ?? generateWorld(seed, drift ? { driftAt } : {});
  const N = drift ? Math.max(outcomes, driftAt + 5000) : outcomes;
  console.log(`\n${world.name}: ${world.summary}; total ${world.totalTokens}, ${N} outcomes`);
  t0w = Date.now();
  const http = withHttp ? await overHttp(world, N, seed) : undefined;
  const loop = withLoop ? await inProcess(world, N, seed) : undefined;
  const varied = variant ? await overHttp(world, N, seed, variant, 'variant') : undefined;
  rows.push({ ...(http ? { http } : {}), ...(loop ? { loop } : {}), ...(varied ? { variant: varied } : {}) });
  console.log(`  ${((Date.now() - t0w) / 1000).toFixed(0)} s`);
}

console.log('\nLast quarter, served ÷ oracle (exploration and the guard’s control arm included), same requests per run:');
console.log('| world | what | HTTP served | loop served | HTTP − loop | uniform (= default) | best static | HTTP served − static [95 % CI] | first trained version served (HTTP / loop) | worst window, learned arm − default (HTTP) | significantly worse than default, longest (HTTP / loop) |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const { http: h, loop: l } of rows) {
  if (!h) {
    if (l) console.log(`| ${l.name} | ${l.summary} | — | ${f3(l.last.served)} | — | ${f3(l.last.uniform)} | ${f3(l.last.bestStatic)} | — | — / ${l.firstServed ?? 'never'} | — | — / ${l.worse.outcomes} |`);
    continue;
  }
  console.log(
    `| ${h.name} | ${h.summary} | ${f3(h.last.served)} | ${l ? f3(l.last.served) : '—'} | ${l ? sg(h.last.served - l.last.served) : '—'} | ${f3(h.last.uniform)} | ${f3(h.last.bestStatic)} | ${sg(h.lastVsStatic.diff, 4)} [${sg(h.lastVsStatic.lo, 4)}, ${sg(h.lastVsStatic.hi, 4)}] | ${h.firstServed ?? 'never'} / ${l?.firstServed ?? '—'} | ${h.worst.from}–${h.worst.to}: ${sg(h.worst.armVsDefault.diff, 4)} [${sg(h.worst.armVsDefault.lo, 4)}, ${sg(h.worst.armVsDefault.hi, 4)}] | ${h.worse.outcomes} / ${l ? l.worse.outcomes : '—'} |`,
  );
}
for (const { http: h } of rows) if (h) console.log(`${h.name}: ${h.extra}`);
if (variant) {
  console.log(`\nVariant ${JSON.stringify(variant)} against the defaults, same requests, last quarter (served ÷ oracle; paired difference with its 95 % CI over the requests) and the whole run:`);
  console.log('| world | baseline | variant | variant − baseline [95 % CI] | whole run: baseline | variant | difference | first version served (baseline / variant) |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  const diffs: number[] = [];
  for (const { http: h, variant: x } of rows) {
    if (!h || !x) continue;
    const N = h.valued.served.length;
    const from = Math.floor(N * 0.75);
    // Requests the oracle was computed on (every `--stride`-th), as the summaries use.
    const valuedAt = (i: number) => Number.isFinite(h.valued.oracle[i]!) && Number.isFinite(h.valued.served[i]!) && Number.isFinite(x.valued.served[i]!);
    const idx = Array.from({ length: N - from }, (_, i) => from + i).filter(valuedAt);
    const all = Array.from({ length: N }, (_, i) => i).filter(valuedAt);
    const d = pairedDiff(x.valued.served, h.valued.served, idx);
    const w = pairedDiff(x.valued.served, h.valued.served, all);
    const mean = (a: ArrayLike<number>, ix: readonly number[]) => ix.reduce((s, i) => s + a[i]!, 0) / Math.max(1, ix.length);
    const oracle = (ix: readonly number[]) => mean(h.valued.oracle, ix);
    diffs.push(x.last.served - h.last.served);
    console.log(
      `| ${h.name} | ${f3(h.last.served)} | ${f3(x.last.served)} | ${sg(d.diff / oracle(idx), 4)} [${sg(d.lo / oracle(idx), 4)}, ${sg(d.hi / oracle(idx), 4)}] | ${f3(mean(h.valued.served, all) / oracle(all))} | ${f3(mean(x.valued.served, all) / oracle(all))} | ${sg(w.diff / oracle(all), 4)} | ${h.firstServed ?? 'never'} / ${x.firstServed ?? 'never'} |`,
    );
  }
  const m = diffs.reduce((a, b) => a + b, 0) / Math.max(1, diffs.length);
  const sd = diffs.length > 1 ? Math.sqrt(diffs.reduce((a, b) => a + (b - m) ** 2, 0) / (diffs.length - 1)) : 0;
  console.log(`variant − baseline, last quarter, mean over ${diffs.length} worlds: ${sg(m, 4)} (SE ${(sd / Math.sqrt(Math.max(1, diffs.length))).toFixed(4)}; better on ${diffs.filter((d) => d > 0).length}, worse on ${diffs.filter((d) => d < 0).length})`);
}
console.log(`\nbench/learner-http took ${((Date.now() - t0) / 60000).toFixed(1)} min`);
