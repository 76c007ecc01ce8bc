import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { isLoopback, loadConfig } from '../../src/config/env.js';
import { AppError } from '../../src/errors/app-error.js';
import { toErrorBody } from '../../src/http/errors.js';
import type { Running } from '../../src/server.js';
import { Tiktoken } from 'js-tiktoken/lite';
import o200kBase from 'js-tiktoken/ranks/o200k_base';
import { mulberry32 } from '../../src/learner/rng.js';
import { countTokens, loadTokenizer, MAX_RUN } from '../../src/strategies/tokens.js';
import { dropPrefix, eventually, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

const OPERATOR = 'hardening-operator-key-0123456789';
/** o200k_base's pre-tokenization: the pieces byte-pair merging works on. */
const PRE_TOKEN = new RegExp(o200kBase.pat_str, 'gu');
const running: { rt: Running; prefix: string }[] = [];
async function server(env: Record<string, string>, opts: { listen?: boolean; prefix?: string } = {}): Promise<Running> {
  const prefix = opts.prefix ?? testPrefix('hardening');
  const rt = await startTest(prefix, { workers: false, listen: opts.listen ?? false }, { APPORTION_ADMIN_KEY: OPERATOR, ...env });
  running.push({ rt, prefix });
  return rt;
}
after(async () => {
  for (const { rt } of running) await rt.close();
  for (const p of new Set(running.map((r) => r.prefix))) await dropPrefix(p);
});

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

describe('rate limit (per key, counted in Redis)', () => {
  it('answers 429 RATE_LIMITED with Retry-After past the limit, per key, shared by every process, a key’s own limit first', async () => {
    const prefix = testPrefix('ratelimit');
    const env = { APPORTION_RATE_LIMIT_MAX: '4', APPORTION_RATE_LIMIT_WINDOW_MS: '60000' };
    const a = await server(env, { prefix });
    const b = await server(env, { prefix });
    const mk = async (body: Record<string, unknown>) => (await a.app!.inject({ method: 'POST', url: '/v1/keys', headers: bearer(OPERATOR), payload: body })).json() as { key: string };
    const k1 = await mk({ tenant: 'acme', role: 'analyst', name: 'one' });
    const k2 = await mk({ tenant: 'acme', role: 'analyst', name: 'two' });
    const k3 = await mk({ tenant: 'acme', role: 'analyst', name: 'three', rateLimit: 1 });
    const who = (rt: Running, key: string) => rt.app!.inject({ method: 'GET', url: '/v1/whoami', headers: bearer(key) });
    // Two requests through each process: the count is shared.
    for (const rt of [a, b, a, b]) assert.equal((await who(rt, k1.key)).statusCode, 200);
    const limited = await who(b, k1.key);
    assert.equal(limited.statusCode, 429);
    assert.equal(limited.json().code, 'RATE_LIMITED');
    const retry = Number(limited.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 60, `Retry-After ${limited.headers['retry-after']}`);
    // The message names the configured window (60 s), not the time left until it resets.
    assert.match(limited.json().message, /^too many requests: 4 per 60 s window exceeded; retry after \d+ s$/);
    assert.equal((await who(a, k2.key)).statusCode, 200, 'another key has its own count');
    assert.equal((await who(a, k3.key)).statusCode, 200);
    assert.equal((await who(a, k3.key)).statusCode, 429, 'the key’s own limit (1) applies');
    assert.equal((await a.app!.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  });
});

describe('rate limit before authentication', () => {
  it('counts requests with a missing or made-up key per client address, and refuses them 429 past the limit', async () => {
    const rt = await server({ APPORTION_RATE_LIMIT_MAX: '3', APPORTION_RATE_LIMIT_WINDOW_MS: '90000' });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const headers = i % 3 === 2 ? {} : bearer(`apk_${'madeup'}${i}_${'x'.repeat(40)}`);
      statuses.push((await rt.app!.inject({ method: 'GET', url: '/v1/pipelines', headers })).statusCode);
    }
    assert.deepEqual(statuses, [401, 401, 401, 429, 429, 429]);
    const limited = await rt.app!.inject({ method: 'GET', url: '/v1/pipelines', headers: bearer('apk_madeup9_xxxxxxxxxxxxxxxx') });
    assert.equal(limited.json().code, 'RATE_LIMITED');
    assert.match(limited.json().message, / 3 per 90 s window exceeded; retry after \d+ s$/);
    assert.equal((await rt.app!.inject({ method: 'GET', url: '/docs/json' })).statusCode, 429, 'the OpenAPI document is limited too');
    assert.equal((await rt.app!.inject({ method: 'GET', url: '/v1/whoami', headers: bearer(OPERATOR) })).statusCode, 200, 'a valid key has its own count');
    assert.equal((await rt.app!.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  });

  it("applies a key's own rateLimit while the default limit is off, and costs a request without a limit no Redis call", async () => {
    const rt = await server({});
    const mk = async (body: Record<string, unknown>) => (await rt.app!.inject({ method: 'POST', url: '/v1/keys', headers: bearer(OPERATOR), payload: body })).json() as { key: string };
    const limitedKey = await mk({ tenant: 'acme', role: 'analyst', name: 'limited', rateLimit: 2 });
    const freeKey = await mk({ tenant: 'acme', role: 'analyst', name: 'free' });
    const who = async (key: string) => (await rt.app!.inject({ method: 'GET', url: '/v1/whoami', headers: bearer(key) })).statusCode;
    assert.deepEqual([await who(limitedKey.key), await who(limitedKey.key), await who(limitedKey.key)], [200, 200, 429]);
    for (let i = 0; i < 5; i++) assert.equal(await who(freeKey.key), 200, 'a key without its own limit is not limited');
    const counters = await rt.core.redis.keys(`${rt.core.keys.prefix}:ratelimit:*`);
    assert.equal(counters.length, 1, `only the limited key is counted: ${counters.join(', ')}`);
  });
});

describe('slow clients', () => {
  it('a connection that trickles its body is answered 408 and closed after APPORTION_REQUEST_TIMEOUT_MS; the server holds none', async () => {
    const rt = await server({ APPORTION_REQUEST_TIMEOUT_MS: '300', APPORTION_HEADERS_TIMEOUT_MS: '300' }, { listen: true });
    const { port } = new URL(rt.url!);
    const N = 20;
    const results = await Promise.all(
      Array.from({ length: N }, () => {
        return new Promise<string>((resolve) => {
          const s = connect(Number(port), '127.0.0.1', () => {
            s.write(`POST /v1/allocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${OPERATOR}\r\nContent-Length: 1000\r\n\r\n{`);
            // One byte every 100 ms: never finishes within the timeout.
            const t = setInterval(() => s.write(' '), 100);
            s.once('close', () => clearInterval(t));
          });
          let got = '';
          s.on('data', (d) => (got += d.toString()));
          s.on('error', () => undefined);
          s.once('close', () => resolve(got));
        });
      }),
    );
    for (const r of results) assert.match(r, /^HTTP\/1\.1 408/, 'answered 408 Request Timeout, then closed');
    await eventually(
      () =>
        new Promise<boolean>((resolve) => {
          rt.app!.server.getConnections((_e, n) => resolve(n === 0));
        }),
    );
  });
});

describe('text features', () => {
  // The encoder (and the pre-tokenization pattern countTokens cuts by) loads on first use; these tests count directly.
  before(() => loadTokenizer());
  const words = (n: number, seed: number) => {
    const vocab = ['refund', 'invoice', 'the', 'customer', 'asked', 'about', 'a', 'billing', 'error', 'internationalization', 'on', 'order', '42', 'please', 'help'];
    let x = seed;
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      x = (x * 1103515245 + 12345) % 2 ** 31;
      out.push(vocab[x % vocab.length]!);
    }
    return out.join(' ');
  };

  it('tokenizes at most the configured number of characters, whatever the text (1 MB included)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2_000_000 }), fc.constantFrom('a', 'ab ', 'xyz123', 'word '), fc.integer({ min: 256, max: 8192 }), (len, unit, limit) => {
        const text = unit.repeat(Math.ceil(len / unit.length)).slice(0, len);
        let work = 0;
        let longest = 0;
        countTokens(text, limit, (s) => {
          work += s.length;
          for (const m of s.matchAll(PRE_TOKEN)) longest = Math.max(longest, m[0].length);
          return Math.ceil(s.length / 4);
        });
        assert.ok(work <= limit, `${work} characters tokenized for a limit of ${limit}`);
        assert.ok(longest <= MAX_RUN, `a pre-token of ${longest} characters reached the encoder`);
      }),
      { numRuns: 60, seed: 14 },
    );
  });

  it('counts exactly (o200k_base) every text whose pre-tokens are at most MAX_RUN long: URLs, code, JSON, base64, prose', () => {
    const exact = new Tiktoken(o200kBase);
    const rng = mulberry32(5);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
    const word = () => pick(['refund', 'invoice', 'api', 'v2', 'customer_id', 'getUser', 'Résumé', 'naïve', 'x', 'ORDER', '42', '3.14159']);
    const families: Record<string, () => string> = {
      url: () => `https://${word()}.example.com/${word()}/${word()}?q=${word()}&page=${Math.floor(rng() * 1000)}#${word()}`,
      code: () => `function ${word()}(a,b){return a.${word()}(x=>x*b+${Math.floor(rng() * 99)}).filter(y=>y%2===0)};`,
      json: () => JSON.stringify({ [word()]: word(), n: Math.floor(rng() * 1e6), list: [word(), word()], nested: { [word()]: rng() < 0.5 } }),
      base64: () => Buffer.from(Array.from({ length: 30 + Math.floor(rng() * 60) }, () => Math.floor(rng() * 256))).toString('base64'),
      prose: () => Array.from({ length: 8 }, word).join(' ') + '. ',
    };
    let checked = 0;
    for (let i = 0; i < 300; i++) {
      const kinds = Object.keys(families);
      const text = Array.from({ length: 1 + Math.floor(rng() * 30) }, () => families[pick(kinds)]!()).join(pick(['', ' ', '\n', '  ']));
      if ([...text.matchAll(PRE_TOKEN)].some((m) => m[0].length > MAX_RUN)) continue;
      assert.equal(countTokens(text, Number.MAX_SAFE_INTEGER), exact.encode(text).length, text.slice(0, 200));
      checked++;
    }
    assert.ok(checked > 150, `${checked} texts checked`);
    // CJK prose, whose phrases are long pre-tokens, is cut: a few percent more.
    const jp = '吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。'.repeat(10);
    const n = exact.encode(jp).length;
    const c = countTokens(jp, Number.MAX_SAFE_INTEGER);
    assert.ok(c >= n && c <= n * 1.05, `CJK: ${c} vs exact ${n}`);
  });

  it('estimates a long text within 3 % of its exact count', () => {
    for (const seed of [1, 2, 3]) {
      const text = words(60_000, seed);
      const exact = countTokens(text, Number.MAX_SAFE_INTEGER);
      const estimate = countTokens(text, 4096);
      assert.ok(Math.abs(estimate - exact) / exact < 0.03, `seed ${seed}: estimate ${estimate} vs exact ${exact}`);
    }
  });

  it('a 1 MB documentText is allocated over a real socket while the server keeps answering', async () => {
    const rt = await server({}, { listen: true });
    await rt.app!.inject({ method: 'PUT', url: '/v1/pipelines/p', headers: bearer(OPERATOR), payload: FIVE_AGENTS });
    const documentText = 'a'.repeat(500_000) + words(100_000, 7).slice(0, 500_000);
    const big = fetch(`${rt.url}/v1/allocations`, {
      method: 'POST',
      headers: { ...bearer(OPERATOR), 'content-type': 'application/json' },
      body: JSON.stringify({ pipeline: 'p', features: { documentText } }),
    });
    const health = await fetch(`${rt.url}/healthz`);
    assert.equal(health.status, 200);
    const res = await big;
    assert.equal(res.status, 200, await res.clone().text());
    const body = (await res.json()) as { recorded: boolean; decisionId: string };
    assert.ok(body.decisionId);
  });
});

