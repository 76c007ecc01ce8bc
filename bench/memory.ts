/**
 * Redis memory per record, on a private Redis with the example pipeline, and the projected resident memory at
 * 1,000 allocations/s with the configured windows.
 *
 *   node --import tsx bench/memory.ts [--n 20000] [--spans 20000]
 *
 * An in-process Apportion (API + workers) on a redis-server of its own (no persistence): N allocations of the
 * example pipeline `support-triage` (its default strategy, three features), then an outcome for each (through
 * intake, the BullMQ worker and the applied-marker, until the statistics count all N and the queue is idle),
 * then `--spans` spans attributed to those decisions (five agents a trace). Each phase's bytes are the
 * `INFO memory` used_memory delta over the phase ÷ its records, so hash/dict overhead and jemalloc size classes
 * are in the number. The outcome's bytes are measured after its completed jobs were cleaned (they are bounded
 * by count, so they do not grow with traffic; their size per kept job is printed apart). The outcome phase also
 * writes each decision's outcome receipt (a field of the decision's bucket hash, outcome-receipt.lua): its bytes are
 * the `MEMORY USAGE` growth of the decisions' buckets over the phase ÷ N, printed apart and taken out of the
 * marker's; the receipt lives as long as the decision record.
 *
 * Baseline, measured in the same run on the same Redis: the same records stored the way earlier versions
 * stored them: the record's JSON under its 43-character id in the same per-second hashes, one `applied:<id>`
 * string key with an 8-day TTL per applied outcome, and completed outcome jobs carrying full decision records
 * (same batch size; kept an hour, up to 100,000), processed by a no-op BullMQ worker. On the code before the
 * change this bench measured 605 bytes per decision record and 1,119 bytes per applied outcome.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import pino from 'pino';
import { decisionSecond, newDecisionId, readDecisions } from '../src/allocation/decisions.js';
import { encodeInline } from '../src/allocation/record-codec.js';
import { loadConfig } from '../src/config/env.js';
import { start } from '../src/server.js';
import { PrivateRedis } from '../test/helpers/private-redis.js';
import { flag } from './lib.js';

const N = Number(flag('n', '20000'));
const SPANS = Number(flag('spans', '20000'));
const RATE = 1000;
const PIPELINE = 'support-triage';
const STRATEGY = 'support-estimate';
const TASKS = ['refund', 'technical', 'billing'] as const;
const AGENTS = ['orchestrator', 'retriever', 'reasoner', 'validator', 'formatter'] as const;

const used = async (r: Redis): Promise<number> => Number(/used_memory:(\d+)/.exec(await r.info('memory'))![1]);
const settle = () => new Promise((res) => setTimeout(res, 300));
const gb = (bytes: number) => (bytes / 1e9).toFixed(1);

const redis = await PrivateRedis.start({ aof: false });
/** Progress on stderr (a run takes minutes on a loaded machine). */
const step = (what: string) => process.stderr.write(`  … ${what}\n`);
const raw = new Redis(redis.url);
const prefix = 'mem';
// A generous command bound: this measures memory, not latency, and a loaded machine must not turn into 503s.
const config = loadConfig({ REDIS_URL: redis.url, APPORTION_KEY_PREFIX: prefix, LOG_LEVEL: 'silent', PORT: '0', APPORTION_SEED_EXAMPLES: 'true', APPORTION_REDIS_COMMAND_TIMEOUT_MS: '60000' });
const rt = await start(config, pino({ level: 'silent' }), { api: true, workers: true, listen: false, defaultMetrics: false });
const app = rt.app!;
const inject = async (url: string, payload: object): Promise<Record<string, unknown>> => {
  const res = await app.inject({ method: 'POST', url, payload });
  if (res.statusCode >= 300) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  return res.json() as Record<string, unknown>;
};

async function inBatches(n: number, fn: (i: number) => Promise<void>): Promise<void> {
  for (let at = 0; at < n; at += 200) await Promise.all(Array.from({ length: Math.min(200, n - at) }, (_, j) => fn(at + j)));
}

