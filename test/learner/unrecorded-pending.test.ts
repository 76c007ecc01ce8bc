import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { newDecisionId, readDecision } from '../../src/allocation/decisions.js';
import type { LearnerModule } from '../../src/learner/module.js';
import { learnerKeys } from '../../src/learner/keys.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { generateWorld } from '../../src/learner/sim/family.js';
import { createKeys } from '../../src/redis/keys.js';
import type { Running } from '../../src/server.js';
import { declare, type Call } from '../helpers/drive-world.js';
import { dropPrefix, eventually, REDIS_URL, startTest, testPrefix } from '../helpers/env.js';
import { jsonHttp } from '../helpers/http.js';

/**
 * An allocation answered `recorded: false` (its record's write not confirmed within the write wait, half the Redis
 * command timeout) must not be registered for the default reward, even when its record lands later: its client was
 * told it was not recorded, and its outcome may have been refused (404) or never sent, so a default reward would put a
 * reward nobody observed into the training buffer. A real socket and real Redis; the server reaches Redis through a
 * TCP relay in this file that can hold the bytes it forwards to Redis (in order) for a while, as a loaded machine
 * does: the allocation answers `recorded: false`, its record is written when the relay lets it through. Nothing is
 * timed: the test waits for the record to be readable and for a later, recorded decision's registration (sent after
 * the first on the same connection) before it looks. Checked to fail: with the learned kind registering at decision
 * time (kind.ts `pending.add` instead of `pending.hold`), the decision answered `recorded: false` is in the pending set.
 */
const prefix = testPrefix('learner-unrecorded');
const world = generateWorld(962754);
const keys = createKeys(prefix);
const lk = learnerKeys(keys, 'unrec');

