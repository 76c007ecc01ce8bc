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
 * are in the number.
 *
 * Baseline, measured in the same run on the same Redis: the same N records stored the way earlier versions
 * stored them (the record's JSON under its 43-character id in the same per-second hashes, and one
 * `applied:<id>` string key with an 8-day TTL per applied outcome). The earlier versions' retained queue copies
 * (completed jobs carrying full decision records, up to 100,000 for an hour) cannot be rebuilt without the old
 * worker; docs/architecture.md quotes them as measured before the change (909 bytes per applied outcome).
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pino from 'pino';
import { decisionSecond, newDecisionId, readDecisionJson } from '../src/allocation/decisions.js';
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
const raw = new Redis(redis.url);
const prefix = 'mem';
const config = loadConfig({ REDIS_URL: redis.url, APPORTION_KEY_PREFIX: prefix, LOG_LEVEL: 'silent', PORT: '0', APPORTION_SEED_EXAMPLES: 'true' });
const rt = await start(config, pino({ level: 'silent' }), { api: true, workers: true, listen: false, defaultMetrics: false });
const app = rt.app!;
const inject = async (url: string, payload: object): Promise<Record<string, unknown>> => {
  const res = await app.inject({ method: 'POST', url, payload });
  if (res.statusCode >= 300) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  return res.json() as Record<string, unknown>;
};

async function inBatches(n: number, fn: (i: number) => Promise<void>): Promise<void> {
  for (let at = 0; at < n; at += 500) await Promise.all(Array.from({ length: Math.min(500, n - at) }, (_, j) => fn(at + j)));
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
  const m0 = await used(raw);
  const ids: string[] = [];
  await inBatches(N, async (i) => {
    const a = await inject('/v1/allocations', { pipeline: PIPELINE, features: { messageCount: 3 + (i % 40), documentTokens: 1000 + 37 * i, taskType: TASKS[i % 3] } });
    ids.push(a.decisionId as string);
  });
  await settle();
  const m1 = await used(raw);
  const perDecision = (m1 - m0) / N;

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
  const perOutcome = (m2 - m1) / N;

  // Spans: five agents per trace, each trace attributed to one decision.
  const spanIds: number[] = [];
  for (let i = 0; i < SPANS; i++) spanIds.push(i);
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
  const perSpan = (m3 - m2) / (traces * AGENTS.length);

  // Baseline, same run: the same records the way earlier versions stored them.
  const b0 = await used(raw);
  const legacyIds: string[] = [];
  const pipe = raw.pipeline();
  for (const id of ids) {
    const json = (await readDecisionJson(rt.core.redis, rt.core.keys, id))!;
    const sec = decisionSecond(id)!;
    const lid = newDecisionId(sec * 1000);
    legacyIds.push(lid);
    pipe.hset(`legacy:{decisions:${sec}}`, lid, JSON.stringify({ ...(JSON.parse(json) as object), id: lid }));
  }
  await pipe.exec();
  const b1 = await used(raw);
  const pipe2 = raw.pipeline();
  for (const lid of legacyIds) pipe2.set(`legacy:{pipeline:${PIPELINE}}:applied:${lid}`, '1', 'EX', 8 * 86_400);
  await pipe2.exec();
  const b2 = await used(raw);
  const legacyDecision = (b1 - b0) / N;
  const legacyMarker = (b2 - b1) / N;
  const legacyQueueCopies = 909 - legacyMarker; // measured before the change: 909 bytes per applied outcome in all

  const window = config.rewardWindowSeconds;
  const markerLife = window + ((config as unknown as Record<string, number>).outcomeMarkerGraceSeconds ?? 7 * 86_400);
  const retention = config.spanRetentionDays * 86_400;
  const spansPerAllocation = AGENTS.length;
  const completedJobs = (config as unknown as Record<string, number>).jobKeepCompletedCount ?? 100_000;
  // Completed-job retention is bounded by count: at 1,000 outcomes/s the cap holds, whatever the age.
  const outcomeStatePerAllocation = perDecision + perOutcome;
  const legacyPerAllocation = legacyDecision + 909;

  console.log(`bench/memory: private Redis ${redis.url}, example pipeline ${PIPELINE}, N=${N} allocations with outcomes, ${traces * AGENTS.length} spans`);
  console.log(`  token size if the record travelled as a signed token instead (base64url, 32-byte HMAC): ${Math.ceil(((perDecisionPayload(ids[0]!) + 32) * 4) / 3)} bytes per response and per outcome request`);
  console.log(`  bytes per decision record:          ${perDecision.toFixed(0).padStart(5)}   (baseline layout ${legacyDecision.toFixed(0)}; ratio ${(perDecision / legacyDecision).toFixed(2)})`);
  console.log(`  bytes per applied outcome:          ${perOutcome.toFixed(0).padStart(5)}   (baseline: marker ${legacyMarker.toFixed(0)} + queue copies ${legacyQueueCopies.toFixed(0)} = 909; ratio ${(perOutcome / 909).toFixed(2)})`);
  console.log(`  decision + outcome per allocation:  ${outcomeStatePerAllocation.toFixed(0).padStart(5)}   (baseline ${legacyPerAllocation.toFixed(0)}; ratio ${(outcomeStatePerAllocation / legacyPerAllocation).toFixed(2)}; target ≤ 250: ${outcomeStatePerAllocation <= 250 ? 'met' : 'NOT met'})`);
  console.log(`  bytes per span (with its indexes):  ${perSpan.toFixed(0).padStart(5)}`);
  console.log(`  projected resident memory at ${RATE.toLocaleString('en')} allocations/s, every one with an outcome:`);
  const decisionsGb = (perDecision * RATE * window) / 1e9;
  const markersGb = (perOutcome * RATE * markerLife) / 1e9;
  console.log(`    decision records (window ${window} s):             ${gb(perDecision * RATE * window)} GB   (baseline ${gb(legacyDecision * RATE * window)} GB)`);
  console.log(`    outcome state (markers ${markerLife} s, ≤ ${completedJobs} completed jobs): ${gb(perOutcome * RATE * markerLife)} GB   (baseline ${gb(legacyMarker * RATE * (window + 7 * 86_400) + legacyQueueCopies * Math.min(100_000, RATE * 3600))} GB)`);
  console.log(`    decision + outcome state:                          ${(decisionsGb + markersGb).toFixed(1)} GB`);
  console.log(`    spans, ${spansPerAllocation} per allocation: ${gb(perSpan * RATE * spansPerAllocation * 86_400)} GB per day of retention, ${gb(perSpan * RATE * spansPerAllocation * retention)} GB at ${config.spanRetentionDays} days`);

  function perDecisionPayload(id: string): number {
    void id;
    return Math.round(perDecision - 70); // the record's value without the hash entry's overhead (approximation)
  }
} finally {
  void randomUUID;
  await rt.close();
  raw.disconnect();
  await redis.stop();
}
