import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { isApplied } from '../../src/feedback/processor.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { learnerKeys } from '../../src/learner/keys.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { generateWorld } from '../../src/learner/sim/family.js';
import type { Running } from '../../src/server.js';
import { declare } from '../helpers/drive-world.js';
import { dropPrefix, eventually, FIVE_AGENTS, ON_CLUSTER, REDIS_URL, startTest, testPrefix } from '../helpers/env.js';
import { nodeEntry } from '../helpers/cli.js';

/**
 * When the outcome's enqueue is sent but not confirmed (the command timed out while Redis was slow to answer, and the
 * job landed after all), intake must not answer QUEUE_UNAVAILABLE ("nothing was accepted": false) but 503
 * OUTCOME_UNCONFIRMED, and the client's retry of the same report must be absorbed: counted once. A real socket to
 * real Redis through a TCP relay in this file that holds, for a while, the bytes of the BullMQ add (the ones that name
 * the `outcomes` queue's keys), as a stalled connection does; the server's command timeout is 1 s. The relay runs in its own process: in this one, a busy
 * event loop (the server's start) delayed its forwarding past the bound. Nothing is
 * timed: the test waits for the late job to be in the queue. Checked to fail: before, the answer was
 * QUEUE_UNAVAILABLE. And an enqueue refused before it was sent (the queue's connection closed) is still
 * QUEUE_UNAVAILABLE, and leaves nothing: the decision can then be reported with another report. And when the
 * unconfirmed add never lands (lost with its connection), the receipt it left does not swallow the retry: the same
 * report is queued again and is its learned decision's one statistics count and learner event (checked to fail with
 * an intake that answers a `same` receipt 202 without queueing).
 * One Redis only (the relay forwards to one address; a cluster client would be redirected past it).
 */
const prefix = testPrefix('outcome-unconfirmed');