try {
  // Warm-up (scripts loaded, queues and statistics hashes created), not counted.
  const warm: string[] = [];
  await inBatches(200, async (i) => {
    const a = await inject('/v1/allocations', { pipeline: PIPELINE, features: { messageCount: 3 + (i % 40), documentTokens: 1000 + 37 * i, taskType: TASKS[i % 3] } });
    warm.push(a.decisionId as string);
  });
  await inBatches(warm.length, async (i) => void (await inject('/v1/outcomes', { decisionId: warm[i], quality: 0.5 })));
  const statsKey = rt.core.keys.pipeline(PIPELINE, 'stats', 'strategy', STRATEGY);
  const counted = async () => Number((await raw.hget(statsKey, 'n')) ?? 0);
  while ((await counted()) < warm.length) await settle();
  await settle();

  // Decisions.
  step('decisions');
  const m0 = await used(raw);
  const ids: string[] = [];
  await inBatches(N, async (i) => {
    const a = await inject('/v1/allocations', { pipeline: PIPELINE, features: { messageCount: 3 + (i % 40), documentTokens: 1000 + 37 * i, taskType: TASKS[i % 3] } });
    ids.push(a.decisionId as string);
  });
  await settle();
  const m1 = await used(raw);
  const perDecision = (m1 - m0) / N;

  step('outcomes');
  // The decisions' bucket hashes, where intake writes each outcome's receipt: their exact size before and after.
  const buckets = [...new Set(ids.map((id) => rt.core.keys.decisionBucket(decisionSecond(id)!, rt.core.keys.shardOf(id))))];
  const bucketBytes = async () => {
    let sum = 0;
    for (const b of buckets) sum += Number((await raw.call('MEMORY', 'USAGE', b, 'SAMPLES', '0')) ?? 0);
    return sum;
  };
  const r0 = await bucketBytes();
  // Outcomes: intake → queue → worker → statistics; measured once the queue has nothing waiting or active.
  await inBatches(N, async (i) => {
    await inject('/v1/outcomes', {
      decisionId: ids[i],
      quality: (i % 10) / 10,
      usage: Object.fromEntries(AGENTS.map((a, k) => [a, { inputTokens: 100 + k + (i % 7), outputTokens: 50 + k }])),
    });
  });
  while ((await counted()) < warm.length + N) await settle();
  const bull = `${rt.core.keys.bullPrefix()}:outcomes`;
  while ((await raw.llen(`${bull}:wait`)) + (await raw.llen(`${bull}:active`)) > 0) await settle();
  await settle();
  const m2 = await used(raw);
  const queue = rt.modules.find((m) => m.name === 'feedback')!.queues![0]!;
  const jobsKept = (await queue.getJobCounts('completed')).completed ?? 0;
  await queue.clean(0, 1_000_000, 'completed');
  await settle();
  const m2b = await used(raw);
  const perReceipt = ((await bucketBytes()) - r0) / N;
  const perMarker = (m2b - m1) / N - perReceipt;
  const perKeptJob = jobsKept > 0 ? (m2 - m2b) / jobsKept : 0;
  const batch = jobsKept > 0 ? N / jobsKept : 1;

  step('spans');
  // Spans: five agents per trace, each trace attributed to one decision.
  const traces = Math.ceil(SPANS / AGENTS.length);
  await inBatches(traces, async (t) => {
    const traceId = `tr-${t}`;
    const spans = AGENTS.map((agent, k) => ({
      traceId,
      spanId: `s${k}`,
      ...(k > 0 ? { parentSpanId: 's0' } : {}),
      sessionId: `sess-${t}`,
      agent,
      model: k === 2 ? 'claude-opus-4-1' : 'gpt-4o-mini',
      kind: 'llm',
      usage: { input: 200 + k, output: 80 + (t % 50) },
      start: new Date(1_790_000_000_000 + t * 1000).toISOString(),
      end: new Date(1_790_000_000_000 + t * 1000 + 900).toISOString(),
      decisionId: ids[t % ids.length],
    }));
    await inject('/v1/spans', { spans });
  });
  await settle();
  const m3 = await used(raw);
  const perSpan = (m3 - m2b) / (traces * AGENTS.length);

  step('baseline');
  // Baseline, same run, same Redis: the same records stored the way earlier versions stored them.
  const records = (await readDecisions(rt.core.redis, rt.core.keys, ids)).map((r) => r!);
  const b0 = await used(raw);
  const legacy = records.map((r) => ({ ...r, id: newDecisionId(decisionSecond(r.id)! * 1000) }));
  for (let at = 0; at < legacy.length; at += 1000) {
    const pipe = raw.pipeline();
    for (const r of legacy.slice(at, at + 1000)) pipe.hset(`legacy:{decisions:${decisionSecond(r.id)}}`, r.id, JSON.stringify(r));
    await pipe.exec();
  }
  const b1 = await used(raw);
  for (let at = 0; at < legacy.length; at += 1000) {
    const pipe = raw.pipeline();
    for (const r of legacy.slice(at, at + 1000)) pipe.set(`legacy:{pipeline:${PIPELINE}}:applied:${r.id}`, '1', 'EX', 8 * 86_400);
    await pipe.exec();
  }
  const b2 = await used(raw);
  // Earlier outcome jobs: full decision records, the same batch size, completed jobs kept an hour up to 100,000.
  const lq = new Queue('outcomes', { connection: raw, prefix: 'legacy:bull' });
  const workerConn = new Redis(redis.url, { maxRetriesPerRequest: null });
  const lw = new Worker('outcomes', async () => undefined, { connection: workerConn, prefix: 'legacy:bull', concurrency: 16 });
  const per = Math.max(1, Math.round(batch));
  for (let at = 0; at < legacy.length; at += per) {
    const outcomes = legacy.slice(at, at + per).map((decision, j) => ({ decision, outcome: { decisionId: decision.id, quality: ((at + j) % 10) / 10, usage: Object.fromEntries(AGENTS.map((a, k) => [a, { inputTokens: 100 + k, outputTokens: 50 + k }])) }, receivedAt: Date.now() }));
    await lq.add('outcomes', { outcomes }, { attempts: 8, backoff: { type: 'exponential', delay: 500 }, removeOnComplete: { age: 3600, count: 100_000 }, removeOnFail: { age: 7 * 86_400 } });
  }
  while (((await lq.getJobCounts('completed')).completed ?? 0) < Math.ceil(legacy.length / per)) await settle();
  await lw.close();
  await lq.close();
  workerConn.disconnect();
  await settle();
  const b3 = await used(raw);
  const legacyDecision = (b1 - b0) / N;
  const legacyMarker = (b2 - b1) / N;
  const legacyCopies = (b3 - b2) / N;
  const legacyOutcome = legacyMarker + legacyCopies;

  // A signed decision token instead of a stored record: the compact self-contained record + a 32-byte HMAC, base64url.
  const tokenKey = randomBytes(32);
  const tokenLen = records.slice(0, 1000).reduce((sum, r) => {
    const body = encodeInline(r);
    return sum + `${body.toString('base64url')}.${createHmac('sha256', tokenKey).update(body).digest('base64url')}`.length;
  }, 0) / Math.min(1000, records.length);

  const window = config.rewardWindowSeconds;
  const markerLife = window + 1 + config.outcomeMarkerGraceSeconds;
  const retention = config.spanRetentionDays * 86_400;
  const perAllocation = perDecision + perReceipt + perMarker;
  const legacyPerAllocation = legacyDecision + legacyOutcome;
  const decisionsGb = (perDecision * RATE * window) / 1e9;
  const markersGb = (perMarker * RATE * markerLife) / 1e9;
  const receiptsGb = (perReceipt * RATE * window) / 1e9;
  const jobsGb = (perKeptJob * config.jobKeepCompletedCount) / 1e9;
  const legacyDecisionsGb = (legacyDecision * RATE * window) / 1e9;
  const legacyOutcomeGb = (legacyMarker * RATE * (window + 7 * 86_400) + legacyCopies * Math.min(100_000 * batch, RATE * 3600)) / 1e9;

  console.log(`bench/memory: private Redis, example pipeline ${PIPELINE} (strategy ${STRATEGY}), N=${N} allocations each with an outcome, ${traces * AGENTS.length} spans`);
  console.log(`  (baseline = the same records stored as earlier versions did, measured in this run on the same Redis)`);
  console.log(`  bytes per decision record:              ${perDecision.toFixed(0).padStart(5)}   baseline ${legacyDecision.toFixed(0).padStart(5)}   ratio ${(perDecision / legacyDecision).toFixed(2)}`);
  console.log(`  bytes per applied outcome (marker):     ${perMarker.toFixed(0).padStart(5)}   baseline ${legacyOutcome.toFixed(0).padStart(5)}   ratio ${(perMarker / legacyOutcome).toFixed(2)}   (baseline: marker ${legacyMarker.toFixed(0)} + kept job copies ${legacyCopies.toFixed(0)})`);
  console.log(`  bytes per outcome receipt:              ${perReceipt.toFixed(0).padStart(5)}   baseline     —   (a field of the decision's bucket, kept as long as the record)`);
  console.log(`  bytes per kept completed job:           ${perKeptJob.toFixed(0).padStart(5)}   (${batch.toFixed(1)} outcomes a job; at most ${config.jobKeepCompletedCount} kept, ${config.jobKeepCompletedSeconds} s)`);
  console.log(`  decision + receipt + outcome per allocation: ${perAllocation.toFixed(0).padStart(5)}   baseline ${legacyPerAllocation.toFixed(0).padStart(5)}   ratio ${(perAllocation / legacyPerAllocation).toFixed(2)}   target ≤ 250: ${perAllocation <= 250 ? 'met' : 'NOT met'}`);
  console.log(`  bytes per span (with its indexes):      ${perSpan.toFixed(0).padStart(5)}`);
  console.log(`  a signed decision token instead of the stored record: ${tokenLen.toFixed(0)} bytes in every allocation response and outcome request`);
  console.log(`  projected resident memory at ${RATE.toLocaleString('en')} allocations/s, each with an outcome, default windows:`);
  console.log(`    decision records (reward window ${window} s):       ${decisionsGb.toFixed(1).padStart(6)} GB   baseline ${legacyDecisionsGb.toFixed(1)} GB`);
  console.log(`    outcome receipts (reward window ${window} s):       ${receiptsGb.toFixed(1).padStart(6)} GB   baseline 0 (none)`);
  console.log(`    outcome markers (${markerLife} s) + kept jobs:         ${(markersGb + jobsGb).toFixed(1).padStart(6)} GB   baseline ${legacyOutcomeGb.toFixed(1)} GB (markers 8 days, job copies an hour)`);
  console.log(`    decision + receipt + outcome state:                ${(decisionsGb + receiptsGb + markersGb + jobsGb).toFixed(1).padStart(6)} GB   baseline ${(legacyDecisionsGb + legacyOutcomeGb).toFixed(1)} GB   ratio ${((decisionsGb + receiptsGb + markersGb + jobsGb) / (legacyDecisionsGb + legacyOutcomeGb)).toFixed(2)}`);
  console.log(`    spans (${AGENTS.length} per allocation):  ${gb(perSpan * RATE * AGENTS.length * 86_400)} GB per day kept; ${gb(perSpan * RATE * AGENTS.length * retention)} GB at the ${config.spanRetentionDays}-day retention`);
} finally {
  await rt.close();
  raw.disconnect();
  await redis.stop();
}
