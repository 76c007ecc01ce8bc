/**
 * What conditional control-plane writes cost (src/control/write.ts): `PUT /v1/strategies/:id` per second through two
 * server instances on one key prefix (each with its own snapshot), against the local Redis, same run:
 *   - sequential, distinct ids (the baseline: no writer ever races another);
 *   - `--concurrency` writers at once, distinct ids (every write moves the pipeline's strategies but none expects
 *     another's strategy, so conflicts come only from a stale snapshot);
 *   - `--concurrency` writers at once, all on one id (each write expects the version the others move: the worst case,
 *     every write but one per round recomputes).
 * Prints writes/s, the ratio to the baseline, and the 409 CONCURRENT_MODIFICATION answers (writes that gave up
 * after 30 attempts).
 *
 *   node --import tsx bench/control-writes.ts [--seconds 5] [--concurrency 16]
 */
import { loadConfig } from '../src/config/env.js';
import { dropPrefix as dropPrefixAt } from '../src/redis/prefix.js';
import { start, type Running } from '../src/server.js';
import pino from 'pino';
import { flag, REDIS_URL } from './lib.js';

const seconds = Number(flag('seconds', '5'));
const concurrency = Number(flag('concurrency', '16'));
const prefix = `bench-control-writes-${process.pid}`;
const config = loadConfig({ REDIS_URL, APPORTION_KEY_PREFIX: prefix, LOG_LEVEL: 'silent', APPORTION_SEED_EXAMPLES: 'false', PORT: '0' });
const log = pino({ level: 'silent' });
const servers: Running[] = [await start(config, log, { api: true, workers: false, listen: false }), await start(config, log, { api: true, workers: false, listen: false })];

const put = (i: number, id: string) =>
  servers[i % 2]!.app!.inject({ method: 'PUT', url: `/v1/strategies/${id}`, payload: { pipeline: 'p', kind: 'static', params: { shares: { a: 1 + (i % 7), b: 1 } } } });

async function run(label: string, writers: number, idOf: (writer: number, n: number) => string): Promise<number> {
  let done = 0;
  let gaveUp = 0;
  let other = 0;
  let n = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      while (Date.now() < end) {
        const r = await put(n, idOf(w, n++));
        if (r.statusCode === 200) done++;
        else if (r.json().code === 'CONCURRENT_MODIFICATION') gaveUp++;
        else other++;
      }
    }),
  );
  const rate = done / seconds;
  console.log(`${label.padEnd(44)} ${rate.toFixed(0).padStart(6)} writes/s${gaveUp ? `, ${gaveUp} gave up (409)` : ''}${other ? `, ${other} other answers` : ''}`);
  return rate;
}

try {
  const r = await servers[0]!.app!.inject({ method: 'PUT', url: '/v1/pipelines/p', payload: { defaultTotalTokens: 1000, agents: [{ name: 'a' }, { name: 'b' }] } });
  if (r.statusCode !== 200) throw new Error(r.body);
  const base = await run('sequential, distinct ids (baseline)', 1, (_, n) => `seq-${n % 200}`);
  const distinct = await run(`${concurrency} at once, distinct ids`, concurrency, (w, n) => `w${w}-${n % 50}`);
  const same = await run(`${concurrency} at once, one id`, concurrency, () => 'hot');
  console.log(`\nconcurrent distinct ÷ sequential ${(distinct / base).toFixed(2)}; concurrent one id ÷ sequential ${(same / base).toFixed(2)}`);
} finally {
  for (const s of servers) await s.close();
  await dropPrefixAt({ url: REDIS_URL }, prefix);
}
