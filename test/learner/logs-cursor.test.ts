import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { learnerKeys } from '../../src/learner/keys.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { loadWorld, worldPipeline } from '../../src/learner/sim/world.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

// GET /v1/pipelines/:id/logs with a cursor: each line exactly once while outcomes keep arriving (qa-r bug 1: offset
// pages into a list that grows at its head repeated 672 of 3,720 lines), and a line trimmed before it was read is
// reported as a gap.
const prefix = testPrefix('learner-logs-cursor');
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-models-'));
const world = loadWorld('support-basic');
let rt: Running;

const call = (method: 'GET' | 'PUT', url: string, payload?: unknown): Promise<LightMyRequestResponse> =>
  rt.app!.inject({ method, url, ...(payload !== undefined ? { payload: payload as object } : {}) });

let seq = 0;
/** Logs n outcomes the way the outcome worker does (the incoming list); the route's ingest moves them into the buffer. */
async function traffic(pipeline: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  const entries: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `d-${++seq}`;
    ids.push(id);
    entries.push(`|${JSON.stringify({ id, t: 1_700_000_000_000 + seq, s: '@uniform', f: {}, T: 3000, b: { a: 1000 }, q: 0.5, c: null })}`);
  }
  if (entries.length) await rt.core.redis.lpush(learnerKeys(rt.core.keys, pipeline).incoming, ...entries);
  return ids;
}

interface Page {
  items: { id: string }[];
  next: string;
  gap?: boolean;
  costWeight: number;
}
async function page(pipeline: string, cursor: string, limit: number): Promise<Page> {
  const r = await call('GET', `/v1/pipelines/${pipeline}/logs?limit=${limit}&cursor=${encodeURIComponent(cursor)}`);
  assert.equal(r.statusCode, 200, r.body);
  return r.json() as Page;
}

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_MODELS_DIR: modelsDir });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(modelsDir, { recursive: true, force: true });
});

