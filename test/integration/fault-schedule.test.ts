/**
 * Generated fault schedules against a private redis-server (its own port and data directory; the shared Redis is
 * never touched) and against a local Redis Cluster of the test's own: from a seed, a sequence of rounds, each a few
 * concurrent operations of a careful client (allocate, report an outcome, reserve, commit with an amount drawn
 * around the reservation — overruns included —, release, draw from a reservation for a sub-agent and commit or
 * release the draw — the request settles its draws before itself —, debit without a reservation, fund), some rounds under a
 * fault drawn from a family: a stall of 0.1–2 s (SIGSTOP; on the cluster, of one shard), every client connection
 * killed (CLIENT KILL), (cluster) 200–1,000 slots resharded from one master to the next while the calls run, or (single server) a crash and restart with its data (SIGKILL; AOF with `appendfsync always`
 * as docker-compose.yml runs it, so a process crash loses nothing acknowledged; with `everysec` this test failed 1 of
 * 3 runs beside a disk writer: a reservation answered 201 was gone after the restart, docs/architecture.md "What is
 * lost"). The client retries a 5xx or a hung call with the same idempotency key until it gets a definite answer, as
 * docs/budgets.md and docs/architecture.md ("When Redis stalls") ask of it.
 *
 * At the end, against what the client was told:
 * - every outcome answered 202 is counted exactly once in the strategy's stats (none lost, none twice), with the quality
 *   of its decision's first accepted report (a different report for a decision already reported is 409
 *   OUTCOME_CONFLICT; the same report again, as a retry, is 202 and counted once);
 * - the budget's `spent + debt` is the sum of every commit's `charged` and every debit (spend that happened, never
 *   dropped or doubled); `allocated` is the initial allocation plus every fund; `reserved` is what the reservations
 *   still active hold (each what it reserved unless a committed draw took from it); `allocated = remaining +
 *   reserved + spent`; once every draw and request is settled, nothing stays reserved and nothing more was charged;
 * - no data loss is reported (the restarts keep their data);
 * - no call was ever answered 500 (a fault is a 503 the client retries, or nothing at all);
 * - faults were drawn and some calls were retried (the faults reached the calls).
 * Seeds: APPORTION_FAULT_SEEDS, APPORTION_FAULT_CLUSTER_SEEDS (comma-separated; fixed by default, printed with a
 * failure); APPORTION_FAULT_ROUNDS (24).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { Redis } from 'ioredis';
import { mulberry32 } from '../../src/learner/rng.js';
import { start, type Running } from '../../src/server.js';
import { eventually, silentLog, testConfig, testPrefix, within } from '../helpers/env.js';
import { LocalCluster } from '../helpers/cluster.js';
import { PrivateRedis } from '../helpers/private-redis.js';

const SEEDS = (process.env.APPORTION_FAULT_SEEDS ?? '7101,52219').split(',').filter(Boolean).map(Number);
const CLUSTER_SEEDS = (process.env.APPORTION_FAULT_CLUSTER_SEEDS ?? '3301').split(',').filter(Boolean).map(Number);
const ROUNDS = Number(process.env.APPORTION_FAULT_ROUNDS ?? 24);
const PIPELINE = { defaultTotalTokens: 2000, agents: [{ name: 'a', minTokens: 100 }, { name: 'b', minTokens: 100 }] };
const SCOPE = 'tenant:t';
const ALLOCATED = 40_000;

type Fault = 'stall' | 'kill-clients' | 'restart' | 'reshard';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where the schedule runs and how its faults are made. */
interface Target {
  readonly env: Record<string, string>;
  readonly faults: readonly Fault[];
  /** Stalls Redis (one shard of a cluster, drawn by `u`) for `ms`. */
  stall(ms: number, u: number): Promise<void>;
  killClients(): Promise<void>;
  restart(): Promise<void>;
  /** Moves slots between two masters of a cluster (drawn by `u`) while the round's calls run. */
  reshard(u: number): Promise<void>;
  stop(): Promise<void>;
}

