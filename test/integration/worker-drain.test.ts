import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { closeBounded, closeWorkers } from '../../src/kernel/drain.js';
import { dropPrefix, eventually, REDIS_URL, silentLog, testPrefix } from '../helpers/env.js';

// Real BullMQ workers on the real Redis: a shutdown stops every worker within its bound, and a job it had to leave
// behind is finished later by another worker, exactly once.
const prefix = testPrefix('worker-drain');
const conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
const opened: { close(): Promise<void> }[] = [];

after(async () => {
  await Promise.allSettled(opened.map((o) => o.close()));
  await conn.quit();
  await dropPrefix(prefix);
});

function queue(name: string): Queue {
  const q = new Queue(name, { connection: conn, prefix });
  opened.push(q);
  return q;
}

/** A worker whose jobs run `body`; `lockDuration` short so a job it abandons is taken up again after about a second. */
function worker(name: string, body: (job: Job) => Promise<unknown>): Worker {
  const w = new Worker(name, body, { connection: conn, prefix, lockDuration: 1000, stalledInterval: 500, maxStalledCount: 3 });
  w.on('error', () => undefined);
  opened.push(w);
  return w;
}

const never = () => new Promise<never>(() => undefined);

describe('bounded worker shutdown', () => {
  it('a job that finishes within the bound is drained: close waits for it and it completes', async () => {
    const q = queue('finishes');
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let started = false;
    const w = worker('finishes', async () => {
      started = true;
      await released;
      return 'done';
    });
    const job = await q.add('j', {});
    await eventually(() => started);
    const closing = closeBounded(w, 60_000);
    release();
    assert.equal(await closing, 'drained');
    assert.equal(await (await q.getJob(job.id!))!.getState(), 'completed');
  });

  it('a job that never finishes is left behind after the bound, not failed, and another worker finishes it once', async () => {
    const q = queue('stuck');
    let firstRuns = 0;
    const first = worker('stuck', async () => {
      firstRuns++;
      return never();
    });
    const job = await q.add('j', { n: 1 });
    await eventually(() => firstRuns === 1);
    assert.equal(await closeBounded(first, 200), 'forced');
    assert.ok(first.closing, 'the worker is closed');
    // Not completed, not failed: still owed.
    assert.equal(await (await q.getJob(job.id!))!.getState(), 'active');

    let secondRuns = 0;
    worker('stuck', async (j) => {
      secondRuns++;
      return j.data;
    });
    const state = await eventually(async () => {
      const s = await (await q.getJob(job.id!))!.getState();
      return s === 'completed' ? s : undefined;
    }, 60_000);
    assert.equal(state, 'completed');
    assert.equal(secondRuns, 1);
    assert.equal(firstRuns, 1, 'the closed worker took no job after it was stopped');
  });

  it('a job that ends after a forced close opens no connection again (the process can exit)', async () => {
    const q = queue('late');
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let started = false;
    let ended = false;
    const w = worker('late', async () => {
      started = true;
      await released;
      ended = true;
      return 'late';
    });
    await q.add('j', {});
    await eventually(() => started);
    assert.equal(await closeBounded(w, 200), 'forced');
    // BullMQ names its connections <prefix>:<base64 of the queue name>.
    const name = `${prefix}:${Buffer.from('late').toString('base64')}`;
    const open = async () => ((await conn.client('LIST')) as string).split('\n').filter((l) => l.includes(` name=${name} `)).length;
    assert.equal(await open(), 0, 'closed: none of its connections is open');
    release();
    await eventually(() => ended);
    // BullMQ's pause() reconnected the worker's blocking client when its active job ended, even after the close: that
    // socket kept the process alive (a test file then hung until its time limit). Watched for 2 s after the job ended.
    for (let i = 0; i < 40; i++) {
      assert.equal(await open(), 0, `a connection of the closed worker was opened again ${i * 50} ms after its job ended`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it('a closed worker takes no new job while its active one is still running', async () => {
    const q = queue('no-new');
    let runs = 0;
    const w = worker('no-new', async () => {
      runs++;
      return never();
    });
    await q.add('a', {});
    await eventually(() => runs === 1);
    const closing = closeBounded(w, 300);
    await q.add('b', {});
    assert.equal(await closing, 'forced');
    assert.equal(runs, 1);
    assert.equal(await q.getWaitingCount(), 1, 'the job added during the shutdown waits for another worker');
  });

  it('closeWorkers bounds every worker at once and reports which ones were forced', async () => {
    const q1 = queue('many-1');
    const q2 = queue('many-2');
    let stuckStarted = false;
    const stuck = worker('many-1', async () => {
      stuckStarted = true;
      return never();
    });
    const idle = worker('many-2', async () => 'ok');
    await q1.add('j', {});
    await eventually(() => stuckStarted);
    await idle.waitUntilReady();
    const plain = { close: never };
    const results = await closeWorkers([stuck, idle, plain], 300, silentLog);
    assert.deepEqual(results, ['forced', 'drained', 'forced']);
    assert.equal(await q2.getWaitingCount(), 0);
  });
});
