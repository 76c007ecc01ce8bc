/**
 * Fault injection against a private Redis, under steady allocation + outcome + reservation load.
 *
 *   node --import tsx bench/faults.ts [--stall 10] [--alloc-rate 40] [--reserve-rate 20]
 *
 * Starts a redis-server of its own on a free loopback port (AOF on, appendfsync always, as docker-compose.yml
 * runs it; the shared Redis on 6379 is never touched) and `apportion serve` through bin/apportion.mjs, then:
 *
 *   1. stall   — SIGSTOP Redis for --stall seconds, then SIGCONT;
 *   2. restart with data — SIGKILL Redis and start it again on its AOF;
 *      then the load stops and the books are checked: every acknowledged outcome counted exactly once, every
 *      token reported used (acknowledged commits) charged exactly once, nothing left held;
 *   3. restart empty — SIGKILL Redis and start it without its data: time until the server notices, stops serving
 *      the pipeline that now exists only in its memory, and its job schedulers (reservation sweeper, rollout,
 *      learner tick) run again; a 1 s reservation taken after the restart must be swept.
 *
 * Each figure is printed against its target with ok / NOT MET. The baseline of the stall latency is the same
 * load's allocation latency in the healthy seconds before the stall (same run).
 */
import { PrivateRedis } from '../test/helpers/private-redis.js';
import {
  call,
  drained,
  Load,
  metric,
  outcomesCounted,
  PIPELINE,
  provision,
  quantile,
  queuesOf,
  schedulerRanSince,
  startServer,
  tenantBalance,
  TENANT_SCOPE,
  timeUntil,
} from './_faults-lib.js';
import { flag } from './lib.js';