async function killClientsAt(urls: readonly string[]): Promise<void> {
  for (const url of urls) {
    const admin = new Redis(url, { maxRetriesPerRequest: 1 });
    admin.on('error', () => undefined);
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes').catch(() => undefined);
    admin.disconnect();
  }
}

/** A private redis-server with AOF (`appendfsync always`, as docker-compose.yml runs it). */
async function single(): Promise<Target> {
  const redis = await PrivateRedis.start({ aof: true });
  return {
    // REDIS_CLUSTER_NODES cleared: under the cluster runner (APPORTION_TEST_REDIS=cluster) testConfig carries the
    // runner's cluster, and the server then ran there, out of reach of this target's faults ("no call was retried").
    env: { REDIS_URL: redis.url, REDIS_CLUSTER_NODES: '' },
    faults: ['stall', 'stall', 'kill-clients', 'restart'],
    async stall(ms) {
      redis.pause();
      await sleep(ms);
      redis.resume();
    },
    killClients: () => killClientsAt([redis.url]),
    restart: () => redis.restart({ empty: false }),
    reshard: () => Promise.reject(new Error('no slots to move on one server')),
    stop: async () => {
      redis.resume();
      await redis.stop();
    },
  };
}

/** A local Redis Cluster of 3 masters of its own (no persistence: a restart would be a shard's data loss, not drawn). */
async function cluster(): Promise<Target> {
  const c = await LocalCluster.start(3);
  return {
    env: { REDIS_URL: `redis://127.0.0.1:${c.ports[0]}`, REDIS_CLUSTER_NODES: c.nodes },
    faults: ['stall', 'stall', 'kill-clients', 'reshard', 'reshard'],
    async stall(ms, u) {
      const i = Math.floor(u * c.ports.length);
      c.pause(i);
      await sleep(ms);
      c.resume(i);
    },
    killClients: () => killClientsAt(c.ports.map((p) => `redis://127.0.0.1:${p}`)),
    restart: () => Promise.reject(new Error('no restart on the cluster')),
    async reshard(u) {
      const i = Math.floor(u * c.ports.length);
      await c.reshard(i, (i + 1) % c.ports.length, 200 + Math.floor(u * 1000) % 800);
    },
    stop: async () => {
      c.resume();
      c.stop();
    },
  };
}

const servers: { rt: Running; target: Target }[] = [];
after(async () => {
  for (const s of servers) {
    await s.rt.close().catch(() => undefined);
    await s.target.stop();
  }
});

