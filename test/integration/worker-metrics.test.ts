import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

/**
 * The production split: an API process without workers and a worker process without the API. The worker's counters
 * (outcomes processed here) live in its own process, so it serves GET /metrics itself on APPORTION_WORKER_METRICS_PORT,
 * over a real socket, under the same access rule as the API's /metrics.
 */
const prefix = testPrefix('worker-metrics');
const ADMIN = 'worker-metrics-admin-0123456789';
const METRICS = 'worker-metrics-scrape-0123456789';
/**
 * An API process and a worker process apart under `prefix`, each on a socket (the worker's metrics port a free one),
 * for the enclosing block: started in `before`, closed and the keys dropped in `after`.
 */
function apiAndWorker(prefix: string, env: Record<string, string>): { api?: Running; worker?: Running } {
  const parts: { api?: Running; worker?: Running } = {};
  before(async () => {
    const all = { ...env, APPORTION_WORKER_METRICS_PORT: '0' };
    parts.api = await startTest(prefix, { api: true, workers: false, listen: true }, all);
    parts.worker = await startTest(prefix, { api: false, workers: true, listen: true }, all);
  });
  after(async () => {
    await parts.worker?.close();
    await parts.api?.close();
    await dropPrefix(prefix);
  });
  return parts;
}

const main = apiAndWorker(prefix, { APPORTION_ADMIN_KEY: ADMIN, APPORTION_METRICS_KEY: METRICS });

const processed = (text: string) => Number(/^apportion_outcomes_processed_total\{result="applied"\} (\d+)/m.exec(text)?.[1] ?? 0);

describe('worker metrics in a split deployment', () => {
  it('the worker serves its own counters; the API process has none of them; the metrics key is required', async () => {
    const api = main.api!;
    const worker = main.worker!;
    assert.equal(api.metricsUrl, undefined, 'an API process has no second listener');
    assert.ok(worker.metricsUrl, 'the worker listens');
    const h = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    assert.ok((await fetch(`${api.url}/v1/pipelines/wm`, { method: 'PUT', headers: h, body: JSON.stringify(FIVE_AGENTS) })).ok);
    const n = 12;
    for (let i = 0; i < n; i++) {
      const a = (await (await fetch(`${api.url}/v1/allocations`, { method: 'POST', headers: h, body: JSON.stringify({ pipeline: 'wm', unitKey: `u${i}` }) })).json()) as { decisionId: string };
      const o = await fetch(`${api.url}/v1/outcomes`, { method: 'POST', headers: h, body: JSON.stringify({ decisionId: a.decisionId, quality: 0.5 }) });
      assert.equal(o.status, 202);
    }
    const scrape = (url: string, auth?: string) => fetch(`${url}/metrics`, auth ? { headers: { authorization: `Bearer ${auth}` } } : {});
    const text = await eventually(async () => {
      const t = await (await scrape(worker.metricsUrl!, METRICS)).text();
      return processed(t) === n ? t : undefined;
    });
    assert.match(text, /^apportion_queue_jobs\{queue="outcomes",state="waiting"\} 0$/m, 'queue depths are sampled there too');
    assert.equal(processed(await (await scrape(api.url!, METRICS)).text()), 0, 'the API process processed nothing');
    // The same rule as the API's /metrics: the metrics key or the env admin key.
    assert.equal((await scrape(worker.metricsUrl!)).status, 401);
    assert.equal(((await (await scrape(worker.metricsUrl!, 'wrong-key-0123456789')).json()) as { code: string }).code, 'UNAUTHORIZED');
    assert.equal((await scrape(worker.metricsUrl!, ADMIN)).status, 200);
    assert.equal((await fetch(`${worker.metricsUrl}/healthz`)).status, 200);
    const other = await fetch(`${worker.metricsUrl}/v1/pipelines`);
    assert.equal(other.status, 404);
    assert.equal(((await other.json()) as { code: string }).code, 'ROUTE_NOT_FOUND');
  });
});

describe('a metrics key without API keys', () => {
  const openPrefix = testPrefix('worker-metrics-open');
  const KEY = 'open-metrics-scrape-key-0123456789';
  // No APPORTION_ADMIN_KEY / APPORTION_CLIENT_KEY: auth is off (loopback only), and the metrics key still guards /metrics.
  const open = apiAndWorker(openPrefix, { APPORTION_METRICS_KEY: KEY });

  it('is required on the API and on the worker metrics port; anything else is 401 UNAUTHORIZED', async () => {
    const openApi = open.api!;
    const openWorker = open.worker!;
    assert.equal(openApi.core.config.authEnabled, false);
    // Wrong credentials generated from a seed: no header, random text, other bearer keys, the key cut or changed.
    const wrong = fc.sample(
      fc.oneof(
        fc.constant(undefined),
        fc.string({ maxLength: 40 }),
        fc.string({ minLength: 1, maxLength: 40 }).map((k) => `Bearer ${k}`),
        fc.integer({ min: 1, max: KEY.length - 1 }).map((n) => `Bearer ${KEY.slice(0, n)}`),
        fc.integer({ min: 0, max: KEY.length - 1 }).map((i) => `Bearer ${KEY.slice(0, i)}${KEY[i] === 'x' ? 'y' : 'x'}${KEY.slice(i + 1)}`),
        fc.constant(`Basic ${Buffer.from(`u:${KEY}`).toString('base64')}`),
      ),
      { seed: 31, numRuns: 40 },
    ).filter((h) => h === undefined || /^[\x21-\x7e][\x20-\x7e]*$/.test(h)); // what a fetch header can carry
    assert.ok(wrong.length >= 20, `${wrong.length} generated headers`);
    for (const url of [openApi.url!, openWorker.metricsUrl!]) {
      for (const h of wrong) {
        const res = await fetch(`${url}/metrics`, h === undefined ? {} : { headers: { authorization: h } });
        assert.equal(res.status, 401, `${url} with ${JSON.stringify(h)}`);
        assert.equal(((await res.json()) as { code: string }).code, 'UNAUTHORIZED');
      }
      const ok = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } });
      assert.equal(ok.status, 200, url);
      assert.match(await ok.text(), /^# HELP /m);
    }
    // Only /metrics: with auth off every other route stays open, as documented.
    assert.equal((await fetch(`${openApi.url}/v1/pipelines`)).status, 200);
  });
});
