/**
 * Serving while retraining: allocate throughput and p99 with the learned strategy, first idle, then while
 * the same `apportion serve` process retrains on 100,000 logged events (the buffer's cap).
 *
 *   node --import tsx bench/learner-serving.ts [--duration 10] [--connections 32] [--rounds 3] [--load 0.5] [--windows 8] [--fresh 500] [--only-fixed true]
 *
 * The buffer is filled directly in Redis with simulated events (support-basic world), then one retrain
 * warms up the model (the trainer process's first retrain, which fetches the whole window). Before each later
 * retrain `--fresh` (500) new events are logged, as the outcomes that make a retrain due would be; the kept
 * trainer fetches only those. Baseline = the idle measurement of the same server in the same run.
 *
 * Two measurements, each in alternating idle / retraining rounds:
 * - saturated: autocannon, as many requests as the server answers (the machine's 2 cores are then fully used
 *   by the load generator, the server and Redis, so any extra work shows up in throughput and latency);
 * - at a fixed load: an open-loop generator sending `--load` × the saturated idle throughput, latency from each
 *   request's scheduled send time with a microsecond timer (what a service running below capacity sees), in
 *   `--windows` idle and as many retraining windows (in pairs of one each, seeded random order within a pair; retrains
 *   back to back through a retraining window).
 *   The windows of each kind are pooled; the ratio of the pooled quantiles (retraining ÷ idle) comes with a 95 %
 *   bootstrap interval that resamples whole windows, because on a shared 2-core machine the tail moves more from
 *   window to window than within one.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import type { LoggedEvent } from '../src/learner/events.js';
import { learnerKeys } from '../src/learner/keys.js';
import { candidateSet } from '../src/learner/policy.js';
import { mulberry32 } from '../src/learner/rng.js';
import { policyAgents } from '../src/learner/sim/loop.js';
import { contextFeatures, expectedQuality, loadWorld, sampleContext, worldFeatures, worldPipeline } from '../src/learner/sim/world.js';
import { createKeys } from '../src/redis/keys.js';
import { ApportionClient } from '@apportion/sdk';
import { cannon, flag, fmt, fmtLoop, fmtPaced, LatencyHistogram, median, medianRatio, paced, pooledQuantileRatio, REDIS_URL, serverLoopDelay, spawnServer } from './lib.js';

const duration = Number(flag('duration', '10'));
const connections = Number(flag('connections', '32'));
const rounds = Number(flag('rounds', '3'));
const load = Number(flag('load', '0.5'));
const windows = Number(flag('windows', '8'));
const seed = Number(flag('seed', '7'));
/** New events logged before each retrain in a retraining window (the default `trainEvery`). */
const freshPerRetrain = Number(flag('fresh', '500'));
/** `--only-fixed true`: skip the saturated rounds (one idle autocannon run still calibrates the rate). */
const onlyFixed = flag('only-fixed', 'false') === 'true';
const PIPELINE = 'learned-serving';

