import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { Running } from '../../src/server.js';
import { dropPrefix, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

/**
 * One Content-Encoding rule on every route (src/http/encoding.ts): gzip decoded, identity passed, anything else a
 * 415; a body that the header misdescribes is refused, never read as if it were not encoded.
 */

const prefix = testPrefix('errors-encoding');
let rt: Running;

before(async () => {
  rt = await startTest(prefix, {}, { APPORTION_BODY_LIMIT_BYTES: '65536' });
  const res = await rt.app!.inject({ method: 'PUT', url: '/v1/pipelines/enc-base', payload: FIVE_AGENTS });
  assert.equal(res.statusCode, 200, res.body);
});
after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

interface Route {
  readonly method: 'PUT' | 'POST';
  readonly url: (n: number) => string;
  readonly body: (n: number) => unknown;
}

const ROUTES: readonly Route[] = [
  { method: 'PUT', url: (n) => `/v1/pipelines/enc-${n}`, body: () => FIVE_AGENTS },
  { method: 'POST', url: () => '/v1/allocations', body: () => ({ pipeline: 'enc-base' }) },
  { method: 'PUT', url: () => '/v1/pipelines/enc-base/features', body: () => ({ features: [{ name: 'n', type: 'numeric' }] }) },
  { method: 'POST', url: () => '/v1/spans', body: (n) => ({ spans: [{ traceId: `enc-${n}`, spanId: 's', agent: 'a', start: Date.now() - 1000, end: Date.now() - 500 }] }) },
];

async function send(route: Route, n: number, payload: Buffer | string, encoding: string | undefined) {
  const res = await rt.app!.inject({
    method: route.method,
    url: route.url(n),
    payload,
    headers: { 'content-type': 'application/json', ...(encoding !== undefined ? { 'content-encoding': encoding } : {}) },
  });
  return { status: res.statusCode, body: res.json() as { code?: string; message?: string } };
}

describe('Content-Encoding on every JSON route', () => {
  it('a gzip body is decoded on routes outside the cost module', async () => {
    const zipped = gzipSync(JSON.stringify(FIVE_AGENTS));
    const put = await send(ROUTES[0]!, 1, zipped, 'gzip');
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const read = await rt.app!.inject({ method: 'GET', url: '/v1/pipelines/enc-1' });
    assert.equal(read.statusCode, 200, read.body);
    const alloc = await send(ROUTES[1]!, 0, gzipSync(JSON.stringify({ pipeline: 'enc-base' })), 'gzip');
    assert.equal(alloc.status, 200, JSON.stringify(alloc.body));
  });

  it('a plain body labelled gzip is INVALID_CONTENT_ENCODING and writes nothing', async () => {
    const r = await send(ROUTES[0]!, 2, JSON.stringify(FIVE_AGENTS), 'gzip');
    assert.equal(r.status, 400);
    assert.equal(r.body.code, 'INVALID_CONTENT_ENCODING', JSON.stringify(r.body));
    assert.equal((await rt.app!.inject({ method: 'GET', url: '/v1/pipelines/enc-2' })).statusCode, 404);
  });

  it('br, deflate and made-up codings are 415 UNSUPPORTED_CONTENT_ENCODING, naming the header', async () => {
    for (const enc of ['br', 'deflate', 'x-custom', 'gzip, gzip']) {
      const r = await send(ROUTES[1]!, 0, JSON.stringify({ pipeline: 'enc-base' }), enc);
      assert.equal(r.status, 415, `${enc}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'UNSUPPORTED_CONTENT_ENCODING');
      assert.match(r.body.message ?? '', /^headers\/content-encoding: /);
    }
  });

  it('the body limit applies to the inflated bytes on every route', async () => {
    const bomb = gzipSync(JSON.stringify({ ...FIVE_AGENTS, pad: ' '.repeat(1_000_000) }));
    assert.ok(bomb.length < 65536);
    const r = await send(ROUTES[0]!, 3, bomb, 'gzip');
    assert.equal(r.status, 413, JSON.stringify(r.body));
    assert.equal(r.body.code, 'BODY_TOO_LARGE');
  });

  it('generated: route × coding × body form gives the one rule', async () => {
    let n = 100;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ROUTES),
        fc.constantFrom(undefined, 'identity', 'gzip', 'GZIP', ' gzip ', 'br', 'deflate', 'compress', 'x-custom', 'gzip, br'),
        fc.constantFrom('plain', 'gzip', 'truncated-gzip'),
        async (route, encoding, form) => {
          n += 1;
          const json = JSON.stringify(route.body(n));
          const payload = form === 'plain' ? json : form === 'gzip' ? gzipSync(json) : gzipSync(json).subarray(0, 12);
          const r = await send(route, n, payload, encoding);
          const enc = (encoding ?? 'identity').trim().toLowerCase();
          const what = `${route.method} ${route.url(n)} ${encoding} ${form}: ${r.status} ${JSON.stringify(r.body)}`;
          assert.ok(r.status < 500, what);
          if (enc !== 'identity' && enc !== 'gzip') assert.equal(r.body.code, 'UNSUPPORTED_CONTENT_ENCODING', what);
          else if (enc === 'gzip' && form !== 'gzip') assert.equal(r.body.code, 'INVALID_CONTENT_ENCODING', what);
          else if (enc === 'identity' && form !== 'plain') assert.equal(r.body.code, 'INVALID_JSON', what);
          else assert.equal(r.status, 200, what);
        },
      ),
      { seed: 4150, numRuns: 60 },
    );
  });
});
