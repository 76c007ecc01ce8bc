/**
 * Generated concurrent control-plane writes: two server instances on one key prefix (each with its own in-memory
 * snapshot of the control plane, as a deployment runs them), two tenants' admin keys and an operator key, and from
 * a seed a sequence of rounds, each a burst of concurrent PUT/DELETE of pipelines, strategies, feature
 * declarations and experiments (and experiment starts and stops) over a small pool of ids (so writers collide), spread over the two instances.
 *
 * Before the writes were conditional (src/control/write.ts), two tenants creating the same pipeline id at once both
 * got 200 and the later one took the earlier one's pipeline over (39 of 40 tries); a pipeline's default strategy
 * could be deleted under it; a strategy registered while its pipeline was being deleted outlived the pipeline.
 *
 * After every round, against the state read from Redis (one consistent read) and what the callers were told:
 * - no answer is a 5xx; every 4xx carries a catalogued code with the catalogue's status;
 * - no tenant's write landed on another tenant's object: an id that existed at the start of the round and was not
 *   deleted in it was written with success only by its owner (or the operator), and an id no tenant owned was
 *   written with success by at most one tenant unless a delete of it succeeded in the round;
 * - every strategy's pipeline exists; every pipeline's default strategy exists and belongs to it; every
 *   experiment's pipeline exists, and while the experiment has not ended its variants' strategies; every feature
 *   declaration written with success in the round names a pipeline that existed when it applied (its pipeline
 *   exists at the end unless a delete of it succeeded).
 * Seeds: APPORTION_RACE_SEEDS (comma-separated; fixed by default, printed with a failure); APPORTION_RACE_ROUNDS.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ControlStore } from '../../src/control/store.js';
import { ERROR_CATALOG } from '../../src/errors/catalog.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { createKeys } from '../../src/redis/keys.js';
import type { Running } from '../../src/server.js';
import { createRedisClient } from '../../src/redis/connection.js';
import { dropPrefix, REDIS_TARGET, startTest, testPrefix, within } from '../helpers/env.js';

const SEEDS = (process.env.APPORTION_RACE_SEEDS ?? '4101,90210').split(',').filter(Boolean).map(Number);
const ROUNDS = Number(process.env.APPORTION_RACE_ROUNDS ?? 30);
const BURST = 14;
const prefix = testPrefix('control-races');
const OPERATOR = 'control-races-operator-key-0123456789';
const PIPELINES = ['p0', 'p1', 'p2'];
const STRATEGIES = ['s0', 's1', 's2', 's3'];
const EXPERIMENTS = ['e0', 'e1'];
const AGENTS = ['a', 'b', 'c', 'd'];
type Caller = 'acme' | 'beta' | 'operator';

let one: Running;
let two: Running;
const keyOf = {} as Record<Caller, string>;
const redis = createRedisClient(REDIS_TARGET);
const store = new ControlStore(redis, createKeys(prefix));

before(async () => {
  one = await startTest(prefix, { workers: false }, { APPORTION_ADMIN_KEY: OPERATOR });
  two = await startTest(prefix, { workers: false }, { APPORTION_ADMIN_KEY: OPERATOR });
  keyOf.operator = OPERATOR;
  for (const t of ['acme', 'beta'] as const) {
    const r = await one.app!.inject({ method: 'POST', url: '/v1/keys', headers: { authorization: `Bearer ${OPERATOR}` }, payload: { tenant: t, role: 'admin', name: 'races' } });
    assert.equal(r.statusCode, 201, r.body);
    keyOf[t] = r.json().key;
  }
});
after(async () => {
  await one.close();
  await two.close();
  redis.disconnect();
  await dropPrefix(prefix);
});

interface Op {
  readonly caller: Caller;
  readonly method: 'PUT' | 'POST' | 'DELETE';
  readonly kind: 'pipelines' | 'strategies' | 'features' | 'experiments';
  readonly id: string;
  readonly url: string;
  readonly payload?: object;
}

function drawOp(u: () => number): Op {
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(u() * xs.length)]!;
  const caller = pick<Caller>(['acme', 'acme', 'beta', 'beta', 'operator']);
  const r = u();
  if (r < 0.4) {
    const id = pick(PIPELINES);
    const agents = AGENTS.filter(() => u() < 0.6);
    const body: Record<string, unknown> = { defaultTotalTokens: 1000, agents: (agents.length ? agents : ['a']).map((name) => ({ name })) };
    if (u() < 0.4) body.defaultStrategy = pick(STRATEGIES);
    return { caller, method: 'PUT', kind: 'pipelines', id, url: `/v1/pipelines/${id}`, payload: body };
  }
  if (r < 0.47) {
    const id = pick(PIPELINES);
    return { caller, method: 'DELETE', kind: 'pipelines', id, url: `/v1/pipelines/${id}` };
  }
  if (r < 0.8) {
    const id = pick(STRATEGIES);
    return { caller, method: 'PUT', kind: 'strategies', id, url: `/v1/strategies/${id}`, payload: { pipeline: pick(PIPELINES), kind: 'uniform' } };
  }
  if (r < 0.9) {
    const id = pick(STRATEGIES);
    return { caller, method: 'DELETE', kind: 'strategies', id, url: `/v1/strategies/${id}` };
  }
  if (r < 0.93) {
    const id = pick(PIPELINES);
    return { caller, method: 'PUT', kind: 'features', id, url: `/v1/pipelines/${id}/features`, payload: { features: [{ name: 'task', type: 'categorical', values: ['x', 'y'] }] } };
  }
  const id = pick(EXPERIMENTS);
  const e = u();
  if (e < 0.4) {
    const variants = [{ name: 'c', strategy: pick(STRATEGIES), weight: 1 }, { name: 't', strategy: pick(STRATEGIES), weight: 1 }];
    return { caller, method: 'PUT', kind: 'experiments', id, url: `/v1/experiments/${id}`, payload: { pipeline: pick(PIPELINES), variants } };
  }
  if (e < 0.85) return { caller, method: 'POST', kind: 'experiments', id, url: `/v1/experiments/${id}/${e < 0.65 ? 'start' : 'stop'}`, payload: {} };
  return { caller, method: 'DELETE', kind: 'experiments', id, url: `/v1/experiments/${id}` };
}

interface State {
  readonly pipelines: Map<string, { tenant: string; defaultStrategy?: string }>;
  readonly strategies: Map<string, { pipeline: string }>;
  readonly experiments: Map<string, { pipeline: string; variants: { strategy: string }[]; state: { status: string } }>;
}

async function stored(): Promise<State> {
  const raw = await store.loadAll();
  const pipelines = new Map<string, { tenant: string; defaultStrategy?: string }>();
  for (const [id, v] of raw.kinds.pipelines) pipelines.set(id, v.doc as { tenant: string; defaultStrategy?: string });
  const strategies = new Map<string, { pipeline: string }>();
  for (const [id, v] of raw.kinds.strategies) strategies.set(id, v.doc as { pipeline: string });
  const experiments = new Map([...raw.kinds.experiments].map(([id, v]) => [id, v.doc as { pipeline: string; variants: { strategy: string }[]; state: { status: string } }]));
  return { pipelines, strategies, experiments };
}

/** The tenant an object of `kind` belongs to in `st` (a strategy: its pipeline's), or undefined when absent. */
function ownerIn(st: State, kind: 'pipelines' | 'strategies', id: string): string | undefined {
  if (kind === 'pipelines') return st.pipelines.get(id)?.tenant;
  const s = st.strategies.get(id);
  return s === undefined ? undefined : (st.pipelines.get(s.pipeline)?.tenant ?? '(orphan)');
}

