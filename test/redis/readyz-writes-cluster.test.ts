/**
 * /readyz on a Redis Cluster: the write probe (src/redis/write-probe.ts) writes one key per master, in a slot that
 * master holds, so one master that refuses writes makes the process unready and the answer names that master; the
 * others' keys are written all along. On a cluster of the file's own (a master's config is changed, which the shared
 * test cluster must never see).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { Running } from '../../src/server.js';
import { LocalCluster } from '../helpers/cluster.js';
import { eventually, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('readyz-writes-cluster');
let cluster: LocalCluster;
let rt: Running;
const direct: Redis[] = [];

const readyz = async () => {
  const res = await rt.app!.inject({ method: 'GET', url: '/readyz' });
  return { status: res.statusCode, body: res.json() as { status: string; writable?: boolean; reason?: string } };
};
/** The probe keys each master holds (read on the node itself, not through the cluster client). */
const probeKeysPerMaster = () => Promise.all(direct.map(async (r) => (await r.keys(`${prefix}:{ready:*}`)).length));

before(async () => {
  cluster = await LocalCluster.start(3);
  for (const port of cluster.ports) direct.push(new Redis({ port, host: '127.0.0.1', lazyConnect: false }));
  rt = await startTest(prefix, {}, { REDIS_URL: 'redis://127.0.0.1', REDIS_CLUSTER_NODES: cluster.nodes });
});
after(async () => {
  await rt?.close();
  for (const r of direct) r.disconnect();
  cluster?.stop();
});

describe('/readyz on a Redis Cluster', () => {
  it('writes one probe key on every master and is ready', async () => {
    await eventually(async () => ((await probeKeysPerMaster()).every((n) => n === 1) ? true : undefined), 30_000);
    const r = await readyz();
    assert.equal(r.status, 200);
    assert.equal(r.body.writable, true);
  });

  it('one master refusing writes (NOREPLICAS): 503 naming that master; ready again once it takes writes', async () => {
    const port = cluster.ports[1]!;
    await direct[1]!.config('SET', 'min-replicas-to-write', '1');
    try {
      const refused = await eventually(async () => {
        const r = await readyz();
        return r.status === 503 ? r : undefined;
      }, 30_000);
      assert.equal(refused.body.writable, false);
      assert.match(refused.body.reason ?? '', new RegExp(`127\\.0\\.0\\.1:${port}: NOREPLICAS`));
      for (const other of [cluster.ports[0]!, cluster.ports[2]!]) assert.doesNotMatch(refused.body.reason ?? '', new RegExp(`:${other}:`), 'only the refusing master is named');
    } finally {
      await direct[1]!.config('SET', 'min-replicas-to-write', '0');
    }
    const back = await eventually(async () => {
      const r = await readyz();
      return r.status === 200 ? r : undefined;
    }, 30_000);
    assert.equal(back.body.writable, true);
  });
});
