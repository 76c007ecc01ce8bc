import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Apportion } from '@apportion/sdk';
import { newDecisionId } from '../../src/allocation/decisions.js';
import { mulberry32 } from '../../src/learner/rng.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { okHttp } from '../helpers/http.js';
import { randomRequest, setUp } from './fixtures.js';

/**
 * Shared test vectors over a real socket: 10,000 requests generated from a seed over several pipelines, every
 * built-in strategy kind, experiments (targeting, layers, a ramp, a holdout) and learned strategies (serving model
 * with a candidate, safe start), answered by the server and in process by an SDK in local mode under the same
 * decision ids: the answers are identical (budgets, strategy and its version, reason, experiment, variant, route).
 */
const prefix = testPrefix('localeval-vectors');
let rt: Running;
let url: string;

const op = okHttp(() => url);

/** POST over a keep-alive agent (cheaper per request than fetch: the comparison is bound by request overhead). */
const agent = new Agent({ keepAlive: true, maxSockets: 16 });
function post(path: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const r = request(url + path, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    r.on('error', reject);
    r.end(data);
  });
}

/** The answer without what legitimately differs (whether the record was written). */

before(async () => {
  rt = await startTest(prefix, { listen: true, workers: false }, { PORT: '0' });
  url = rt.url!;
  await setUp(op, (id, doc) => rt.core.store.put('models', id, doc));
  // The server's snapshot takes the last write when its change message arrives; load it now, so the SDK's first
  // snapshot is the server's (on a busy machine the message came after the SDK had read: version 34 against 35).
  await rt.core.snapshot.refresh();
});

after(async () => {
  agent.destroy();
  await rt?.close();
  await dropPrefix(prefix);
});

/** The answer without what legitimately differs (whether the record was written). */
const comparable = (a: Record<string, unknown>) => {
  const { recorded: _r, ...rest } = a;
  return rest;
};

describe('shared test vectors', () => {
  it('answers 10,000 seeded requests exactly as the server does (budgets, strategy, reason, variant, route)', async () => {
    // Records are not shipped here (maxBuffer 0): both sides decide under the same decision ids.
    const sdk = new Apportion({ url, mode: 'local', maxBuffer: 0, stream: false });
    await sdk.ready();
    const local = await sdk.evaluator();
    assert.equal(local.stats().version, rt.core.snapshot.current().version);
    const rng = mulberry32(20261202);
    const requests = Array.from({ length: 10_000 }, () => ({ ...randomRequest(rng), decisionId: newDecisionId() }));
    const seen = { reasons: new Set<string>(), strategies: new Set<string>(), variants: new Set<string>(), explored: 0, control: 0 };
    let next = 0;
    const worker = async () => {
      while (next < requests.length) {
        const req = requests[next++]!;
        const res = await post('/v1/allocations', req);
        const server = JSON.parse(res.body) as Record<string, unknown>;
        assert.equal(res.status, 200, res.body);
        const mine = (await local.allocate(req)) as unknown as Record<string, unknown>;
        assert.deepEqual(comparable(mine), comparable(server), `request ${JSON.stringify(req)}`);
        seen.reasons.add(String(server.reason));
        seen.strategies.add(String(server.strategy));
        if (server.variant) seen.variants.add(String(server.variant));
        assert.notEqual(server.experiment, 'lv-paused', 'a paused experiment routes nothing');
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    // The vectors reach every route and kind.
    for (const r of ['requested', 'experiment', 'holdout', 'default']) assert.ok(seen.reasons.has(r), `reason ${r} seen`);
    for (const s of ['five-uniform', 'five-static', 'five-estimate', 'five-pool', 'learned-sq', 'learned-eps', 'safe-learned', 'safe-est']) assert.ok(seen.strategies.has(s), `strategy ${s} seen (${[...seen.strategies].join(', ')})`);
    for (const v of ['control', 'est', 'pool', 'uni', 'holdout', 'eps', 'learned']) assert.ok(seen.variants.has(v), `variant ${v} seen`);
    await sdk.close();
  });

});
