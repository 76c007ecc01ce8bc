import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, REDIS_URL, startTest, testPrefix } from '../helpers/env.js';
import { nodeEntry } from '../helpers/cli.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('crash');
// A short job lock, so a job whose worker was killed is taken up again after about a second.
const ENV = { APPORTION_KEY_PREFIX: prefix, REDIS_URL, LOG_LEVEL: 'silent', APPORTION_JOB_LOCK_MS: '1000', APPORTION_SEED_EXAMPLES: 'false' };
let api: Running;
const children: ChildProcess[] = [];

function worker(hang: 'before' | 'after' | 'none'): { child: ChildProcess; line: (re: RegExp) => Promise<string> } {
  const child = spawn(process.execPath, nodeEntry('test/fixtures/outcome-worker.ts'), {
    cwd: ROOT,
    env: { ...process.env, ...ENV, FIXTURE_HANG: hang },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const line = (re: RegExp) => eventually(() => out.split('\n').find((l) => re.test(l)), 180_000); // a bound: a cold tsx start can take over 30 s on a busy machine
  return { child, line };
}

async function killed(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

/** The state of the outcomes job that carries the decision's outcome (jobs may carry several outcomes). */
async function stateOf(decisionId: string): Promise<string | undefined> {
  const queue = api.modules.find((m) => m.name === 'feedback')!.queues![0]!;
  for (const job of await queue.getJobs(['waiting', 'active', 'completed', 'failed', 'delayed'])) {
    const data = job.data as { outcomes: { outcome: { decisionId: string } }[] };
    if (data.outcomes.some((o) => o.outcome.decisionId === decisionId)) return job.getState();
  }
  return undefined;
}

const count = async () => (await api.app!.inject({ method: 'GET', url: '/v1/strategies/@uniform/stats?pipeline=p' })).json().count as number;

before(async () => {
  api = await startTest(prefix, { workers: false }, { APPORTION_JOB_LOCK_MS: '1000' });
  assert.equal((await api.app!.inject({ method: 'PUT', url: '/v1/pipelines/p', payload: FIVE_AGENTS })).statusCode, 200);
});
after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await api.close();
  await dropPrefix(prefix);
});

async function decide(): Promise<string> {
  const a = (await api.app!.inject({ method: 'POST', url: '/v1/allocations', payload: { pipeline: 'p' } })).json();
  const r = await api.app!.inject({ method: 'POST', url: '/v1/outcomes', payload: { decisionId: a.decisionId, quality: 0.7 } });
  assert.equal(r.statusCode, 202);
  return a.decisionId as string;
}

describe('a worker SIGKILLed mid-job', () => {
  it('killed after applying but before completing: applied exactly once after restart', async () => {
    const id = await decide();
    const w1 = worker('after');
    assert.match(await w1.line(/^HANG-AFTER /), new RegExp(id));
    assert.equal(await count(), 1);
    await killed(w1.child);

    const w2 = worker('none');
    await w2.line(/^READY/);
    await eventually(async () => (await stateOf(id)) === 'completed', 120_000);
    assert.equal(await count(), 1, 'the redelivered job found the applied-marker and counted nothing');
    await killed(w2.child);
  });

  it('a job carrying several outcomes, killed after applying some: each applied exactly once after restart', async () => {
    const before = await count();
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await api.app!.inject({ method: 'POST', url: '/v1/allocations', payload: { pipeline: 'p' } })).json().decisionId);
    // Reported in one turn of the event loop: intake group-commits them into one job.
    const answers = await Promise.all(ids.map((id) => api.app!.inject({ method: 'POST', url: '/v1/outcomes', payload: { decisionId: id, quality: 0.5 } })));
    assert.deepEqual(answers.map((r) => r.statusCode), ids.map(() => 202));
    const queue = api.modules.find((m) => m.name === 'feedback')!.queues![0]!;
    const jobs = (await queue.getJobs(['waiting'])).filter((j) => (j.data as { outcomes: { outcome: { decisionId: string } }[] }).outcomes.some((o) => ids.includes(o.outcome.decisionId)));
    // One job on one Redis; on a cluster the records are read from several nodes, whose answers may arrive in
    // different turns of the event loop (one job per turn): still fewer jobs than outcomes.
    assert.ok(jobs.some((j) => (j.data as { outcomes: unknown[] }).outcomes.length > 1), 'outcomes share a job');

    const w1 = worker('after');
    await w1.line(/^HANG-AFTER /);
    const applied = await count();
    assert.ok(applied > before && applied <= before + 6, 'the job was (at least partly) applied before the kill');
    await killed(w1.child);

    const w2 = worker('none');
    await w2.line(/^READY/);
    for (const id of ids) await eventually(async () => (await stateOf(id)) === 'completed', 120_000);
    assert.equal(await count(), before + 6, 'the redelivered job applied what was left and counted nothing twice');
    await killed(w2.child);
  });

  it('killed just before applying: applied exactly once after restart', async () => {
    const before = await count();
    const id = await decide();
    const w1 = worker('before');
    assert.match(await w1.line(/^HANG-BEFORE /), new RegExp(id));
    await killed(w1.child);
    assert.equal(await count(), before, 'nothing applied yet');

    const w2 = worker('none');
    await w2.line(/^READY/);
    await eventually(async () => (await stateOf(id)) === 'completed', 120_000);
    assert.equal(await count(), before + 1);
    await killed(w2.child);
  });
});
