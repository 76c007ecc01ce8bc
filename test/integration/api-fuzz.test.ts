import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { sample } from 'openapi-sampler';
import { ERROR_CATALOG, type ErrorCode } from '../../src/errors/catalog.js';
import type { Running } from '../../src/server.js';
import { createRedisClient, masters } from '../../src/redis/connection.js';
import { dropPrefix, eventually, FIVE_AGENTS, REDIS_TARGET, startTest, testPrefix } from '../helpers/env.js';

/**
 * Generated bad input against every operation of the server's own OpenAPI document (GET /docs/json), over a real
 * socket, against Redis: for each operation, a body sampled from its request schema (openapi-sampler) and then broken
 * by one to three seeded mutations (a field deleted, replaced by a value of another type, an out-of-range or huge
 * value, an unknown or `__proto__` field, the whole body replaced), path parameters and query strings drawn from
 * known ids and odd strings, under the admin key, the client key, a bogus key or none. Every answer must be
 * either a success or a 4xx carrying a catalogued error (`code` in docs/errors.md's catalog, its status, a message):
 * never a 5xx. A rejected write must leave the store as it was: the file's keys (names and DUMPed values) are the
 * same before and after every 4xx of a PUT, POST or DELETE (no worker runs meanwhile). Then a worker process starts
 * on the same prefix and must process every job the fuzz got accepted (outcomes with odd but valid payloads
 * included) without a failure or a retry. The generator's seed is APPORTION_FUZZ_SEED (default
 * fixed, printed with a failure, so a failure replays).
 */
const prefix = testPrefix('api-fuzz');
const ADMIN = 'admin-key-0123456789abcdef';
const CLIENT = 'client-key-0123456789abcdef';
const SEED = Number(process.env.APPORTION_FUZZ_SEED ?? 20261203);
const RUNS = Number(process.env.APPORTION_FUZZ_RUNS ?? 12);
let rt: Running;
let workers: Running | undefined;
let acceptedOutcomes = 0;
let redis: Redis;
// The OpenAPI document as served: paths → method → operation.
let spec: { paths: Record<string, Record<string, Operation>> };

interface Operation {
  readonly parameters?: readonly { readonly in: string; readonly name: string; readonly schema?: object; readonly required?: boolean }[];
  readonly requestBody?: { readonly content?: Record<string, { readonly schema?: object }> };
}

const SCOPE = 'tenant:default/workspace:fuzz';
/** Made by the set-up: a reservation and a decision, so a share of the draws reach the domain rules behind the schema. */
let reservation = '';
let decision = '';

/** Known ids for a path parameter of a route (the set-up's, one that does not exist), beside the odd strings below. */
function known(route: string, name: string, schema?: { readonly enum?: readonly string[] }): string[] {
  if (schema?.enum?.length) return [...schema.enum, 'nope'];
  if (route.startsWith('/v1/reservations')) return [reservation, 'nope'];
  if (route.startsWith('/v1/experiments')) return ['e1', 'nope'];
  if (route.startsWith('/v1/strategies')) return ['s', 's2', 'nope'];
  if (route.startsWith('/v1/price-overrides')) return ['default', 'acme'];
  if (route.startsWith('/v1/sessions')) return ['sess-1', 'nope'];
  if (name === 'pipeline' || route.startsWith('/v1/pipelines')) return ['p', 'nope'];
  return ['x'];
}

/** Valid bodies for the operations whose schema sample (openapi-sampler's "string"s) would not pass the domain rules. */
function validBody(key: string): unknown {
  const bodies: Record<string, unknown> = {
    'PUT /v1/pipelines/{id}': FIVE_AGENTS,
    'PUT /v1/strategies/{id}': { pipeline: 'p', kind: 'uniform' },
    'POST /v1/allocations': { pipeline: 'p', unitKey: 'u1', features: { taskType: 'refund' }, totalTokens: 8000 },
    'POST /v1/outcomes': { decisionId: decision, quality: 0.8, usage: { reasoner: { inputTokens: 100, outputTokens: 20 } } },
    'PUT /v1/budgets': { scope: SCOPE, unit: 'TOKENS', allocated: 100000 },
    'POST /v1/budgets/{op}': { scope: SCOPE, unit: 'TOKENS', amount: 10, idempotencyKey: 'op-1' },
    'POST /v1/reservations': { scope: SCOPE, unit: 'TOKENS', amount: 100, idempotencyKey: 'r-1' },
    'POST /v1/reservations/{id}/draws': { amount: 10 },
    'POST /v1/reservations/{id}/commit': { amount: 50 },
    'POST /v1/reservations/{id}/release': {},
    'POST /v1/reservations/{id}/extend': { ttlMs: 60000 },
    'PUT /v1/experiments/{id}': { pipeline: 'p', variants: [{ name: 'control', strategy: 's', weight: 1 }, { name: 'b', strategy: 's2', weight: 1 }], coverage: 0.5 },
    'PUT /v1/pipelines/{id}/features': { features: [{ name: 'taskType', type: 'categorical' }, { name: 'n', type: 'numeric' }] },
    'POST /v1/spans': { spans: [{ traceId: 't1', spanId: 's1', sessionId: 'sess-1', agent: 'reasoner', model: 'gpt-4o-mini', usage: { input: 100, output: 20 } }] },
    'POST /v1/keys': { tenant: 'acme', role: 'client', name: 'fuzz' },
    'PUT /v1/price-overrides/{tenant}': { models: [{ model: 'fuzz-model', inputMTok: 1, outputMTok: 2 }] },
    'POST /v1/experiments/{id}/promote': { variant: 'b' },
    'POST /v1/models/{pipeline}/rollback': { version: 1 },
  };
  return bodies[key];
}
const ODD = ['..', '.', '%', 'a'.repeat(300), '\u0000', 'ü', ' x', '__proto__', 'constructor', '-1', '1e309', '{}', '[]', 'null'];