const stallSeconds = Number(flag('stall', '10'));
const allocRate = Number(flag('alloc-rate', '40'));
const reserveRate = Number(flag('reserve-rate', '20'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (v: number | undefined) => (v === undefined ? 'never (bound passed)' : `${(v / 1000).toFixed(2)} s`);
let unmet = 0;
const line = (what: string, value: string, ok: boolean, target: string) => {
  if (!ok) unmet++;
  process.stdout.write(`${ok ? 'ok      ' : 'NOT MET '} ${what.padEnd(58)} ${value.padEnd(28)} target ${target}\n`);
};

const redis = await PrivateRedis.start({ aof: true });
const server = await startServer(redis.url);
const { queues, connection } = queuesOf(server, redis.url);
process.stdout.write(`private redis ${redis.url} (AOF always), server ${server.url} via bin/apportion.mjs, prefix ${server.prefix}\n`);
try {
  await provision(server);
  const load = new Load(server, { allocRate, reserveRate });
  load.start();
  await sleep(4000);

  // 1. Stall.
  const readyBefore = (await call(server, 'GET', '/readyz')).status;
  const stallFrom = Date.now();
  redis.pause();
  await sleep(Math.min(3000, (stallSeconds * 1000) / 2));
  const readyT0 = Date.now();
  const readyDuring = await call(server, 'GET', '/readyz');
  const readyMs = Date.now() - readyT0;
  await sleep(stallFrom + stallSeconds * 1000 - Date.now());
  redis.resume();
  const stallTo = Date.now();
  await sleep(4000);

  // 2. Restart with data.
  const killFrom = Date.now();
  await redis.restart({ empty: false });
  const killTo = Date.now();
  // Certainly down from the kill to the new process's start (killTo also covers the time it took to answer a PING).
  const downTo = redis.startedAt;
  await sleep(5000);
  await load.stop();

  const healthy = load.within('allocate', stallFrom - 3500, stallFrom).map((s) => s.ms);
  const stalled = load.within('allocate', stallFrom, stallTo);
  const stalledOk = stalled.filter((s) => s.status === 200);
  const outcomesDuring = load.within('outcome', stallFrom, stallTo);
  const reservesStall = load.within('reserve', stallFrom, stallTo);
  const reservesKill = load.within('reserve', killFrom, killTo + 1);

  process.stdout.write(`\n== stall: Redis SIGSTOPped for ${stallSeconds} s under ${allocRate} allocations/s and ${reserveRate} reservations/s ==\n`);
  process.stdout.write(
    `allocation latency healthy (3.5 s before): p50 ${quantile(healthy, 0.5)} ms, p99 ${quantile(healthy, 0.99)} ms (n=${healthy.length}); ` +
      `during the stall: p50 ${quantile(stalled.map((s) => s.ms), 0.5)} ms, p99 ${quantile(stalled.map((s) => s.ms), 0.99)} ms, max ${Math.max(...stalled.map((s) => s.ms))} ms (n=${stalled.length})\n`,
  );
  const p99 = quantile(stalled.map((s) => s.ms), 0.99);
  line('allocations answered during the stall, p99', `${p99} ms`, p99 <= 1000, '≤ 1000 ms');
  line('allocations answered 200 during the stall (fallback: recorded=false)', `${stalledOk.length}/${stalled.length} (${stalledOk.filter((s) => !s.recorded).length} unrecorded)`, stalledOk.length === stalled.length, 'all');
  const outcome503 = outcomesDuring.filter((s) => s.status === 503);
  line(
    'outcomes sent during the stall: answered 503, p99 latency',
    `${outcome503.length}/${outcomesDuring.length}, ${quantile(outcomesDuring.map((s) => s.ms), 0.99)} ms`,
    outcomesDuring.every((s) => s.status === 503 || s.status === 202),
    '503 (never a hang)',
  );
  line('/readyz during the stall', `${readyDuring.status} in ${readyMs} ms (before: ${readyBefore})`, readyDuring.status === 503 && readyBefore === 200, '503');
  // Granted during an outage = a reserve sent while Redis was stalled or down and answered 201 before it was back.
  // (One sent then and answered after Redis came back was decided by Redis in working order: shown beside it.)
  const inOutage = (s: { at: number; ms: number }, from: number, to: number) => s.at >= from && s.at + s.ms < to;
  const all = load.samples.filter((s) => s.kind === 'reserve');
  const granted = all.filter((s) => s.status === 201 && (inOutage(s, stallFrom, stallTo) || inOutage(s, killFrom, downTo))).length;
  const asked = reservesStall.length + reservesKill.length;
  const refused = [...reservesStall, ...reservesKill].filter((s) => s.status === 503).length;
  const later = [...reservesStall, ...reservesKill].filter((s) => s.status === 201).length;
  line('reservations granted during the outages (stall, restart)', `${granted} (${asked} asked: ${refused} × 503, ${later} × 201 after Redis was back)`, granted === 0, '0');

  // Books after the stall and the restart with data.
  const outcomes = queues.outcomes!;
  const queueDrained = await drained(outcomes);
  const counted = await outcomesCounted(server);
  const bal = await tenantBalance(server);
  process.stdout.write(`\n== restart with data (AOF): Redis SIGKILLed and restarted in ${killTo - killFrom} ms; books after both faults ==\n`);
  line(
    'acknowledged outcomes counted exactly once',
    `${load.ackedOutcomes.size} acknowledged, ${counted} counted`,
    queueDrained && counted === load.ackedOutcomes.size,
    'equal',
  );
  process.stdout.write(`  (outcomes given up on: ${load.droppedOutcomes.size}; commits that found their reservation gone: ${load.commitsLost})\n`);
  line(
    'tokens reported used (acknowledged commits) charged exactly once',
    `${load.usedAcked} used, ${bal?.spent ?? '?'} spent, ${load.chargedAcked} answered charged`,
    bal !== undefined && bal.spent === load.usedAcked && load.chargedAcked === load.usedAcked,
    'equal',
  );
  line('tokens still held after every commit was answered', `${bal?.reserved ?? '?'} (from ${load.commitsAcked} commits)`, bal?.reserved === 0, '0');

  // 3. Restart empty.
  const lossBefore = (await metric(server, 'apportion_redis_data_loss_total')) ?? 0;
  const load2 = new Load(server, { allocRate: allocRate / 2, reserveRate: 0 });
  load2.start();
  const emptyFrom = Date.now();
  await redis.restart({ empty: true });
  const back = Date.now();
  const detected = await timeUntil(async () => ((await metric(server, 'apportion_redis_data_loss_total')) ?? 0) > lossBefore, 30_000);
  const forgotten = await timeUntil(async () => (await call(server, 'POST', '/v1/allocations', { pipeline: PIPELINE })).status === 404, 30_000);
  await load2.stop();
  // The operator re-applies what was lost (here: the pipeline and the budget); the sweeper must expire a 1 s hold.
  await provision(server);
  const held = await call(server, 'POST', '/v1/reservations', { scope: `${TENANT_SCOPE}/agent:sweep`, unit: 'TOKENS', amount: 500, ttlMs: 1000, idempotencyKey: `sweep-${back}` });
  const heldAt = Date.now();
  const swept = await timeUntil(async () => (await tenantBalance(server))?.reserved === 0, 30_000);
  const jobs: Record<string, number | undefined> = {};
  await Promise.all(
    (['budgets', 'rollout', 'learner-tick'] as const).map(async (q) => {
      const t = await timeUntil(() => schedulerRanSince(queues[q]!, back), 30_000);
      jobs[q] = t === undefined ? undefined : Date.now() - back;
    }),
  );
  process.stdout.write(`\n== restart empty: Redis SIGKILLed and restarted without its data in ${back - emptyFrom} ms ==\n`);
  line('data loss detected (apportion_redis_data_loss_total + 1)', ms(detected), detected !== undefined && detected <= 10_000, '≤ 10 s');
  line('pipeline that existed only in memory no longer served (404)', ms(forgotten), forgotten !== undefined, 'yes');
  for (const [q, t] of Object.entries(jobs)) line(`scheduler "${q}" running again after Redis returned`, ms(t), t !== undefined && t <= 10_000, '≤ 10 s');
  line('1 s reservation taken after the restart swept', held.status === 201 ? `${ms(swept)} after it was taken (${((heldAt - back) / 1000).toFixed(1)} s after Redis returned)` : `reserve answered ${held.status}`, held.status === 201 && swept !== undefined && swept <= 10_000, '≤ 10 s');
  const loud = server.logs.filter((l) => l.includes('REDIS LOST ITS DATA')).length;
  line('logged loudly (error line "REDIS LOST ITS DATA")', `${loud} line(s)`, loud >= 1, '≥ 1');
  process.stdout.write(`\n${unmet === 0 ? 'all targets met' : `${unmet} target(s) NOT MET`}\n`);
} finally {
  await Promise.allSettled(Object.values(queues).map((q) => q.close()));
  connection.disconnect();
  await server.close();
  await redis.stop();
}
process.exitCode = unmet === 0 ? 0 : 1;
