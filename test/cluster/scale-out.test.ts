import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from '../../src/learner/rng.js';
import { LocalCluster } from '../helpers/cluster.js';
import { dropPrefix, eventually, FIVE_AGENTS, ON_CLUSTER, REDIS_URL, testPrefix } from '../helpers/env.js';
import { freePort } from '../helpers/private-redis.js';
import { nodeEntry } from '../helpers/cli.js';

/**
 * Apportion scaled out on a Redis Cluster of three masters: two API processes and two worker processes (real
 * sockets, `apportion api` / `apportion worker`), every surface that writes to Redis driven through both APIs.
 * Runs on the cluster of REDIS_CLUSTER_NODES under `npm run test:cluster`, else on a local cluster of its own.
 * No process may log a CROSSSLOT error, and (on its own cluster) no node may have refused a command with one.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('scale-out');
let cluster: LocalCluster | undefined;
let nodes: string;
const procs: { name: string; child: ChildProcess; out: () => string }[] = [];
const apis: string[] = [];

function launch(name: string, command: 'api' | 'worker', port?: number): { child: ChildProcess; out: () => string } {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REDIS_URL,
    REDIS_CLUSTER_NODES: nodes,
    APPORTION_KEY_PREFIX: prefix,
    LOG_LEVEL: 'warn',
    APPORTION_SEED_EXAMPLES: 'false',
    // Config changes reach the other API only through pub/sub: the poll would take an hour.
    APPORTION_CONFIG_POLL_MS: '3600000',
    // A job whose worker was killed is taken up again after about a second.
    APPORTION_JOB_LOCK_MS: '1000',
    APPORTION_RESERVATION_SWEEP_MS: '200',
    // 200 concurrent clients reuse keep-alive sockets: the server must not close one as a client reuses it.
    APPORTION_KEEP_ALIVE_TIMEOUT_MS: '120000',
    HOST: '127.0.0.1',
    PORT: String(port ?? 0),
    APPORTION_ADMIN_KEY: '',
    APPORTION_CLIENT_KEY: '',
  };
  const child = spawn(process.execPath, [...nodeEntry('src/cli/main.ts'), command], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const p = { name, child, out: () => out };
  procs.push(p);
  return p;
}

async function call(api: number, method: string, url: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${apis[api % apis.length]}${url}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function ok(api: number, method: string, url: string, body?: unknown): Promise<any> {
  const r = await call(api, method, url, body);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${url} via API ${api}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

async function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

before(async () => {
  if (ON_CLUSTER) nodes = process.env.REDIS_CLUSTER_NODES!;
  else {
    cluster = await LocalCluster.start(3);
    nodes = cluster.nodes;
  }
  // All four start at once (each loads the whole server); the test waits until both APIs answer and see a worker.
  const ports = [await freePort(), await freePort()];
  ports.forEach((port, i) => {
    launch(`api-${i}`, 'api', port);
    apis.push(`http://127.0.0.1:${port}`);
  });
  launch('worker-0', 'worker');
  launch('worker-1', 'worker');
  const dump = () => procs.map((p) => `--- ${p.name} (exit ${p.child.exitCode}):\n${p.out().slice(-3000)}`).join('\n');
  for (const api of apis) {
    await eventually(async () => {
      const dead = procs.find((p) => p.child.exitCode !== null || p.child.signalCode !== null);
      if (dead) throw new Error(`${dead.name} exited:\n${dump()}`);
      // Ready: Redis answers and an outcome worker is attached.
      return (await fetch(`${api}/readyz`).catch(() => undefined))?.ok;
    }, 240_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${dump()}`);
    });
  }
});

after(async () => {
  for (const p of procs) await killed(p.child);
  if (cluster) {
    cluster.stop();
  } else {
    await dropPrefix(prefix);
  }
});

describe('two APIs and two workers on a 3-master Redis Cluster', () => {
  it('propagates a config change to the other API over pub/sub', async () => {
    await ok(0, 'PUT', '/v1/pipelines/p', FIVE_AGENTS);
    // API 1 learns of the pipeline only through the announcement (its poll is an hour away).
    const a = await eventually(async () => {
      const r = await call(1, 'POST', '/v1/allocations', { pipeline: 'p' });
      return r.status === 200 ? r.json : undefined;
    }, 30_000);
    assert.equal(a.totalTokens, FIVE_AGENTS.defaultTotalTokens);
  });

  it('applies every outcome exactly once, through duplicates and a worker SIGKILLed mid-stream', async () => {
    const N = 300;
    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      const a = await ok(i, 'POST', '/v1/allocations', { pipeline: 'p', features: { i } });
      assert.equal(a.recorded, true, 'the decision record was written');
      ids.push(a.decisionId);
    }
    const report = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const r = await call(i + 1, 'POST', '/v1/outcomes', { decisionId: ids[i], quality: (i % 10) / 10 });
        assert.equal(r.status, 202, JSON.stringify(r.json));
      }
    };
    const count = async () => (await ok(0, 'GET', '/v1/strategies/@uniform/stats?pipeline=p')).count as number;
    await report(0, N / 2);
    // Kill a worker while jobs are in flight, start a replacement, report the rest (and every outcome a second time).
    await eventually(async () => (await count()) > 0, 60_000);
    await killed(procs.find((p) => p.name === 'worker-0')!.child);
    launch('worker-2', 'worker');
    await report(N / 2, N);
    await report(0, N);
    await eventually(async () => (await count()) === N, 120_000);
    // Redelivered and duplicate jobs are drained before the count is read again.
    await eventually(async () => {
      const r = await fetch(`${apis[1]}/metrics`);
      const text = await r.text();
      const waiting = /apportion_queue_jobs\{[^}]*queue="outcomes"[^}]*state="(?:waiting|active|delayed)"[^}]*\} (\d+)/g;
      let pending = 0;
      for (const m of text.matchAll(waiting)) pending += Number(m[1]);
      return pending === 0;
    }, 120_000);
    assert.equal(await count(), N, 'each outcome counted once');
  });

  it('reservations from 200 concurrent clients through both APIs never overspend', async () => {
    const ALLOCATED = 50_000;
    await ok(0, 'PUT', '/v1/budgets', { scope: 'tenant:load', unit: 'TOKENS', allocated: ALLOCATED, overagePolicy: 'REJECT' });
    await ok(1, 'PUT', '/v1/budgets', { scope: 'tenant:load/workspace:w', unit: 'TOKENS', allocated: ALLOCATED });
    let charged = 0;
    let granted = 0;
    let denied = 0;
    const errors: string[] = [];
    const client = async (c: number) => {
      const rand = mulberry32(7000 + c);
      for (let k = 0; k < 8; k++) {
        const amount = 50 + Math.floor(rand() * 400);
        const scope = rand() < 0.5 ? 'tenant:load/workspace:w/agent:a' : 'tenant:load/workspace:w';
        const r = await call(c + k, 'POST', '/v1/reservations', { scope, unit: 'TOKENS', amount, idempotencyKey: `c${c}-${k}`, ttlMs: 60_000 });
        if (r.status === 409 || r.status === 402) {
          denied++;
          continue;
        }
        if (r.status !== 201) {
          errors.push(`reserve ${r.status} ${JSON.stringify(r.json)}`);
          continue;
        }
        granted++;
        const id = r.json.id as string;
        const roll = rand();
        // The other API finishes it (the reservation's keys are unknown to that process).
        if (roll < 0.15) {
          const e = await call(c + k + 1, 'POST', `/v1/reservations/${id}/extend`, { ttlMs: 60_000 });
          if (e.status !== 200) errors.push(`extend ${e.status} ${JSON.stringify(e.json)}`);
        }
        if (roll < 0.3) {
          const rel = await call(c + k + 1, 'POST', `/v1/reservations/${id}/release`, {});
          if (rel.status !== 200) errors.push(`release ${rel.status} ${JSON.stringify(rel.json)}`);
        } else if (roll < 0.4) {
          const d = await call(c + k, 'POST', `/v1/reservations/${id}/draws`, { amount: Math.min(amount, 30), idempotencyKey: `d${c}-${k}` });
          if (d.status !== 201) errors.push(`draw ${d.status} ${JSON.stringify(d.json)}`);
          else {
            const dc = await call(c + k + 1, 'POST', `/v1/reservations/${d.json.id}/commit`, { amount: 10 });
            if (dc.status !== 200) errors.push(`draw commit ${dc.status} ${JSON.stringify(dc.json)}`);
            else charged += 10;
          }
          const cm = await call(c + k + 1, 'POST', `/v1/reservations/${id}/commit`, { amount: 5 });
          if (cm.status !== 200) errors.push(`commit ${cm.status} ${JSON.stringify(cm.json)}`);
          else charged += 5;
        } else if (roll < 0.95) {
          const used = Math.floor(amount * rand());
          const cm = await call(c + k + 1, 'POST', `/v1/reservations/${id}/commit`, { amount: used });
          if (cm.status !== 200) errors.push(`commit ${cm.status} ${JSON.stringify(cm.json)}`);
          else charged += used;
        }
        // else: left to expire (its TTL is long: the sweeper expires it only in the test's last step).
      }
    };
    await Promise.all(Array.from({ length: 200 }, (_, c) => client(c)));
    assert.deepEqual(errors, []);
    assert.ok(granted > 0 && denied > 0, `the budget ran out during the run (granted ${granted}, denied ${denied})`);
    const balances = (await ok(1, 'GET', '/v1/balances?scope=tenant:load')).balances as { scope: string; allocated: number; remaining: number; reserved: number; spent: number; debt: number }[];
    assert.equal(balances.length, 2);
    for (const b of balances) {
      assert.equal(b.allocated, b.remaining + b.reserved + b.spent, `ledger identity at ${b.scope}`);
      assert.ok(b.spent <= b.allocated && b.debt === 0, `no overspend at ${b.scope}: ${JSON.stringify(b)}`);
    }
    assert.equal(balances.find((b) => b.scope === 'tenant:load')!.spent, charged, 'every commit charged once');
    // Funding and a debit go through the budget-op script; deleting a budget with nothing held through budget-delete.
    await ok(0, 'POST', '/v1/budgets/fund', { scope: 'tenant:load', unit: 'TOKENS', amount: 1000, idempotencyKey: 'fund-1' });
    await ok(1, 'POST', '/v1/budgets/debit', { scope: 'tenant:load', unit: 'TOKENS', amount: 1, idempotencyKey: 'debit-1' });
    await ok(0, 'PUT', '/v1/budgets', { scope: 'tenant:other', unit: 'TOKENS', allocated: 10 });
    await ok(1, 'DELETE', '/v1/budgets?scope=tenant:other&unit=TOKENS');
  });

  it('expires overdue reservations and draws in the sweeper, returning their amounts', async () => {
    await ok(0, 'PUT', '/v1/budgets', { scope: 'tenant:sweep', unit: 'TOKENS', allocated: 1000 });
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await ok(i, 'POST', '/v1/reservations', { scope: 'tenant:sweep/workspace:w', unit: 'TOKENS', amount: 10, idempotencyKey: `s${i}`, ttlMs: 1000 });
      ids.push(r.id);
    }
    // A long-lived parent whose short-lived draw the sweeper expires (its amount goes back to the parent).
    const parent = await ok(0, 'POST', '/v1/reservations', { scope: 'tenant:sweep/workspace:w', unit: 'TOKENS', amount: 100, idempotencyKey: 'sp', ttlMs: 600_000 });
    const draw = await ok(1, 'POST', `/v1/reservations/${parent.id}/draws`, { amount: 40, idempotencyKey: 'sd', ttlMs: 500 });
    await eventually(async () => {
      const b = (await ok(1, 'GET', '/v1/balances?scope=tenant:sweep')).balances[0];
      return b.reserved === 100 && b.remaining === 900 ? b : undefined;
    }, 60_000);
    for (const id of [...ids, draw.id]) assert.equal((await ok(0, 'GET', `/v1/reservations/${id}`)).state, 'EXPIRED');
    await eventually(async () => (await ok(1, 'GET', `/v1/reservations/${parent.id}`)).drawn === undefined, 60_000);
    await ok(1, 'POST', `/v1/reservations/${parent.id}/release`, {});
  });

  it('ingests spans of many traces through both APIs; the report sums every shard once', async () => {
    const TRACES = 60;
    const spans = (t: number, day: string) => [
      { traceId: `tr-${day}-${t}`, spanId: 'root', sessionId: `sess-${t % 7}`, customer: `cust-${t % 3}`, agent: 'orchestrator', model: 'gpt-4o', provider: 'openai', usage: { input: 1000, output: 100 }, start: `${day}T11:00:00Z`, end: `${day}T11:00:05Z` },
      { traceId: `tr-${day}-${t}`, spanId: 'child', parentSpanId: 'root', sessionId: `sess-${t % 7}`, customer: `cust-${t % 3}`, agent: 'reasoner', model: 'gpt-4o', provider: 'openai', usage: { input: 500, output: 50 }, start: `${day}T11:00:01Z`, end: `${day}T11:00:04Z` },
    ];
    const report = (day: string) => ok(0, 'GET', `/v1/reports/costs?groupBy=customer&from=${day}&to=${day}`);
    // What one trace contributes, measured alone on a day of its own.
    await ok(0, 'POST', '/v1/spans', { spans: spans(0, '2025-06-19') });
    const one = (await report('2025-06-19')).total;
    assert.ok(one.calls > 0 && one.tokens.total > 0 && one.costNano > 0);
    await Promise.all(
      Array.from({ length: TRACES }, async (_, t) => {
        // Children first on one API, the whole trace again (a duplicate) on the other.
        const [root, child] = spans(t, '2025-06-20');
        await ok(t, 'POST', '/v1/spans', { spans: [child] });
        await ok(t + 1, 'POST', '/v1/spans', { spans: [root, child] });
      }),
    );
    const all = await report('2025-06-20');
    assert.equal(all.rows.length, 3);
    assert.equal(all.total.calls, TRACES * one.calls, 'every trace counted once, whichever shard it went to');
    assert.equal(all.total.tokens.total, TRACES * one.tokens.total);
    assert.equal(all.total.costNano, TRACES * one.costNano);
    const sessions = await ok(1, 'GET', '/v1/console/sessions');
    assert.equal((sessions.sessions as string[]).filter((s) => s.startsWith('sess-')).length, 7, 'every shard of the session index is read');
  });

  it('logged no CROSSSLOT error anywhere', async () => {
    // CROSSSLOT from a node, or ioredis refusing a command or pipeline whose keys span slots before sending it.
    for (const p of procs) assert.doesNotMatch(p.out(), /CROSSSLOT|should belong to the same slot/, `${p.name} logged a cross-slot error`);
    if (cluster) assert.deepEqual(await cluster.crossSlotErrors(), [0, 0, 0]);
  });
});
