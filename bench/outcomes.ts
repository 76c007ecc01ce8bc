/**
 * Outcomes per second from HTTP intake through the BullMQ worker into statistics, against raw BullMQ
 * add-and-process of no-op jobs on the same Redis, measured in the same run.
 *
 *   node --import tsx bench/outcomes.ts [--n 10000] [--rounds 3] [--connections 64] [--concurrency 16] [--split true]
 *
 * Baseline: one process adds N no-op jobs (64 adds in flight) while a Worker with the same concurrency as
 * Apportion's outcome worker processes them; rate = N ÷ time until the last completes.
 * Apportion: N decisions are made first (POST /v1/allocations); then N outcomes are POSTed (64 connections)
 * to a server running API + workers; rate = N ÷ time until the strategy's statistics count all N. Intake
 * group-commits outcomes into shared jobs (APPORTION_OUTCOME_BATCH_MAX); the mean batch size is printed.
 * Rounds alternate baseline and Apportion (one Apportion server for all rounds); the ratio is the median of the
 * per-round ratios, so a machine whose load moves does not bias it.
 */
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { ApportionClient } from '@apportion/sdk';
import { spawn } from 'node:child_process';
import { dropPrefix, flag, REDIS_URL, ROOT, scrapeMetrics, spawnServer, type BenchServer } from './lib.js';

const N = Number(flag('n', '10000'));
const ROUNDS = Number(flag('rounds', '3'));
const connections = Number(flag('connections', '64'));
/** Worker concurrency, the same for the raw baseline and Apportion's outcome worker (APPORTION_OUTCOME_CONCURRENCY). */
const CONCURRENCY = Number(flag('concurrency', '16'));
/** `--split true`: producer and worker in separate processes for both sides (Apportion: `api` + `worker`). */
const SPLIT = flag('split', 'false') === 'true';

async function rawBullmq(): Promise<number> {
  const prefix = `bench-raw-${randomBytes(4).toString('hex')}`;
  const conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const queue = new Queue('noop', { connection: conn, prefix });
  let done = 0;
  let resolveDone!: () => void;
  const finished = new Promise<void>((r) => (resolveDone = r));
  let worker: { close(): Promise<void> };
  if (SPLIT) {
    // The no-op worker in a process of its own; it reports each completion over IPC.
    const src = `import { Worker } from 'bullmq'; import { Redis } from 'ioredis';
      const w = new Worker('noop', async () => { process.send('d'); }, { connection: new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: null }), prefix: process.env.P, concurrency: Number(process.env.C) });
      await w.waitUntilReady(); process.send('ready'); process.on('message', async () => { await w.close(); process.exit(0); });`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', src], { cwd: ROOT, env: { ...process.env, REDIS_URL, P: prefix, C: String(CONCURRENCY) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((r) => child.on('message', (m) => (m === 'ready' ? r() : ++done === N && resolveDone())));
    worker = { close: async () => { child.send('close'); await new Promise((r) => child.once('exit', r)); } };
  } else {
    const w = new Worker(
      'noop',
      async () => {
        if (++done === N) resolveDone();
      },
      { connection: conn, prefix, concurrency: CONCURRENCY },
    );
    await w.waitUntilReady();
    worker = w;
  }
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (next < N) {
        const i = next++;
        await queue.add('noop', { i, quality: 0.5 }, { jobId: `j${i}`, removeOnComplete: { age: 3600 } });
      }
    }),
  );
  await finished;
  const rate = N / ((performance.now() - t0) / 1000);
  await worker.close();
  await queue.close();
  conn.disconnect();
  await dropPrefix(prefix);
  return rate;
}

interface Ours {
  readonly server: BenchServer;
  readonly worker: BenchServer | undefined;
  counted: number;
}

async function startOurs(): Promise<Ours> {
  const env = { APPORTION_OUTCOME_CONCURRENCY: String(CONCURRENCY) };
  const server = await spawnServer(env, [], SPLIT ? 'api' : 'serve');
  const worker = SPLIT ? await spawnServer(env, [], 'worker', server.prefix) : undefined;
  return { server, worker, counted: 0 };
}

/** One round on the running server: N decisions first, then N outcomes; timed until the stats count them all. */
async function batchSizes(server: BenchServer): Promise<{ jobs: number; outcomes: number }> {
  const read = await scrapeMetrics(server);
  return { jobs: read('apportion_outcome_batch_size_count') ?? 0, outcomes: read('apportion_outcome_batch_size_sum') ?? 0 };
}

async function apportion(ours: Ours): Promise<{ rate: number; intakeRate: number; non2xx: number; meanBatch: number }> {
  const { server } = ours;
  const client = new ApportionClient({ url: server.url, key: server.clientKey });
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (next < N) {
        const i = next++;
        const a = await client.allocate({ pipeline: 'support-triage', features: { messageCount: i % 50 } });
        ids.push(a.decisionId);
      }
    }),
  );
  const bodies = ids.map((decisionId, i) =>
    JSON.stringify({
      decisionId,
      quality: (i % 100) / 100,
      costUsd: 0.001 * (i % 7),
      usage: { reasoner: { inputTokens: 1000 + (i % 900), outputTokens: 400 }, formatter: { outputTokens: 50, truncated: i % 10 === 0 } },
    }),
  );
  let k = 0;
  const stats = new ApportionClient({ url: server.url, key: server.adminKey });
  const target = ours.counted + N;
  const b0 = await batchSizes(server);
  const t0 = performance.now();
  const res = await autocannon({
    url: server.url,
    connections,
    amount: N,
    requests: [
      {
        method: 'POST',
        path: '/v1/outcomes',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${server.clientKey}` },
        setupRequest: (req) => ({ ...req, body: bodies[k++]! }),
      },
    ],
  });
  const intakeRate = N / ((performance.now() - t0) / 1000);
  for (;;) {
    const s = (await stats.strategyStats('support-estimate')) as { count: number };
    if (s.count >= target) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const rate = N / ((performance.now() - t0) / 1000);
  ours.counted = target;
  const b1 = await batchSizes(server);
  return { rate, intakeRate, non2xx: res.non2xx, meanBatch: (b1.outcomes - b0.outcomes) / Math.max(1, b1.jobs - b0.jobs) };
}

const median = (xs: number[]): number => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
};

console.log(
  `bench/outcomes: N=${N} per round, ${ROUNDS} alternating rounds, ${connections} in flight, worker concurrency ${CONCURRENCY}, ${SPLIT ? 'producer and worker in separate processes' : 'producer and worker in one process'}`,
);
const ours = await startOurs();
const ratios: number[] = [];
try {
  for (let r = 1; r <= ROUNDS; r++) {
    const raw = await rawBullmq();
    console.log(`  round ${r}: raw BullMQ add+process (no-op)     ${raw.toFixed(0).padStart(7)} jobs/s`);
    const o = await apportion(ours);
    console.log(`  round ${r}: outcomes intake (202s)             ${o.intakeRate.toFixed(0).padStart(7)} outcomes/s  (non-2xx ${o.non2xx}, ${o.meanBatch.toFixed(1)} outcomes per job)`);
    console.log(`  round ${r}: outcomes intake → worker → stats   ${o.rate.toFixed(0).padStart(7)} outcomes/s   ratio ${(o.rate / raw).toFixed(3)}`);
    ratios.push(o.rate / raw);
  }
} finally {
  ours.worker?.child.kill('SIGTERM');
  await ours.server.close();
}
console.log(`ratio apportion/raw = ${median(ratios).toFixed(3)} (median of ${ROUNDS} alternating rounds; target ≥ 0.5)`);