const oddValue = fc.oneof(
  fc.constant(null),
  fc.integer({ min: -1e12, max: 1e12 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 40 }),
  fc.constantFrom('', ' ', '💥', 'a'.repeat(5000), '-1', '0x10', '1e309', '__proto__', '2026-13-45T99:99:99Z'),
  fc.constantFrom(1.5, -0, -1, 0, Number.MAX_SAFE_INTEGER + 2, 1e308, -1e308),
  fc.boolean(),
  fc.array(fc.oneof(fc.string({ maxLength: 5 }), fc.integer()), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.string({ maxLength: 5 }), fc.integer()), { maxKeys: 3 }),
);

type Mutation =
  | { readonly kind: 'delete'; readonly at: number }
  | { readonly kind: 'set'; readonly at: number; readonly value: unknown }
  | { readonly kind: 'extra'; readonly at: number; readonly key: string; readonly value: unknown }
  | { readonly kind: 'whole'; readonly value: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: oddValue }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('extra' as const), at: fc.nat(), key: fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'colour', 'tenant', ''), value: oddValue }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('whole' as const), value: fc.oneof(oddValue, fc.constant({})) }) },
);

/** Every location in a JSON value (the root included) as a path of keys. */
function locations(v: unknown, path: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(path);
  if (Array.isArray(v)) v.forEach((x, i) => locations(x, [...path, i], out));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) locations(x, [...path, k], out);
  return out;
}

/** The body with one mutation applied (on a copy). */
function mutate(body: unknown, m: Mutation): unknown {
  if (m.kind === 'whole') return m.value;
  const copy = JSON.parse(JSON.stringify(body ?? {})) as unknown;
  const locs = locations(copy);
  const target = m.kind === 'extra' ? locs.filter((p) => { const v = at(copy, p); return v !== null && typeof v === 'object' && !Array.isArray(v); }) : locs.filter((p) => p.length > 0);
  if (target.length === 0) return copy;
  const path = target[m.at % target.length]!;
  if (m.kind === 'extra') {
    // Defined as an own property (as JSON.parse makes `"__proto__"` one), not through the setter.
    Object.defineProperty(at(copy, path) as object, m.key, { value: m.value, enumerable: true, configurable: true, writable: true });
    return copy;
  }
  const parent = at(copy, path.slice(0, -1)) as Record<string | number, unknown>;
  const key = path[path.length - 1]!;
  if (m.kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key];
  } else parent[key] = m.value;
  return copy;
}

function at(v: unknown, path: readonly (string | number)[]): unknown {
  return path.reduce<unknown>((x, k) => (x as Record<string | number, unknown>)[k], v);
}

/**
 * The file's keys, each with a digest of its content read by type (a hash's fields sorted, a set's members sorted):
 * not DUMP, whose bytes for a hash in a hash table change when Redis rehashes it, even on a read.
 */
async function snapshot(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  // On a cluster every master is scanned; the reads go through the cluster client (routed by slot).
  for (const node of masters(redis)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) out.set(k, await digest(k));
    } while (cursor !== '0');
  }
  for (const [k, d] of out) if (d === '') out.delete(k);
  return out;
}

/** A key's content read by its type, as a digest ('' when the key is gone). */
async function digest(k: string): Promise<string> {
  const type = await redis.type(k);
  let content: unknown;
  if (type === 'string') content = await redis.getBuffer(k).then((b) => b?.toString('base64'));
  else if (type === 'hash') content = Object.entries(await redis.hgetall(k)).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  else if (type === 'list') content = await redis.lrange(k, 0, -1);
  else if (type === 'set') content = (await redis.smembers(k)).sort();
  else if (type === 'zset') content = await redis.zrange(k, '0', '-1', 'WITHSCORES');
  else if (type === 'stream') content = await redis.xrange(k, '-', '+');
  else if (type === 'none') return '';
  else content = type;
  return createHash('sha1').update(`${type}\n${JSON.stringify(content)}`).digest('hex');
}

