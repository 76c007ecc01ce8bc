/**
 * Outcomes per second from HTTP intake through the BullMQ worker into statistics, against raw BullMQ
 * add-and-process of no-op jobs on the same Redis, measured in the same run.
 *
 *   node --import tsx bench/outcomes.ts [--n 20000] [--connections 64] [--concurrency 16]
 *
 * Baseline: one process adds N no-op jobs (64 adds in flight) while a Worker with the same concurrency as
 * Apportion's outcome worker processes them; rate = N ÷ time until the last completes.
 * Apportion: N decisions are made first (POST /v1/allocations); then N outcomes are POSTed (64 connections)
 * to a server running API + workers; rate = N ÷ time until the strategy's statistics count all N.
 */
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { ApportionClient } from '../src/sdk/client.js';
import { spawn } from 'node:child_process';
import { dropPrefix, flag, REDIS_URL, ROOT, spawnServer } from './lib.js';

const N = Number(flag('n', '20000'));
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

async function apportion(): Promise<{ rate: number; intakeRate: number; non2xx: number }> {
  const env = { APPORTION_OUTCOME_CONCURRENCY: String(CONCURRENCY) };
  const server = await spawnServer(env, [], SPLIT ? 'api' : 'serve');
  const worker = SPLIT ? await spawnServer(env, [], 'worker', server.prefix) : undefined;
  try {
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
      if (s.count >= N) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const rate = N / ((performance.now() - t0) / 1000);
    return { rate, intakeRate, non2xx: res.non2xx };
  } finally {
    worker?.child.kill('SIGTERM');
    await server.close();
  }
}

console.log(`bench/outcomes: N=${N}, ${connections} in flight, worker concurrency ${CONCURRENCY}, ${SPLIT ? 'producer and worker in separate processes' : 'producer and worker in one process'}`);
const raw = await rawBullmq();
console.log(`raw BullMQ add+process (no-op)     ${raw.toFixed(0).padStart(7)} jobs/s`);
const ours = await apportion();
console.log(`outcomes intake (202s)             ${ours.intakeRate.toFixed(0).padStart(7)} outcomes/s  (non-2xx ${ours.non2xx})`);
console.log(`outcomes intake → worker → stats   ${ours.rate.toFixed(0).padStart(7)} outcomes/s`);
console.log(`ratio apportion/raw = ${(ours.rate / raw).toFixed(3)}  (target ≥ 0.5)`);
