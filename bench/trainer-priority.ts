/**
 * Retrains on a host whose cores are always busy, with and without trainer priority escalation
 * (APPORTION_TRAIN_ESCALATE_AFTER_MS, src/learner/train-process.ts), in the same run.
 *
 *   nice -n 10 node --import tsx bench/trainer-priority.ts [--window 90] [--after 10000] [--rate 40] [--events 8000] [--baseline 20]
 *
 * For each mode (escalation off = the bound 0, then on = `--after` ms) a fresh `apportion serve` gets a learned
 * pipeline (support-basic world, activation gate off so every retrain's version serves at once) and `--events`
 * simulated logged events. One warm-up retrain runs on the quiet machine (it loads tfjs in the trainer child and
 * gives a normal retrain's duration). Then one busy-loop process per core (`node -e "for(;;){}"`, at the same nice
 * value as the server, i.e. nice 0 relative to it) saturates the cores, and for `--window` seconds retrains are asked
 * for back to back (the next as soon as one finishes) while an open-loop generator sends `--rate` allocations a second.
 * Before each window, the same generator runs `--baseline` seconds under the hog with no retrain: that server's
 * no-training latency. Printed: retrains finished and the time to the first one in each mode (with ÷ without), and allocation
 * p50/p99 during each window against the no-training baseline.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, getPriority, tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { ApportionClient } from '@apportion/sdk';
import { learnerKeys } from '../src/learner/keys.js';
import { mulberry32 } from '../src/learner/rng.js';
import { contextFeatures, loadWorld, sampleContext, worldFeatures, worldPipeline } from '../src/learner/sim/world.js';
import { randomSplitEvents } from '../test/helpers/logged-events.js';
import { createKeys } from '../src/redis/keys.js';
import { flag, fmtPaced, paced, REDIS_URL, spawnServer, type PacedResult } from './lib.js';

const windowSec = Number(flag('window', '90'));
const afterMs = Number(flag('after', '10000'));
const rate = Number(flag('rate', '40'));
const events = Number(flag('events', '8000'));
const baselineSec = Number(flag('baseline', '20'));
const PIPELINE = 'trainer-priority';
const world = loadWorld('support-basic');
const t0 = Date.now();

type Models = { active: number | null; versions: { version: number; metrics: Record<string, number> }[]; trainer?: { escalations: number; lastEscalation: { policy: string; nice: number; how: string } | null } };

function startHogs(): ChildProcess[] {
  return cpus().map(() => spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' }));
}
async function stopHogs(hogs: ChildProcess[]): Promise<void> {
  await Promise.all(hogs.map((h) => new Promise<void>((r) => (h.exitCode !== null ? r() : (h.once('exit', () => r()), h.kill('SIGKILL'))))));
}

interface ModeResult {
  readonly mode: 'off' | 'on';
  readonly warmMs: number;
  readonly finished: number;
  readonly firstSec: number | undefined;
  readonly trainMs: number[];
  readonly latency: PacedResult;
  readonly baseline: PacedResult;
  readonly escalations: Models['trainer'];
}

async function runMode(mode: 'off' | 'on'): Promise<ModeResult> {
  const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-bench-trainprio-'));
  const server = await spawnServer({ APPORTION_MODELS_DIR: modelsDir, APPORTION_TRAIN_ESCALATE_AFTER_MS: mode === 'on' ? String(afterMs) : '0' });
  const redis = new Redis(REDIS_URL);
  let hogs: ChildProcess[] = [];
  try {
    const admin = new ApportionClient({ url: server.url, key: server.adminKey, timeoutMs: 300_000 });
    await admin.request('PUT', `/v1/pipelines/${PIPELINE}`, worldPipeline(world));
    await admin.request('PUT', `/v1/pipelines/${PIPELINE}/features`, worldFeatures(world));
    await admin.request('PUT', `/v1/strategies/${PIPELINE}`, { pipeline: PIPELINE, kind: 'learned', params: { gate: false, trainEvery: 1_000_000, trainIntervalSeconds: 86_400, window: events } });
    const items = randomSplitEvents(world, events, 1, PIPELINE);
    const buffer = learnerKeys(createKeys(server.prefix), PIPELINE).buffer;
    for (let i = 0; i < items.length; i += 1000) await redis.lpush(buffer, ...items.slice(i, i + 1000));

    const models = () => admin.request<Models>('GET', `/v1/models/${PIPELINE}`);
    /** Asks for a retrain and waits until its version serves, or until `deadline` (epoch ms). */
    const trainOnce = async (deadline: number): Promise<{ ms: number; version: number } | undefined> => {
      const before = (await models()).active ?? 0;
      await admin.request('POST', `/v1/models/${PIPELINE}/train`);
      while (Date.now() < deadline) {
        const m = await models();
        if ((m.active ?? 0) > before) return { ms: m.versions[0]!.metrics.ms!, version: m.active! };
        await new Promise((r) => setTimeout(r, 250));
      }
      return undefined;
    };
    const warmStart = Date.now();
    const warm = await trainOnce(Date.now() + 300_000);
    if (!warm) throw new Error('the warm-up retrain did not finish within 300 s without the hog');
    const warmMs = Date.now() - warmStart;
    console.log(`[${mode}] warm-up retrain (no hog): request → serving ${(warmMs / 1000).toFixed(1)} s, training ${(warm.ms / 1000).toFixed(1)} s`);

    const rng = mulberry32(2);
    const bodies = Array.from({ length: 256 }, () => ({ pipeline: PIPELINE, features: contextFeatures(sampleContext(world, rng)) }));
    const po = { url: server.url, path: '/v1/allocations', bodies, key: server.clientKey, rate };
    hogs = startHogs();
    await new Promise((r) => setTimeout(r, 1000));
    await paced({ ...po, durationSec: 5 }); // warm-up at the rate: the first window after the hog starts has a longer tail
    const baseline = await paced({ ...po, durationSec: baselineSec });
    console.log(`[${mode}] under the hog, no retrain:      ${fmtPaced(baseline)}`);
    const start = Date.now();
    const deadline = start + windowSec * 1000;
    const load = paced({ ...po, durationSec: windowSec });
    const trainMs: number[] = [];
    let firstSec: number | undefined;
    while (Date.now() < deadline) {
      const r = await trainOnce(deadline);
      if (!r) break;
      trainMs.push(r.ms);
      firstSec ??= (Date.now() - start) / 1000;
    }
    const latency = await load;
    const m = await models();
    console.log(`[${mode}] under the hog, retraining:       ${fmtPaced(latency)}`);
    console.log(`[${mode}] ${trainMs.length} retrains finished in ${windowSec} s (first after ${firstSec === undefined ? '—' : `${firstSec.toFixed(1)} s`}); escalations ${JSON.stringify(m.trainer ?? null)}`);
    return { mode, warmMs, finished: trainMs.length, firstSec, trainMs, latency, baseline, escalations: m.trainer };
  } finally {
    await stopHogs(hogs);
    redis.disconnect();
    await server.close();
    rmSync(modelsDir, { recursive: true, force: true });
  }
}