async function runSchedule(seed: number): Promise<{ writes: number; refusals: Map<string, number> }> {
  const u = mulberry32(seed);
  const refusals = new Map<string, number>();
  let writes = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const where = `seed ${seed} round ${round}`;
    const before = await stored();
    const ops = Array.from({ length: BURST }, () => drawOp(u));
    const answers = await within(
      Promise.all(
        ops.map((op, i) =>
          (i % 2 === 0 ? one : two).app!.inject({ method: op.method, url: op.url, headers: { authorization: `Bearer ${keyOf[op.caller]}` }, ...(op.payload ? { payload: op.payload } : {}) }),
        ),
      ),
      60_000,
      where,
    );
    const after = await stored();
    const ok = ops.map((op, i) => {
      const res = answers[i]!;
      assert.ok(res.statusCode < 500, `${where}: ${op.caller} ${op.method} ${op.url} answered ${res.statusCode} ${res.body}`);
      if (res.statusCode >= 400) {
        const code = res.json().code as keyof typeof ERROR_CATALOG;
        assert.ok(code in ERROR_CATALOG, `${where}: uncatalogued code ${code}`);
        assert.equal(res.statusCode, ERROR_CATALOG[code].status, `${where}: ${code} with status ${res.statusCode}`);
        refusals.set(code, (refusals.get(code) ?? 0) + 1);
      } else writes++;
      return res.statusCode < 300;
    });
    // Whether the round deleted the object with success (a pipeline's delete takes its strategies with it).
    const deleted = (kind: 'pipelines' | 'strategies', id: string) =>
      ops.some((op, i) => ok[i] && op.method === 'DELETE' && ((op.kind === kind && op.id === id) || (kind === 'strategies' && op.kind === 'pipelines')));
    // No takeover: the successful writers of an id that was not deleted in the round.
    for (const kind of ['pipelines', 'strategies'] as const) {
      const ids = kind === 'pipelines' ? PIPELINES : STRATEGIES;
      for (const id of ids) {
        if (deleted(kind, id)) continue;
        const writers = new Set(ops.filter((op, i) => ok[i] && op.kind === kind && op.method === 'PUT' && op.id === id && op.caller !== 'operator').map((op) => op.caller));
        const owner = ownerIn(before, kind, id);
        if (owner !== undefined) {
          for (const w of writers) assert.equal(w, owner, `${where}: ${w} wrote ${kind} ${id} of ${owner} (takeover)`);
        } else {
          assert.ok(writers.size <= 1, `${where}: ${[...writers].join(' and ')} both created ${kind} ${id} (one took the other's over)`);
        }
      }
    }
    // Referential integrity of the stored state.
    for (const [id, s] of after.strategies) assert.ok(after.pipelines.has(s.pipeline), `${where}: strategy ${id} outlived its pipeline ${s.pipeline}`);
    for (const [id, p] of after.pipelines) {
      if (p.defaultStrategy === undefined) continue;
      const s = after.strategies.get(p.defaultStrategy);
      assert.ok(s, `${where}: pipeline ${id}'s default strategy ${p.defaultStrategy} does not exist`);
      assert.equal(s.pipeline, id, `${where}: pipeline ${id}'s default strategy ${p.defaultStrategy} belongs to ${s.pipeline}`);
    }
    // An experiment holds its pipeline, and while it has not ended its variants' strategies.
    for (const [id, e] of after.experiments) {
      assert.ok(after.pipelines.has(e.pipeline), `${where}: experiment ${id} outlived its pipeline ${e.pipeline}`);
      if (e.state.status === 'stopped') continue;
      for (const v of e.variants) assert.ok(after.strategies.has(v.strategy), `${where}: ${e.state.status} experiment ${id}'s strategy ${v.strategy} does not exist`);
    }
    for (const [i, op] of ops.entries()) {
      if (!ok[i] || op.kind !== 'features' || deleted('pipelines', op.id)) continue;
      assert.ok(after.pipelines.has(op.id), `${where}: features of ${op.id} accepted without the pipeline`);
    }
  }
  return { writes, refusals };
}

describe('concurrent control-plane writes from two tenants over two instances', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: no takeover, no dangling reference, no 5xx`, async () => {
      const { writes, refusals } = await runSchedule(seed);
      // The schedule exercised both outcomes: writes that applied and refusals of the checks under contention.
      assert.ok(writes >= ROUNDS, `only ${writes} writes applied`);
      assert.ok((refusals.get('ID_TAKEN') ?? 0) + (refusals.get('PIPELINE_NOT_FOUND') ?? 0) > 0, `refusals: ${JSON.stringify([...refusals])}`);
    });
  }
});