/** The relay (test/fixtures/hold-relay.ts) in its own process: the URL to reach Redis through it, and its delay. */
class Relay {
  private child: ChildProcess | undefined;
  private lines: string[] = [];
  private waiters: ((line: string) => void)[] = [];
  private next(): Promise<string> {
    const l = this.lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((r) => this.waiters.push(r));
  }
  async start(): Promise<string> {
    const child = spawn(process.execPath, [...nodeEntry('test/fixtures/hold-relay.ts'), REDIS_URL, ':outcomes:'], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child = child;
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    return `redis://127.0.0.1:${await this.next()}`;
  }
  /** Holds the BullMQ adds' bytes `ms` from now on (0: forwards at once). */
  async hold(ms: number): Promise<void> {
    this.child!.stdin!.write(`${ms}\n`);
    assert.equal(await this.next(), 'ok');
  }
  /** How many held chunks were discarded (their connection closed before they were forwarded: they never reached Redis). */
  async dropped(): Promise<number> {
    this.child!.stdin!.write('dropped\n');
    const m = /^dropped (\d+)$/.exec(await this.next());
    assert.ok(m, 'relay answered drop');
    return Number(m[1]);
  }
  close(): void {
    this.child?.stdin?.end();
    this.child?.kill();
  }
}

const relay = new Relay();
let api: Running;
let workers: Running | undefined;

const inject = async (method: string, url: string, payload?: unknown) => {
  const r = await api.app!.inject({ method: method as 'GET', url, ...(payload !== undefined ? { payload: payload as object } : {}) });
  return { status: r.statusCode, json: r.body ? r.json() : undefined, text: r.body };
};

describe('an enqueue whose fate is unknown', { skip: ON_CLUSTER && 'one Redis only (a TCP relay in front of it)', timeout: 240_000 }, () => {
  before(async () => {
    const url = await relay.start();
    api = await startTest(prefix, { workers: false }, { REDIS_URL: url, APPORTION_REDIS_COMMAND_TIMEOUT_MS: '1000' });
  });
  after(async () => {
    await workers?.close();
    await api?.close();
    relay.close();
    await dropPrefix(prefix);
  });

  it('is answered 503 OUTCOME_UNCONFIRMED, and the retry of the same report is counted once', async () => {
    // Set-up retried on 503: a busy machine may time some commands out.
    const retry = async (method: string, url: string, payload?: unknown) =>
      eventually(async () => {
        const r = await inject(method, url, payload);
        return r.status === 503 ? undefined : r;
      });
    assert.ok((await retry('PUT', '/v1/pipelines/u', FIVE_AGENTS)).status < 300);
    const allocate = async () => {
      const r = await retry('POST', '/v1/allocations', { pipeline: 'u' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.recorded, true);
      return r.json as { decisionId: string; strategy: string };
    };
    // A first outcome while nothing is held: the queue's connection and scripts are ready.
    const warm = await allocate();
    assert.equal((await retry('POST', '/v1/outcomes', { decisionId: warm.decisionId, quality: 0.5 })).status, 202);

    const a = await allocate();
    const outcomes = api.modules.find((m) => m.name === 'feedback')!.queues![0]!;
    const queued = async () => {
      const c = await outcomes.getJobCounts('wait', 'active', 'delayed', 'completed');
      return (c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) + (c.completed ?? 0);
    };
    const before = await queued();
    await relay.hold(3000);
    const r = await inject('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: 0.25 });
    await relay.hold(0);
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.code, 'OUTCOME_UNCONFIRMED', r.text);
    assert.match(r.json.message, /may have been accepted/);
    // The add was sent: it lands.
    await eventually(async () => (await queued()) > before, 60_000);
    // A different report now is refused: the first one may have been (here: was) accepted.
    const other = await retry('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: 0.75 });
    assert.equal(other.status, 409, other.text);
    assert.equal(other.json.code, 'OUTCOME_CONFLICT');
    // The client retries the same report: accepted, and counted once.
    const again = await retry('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: 0.25 });
    assert.equal(again.status, 202, again.text);

    workers = await startTest(prefix, { api: false, workers: true });
    const stats = async () => api.core.redis.hgetall(api.core.keys.pipeline('u', 'stats', 'strategy', a.strategy));
    await eventually(async () => Number((await stats()).n ?? 0) >= 2, 120_000);
    await eventually(async () => {
      const c = await outcomes.getJobCounts('wait', 'active', 'delayed');
      return (c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0;
    }, 120_000);
    const s = await stats();
    assert.equal(Number(s.n), 2, 'the warm-up outcome and this one, each once');
    assert.ok(Math.abs(Number(s.q_mean) - (0.5 + 0.25) / 2) < 1e-9, `mean ${s.q_mean}`);
  });

  it('an unconfirmed enqueue that never landed: the retry of the same report is queued, one statistics count and one learner event', async () => {
    // The first 503 left the decision's receipt (its fate was unknown); the job itself never reached Redis. The retry
    // must not be answered from the receipt alone: it queues the outcome again, so the decision gets its real reward
    // (not the default one, and not nothing), counted once.
    const retry = async (method: string, url: string, payload?: unknown) =>
      eventually(async () => {
        const r = await inject(method, url, payload);
        return r.status === 503 ? undefined : r;
      });
    const admin = async (method: string, url: string, payload?: unknown) => {
      const r = await retry(method, url, payload);
      assert.ok(r.status < 300, `${method} ${url} → ${r.status} ${r.text}`);
      return r.json;
    };
    const world = generateWorld(51877);
    await declare({ world, pipeline: 'ul', strategy: 'ul-learn', admin });
    const rng = mulberry32(3);
    const a = (await admin('POST', '/v1/allocations', { pipeline: 'ul', strategy: 'ul-learn', features: world.features(world.sample(rng)) })) as { decisionId: string; recorded: boolean };
    assert.equal(a.recorded, true);
    const lk = learnerKeys(api.core.keys, 'ul');
    await eventually(async () => (await api.core.redis.zscore(lk.pending, a.decisionId)) !== null);
    const outcomes = api.modules.find((m) => m.name === 'feedback')!.queues![0]!;
    // Every job the queue holds, in any state; read again while the queue's connection reconnects after the drop.
    const queued = async () =>
      (
        await eventually(async () => {
          const c = await outcomes.getJobCounts('wait', 'active', 'delayed', 'completed', 'failed', 'prioritized', 'waiting-children');
          return { n: Object.values(c).reduce((x, y) => x + (y ?? 0), 0) };
        }, 60_000)
      ).n;
    const before = await queued();
    // The add is held past the command timeout (503); then the connection that sent it goes away with it (closed by
    // hand: ioredis resends an unanswered command after a reconnect, but not after a close it was asked for; as when
    // the process that sent it is gone), and the relay discards its bytes. The job never lands.
    const dropped0 = await relay.dropped();
    await relay.hold(600_000);
    const r = await inject('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: 0.35 });
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.code, 'OUTCOME_UNCONFIRMED', r.text);
    api.core.queueRedis.disconnect();
    await eventually(async () => (await relay.dropped()) > dropped0, 60_000);
    await relay.hold(0);
    await api.core.queueRedis.connect();
    assert.equal(await queued(), before, 'no job landed');
    // The client retries the same report: 202, and this time the job is queued.
    const again = await retry('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: 0.35 });
    assert.equal(again.status, 202, again.text);
    assert.ok((await queued()) > before, 'the retry queued a job');

    workers ??= await startTest(prefix, { api: false, workers: true });
    const stats = async () => api.core.redis.hgetall(api.core.keys.pipeline('ul', 'stats', 'strategy', 'ul-learn'));
    await eventually(async () => Number((await stats()).n ?? 0) >= 1, 120_000);
    await eventually(async () => {
      const c = await outcomes.getJobCounts('wait', 'active', 'delayed');
      return (c.wait ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0;
    }, 120_000);
    const s = await stats();
    assert.equal(Number(s.n), 1, 'counted once');
    assert.ok(Math.abs(Number(s.q_mean) - 0.35) < 1e-9, `mean ${s.q_mean}`);
    // The sweep past the wait window: the decision's one learner event is its real outcome, not the default reward.
    const learner = api.modules.find((m) => m.name === 'learner') as LearnerModule;
    await learner.training.ingest('ul', Date.now() + 86_400_000);
    const mine = (await learner.training.events('ul', 1000)).filter((e) => e.id === a.decisionId);
    assert.equal(mine.length, 1, `${mine.length} learner events`);
    assert.equal(mine[0]!.d ?? 0, 0, 'not the default reward');
    assert.equal(mine[0]!.q, 0.35);
    assert.equal(Number(await api.core.redis.hget(lk.counters, 'outcomes')), 1, 'one outcome towards trainEvery');
  });

  it('an unconfirmed enqueue that never landed and is never retried: after the watch, the default reward is the decision\'s one learner event', async () => {
    // The receipt stays (the 503 said "may have been accepted") but no job is behind it. The sweep waits for the
    // outcome's job past the wait window for a while (outcomeWatchEnd), then gives the decision its default reward:
    // before, it trusted the receipt for ever and the decision got no learner event at all (it dropped out of learning).
    // A retry of the report after that is counted in the statistics, and its event dropped as late.
    const retry = async (method: string, url: string, payload?: unknown) =>
      eventually(async () => {
        const r = await inject(method, url, payload);
        return r.status === 503 ? undefined : r;
      });
    const admin = async (method: string, url: string, payload?: unknown) => {
      const r = await retry(method, url, payload);
      assert.ok(r.status < 300, `${method} ${url} → ${r.status} ${r.text}`);
      return r.json;
    };
    const world = generateWorld(60331);
    await declare({ world, pipeline: 'un', strategy: 'un-learn', admin });
    const rng = mulberry32(5);
    const a = (await admin('POST', '/v1/allocations', { pipeline: 'un', strategy: 'un-learn', features: world.features(world.sample(rng)) })) as { decisionId: string; recorded: boolean };
    assert.equal(a.recorded, true);
    const lk = learnerKeys(api.core.keys, 'un');
    await eventually(async () => (await api.core.redis.zscore(lk.pending, a.decisionId)) !== null);
    const outcomes = api.modules.find((m) => m.name === 'feedback')!.queues![0]!;
    const queued = async () =>
      (
        await eventually(async () => {
          const c = await outcomes.getJobCounts('wait', 'active', 'delayed', 'completed', 'failed', 'prioritized', 'waiting-children');
          return { n: Object.values(c).reduce((x, y) => x + (y ?? 0), 0) };
        }, 60_000)
      ).n;
    const before = await queued();
    // As in the test before: the add held past the command timeout, then lost with its connection.
    const dropped0 = await relay.dropped();
    await relay.hold(600_000);
    const r = await inject('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: 0.85 });
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.code, 'OUTCOME_UNCONFIRMED', r.text);
    api.core.queueRedis.disconnect();
    await eventually(async () => (await relay.dropped()) > dropped0, 60_000);
    await relay.hold(0);
    await api.core.queueRedis.connect();
    assert.equal(await queued(), before, 'no job landed');

    // No retry. The sweep past the wait window (default 600 s) but within the watch that follows it: nothing yet.
    const learner = api.modules.find((m) => m.name === 'learner') as LearnerModule;
    const mine = async () => (await learner.training.events('un', 1000)).filter((e) => e.id === a.decisionId);
    await learner.training.ingest('un', Date.now() + 700_000);
    assert.equal((await mine()).length, 0, 'within the watch: no event yet');
    assert.notEqual(await api.core.redis.zscore(lk.pending, a.decisionId), null, 'still pending, waiting for the job');
    // Past the watch: the default reward, once (a second sweep adds nothing).
    await learner.training.ingest('un', Date.now() + 86_400_000);
    await learner.training.ingest('un', Date.now() + 86_400_000);
    const ev = await mine();
    assert.equal(ev.length, 1, `${ev.length} learner events`);
    assert.equal(ev[0]!.d, 1, 'the default reward');

    // The client retries after all: 202, counted in the statistics, and its event dropped as late.
    const lateCount = async () => {
      let n = 0;
      for (const rt of [api, workers]) n += (await rt?.core.metrics.learnerEvents.get())?.values.find((v) => v.labels.result === 'late')?.value ?? 0;
      return n;
    };
    const late0 = await lateCount();
    const again = await retry('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: 0.85 });
    assert.equal(again.status, 202, again.text);
    workers ??= await startTest(prefix, { api: false, workers: true });
    const stats = async () => api.core.redis.hgetall(api.core.keys.pipeline('un', 'stats', 'strategy', 'un-learn'));
    await eventually(async () => Number((await stats()).n ?? 0) >= 1, 120_000);
    await eventually(() => isApplied(api.core.redis, api.core.keys, 'un', a.decisionId), 120_000);
    // Its sink entry went to the incoming list with the marker; this ingest (or the workers' tick) takes it in.
    await learner.training.ingest('un', Date.now() + 86_400_000);
    // The workers' ingest tick may be the one that dropped it, counting it when its ingest returns: wait for the count.
    await eventually(async () => (await lateCount()) - late0 >= 1, 60_000).catch(() => undefined);
    assert.equal((await lateCount()) - late0, 1, 'the late outcome counted as late');
    const after = await mine();
    assert.equal(after.length, 1, `${after.length} learner events after the late outcome`);
    assert.equal(after[0]!.d, 1);
    assert.equal(Number((await stats()).n), 1, 'the late outcome counted once in the statistics');
  });

  it('an enqueue refused before it was sent is QUEUE_UNAVAILABLE and leaves no receipt', async () => {
    const a = await eventually(async () => {
      const r = await inject('POST', '/v1/allocations', { pipeline: 'u' });
      return r.status === 200 && r.json.recorded ? (r.json as { decisionId: string }) : undefined;
    });
    api.core.queueRedis.disconnect();
    const r = await inject('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: 0.5 });
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.code, 'QUEUE_UNAVAILABLE');
    // Nothing of it stays: the receipt was withdrawn, so another report is not a conflict (it gets the same 503 here).
    const other = await inject('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: 0.9 });
    assert.equal(other.json.code, 'QUEUE_UNAVAILABLE', other.text);
  });
});
