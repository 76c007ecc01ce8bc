/**
 * What the AOF fsync policy costs the product: reserve + commit pairs and allocate + outcome pairs per second over
 * HTTP against a private redis-server with `appendfsync always` and with `everysec`, same run, alternating.
 *
 *   node --import tsx bench/aof-fsync.ts [--seconds 8] [--concurrency 32] [--rounds 2]
 *
 * Why it exists: with `everysec` Redis answers a write before it is in the AOF file whenever the previous second's
 * fsync is still running (it postpones writing its buffer for up to 2 s), so a Redis process crash can lose
 * acknowledged reservations, commits and outcomes; test/integration/fault-schedule.test.ts measured it under disk load.
 * With `always` every write is in the file (fsynced, once per event-loop turn for all the writes of that turn) before
 * its reply. Prints each policy's rate and always ÷ everysec.
 */
import { PrivateRedis } from '../test/helpers/private-redis.js';
import { call, PIPELINE, provision, startServer, TENANT_SCOPE, type Server } from './_faults-lib.js';
import { flag } from './lib.js';

const seconds = Number(flag('seconds', '8'));
const concurrency = Number(flag('concurrency', '32'));
const rounds = Number(flag('rounds', '2'));

async function load(server: Server, kind: 'reserve' | 'outcome'): Promise<number> {
  let done = 0;
  let failed = 0;
  const end = Date.now() + seconds * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        if (kind === 'reserve') {
          const r = await call(server, 'POST', '/v1/reservations', { scope: TENANT_SCOPE, unit: 'TOKENS', amount: 100, ttlMs: 60_000, idempotencyKey: `k-${n++}` });
          const c = r.status === 201 ? await call(server, 'POST', `/v1/reservations/${encodeURIComponent(String(r.body.id))}/commit`, { amount: 80 }) : r;
          if (c.status === 200) done++;
          else failed++;
        } else {
          const a = await call(server, 'POST', '/v1/allocations', { pipeline: PIPELINE });
          const o = a.status === 200 ? await call(server, 'POST', '/v1/outcomes', { decisionId: a.body.decisionId, quality: 0.5 }) : a;
          if (o.status === 202) done++;
          else failed++;
        }
      }
    }),
  );
  if (failed > done / 100) console.log(`  (${failed} pairs failed)`);
  return done / seconds;
}

const rates: Record<string, Record<string, number[]>> = { always: { reserve: [], outcome: [] }, everysec: { reserve: [], outcome: [] } };
for (let round = 0; round < rounds; round++) {
  for (const fsync of round % 2 === 0 ? (['everysec', 'always'] as const) : (['always', 'everysec'] as const)) {
    const redis = await PrivateRedis.start({ aof: true, fsync });
    const server = await startServer(redis.url);
    try {
      await provision(server);
      for (const kind of ['reserve', 'outcome'] as const) {
        const r = await load(server, kind);
        rates[fsync]![kind]!.push(r);
        console.log(`round ${round + 1} appendfsync ${fsync.padEnd(8)} ${kind === 'reserve' ? 'reserve+commit ' : 'allocate+outcome'} ${r.toFixed(0)} pairs/s`);
      }
    } finally {
      await server.close();
      await redis.stop();
    }
  }
}
const mean = (xs: number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
for (const kind of ['reserve', 'outcome'] as const) {
  const a = mean(rates.always![kind]!);
  const e = mean(rates.everysec![kind]!);
  console.log(`${kind === 'reserve' ? 'reserve+commit ' : 'allocate+outcome'}: always ${a.toFixed(0)}/s, everysec ${e.toFixed(0)}/s, always ÷ everysec ${(a / e).toFixed(2)}`);
}