const server = await spawnServer({ APPORTION_MODELS_DIR: mkdtempSync(path.join(tmpdir(), 'apportion-bench-models-')) });
try {
  const world = loadWorld('support-basic');
  const admin = new ApportionClient({ url: server.url, key: server.adminKey, timeoutMs: 120_000 });
  await admin.request('PUT', `/v1/pipelines/${PIPELINE}`, worldPipeline(world));
  await admin.request('PUT', `/v1/pipelines/${PIPELINE}/features`, worldFeatures(world));
  await admin.request('PUT', `/v1/strategies/${PIPELINE}`, { pipeline: PIPELINE, kind: 'learned', params: { trainEvery: 1_000_000, trainIntervalSeconds: 86_400, window: 100_000, halfLife: 1_000_000 } });

  const rng = mulberry32(1);
  const names = world.agents.map((a) => a.name);
  const agents = policyAgents(world);
  const redis = new Redis(REDIS_URL);
  const buffer = learnerKeys(createKeys(server.prefix), PIPELINE).buffer;
  let seq = 0;
  /** Simulated logged events, as the outcome worker's ingest pushes them (LPUSH: newest first). */
  const pushEvents = async (n: number) => {
    for (let done = 0; done < n; done += 1000) {
      const items: string[] = [];
      for (let i = 0; i < Math.min(1000, n - done); i++) {
        const x = sampleContext(world, rng);
        const cands = candidateSet({ need: new Float64Array(5).fill(1500), weight: new Float64Array(5).fill(0.6), shape: new Float64Array(5).fill(3) }, agents, world.totalTokens, 0.6);
        const k = Math.floor(rng() * cands.length);
        const b: Record<string, number> = {};
        names.forEach((a, j) => (b[a] = cands[k]![j]!));
        const ev: LoggedEvent = { id: `ev-${++seq}`, t: Date.now(), s: PIPELINE, f: contextFeatures(x), T: world.totalTokens, b, q: expectedQuality(world, 0, x, cands[k]!), c: null, C: cands, P: cands.map(() => 1 / cands.length), k };
        items.push(JSON.stringify(ev));
      }
      await redis.lpush(buffer, ...items);
    }
    await redis.ltrim(buffer, 0, 99_999);
  };
  const t0 = Date.now();
  await pushEvents(100_000);
  console.log(`bench/learner-serving: buffer filled with ${await redis.llen(buffer)} events in ${Date.now() - t0} ms`);

  const models = async () => admin.request<{ active: number | null; versions: { version: number; metrics: Record<string, number> }[] }>('GET', `/v1/models/${PIPELINE}`);
  /** One retrain; `fresh` new events are logged first, as the outcomes that make a retrain due would be. */
  const trainOnce = async (fresh = 0): Promise<{ version: number; ms: number; wall: number }> => {
    if (fresh > 0) await pushEvents(fresh);
    const before = (await models()).active ?? 0;
    const start = Date.now();
    await admin.request('POST', `/v1/models/${PIPELINE}/train`);
    for (;;) {
      const m = await models();
      if ((m.active ?? 0) > before) return { version: m.active!, ms: m.versions[0]!.metrics.ms!, wall: Date.now() - start };
      if (Date.now() - start > 120_000) throw new Error('retrain did not finish within 120 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const warm = await trainOnce();
  console.log(`warm-up retrain on 100k events: model v${warm.version}, training ${(warm.ms / 1000).toFixed(1)} s, request → serving ${(warm.wall / 1000).toFixed(1)} s (target ≤ 60 s)`);

  const bodies = Array.from({ length: 512 }, () => ({ pipeline: PIPELINE, strategy: PIPELINE, features: contextFeatures(sampleContext(world, rng)) }));
  const o = { url: server.url, path: '/v1/allocations', bodies, key: server.clientKey, connections };
  await cannon({ ...o, durationSec: 2 });
  // Alternating rounds (idle window, then a window during a retrain) on the same server; the ratios are the
  // medians over rounds, because a single pair of windows on a shared 2-core machine is mostly noise.
  const p99s: number[] = [];
  const rpss: number[] = [];
  const idleRps: number[] = [];
  for (let r = 1; r <= (onlyFixed ? 0 : rounds); r++) {
    const idle = await cannon({ ...o, durationSec: duration });
    idleRps.push(idle.rps);
    console.log(`round ${r}: allocate (learned), idle       ${fmt(idle)}`);
    const training = trainOnce();
    const busy = await cannon({ ...o, durationSec: duration });
    const t = await training;
    console.log(`round ${r}: allocate (learned), retraining ${fmt(busy)}  (retrain: training ${(t.ms / 1000).toFixed(1)} s, request → serving ${(t.wall / 1000).toFixed(1)} s)`);
    p99s.push(busy.p99 / idle.p99);
    rpss.push(busy.rps / idle.rps);
  }
  if (onlyFixed) idleRps.push((await cannon({ ...o, durationSec: duration })).rps);
  else console.log(`saturated: ratio p99 retraining/idle = ${median(p99s).toFixed(2)} (rounds: ${p99s.map((x) => x.toFixed(2)).join(', ')}), throughput retraining/idle = ${median(rpss).toFixed(2)}`);

  const rate = Math.round(load * median(idleRps));
  console.log(`\nfixed load: ${rate} req/s (${load} × the saturated idle throughput), open loop, ${windows} idle and ${windows} retraining windows of ${duration} s`);
  const po = { url: server.url, path: '/v1/allocations', bodies, key: server.clientKey, rate, durationSec: duration };
  await paced(po); // warm-up at the measured rate: the first window after a change of load has a longer tail
  const idleH: LatencyHistogram[] = [];
  const busyH: LatencyHistogram[] = [];
  // The same windows split by whether the serving process ran a major (Mark-Compact) collection during the window.
  const idleGc: LatencyHistogram[] = [];
  const idleNoGc: LatencyHistogram[] = [];
  const busyGc: LatencyHistogram[] = [];
  const busyNoGc: LatencyHistogram[] = [];
  // Windows in pairs, one of each kind, in a seeded random order per pair: a slow drift of the machine's speed falls
  // on both kinds alike, and so does a periodic stall (the serving process's old-generation collections come every
  // few windows; a fixed ABBA order let them fall mostly on one kind).
  const orderRng = mulberry32(seed + 1);
  const kinds = Array.from({ length: windows }, () => (orderRng() < 0.5 ? [false, true] : [true, false])).flat();
  for (let w = 0; w < kinds.length; w++) {
    const retraining = kinds[w]!;
    const before = await serverLoopDelay(server);
    // The server's loop delay and GC count are read as the window ends (for a retraining window, not after its
    // last retrain).
    const measured = paced(po).then(async (r) => ({ r, loop: await serverLoopDelay(server) }));
    // Retrains back to back for the whole of a retraining window (each ends in a hot swap); the next window starts
    // after the last one has finished, so no idle window overlaps training.
    const runs: number[] = [];
    if (retraining) {
      let done = false;
      void measured.finally(() => (done = true));
      while (!done) runs.push((await trainOnce(freshPerRetrain)).ms);
    }
    const { r, loop } = await measured;
    const h = LatencyHistogram.of(r.latencies);
    const major = loop.majorGcs - before.majorGcs;
    (retraining ? busyH : idleH).push(h);
    (retraining ? (major ? busyGc : busyNoGc) : major ? idleGc : idleNoGc).push(h);
    const trained = retraining ? `  (${runs.length} retrains: ${runs.map((ms) => (ms / 1000).toFixed(1)).join(', ')} s)` : '';
    console.log(`window ${String(w + 1).padStart(2)}: ${retraining ? 'retraining ' : 'idle       '} ${fmtPaced(r)}; ${fmtLoop(loop)}, ${major} major GC${trained}`);
  }
  const ciRng = mulberry32(seed);
  for (const [name, q] of [['p50', 0.5], ['p99', 0.99], ['p99.9', 0.999]] as const) {
    const c = pooledQuantileRatio(idleH, busyH, q, ciRng);
    console.log(
      `fixed load: pooled ${name} idle ${LatencyHistogram.pool(idleH).quantile(q).toFixed(2)} ms, retraining ${LatencyHistogram.pool(busyH).quantile(q).toFixed(2)} ms: ratio ${c.ratio.toFixed(2)}, 95 % CI [${c.lo.toFixed(2)}, ${c.hi.toFixed(2)}] (windows resampled)`,
    );
  }
  const wp99 = (hs: LatencyHistogram[]) => hs.map((h) => h.quantile(0.99));
  const m = medianRatio(wp99(idleH), wp99(busyH), ciRng);
  console.log(`fixed load: median of the windows' p99 idle ${median(wp99(idleH)).toFixed(2)} ms, retraining ${median(wp99(busyH)).toFixed(2)} ms: ratio of medians ${m.ratio.toFixed(2)}, 95 % CI [${m.lo.toFixed(2)}, ${m.hi.toFixed(2)}]`);
  console.log(`windows with a major GC in the serving process: idle ${idleGc.length} of ${idleH.length}, retraining ${busyGc.length} of ${busyH.length}`);
  for (const [label, a, b] of [['with a major GC', idleGc, busyGc], ['without one', idleNoGc, busyNoGc]] as const) {
    if (a.length < 2 || b.length < 2) continue;
    const c = pooledQuantileRatio(a, b, 0.99, ciRng);
    console.log(`  windows ${label}: pooled p99 idle ${LatencyHistogram.pool(a).quantile(0.99).toFixed(2)} ms, retraining ${LatencyHistogram.pool(b).quantile(0.99).toFixed(2)} ms: ratio ${c.ratio.toFixed(2)}, 95 % CI [${c.lo.toFixed(2)}, ${c.hi.toFixed(2)}]`);
  }
  redis.disconnect();
} finally {
  await server.close();
}
