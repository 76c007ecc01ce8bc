import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Cluster } from 'ioredis';
import { createRedisClient } from '../../src/redis/connection.js';
import { LocalCluster } from '../helpers/cluster.js';

/**
 * ioredis's Cluster.connect() runs a ready check (CLUSTER INFO) after its slot refresh; when the check fails
 * (cluster_state:fail, a node refusing: a failover in progress) the cluster disconnects and connects again by itself,
 * and the first connect()'s promise was never settled. BullMQ awaits connect() when it reconnects a worker's
 * blocking connection, so such a worker never fetched a job again (bench/cluster-failover.ts: the reservation
 * sweeper and the learner tick stopped after a master was killed). On a cluster of the file's own: a master killed
 * until every node says cluster_state:fail, a client connecting meanwhile, then the master back.
 */
describe('a cluster client’s connect() settles once the cluster is ready again', () => {
  let cluster: LocalCluster;
  const clients: Cluster[] = [];
  before(async () => {
    cluster = await LocalCluster.start(3);
  });
  after(() => {
    for (const c of clients) c.disconnect();
    cluster.stop();
  });

  it('resolves on the ready that follows a failed ready check, also for a duplicate (a BullMQ blocking connection)', async () => {
    cluster.kill(0);
    await cluster.state(1, 'fail');
    const live = cluster.ports.slice(1).map((p) => `127.0.0.1:${p}`);
    const client = createRedisClient({ url: 'redis://', clusterNodes: live }, { lazyConnect: true, maxRetriesPerRequest: null, retryStrategy: () => 100 }) as unknown as Cluster;
    client.on('error', () => undefined);
    clients.push(client);
    const dup = client.duplicate();
    dup.on('error', () => undefined);
    clients.push(dup);
    assert.equal(Object.getPrototypeOf(dup), Object.getPrototypeOf(client), 'duplicate() makes the same kind of client');

    const outcome = new Map<Cluster, string>();
    const reconnected = (c: Cluster) => new Promise<void>((resolve) => c.once('reconnecting', () => resolve()));
    const reconnecting = [reconnected(client), reconnected(dup)];
    for (const c of [client, dup]) {
      void c.connect().then(
        () => outcome.set(c, 'resolved'),
        (e: Error) => outcome.set(c, `rejected: ${e.message}`),
      );
    }
    // The ready check failed (cluster_state:fail) and ioredis reconnects on its own: the path whose promise hung.
    await Promise.all(reconnecting);
    assert.equal(outcome.size, 0, 'nothing settled while the cluster is failed');

    const ready = [client, dup].map((c) => new Promise<void>((resolve) => c.once('ready', () => resolve())));
    await cluster.restart(0);
    await cluster.state(1, 'ok');
    await Promise.all(ready);
    await new Promise((r) => setImmediate(r));
    assert.equal(outcome.get(client), 'resolved');
    assert.equal(outcome.get(dup), 'resolved');
    // The client serves commands again. Right after a master comes back, one command can still meet the node's old
    // connection in the client's pool (ioredis answers "Too many Cluster redirections" while it reconnects): what
    // counts is that the client recovers, so a few attempts are allowed.
    let reply: string | undefined;
    let lastError: unknown;
    for (let attempt = 0; attempt < 20 && reply === undefined; attempt++) {
      try {
        reply = await client.set('k{x}', '1');
      } catch (err) {
        lastError = err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    assert.equal(reply, 'OK', `the client never served a command again: ${String(lastError)}`);
  });
});