/** Forwards TCP to Redis; bytes towards Redis are held `delayMs` (in order: a later chunk never overtakes). */
class Relay {
  delayMs = 0;
  private server!: Server;
  private readonly sockets = new Set<Socket>();
  async start(): Promise<string> {
    const target = new URL(REDIS_URL);
    this.server = createServer((client) => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      this.sockets.add(client).add(upstream);
      let last = 0;
      client.on('data', (chunk) => {
        const at = Math.max(last, Date.now() + this.delayMs);
        last = at;
        setTimeout(() => upstream.write(chunk), at - Date.now());
      });
      upstream.on('data', (chunk) => client.write(chunk));
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `redis://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const relay = new Relay();
let rt: Running;
let redis: Redis;

before(async () => {
  const url = await relay.start();
  rt = await startTest(prefix, { listen: true }, { REDIS_URL: url, APPORTION_REDIS_COMMAND_TIMEOUT_MS: '400' });
  redis = new Redis(REDIS_URL);
});
after(async () => {
  relay.delayMs = 0;
  await rt?.close();
  await relay.close();
  redis?.disconnect();
  await dropPrefix(prefix);
});

describe('learner: a decision answered recorded: false gets no default reward', { timeout: 240_000 }, () => {
  it('is not registered in the pending set, though its record lands later; a recorded one is', async () => {
    const raw = jsonHttp(() => rt.url!);
    // The set-up retries a 503 as a careful client does: with a 400 ms command timeout a busy machine times some out.
    const admin: Call = async (m, p, b) => {
      for (let attempt = 0; ; attempt++) {
        const r = await raw(m, p, b);
        if (r.status === 503 && attempt < 50) {
          await new Promise((res) => setTimeout(res, 200));
          continue;
        }
        assert.ok(r.status < 300, `${m} ${p} → ${r.status} ${r.text}`);
        return r.text ? r.json : {};
      }
    };
    await declare({ world, pipeline: 'unrec', strategy: 'learn', admin });
    const rng = mulberry32(5);
    const allocate = async () => {
      const r = await raw('POST', '/v1/allocations', { pipeline: 'unrec', strategy: 'learn', features: world.features(world.sample(rng)) });
      assert.equal(r.status, 200, r.text);
      return r.json as { decisionId: string; recorded: boolean };
    };
    const pendingHas = async (id: string) => (await redis.zscore(lk.pending, id)) !== null;

    // A recorded decision is registered (the control: the registration path works here).
    // (On a busy machine the 400 ms bound may leave one unrecorded too: the first recorded one is the control.)
    let first = await allocate();
    for (let attempt = 0; !first.recorded && attempt < 20; attempt++) first = await allocate();
    assert.equal(first.recorded, true);
    await eventually(() => pendingHas(first.decisionId));

    // Redis answers late: the allocation answers recorded: false, and its record is written when the relay lets it through.
    relay.delayMs = 1500;
    const late = await allocate();
    relay.delayMs = 0;
    assert.equal(late.recorded, false, 'precondition: the allocation answered recorded: false');
    // Counted on /metrics as a write not confirmed in time (a warning in the log, not an error).
    const metrics = await raw('GET', '/metrics');
    const timeouts = /^apportion_decision_records_unconfirmed_total\{reason="timeout"\} (\d+)/m.exec(metrics.text);
    assert.ok(timeouts && Number(timeouts[1]) >= 1, `no unconfirmed-record timeout counted:\n${metrics.text.split('\n').filter((l) => l.includes('unconfirmed')).join('\n')}`);
    await eventually(async () => (await readDecision(redis, keys, late.decisionId)) !== undefined);

    // A later recorded decision's registration, sent after any registration of the first on the same connection.
    // (As for the control above: on a busy machine the bound may leave one unrecorded; the first recorded one is used.)
    let next = await allocate();
    for (let attempt = 0; !next.recorded && attempt < 20; attempt++) next = await allocate();
    assert.equal(next.recorded, true);
    await eventually(() => pendingHas(next.decisionId));
    assert.equal(await pendingHas(late.decisionId), false, 'the decision answered recorded: false is registered for the default reward');

    // Its outcome can still be reported now that the record is written (retried while intake answers 503), and it is
    // logged once: the sweep that defaults every registered decision (a clock past every deadline) adds nothing for it.
    const posted = await eventually(async () => {
      const r = await raw('POST', '/v1/outcomes', { decisionId: late.decisionId, quality: 0.75 });
      if (r.status === 503) return undefined;
      return r;
    });
    assert.equal(posted.status, 202, posted.text);
    const learner = rt.modules.find((m) => m.name === 'learner') as LearnerModule;
    // The outcome job may fail and be retried first: the server's Redis commands time out after 400 ms here, which a
    // busy machine reaches. In one CI run the event had not arrived after 30 s (the likely cause; not confirmed).
    await eventually(async () => {
      await learner.training.ingest('unrec');
      return (await learner.training.events('unrec', 100)).some((e) => e.id === late.decisionId);
    }, 90_000);
    const swept = await learner.training.ingest('unrec', Date.now() + 86_400_000);
    assert.equal(swept.defaulted, 2, 'the two recorded decisions get the default reward');
    const mine = (await learner.training.events('unrec', 100)).filter((e) => e.id === late.decisionId);
    assert.deepEqual(
      mine.map((e) => [e.q, e.d ?? 0]),
      [[0.75, 0]],
      'logged once, with its outcome',
    );
  });

  it('answers an outcome for a seconds-old decision id without a record 503 DECISION_PENDING, an older one 404', async () => {
    const raw = jsonHttp(() => rt.url!);
    const fresh = await raw('POST', '/v1/outcomes', { decisionId: newDecisionId(), quality: 0.5 });
    assert.equal(fresh.status, 503, fresh.text);
    assert.equal(fresh.json.code, 'DECISION_PENDING');
    assert.match(fresh.json.message, /body\/decisionId/);
    const old = await raw('POST', '/v1/outcomes', { decisionId: newDecisionId(Date.now() - 120_000), quality: 0.5 });
    assert.equal(old.status, 404, old.text);
    assert.equal(old.json.code, 'DECISION_NOT_FOUND');
  });
});
