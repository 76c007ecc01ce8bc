/**
 * Route schemas compiled on a route's first call (src/http/lazy-schemas.ts) validate, default and serialize as
 * fastify's own compilers do when they compile at start: the same answers to the same requests, and nothing is
 * compiled before a route is called.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Type } from '@sinclair/typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import { lazySchemaCompilers } from '../../src/http/lazy-schemas.js';

const AJV = { customOptions: { allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: true } };

function app(lazy: boolean, body: object = Type.Object({ n: Type.Integer({ minimum: 1 }), tag: Type.String({ default: 'none' }) }, { additionalProperties: false })): FastifyInstance {
  const a = Fastify({ ajv: AJV, ...(lazy ? { schemaController: { compilersFactory: lazySchemaCompilers() } } : {}) });
  a.addSchema({ $id: 'Echo', type: 'object', properties: { id: { type: 'string' }, n: { type: 'integer' }, tag: { type: 'string' } } });
  a.post(
    '/things/:id',
    {
      schema: {
        params: Type.Object({ id: Type.String({ pattern: '^[a-z]+$' }) }),
        querystring: Type.Object({ limit: Type.Optional(Type.String({ pattern: '^[0-9]+$' })) }, { additionalProperties: false }),
        body,
        response: { 200: { $ref: 'Echo#' } },
      },
    },
    async (req) => ({ id: (req.params as { id: string }).id, ...(req.body as object), dropped: 'not in the response schema' }),
  );
  return a;
}

const REQUESTS = [
  { url: '/things/abc', payload: { n: 2 } },
  { url: '/things/abc', payload: { n: 2, tag: 'x' } },
  { url: '/things/abc?limit=5', payload: { n: 3 } },
  { url: '/things/abc', payload: { n: 0 } },
  { url: '/things/abc', payload: { n: '2' } },
  { url: '/things/abc', payload: { n: 2, extra: true } },
  { url: '/things/ABC', payload: { n: 2 } },
  { url: '/things/abc?limit=x', payload: { n: 2 } },
  { url: '/things/abc?other=1', payload: { n: 2 } },
];

describe('route schemas compiled on first call', () => {
  it('answer every request as the compilers that compile at start do (validation, defaults, serialization)', async () => {
    const eager = app(false);
    const lazy = app(true);
    for (const r of REQUESTS) {
      // Twice each: the first call compiles, the second reuses.
      for (let i = 0; i < 2; i++) {
        const [a, b] = await Promise.all([eager.inject({ method: 'POST', ...r }), lazy.inject({ method: 'POST', ...r })]);
        assert.equal(b.statusCode, a.statusCode, `${r.url} ${JSON.stringify(r.payload)}`);
        assert.equal(b.body, a.body, `${r.url} ${JSON.stringify(r.payload)}`);
      }
    }
    await Promise.all([eager.close(), lazy.close()]);
  });

  it('compiles nothing at start: a schema Ajv cannot compile fails its route’s first call, not ready()', async () => {
    const broken = Type.Unsafe<unknown>({ type: 'not-a-type' });
    const eager = app(false, broken);
    await assert.rejects(async () => void (await eager.ready()), /not-a-type|schema/i, 'compiled at start by fastify’s own compilers');
    const lazy = app(true, broken);
    await lazy.ready();
    const res = await lazy.inject({ method: 'POST', url: '/things/abc', payload: { n: 1 } });
    assert.equal(res.statusCode, 500);
    const ok = await lazy.inject({ method: 'GET', url: '/nothing' });
    assert.equal(ok.statusCode, 404);
    await lazy.close();
  });
});