describe('logs cursor', () => {
  for (const seed of [11, 12]) {
    it(`returns every line exactly once while traffic arrives between pages (seed ${seed})`, async () => {
      const pid = `pg-${seed}`;
      assert.equal((await call('PUT', `/v1/pipelines/${pid}`, worldPipeline(world))).statusCode, 200);
      const rng = mulberry32(seed);
      const all = new Set(await traffic(pid, 600));
      await call('GET', `/v1/pipelines/${pid}/logs?limit=1`); // ingested
      const seen: string[] = [];
      let cursor = 'start';
      for (let k = 0; k < 1000; k++) {
        const limit = 20 + Math.floor(rng() * 60);
        const p = await page(pid, cursor, limit);
        assert.equal(p.gap, undefined);
        for (const e of p.items) seen.push(e.id);
        cursor = p.next;
        // Traffic between pages for the first 30 pages; then page until a short page.
        if (k < 30) for (const id of await traffic(pid, Math.floor(rng() * 50))) all.add(id);
        else if (p.items.length < limit) break;
      }
      assert.equal(new Set(seen).size, seen.length, `${seen.length - new Set(seen).size} lines repeated`);
      const buffered = (await rt.core.redis.lrange(learnerKeys(rt.core.keys, pid).buffer, 0, -1)).map((r) => (JSON.parse(r) as { id: string }).id);
      assert.deepEqual([...seen].sort(), [...buffered].sort());
      assert.deepEqual([...seen].sort(), [...all].sort());
      // Oldest first: the order of arrival.
      assert.deepEqual(seen, [...buffered].reverse());
    });
  }

  it('reports lines trimmed before they were read as a gap, and still returns each remaining line once', async () => {
    const pid = 'pg-trim';
    assert.equal((await call('PUT', `/v1/pipelines/${pid}`, worldPipeline(world))).statusCode, 200);
    const key = learnerKeys(rt.core.keys, pid).buffer;
    await traffic(pid, 300);
    const first = await page(pid, 'start', 100);
    assert.equal(first.items.length, 100);
    // The tail trimmed past the cursor's line (as the ingest's LTRIM does when the buffer is full), new lines at the head.
    await traffic(pid, 50);
    await call('GET', `/v1/pipelines/${pid}/logs?limit=1`);
    await rt.core.redis.ltrim(key, 0, 199); // keeps the newest 200 of 350: lines 1..150 are gone, 101..150 unread
    const seen: string[] = [];
    let p = await page(pid, first.next, 1000);
    assert.equal(p.gap, true);
    for (const e of p.items) seen.push(e.id);
    p = await page(pid, p.next, 1000);
    assert.equal(p.gap, undefined);
    assert.equal(p.items.length, 0);
    const buffered = (await rt.core.redis.lrange(key, 0, -1)).map((r) => (JSON.parse(r) as { id: string }).id);
    assert.deepEqual(seen, buffered.reverse());
  });

  it('finds the cursor line below its old position when the tail was trimmed but not past it', async () => {
    const pid = 'pg-trim2';
    assert.equal((await call('PUT', `/v1/pipelines/${pid}`, worldPipeline(world))).statusCode, 200);
    const key = learnerKeys(rt.core.keys, pid).buffer;
    await traffic(pid, 300);
    const first = await page(pid, 'start', 100);
    await traffic(pid, 40);
    await call('GET', `/v1/pipelines/${pid}/logs?limit=1`);
    await rt.core.redis.ltrim(key, 0, 339 - 60); // the oldest 60 gone; the cursor's line (the 100th) moves from 99 to 39
    const seen = first.items.map((e) => e.id);
    let p = await page(pid, first.next, 50);
    assert.equal(p.gap, undefined);
    for (let k = 0; p.items.length > 0 && k < 100; k++, p = await page(pid, p.next, 50)) for (const e of p.items) seen.push(e.id);
    const buffered = (await rt.core.redis.lrange(key, 0, -1)).map((r) => (JSON.parse(r) as { id: string }).id);
    assert.deepEqual(seen.slice(100), buffered.reverse().slice(40));
    assert.equal(new Set(seen).size, 340);
  });

  it('keeps the legacy offset page (newest first) and answers the pipeline λ', async () => {
    const r = await call('GET', '/v1/pipelines/pg-trim/logs?limit=5&offset=0');
    assert.equal(r.statusCode, 200, r.body);
    const j = r.json() as { items: { id: string }[]; costWeight: number };
    assert.equal(j.items.length, 5);
    assert.equal(j.costWeight, 0);
    assert.equal((await call('PUT', '/v1/strategies/pg-trim-L', { pipeline: 'pg-trim', kind: 'learned', params: { costWeight: 0.5 } })).statusCode, 200);
    assert.equal((await page('pg-trim', 'start', 1)).costWeight, 0.5);
    assert.equal((await call('GET', '/v1/pipelines/pg-trim/logs?cursor=nonsense')).statusCode, 400);
  });

  it('refuses a bad page request naming the query field as every route does (querystring/…)', async () => {
    const refused = async (qs: string) => {
      const r = await call('GET', `/v1/pipelines/pg-trim/logs?${qs}`);
      assert.equal(r.statusCode, 400, r.body);
      assert.equal(r.json().code, 'VALIDATION_FAILED');
      return r.json().message as string;
    };
    // limit=0 was answered with one line.
    assert.match(await refused('limit=0'), /^querystring\/limit must match pattern .* \(Lines to return: 1 to 999999/);
    assert.match(await refused('offset=-1'), /^querystring\/offset must match pattern .* \(Without cursor: the newest-first line to start at/);
    assert.match(await refused('cursor=nonsense'), /^querystring\/cursor: not a logs cursor/);
    assert.match(await refused('cursor=start&offset=3'), /^querystring\/offset: not with cursor/);
  });
});