console.log(`bench/trainer-priority: ${cpus().length} cores, bench nice ${getPriority()}, window ${windowSec} s, escalation bound ${afterMs} ms, ${rate} allocations/s, ${events} events`);
const off = await runMode('off');
const on = await runMode('on');
const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(2) : '∞');
console.log('\nsummary');
console.log(`  retrains finished in ${windowSec} s under the hog: without escalation ${off.finished}, with ${on.finished} (with ÷ without: ${ratio(on.finished, off.finished)})`);
console.log(
  `  time to the first finished retrain: without ${off.firstSec === undefined ? `none within ${windowSec} s` : `${off.firstSec.toFixed(1)} s`}, with ${on.firstSec === undefined ? `none within ${windowSec} s` : `${on.firstSec.toFixed(1)} s`}` +
    (on.firstSec !== undefined ? ` (with ÷ without: ${off.firstSec === undefined ? `< ${(on.firstSec / windowSec).toFixed(2)}` : (on.firstSec / off.firstSec).toFixed(2)})` : ''),
);
console.log(`  training time of the finished retrains (version metrics.ms): without [${off.trainMs.map((m) => (m / 1000).toFixed(1)).join(', ')}] s, with [${on.trainMs.map((m) => (m / 1000).toFixed(1)).join(', ')}] s`);
console.log(`  a retrain without the hog (warm-up, request → serving, fresh trainer child): ${(off.warmMs / 1000).toFixed(1)} s and ${(on.warmMs / 1000).toFixed(1)} s`);
console.log('  allocation latency under the hog, retraining ÷ the same server under the hog just before, without retraining:');
for (const r of [off, on]) {
  const b = r.baseline;
  console.log(
    `    ${r.mode === 'off' ? 'without escalation (trainer idle)' : 'with escalation                  '}: p50 ${b.p50.toFixed(1)} → ${r.latency.p50.toFixed(1)} ms (× ${ratio(r.latency.p50, b.p50)}), p99 ${b.p99.toFixed(1)} → ${r.latency.p99.toFixed(1)} ms (× ${ratio(r.latency.p99, b.p99)})`,
  );
}
console.log(`bench/trainer-priority took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