async function runSchedule(seed: number, target: Target, diagnostic: (m: string) => void): Promise<void> {
  const rng = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
  const prefix = testPrefix(`fault-schedule-${seed}`);
  const rt = await start(
    testConfig(prefix, { ...target.env, APPORTION_RESERVATION_SWEEP_MS: '200', APPORTION_CONFIG_POLL_MS: '200' }),
    silentLog,
    { api: true, workers: true, listen: false },
  );
  servers.push({ rt, target });
  const app: FastifyInstance = rt.app!;
  const log: string[] = [];
  let retried = 0;
  // A fault may make a call answer 503 (retry), never 500: that is a defect, whatever the retry then gets.
  const internal: string[] = [];

  /** The careful client: a 5xx or a hung call is retried (same body, same idempotency key) until a definite answer. */
  async function call(opts: InjectOptions, what: string) {
    const deadline = Date.now() + 120_000;
    for (let attempt = 0; ; attempt++) {
      const res = await within(app.inject(opts), 60_000, what).catch((e: Error) => ({ statusCode: 599, body: e.message, json: () => ({}) }) as never);
      if (res.statusCode < 500) return res;
      if (res.statusCode === 500) internal.push(`round ${round}, ${what}: ${res.body}`);
      retried++;
      assert.ok(Date.now() < deadline, `${what}: still ${res.statusCode} after 120 s (${res.body})`);
      await sleep(100 + Math.floor(rng() * 200));
    }
  }
  const ok = async (opts: InjectOptions, what: string) => {
    const res = await call(opts, what);
    assert.ok(res.statusCode < 300, `${what}: ${res.statusCode} ${res.body}`);
    return res;
  };
  await ok({ method: 'PUT', url: '/v1/pipelines/p', payload: PIPELINE }, 'pipeline');
  await ok({ method: 'PUT', url: '/v1/budgets', payload: { scope: SCOPE, unit: 'TOKENS', allocated: ALLOCATED } }, 'budget');

  const decisions: string[] = [];
  const acknowledged = new Set<string>();
  const accepted = new Map<string, number>(); // decision id → quality of its accepted report
  const conflicts: { id: string; quality: number }[] = []; // reports refused as OUTCOME_CONFLICT
  const active = new Map<string, number>(); // reservation id → amount held
  const madeIn = new Map<string, number>(); // reservation id → the round that reserved it
  let round = 0;
  let charged = 0;
  let funded = 0;
  let opN = 0;

  const allocate = async () => {
    const r = await ok({ method: 'POST', url: '/v1/allocations', payload: { pipeline: 'p' } }, 'allocate');
    const a = r.json<{ decisionId: string; recorded: boolean }>();
    // A decision that could not be recorded (the store stalled) has no outcome to report.
    if (a.recorded) decisions.push(a.decisionId);
  };
  const report = async () => {
    if (decisions.length === 0) return allocate();
    const id = pick(decisions);
    const quality = Math.round(rng() * 100) / 100;
    const r = await call({ method: 'POST', url: '/v1/outcomes', payload: { decisionId: id, quality } }, `outcome ${id}`);
    // The first report of a decision stands: another report for it (drawn again, with another quality) is 409
    // OUTCOME_CONFLICT, the same one again 202. A retry of this call (after a 5xx) carries the same report.
    if (r.statusCode === 409) {
      assert.equal(r.json<{ code: string }>().code, 'OUTCOME_CONFLICT', `outcome ${id}: ${r.body}`);
      conflicts.push({ id, quality });
      return;
    }
    assert.equal(r.statusCode, 202, `outcome ${id}: ${r.body}`);
    const first = accepted.get(id);
    assert.ok(first === undefined || first === quality, `outcome ${id}: a second, different report (${quality} after ${first}) was accepted`);
    accepted.set(id, quality);
    acknowledged.add(id);
  };
  const reserve = async () => {
    const amount = 500 + Math.floor(rng() * 2500);
    const key = `res-${seed}-${opN++}`;
    const r = await call({ method: 'POST', url: '/v1/reservations', payload: { scope: SCOPE, unit: 'TOKENS', amount, ttlMs: 600_000, idempotencyKey: key } }, `reserve ${key}`);
    if (r.statusCode === 409) {
      assert.equal(r.json<{ code: string }>().code, 'BUDGET_EXCEEDED', r.body);
      return;
    }
    assert.equal(r.statusCode, 201, `reserve ${key}: ${r.body}`);
    active.set(r.json<{ id: string }>().id, amount);
    madeIn.set(r.json<{ id: string }>().id, round);
  };
  // Sub-agents draw from a request's reservation and settle their draws before the request settles its own use.
  const draws = new Map<string, { parent: string; amount: number }>(); // active draw id → its parent and amount
  let drawn = 0;
  const drawing = new Map<string, Promise<unknown>[]>(); // parent → its draws' calls in flight (made or settled)
  const draw = async () => {
    if (active.size === 0) return reserve();
    const [parent, held] = pick([...active]);
    const amount = 50 + Math.floor(rng() * held * 0.6);
    const key = `draw-${seed}-${opN++}`;
    const inflight = call({ method: 'POST', url: `/v1/reservations/${encodeURIComponent(parent)}/draws`, payload: { amount, ttlMs: 600_000, idempotencyKey: key } }, `draw ${key}`);
    drawing.set(parent, [...(drawing.get(parent) ?? []), inflight]);
    const r = await inflight;
    if (r.statusCode === 409) {
      assert.equal(r.json<{ code: string }>().code, 'RESERVATION_EXHAUSTED', r.body);
      return;
    }
    assert.equal(r.statusCode, 201, `draw ${key} from ${parent}: ${r.body}`);
    draws.set(r.json<{ id: string }>().id, { parent, amount });
    drawn++;
  };
  /** Commits (used below, at or above the draw: an overrun is charged all the same) or releases one draw. */
  const shrunk = new Set<string>(); // requests whose hold a committed draw took from
  const settleDraw = async (id: string, amount: number) => {
    const parent = draws.get(id)?.parent;
    draws.delete(id);
    const key = `dfin-${seed}-${opN++}`;
    if (rng() < 0.3) {
      const r = await call({ method: 'POST', url: `/v1/reservations/${encodeURIComponent(id)}/release`, payload: { idempotencyKey: key } }, `release draw ${id}`);
      assert.equal(r.statusCode, 200, `release draw ${id}: ${r.body}`);
      return;
    }
    const used = Math.max(0, Math.round(amount * (0.2 + rng() * 1.2)));
    const r = await call({ method: 'POST', url: `/v1/reservations/${encodeURIComponent(id)}/commit`, payload: { amount: used, idempotencyKey: key } }, `commit draw ${id}`);
    assert.equal(r.statusCode, 200, `commit draw ${id}: ${r.body}`);
    assert.equal(r.json<{ charged: number }>().charged, used, r.body);
    charged += used;
    if (parent !== undefined) shrunk.add(parent);
  };
  const finishDraw = async () => {
    if (draws.size === 0) return draw();
    const [id, d] = pick([...draws]);
    const settling = settleDraw(id, d.amount);
    drawing.set(d.parent, [...(drawing.get(d.parent) ?? []), settling]);
    await settling;
  };
  /** A request settles its sub-agents' draws (those in flight included) before its own use. */
  const settleDrawsOf = async (parent: string) => {
    // Until no call on its draws is in flight (one may start while it waits: a sub-agent settling its draw).
    for (let pending = drawing.get(parent) ?? []; pending.length > 0; pending = drawing.get(parent) ?? []) {
      drawing.set(parent, []);
      await Promise.allSettled(pending);
    }
    drawing.delete(parent);
    await Promise.all([...draws].filter(([, d]) => d.parent === parent).map(([id, d]) => settleDraw(id, d.amount)));
  };
  const finish = async () => {
    if (active.size === 0) return reserve();
    const [id, amount] = pick([...active]);
    active.delete(id); // the client finishes each reservation once, whatever the answers in between
    await settleDrawsOf(id);
    const key = `fin-${seed}-${opN++}`;
    if (rng() < 0.3) {
      const r = await call({ method: 'POST', url: `/v1/reservations/${encodeURIComponent(id)}/release`, payload: { idempotencyKey: key } }, `release ${id}`);
      assert.equal(r.statusCode, 200, `release ${id} (reserved in round ${madeIn.get(id)}): ${r.body}`);
      return;
    }
    // Used: below, at, or above the reservation (an overrun is charged all the same).
    const used = Math.max(0, Math.round(amount * (0.2 + rng() * 1.2)));
    const r = await call({ method: 'POST', url: `/v1/reservations/${encodeURIComponent(id)}/commit`, payload: { amount: used, idempotencyKey: key } }, `commit ${id}`);
    assert.equal(r.statusCode, 200, `commit ${id} (reserved in round ${madeIn.get(id)}): ${r.body}`);
    const c = r.json<{ charged: number }>();
    assert.equal(c.charged, used, r.body);
    charged += c.charged;
  };
  // Spend reported without a reservation (refused when the remaining budget cannot cover it), and money added.
  const debit = async () => {
    const amount = 100 + Math.floor(rng() * 1400);
    const key = `debit-${seed}-${opN++}`;
    const r = await call({ method: 'POST', url: '/v1/budgets/debit', payload: { scope: SCOPE, unit: 'TOKENS', amount, idempotencyKey: key } }, `debit ${key}`);
    if (r.statusCode === 409) {
      assert.equal(r.json<{ code: string }>().code, 'BUDGET_EXCEEDED', r.body);
      return;
    }
    assert.equal(r.statusCode, 200, `debit ${key}: ${r.body}`);
    charged += amount;
  };
  const fund = async () => {
    const amount = 1000 + Math.floor(rng() * 4000);
    const key = `fund-${seed}-${opN++}`;
    const r = await call({ method: 'POST', url: '/v1/budgets/fund', payload: { scope: SCOPE, unit: 'TOKENS', amount, idempotencyKey: key } }, `fund ${key}`);
    assert.equal(r.statusCode, 200, `fund ${key}: ${r.body}`);
    funded += amount;
  };
  const ops = [allocate, allocate, report, report, reserve, finish, finish, draw, finishDraw, debit, fund];

  // The schedule runs its rounds, and goes on (up to 3× as many) while no fault has reached a call yet: whether a stall
  // of one shard or a connection kill catches a call in flight is a matter of timing, and a schedule whose faults
  // reached nothing has checked nothing (the assertion below).
  for (round = 0; round < ROUNDS || (retried === 0 && round < 3 * ROUNDS); round++) {
    const fault: Fault | undefined = rng() < 0.35 ? pick<Fault>(target.faults) : undefined;
    const batch = Array.from({ length: 2 + Math.floor(rng() * 4) }, () => pick(ops));
    const stallMs = 100 + Math.floor(rng() * 1900);
    log.push(`round ${round}: ${fault ?? 'no fault'}${fault === 'stall' ? ` ${stallMs} ms` : ''}, ${batch.map((f) => f.name).join(' ')}`);
    const running = batch.map((f) => f());
    if (fault === 'stall') await target.stall(stallMs, rng());
    else if (fault === 'kill-clients') await target.killClients();
    else if (fault === 'reshard') await target.reshard(rng());
    else if (fault === 'restart') {
      await sleep(Math.floor(rng() * 50));
      await target.restart();
    }
    const settled = await Promise.allSettled(running);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) assert.fail(`seed ${seed}, ${log.at(-1)}: ${String(failed.reason)}\n${log.join('\n')}`);
  }

  // Every accepted outcome applied (jobs failed during a fault are retried on their backoff), exactly once.
  const queue = rt.modules.flatMap((m) => m.queues ?? []).find((q) => q.name === 'outcomes')!;
  const counted = async () => (await app.inject({ method: 'GET', url: '/v1/strategies/@uniform/stats?pipeline=p' })).json<{ count: number }>().count;
  await eventually(async () => {
    const j = await queue.getJobCounts('waiting', 'active', 'delayed');
    return (j.waiting ?? 0) + (j.active ?? 0) + (j.delayed ?? 0) === 0 && (await counted()) === acknowledged.size;
  }, 180_000, 250).catch(async (e: Error) => assert.fail(`seed ${seed}: ${await counted()} outcomes counted, ${acknowledged.size} accepted (${e.message})\n${log.join('\n')}`));
  await sleep(500);
  assert.equal(await counted(), acknowledged.size, `seed ${seed}: counted once each\n${log.join('\n')}`);
  // A refused report was refused for a decision that has another accepted report, and the statistics hold the
  // accepted reports: their mean quality, not one a refused (or a second) report would have made.
  for (const c of conflicts) {
    const a = accepted.get(c.id);
    assert.ok(a !== undefined && a !== c.quality, `seed ${seed}: ${c.id} refused as a conflict (${c.quality}) without another accepted report (${a})`);
  }
  const mean = [...accepted.values()].reduce((x, q) => x + q, 0) / Math.max(1, accepted.size);
  const stats = (await app.inject({ method: 'GET', url: '/v1/strategies/@uniform/stats?pipeline=p' })).json<{ quality: { mean: number } }>();
  assert.ok(Math.abs(stats.quality.mean - mean) < 1e-9, `seed ${seed}: mean quality ${stats.quality.mean}, accepted reports ${mean}`);

  const b = (await ok({ method: 'GET', url: `/v1/balances?scope=${encodeURIComponent(SCOPE)}&unit=TOKENS` }, 'balances')).json<{
    balances: { allocated: number; remaining: number; reserved: number; spent: number; debt: number }[];
  }>().balances[0]!;
  // What the active requests hold: their amounts, less what their committed draws took from their holds (the
  // server's own figure per reservation; their sum must be the budget's `reserved`).
  let held = 0;
  for (const [id, amount] of active) {
    const now = (await ok({ method: 'GET', url: `/v1/reservations/${encodeURIComponent(id)}` }, `get ${id}`)).json<{ amount: number; state: string }>();
    assert.equal(now.state, 'ACTIVE', `seed ${seed}: ${id} is still held`);
    if (!shrunk.has(id)) assert.equal(now.amount, amount, `seed ${seed}: ${id} holds what it reserved`);
    held += now.amount;
  }
  assert.equal(b.reserved, held, `seed ${seed}: reserved is what the active reservations hold\n${log.join('\n')}`);
  assert.equal(b.spent + b.debt, charged, `seed ${seed}: every commit charged once (spent ${b.spent} + debt ${b.debt})\n${log.join('\n')}`);
  assert.equal(b.allocated, b.remaining + b.reserved + b.spent, JSON.stringify(b));
  assert.equal(b.allocated, ALLOCATED + funded, `seed ${seed}: every fund added once\n${log.join('\n')}`);
  assert.ok(b.remaining >= 0 && b.spent <= b.allocated, JSON.stringify(b));
  // Settled, every draw and request gives back what it still holds: nothing stays reserved, nothing more is charged.
  for (const id of [...active.keys()]) {
    active.delete(id);
    await settleDrawsOf(id);
    assert.equal((await call({ method: 'POST', url: `/v1/reservations/${encodeURIComponent(id)}/release`, payload: {} }, `release ${id}`)).statusCode, 200);
  }
  const settled = (await ok({ method: 'GET', url: `/v1/balances?scope=${encodeURIComponent(SCOPE)}&unit=TOKENS` }, 'balances')).json<{
    balances: { reserved: number; spent: number; debt: number }[];
  }>().balances[0]!;
  assert.equal(settled.reserved, 0, `seed ${seed}: nothing held once everything settled`);
  assert.equal(settled.spent + settled.debt, charged, `seed ${seed}: settling charged nothing more`);
  const loss = (await rt.core.metrics.redisDataLoss.get()).values[0]?.value ?? 0;
  assert.equal(loss, 0, 'restarts with their data are not a data loss');
  assert.ok(log.some((l) => !l.includes('no fault')), 'the schedule drew faults');
  // The faults reached the calls: some were answered 5xx (or hung) and retried.
  assert.ok(retried > 0, `no call was retried\n${log.join('\n')}`);
  assert.deepEqual(internal, [], `calls answered 500 under a fault (a 503 was owed)\n${log.join('\n')}`);
  assert.ok(drawn > 0, `no draw was made\n${log.join('\n')}`);
  diagnostic(`${log.filter((l) => !l.includes('no fault')).length} faults, ${retried} calls retried; ${acknowledged.size} outcomes accepted, ${drawn} draws (${shrunk.size} requests with a committed draw), ${charged} tokens charged, ${held} held`);
}

describe('generated fault schedules: nothing accepted is lost or counted twice, no spend dropped', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: ${ROUNDS} rounds of concurrent calls, some under a stall, killed connections or a restart`, async (t) => {
      await runSchedule(seed, await single(), (m) => t.diagnostic(m));
    });
  }
  for (const seed of CLUSTER_SEEDS) {
    it(`on a Redis Cluster of 3 masters, seed ${seed}: ${ROUNDS} rounds, some with one shard stalled, every connection killed or slots resharded`, async (t) => {
      await runSchedule(seed, await cluster(), (m) => t.diagnostic(m));
    });
  }
});