function changedKeys(a: Map<string, string>, b: Map<string, string>): string[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  return [...keys].filter((k) => a.get(k) !== b.get(k));
}

const AUTH = fc.constantFrom<readonly [string, string | undefined]>(['admin', ADMIN], ['admin', ADMIN], ['admin', ADMIN], ['admin', ADMIN], ['client', CLIENT], ['none', undefined], ['bogus', 'not-a-key-0123456789']);

before(async () => {
  rt = await startTest(prefix, { listen: true, workers: false }, { APPORTION_ADMIN_KEY: ADMIN, APPORTION_CLIENT_KEY: CLIENT, APPORTION_BODY_LIMIT_BYTES: '65536' });
  redis = createRedisClient(REDIS_TARGET);
  const h = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
  const put = async (url: string, body: unknown) => {
    const r = await fetch(`${rt.url}${url}`, { method: 'PUT', headers: h, body: JSON.stringify(body) });
    assert.ok(r.status < 300, `${url}: ${r.status} ${await r.text()}`);
  };
  await put('/v1/pipelines/p', FIVE_AGENTS);
  await put('/v1/strategies/s', { pipeline: 'p', kind: 'uniform' });
  await put('/v1/strategies/s2', { pipeline: 'p', kind: 'uniform' });
  await put('/v1/budgets', { scope: SCOPE, unit: 'TOKENS', allocated: 1_000_000 });
  await put('/v1/experiments/e1', validBody('PUT /v1/experiments/{id}') ?? {});
  const post = async (url: string, body: unknown) => {
    const r = await fetch(`${rt.url}${url}`, { method: 'POST', headers: h, body: JSON.stringify(body) });
    const text = await r.text();
    assert.ok(r.status < 300, `${url}: ${r.status} ${text}`);
    return JSON.parse(text) as Record<string, unknown>;
  };
  reservation = String((await post('/v1/reservations', { scope: SCOPE, unit: 'TOKENS', amount: 1000, idempotencyKey: 'setup-1' })).id);
  decision = String((await post('/v1/allocations', { pipeline: 'p' })).decisionId);
  spec = (await (await fetch(`${rt.url}/docs/json`, { headers: h })).json()) as typeof spec;
});
after(async () => {
  await workers?.close();
  await rt.close();
  redis.disconnect();
  await dropPrefix(prefix);
});

/** Streams (server-sent events) are not request/response operations. */
const SKIP = new Set(['GET /v1/sync/stream']);