describe('error bodies', () => {
  it('a 5xx never carries the driver’s message', () => {
    const b = toErrorBody(new AppError('REDIS_UNAVAILABLE', 'budget store unreachable: connect ECONNREFUSED 10.1.2.3:6379'));
    assert.equal(b.statusCode, 503);
    assert.equal(b.message, 'budget store unreachable');
    const q = toErrorBody(new AppError('QUEUE_UNAVAILABLE', 'outcome queue unreachable: READONLY You can\'t write against a read only replica.'));
    assert.equal(q.message, 'outcome queue unreachable');
    assert.match(toErrorBody(new AppError('VALIDATION_FAILED', 'body/x: must be y')).message, /body\/x: must be y/, '4xx keep their field path');
  });
});

describe('HOST loopback detection', () => {
  it('decides on the parsed address, not on a prefix', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopback(h), true, h);
    for (const h of ['127.evil.example', '127.0.0.1.nip.io', '0.0.0.0', '::', '10.0.0.1', '::ffff:10.0.0.1', '1270.0.0.1']) assert.equal(isLoopback(h), false, h);
    assert.equal(loadConfig({ HOST: '127.evil.example' }).host, '127.0.0.1', 'auth off: a name that only looks like loopback is replaced');
    assert.equal(loadConfig({ HOST: '::1' }).host, '::1');
  });
});

describe('/metrics behind a key', () => {
  it('needs APPORTION_METRICS_KEY (or the operator key) when it is set, and stays public otherwise', async () => {
    const METRICS = 'metrics-scrape-key-0123456789';
    const locked = await server({ APPORTION_METRICS_KEY: METRICS });
    assert.equal((await locked.app!.inject({ method: 'GET', url: '/metrics' })).statusCode, 401);
    assert.equal((await locked.app!.inject({ method: 'GET', url: '/metrics', headers: bearer('metrics-wrong-key-0123456789') })).statusCode, 401);
    assert.equal((await locked.app!.inject({ method: 'GET', url: '/metrics', headers: bearer(METRICS) })).statusCode, 200);
    assert.equal((await locked.app!.inject({ method: 'GET', url: '/metrics', headers: bearer(OPERATOR) })).statusCode, 200);
    assert.equal((await locked.app!.inject({ method: 'GET', url: '/v1/pipelines', headers: bearer(METRICS) })).statusCode, 401, 'the metrics key opens nothing else');
    const open = await server({});
    assert.equal((await open.app!.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
  });
});