describe('generated bad input against every operation of the OpenAPI document', () => {
  it('the document lists the operations (the fuzz below covers each)', () => {
    const ops = Object.values(spec.paths).reduce((n, o) => n + Object.keys(o).length, 0);
    assert.ok(ops >= 50, `${ops} operations`);
  });

  it('never answers 5xx; every 4xx is catalogued and a rejected write changes nothing', async () => {
    const failures: string[] = [];
    const tally = new Map<string, number>();
    let op = 0;
    for (const [route, methods] of Object.entries(spec.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        op++;
        const M = method.toUpperCase();
        if (SKIP.has(`${M} ${route}`)) continue;
        const schema = operation.requestBody?.content?.['application/json']?.schema;
        const base = schema ? (validBody(`${M} ${route}`) ?? sample(schema as never, { skipReadOnly: true, quiet: true }, spec)) : undefined;
        const pathParams = (operation.parameters ?? []).filter((p) => p.in === 'path');
        const queryParams = (operation.parameters ?? []).filter((p) => p.in === 'query');
        const arb = fc.record({
          auth: AUTH,
          params: fc.tuple(...pathParams.map((p) => fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...known(route, p.name, p.schema as { enum?: string[] })) }, { weight: 1, arbitrary: fc.constantFrom(...ODD) }, { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 30 }) }))),
          query: fc.tuple(...queryParams.map(() => fc.option(fc.oneof(fc.constantFrom('p', 's', '1', '0', '-1', 'true', 'csv', 'tenant', '1e309', ''), fc.string({ maxLength: 20 })), { nil: undefined }))),
          mutations: fc.array(mutation, { minLength: 0, maxLength: 3 }),
        });
        await fc.assert(
          fc.asyncProperty(arb, async ({ auth, params, query, mutations }) => {
            let url = route;
            pathParams.forEach((p, i) => (url = url.replace(`{${p.name}}`, encodeURIComponent(params[i] as string))));
            const qs = queryParams.flatMap((p, i) => (query[i] !== undefined ? [`${encodeURIComponent(p.name)}=${encodeURIComponent(query[i] as string)}`] : []));
            if (qs.length) url += `?${qs.join('&')}`;
            const body = schema ? mutations.reduce<unknown>((b, m) => mutate(b, m), base) : undefined;
            const writes = M !== 'GET';
            const before = writes ? await snapshot() : undefined;
            const headers: Record<string, string> = auth[1] ? { authorization: `Bearer ${auth[1]}` } : {};
            if (body !== undefined) headers['content-type'] = 'application/json';
            const res = await fetch(`${rt.url}${url}`, { method: M, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
            const text = await res.text();
            const what = `${M} ${url} as ${auth[0]} with ${JSON.stringify(body)?.slice(0, 400)} → ${res.status} ${text.slice(0, 300)}`;
            if (M === 'POST' && route === '/v1/outcomes' && res.status === 202) acceptedOutcomes++;
            tally.set(`${M} ${route} ${res.status}`, (tally.get(`${M} ${route} ${res.status}`) ?? 0) + 1);
            assert.ok(res.status < 500, `a 5xx: ${what}`);
            if (res.status >= 400) {
              let err: { code?: string; message?: string; statusCode?: number } = {};
              try {
                err = JSON.parse(text) as typeof err;
              } catch {
                assert.fail(`a 4xx without a JSON body: ${what}`);
              }
              assert.ok(err.code && err.code in ERROR_CATALOG, `an uncatalogued error: ${what}`);
              assert.equal(ERROR_CATALOG[err.code as ErrorCode].status, res.status, `the catalogue's status: ${what}`);
              assert.equal(err.statusCode, res.status, what);
              assert.ok(typeof err.message === 'string' && err.message.length > 0, `a message: ${what}`);
              if (before) {
                const changed = changedKeys(before, await snapshot());
                assert.deepEqual(changed, [], `a rejected write changed the store (${changed.join(', ')}): ${what}`);
              }
            }
          }),
          { seed: SEED + op, numRuns: RUNS, endOnFailure: true },
        ).catch((e: Error) => failures.push(`${M} ${route}: ${(e.cause as Error | undefined)?.message?.split('\n')[0] ?? e.message} (${e.message.split('\n')[1] ?? ''})`));
      }
    }
    assert.deepEqual(failures, [], failures.join('\n\n'));
    // The draws reach past the schema: many operations also answered a success (the valid bodies, the known ids).
    const succeeded = new Set([...tally.keys()].filter((k) => / 2\d\d$/.test(k)).map((k) => k.replace(/ \d+$/, '')));
    assert.ok(succeeded.size >= 20, `${succeeded.size} operations answered a 2xx: ${[...succeeded].join(', ')}`);
  });

  it('then a worker processes every job the fuzz got accepted: none failed, none waits on a retry (an accepted outcome is never lost to its payload)', async () => {
    // The jobs the fuzz got accepted wait in the queue (no worker ran: the store check above needs that).
    const pending = rt.modules.flatMap((m) => m.queues ?? []).find((q) => q.name === 'outcomes')!;
    const waiting = (await pending.getJobCounts('waiting')).waiting ?? 0;
    assert.ok(acceptedOutcomes === 0 || waiting >= 1, `${acceptedOutcomes} outcomes accepted, ${waiting} outcome jobs waiting`);
    // The workers start only now: while the fuzz ran nothing wrote in the background, so the store check above holds.
    workers = await startTest(prefix, { api: false, workers: true }, { APPORTION_ADMIN_KEY: ADMIN, APPORTION_CLIENT_KEY: CLIENT });
    const queues = workers.modules.flatMap((m) => m.queues ?? []);
    const outcomes = queues.find((q) => q.name === 'outcomes')!;
    await eventually(async () => {
      const c = await outcomes.getJobCounts('waiting', 'active', 'delayed', 'failed');
      return (c.waiting ?? 0) + (c.active ?? 0) === 0 ? c : undefined;
    }, 60_000, 100);
    for (const q of queues) {
      const c = await q.getJobCounts('failed', 'delayed');
      const failed = await q.getFailed(0, 5);
      assert.equal(c.failed ?? 0, 0, `${q.name}: ${failed.map((j) => `${j.name} ${JSON.stringify(j.data).slice(0, 300)}: ${j.failedReason}`).join('; ')}`);
    }
    const delayed = await outcomes.getDelayed(0, 5);
    assert.deepEqual(delayed.map((j) => `${JSON.stringify(j.data).slice(0, 300)} after ${j.attemptsMade} attempts: ${j.failedReason}`), [], 'an outcome job waits on a retry');
  });
});
