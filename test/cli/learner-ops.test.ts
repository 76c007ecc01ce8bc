import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';
import { closedPort, runCli } from '../helpers/cli.js';

// `apportion features get|set` and `apportion models list|train|rollback|ope` over a real socket, as a user runs
// them (the bin in a child process): what they print is the API's answer; a refusal is one line naming the field.
const prefix = testPrefix('cli-learner-ops');
const dir = mkdtempSync(path.join(tmpdir(), 'apportion-learner-ops-'));
let rt: Running;

const cli = (args: string[]) => runCli(args, process.env);
const file = (name: string, body: unknown) => {
  const p = path.join(dir, name);
  writeFileSync(p, typeof body === 'string' ? body : JSON.stringify(body));
  return p;
};
const json = <T>(stdout: string): T => JSON.parse(stdout) as T;

before(async () => {
  rt = await startTest(prefix, { listen: true });
  const put = (url: string, body: unknown) => rt.app!.inject({ method: 'PUT', url, payload: body as object });
  assert.equal((await put('/v1/pipelines/ops', { defaultTotalTokens: 1000, agents: [{ name: 'a' }, { name: 'b' }] })).statusCode, 200);
  assert.equal((await put('/v1/strategies/ops-L', { pipeline: 'ops', kind: 'learned' })).statusCode, 200);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(dir, { recursive: true, force: true });
});

describe('learner operations from the CLI', () => {
  const declaration = [
    { name: 'task', type: 'categorical', values: ['code', 'chat'] },
    { name: 'size', type: 'numeric', transform: 'log' },
  ];

  it('features set stores the declaration from a file (wrapped or the bare list) and features get prints it', async () => {
    const set = await cli(['features', 'set', 'ops', file('wrapped.json', { features: declaration }), '--url', rt.url!]);
    assert.equal(set.code, 0, set.stderr);
    const first = json<{ version: number }>(set.stdout).version;
    assert.ok(first >= 1, set.stdout);
    const got = await cli(['features', 'get', 'ops', '--url', rt.url!]);
    assert.equal(got.code, 0, got.stderr);
    const shown = json<{ features: { name: string }[]; version: number }>(got.stdout);
    assert.deepEqual(shown.features.map((f) => f.name), ['task', 'size']);
    assert.equal(shown.version, first);
    // The bare list is the same declaration.
    const bare = await cli(['features', 'set', 'ops', file('bare.json', declaration), '--url', rt.url!]);
    assert.equal(bare.code, 0, bare.stderr);
    const again = json<{ features: { name: string }[] }>((await cli(['features', 'get', 'ops', '--url', rt.url!])).stdout);
    assert.deepEqual(again.features.map((f) => f.name), ['task', 'size']);
  });

  it('refuses a file without a features list, or with another field, before sending anything; a declaration the server refuses is one line with its code and field', async () => {
    // Nothing listens here: a file that slipped through would fail with "cannot reach the Apportion API".
    const down = `http://127.0.0.1:${await closedPort()}`;
    const noList = file('nolist.json', { feature: declaration });
    const r1 = await cli(['features', 'set', 'ops', noList, '--url', down]);
    assert.equal(r1.code, 1);
    assert.equal(r1.stderr.trim(), `${noList}: no "features" list, nothing applied (expected { "features": [{ "name", "type", … }] } or the list itself)`);
    const extra = file('extra.json', { features: declaration, version: 3 });
    const r2 = await cli(['features', 'set', 'ops', extra, '--url', down]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /unexpected field "version" beside "features"/);
    const broken = file('broken.json', '{ "features": [');
    const r3 = await cli(['features', 'set', 'ops', broken, '--url', down]);
    assert.equal(r3.code, 1);
    assert.match(r3.stderr, /not valid JSON/);
    const dup = await cli(['features', 'set', 'ops', file('dup.json', [declaration[0], declaration[0]]), '--url', rt.url!]);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /INVALID_FEATURES/);
    assert.match(dup.stderr, /body\/features\/1\/name/);
    assert.doesNotMatch(dup.stderr, /\n\s+at /, 'no stack trace');
    // The declaration stored before is untouched.
    const kept = json<{ features: { name: string }[] }>((await cli(['features', 'get', 'ops', '--url', rt.url!])).stdout);
    assert.deepEqual(kept.features.map((f) => f.name), ['task', 'size']);
    const unknown = await cli(['features', 'get', 'no-such-pipeline', '--url', rt.url!]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /PIPELINE_NOT_FOUND/);
  });

  it('models list prints the versions, the gate and the guard; models train queues a retrain; models rollback sends the version and names a refusal', async () => {
    // What the CLI prints is what the API answers for the same request (the route itself is tested in
    // test/learner/api.test.ts, with trained versions); no trainer is waited for here.
    // The API read just before and just after the CLI's: the guard's worker may write its first running comparison
    // (the list's `guard` field) between two reads, so the CLI's document is the one before or the one after.
    const read = async () => (await rt.app!.inject({ method: 'GET', url: '/v1/models/ops' })).json() as Record<string, unknown>;
    const before = await read();
    const r = await cli(['models', 'list', 'ops', '--url', rt.url!]);
    assert.equal(r.code, 0, r.stderr);
    const after = await read();
    const shown = json<Record<string, unknown>>(r.stdout);
    const keys = (d: Record<string, unknown>) => Object.keys(d).sort().join(',');
    const api = keys(shown) === keys(before) ? before : after;
    // The same document (the guard's running figures may move between the reads).
    assert.deepEqual(Object.keys(shown).sort(), Object.keys(api).sort());
    for (const k of ['pipeline', 'active', 'compatible', 'versions', 'serving', 'candidate', 'gateRule']) assert.deepEqual(shown[k], api[k], k);
    assert.equal(api.pipeline, 'ops');
    assert.ok(Array.isArray(api.versions));
    const train = await cli(['models', 'train', 'ops', '--url', rt.url!]);
    assert.equal(train.code, 0, train.stderr);
    assert.deepEqual(json(train.stdout), { queued: true });
    const missing = await cli(['models', 'rollback', 'ops', '--version', '9999', '--url', rt.url!]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /MODEL_VERSION_NOT_FOUND/);
    assert.match(missing.stderr, /9999/);
    assert.doesNotMatch(missing.stderr, /\n\s+at /, 'no stack trace');
    // Refused by the CLI before any request: nothing listens at this URL.
    const down = `http://127.0.0.1:${await closedPort()}`;
    for (const v of ['0', 'x', '1.5']) {
      const bad = await cli(['models', 'rollback', 'ops', '--version', v, '--url', down]);
      assert.equal(bad.code, 1, v);
      assert.match(bad.stderr, /--version/, v);
      assert.doesNotMatch(bad.stderr, /cannot reach/, v);
    }
    const none = await cli(['models', 'train', 'no-such-pipeline', '--url', rt.url!]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /PIPELINE_NOT_FOUND/);
  });

  it("models ope estimates a strategy's value from the logged decisions, and refuses a tolerance outside [0, 1)", async () => {
    // Logged decisions with their propensities: real allocations of the learned strategy, and their outcomes.
    const call = (method: 'POST', url: string, body: unknown) => rt.app!.inject({ method, url, payload: body as object });
    for (let i = 0; i < 40; i++) {
      const a = await call('POST', '/v1/allocations', { pipeline: 'ops', strategy: 'ops-L', features: { task: i % 2 ? 'code' : 'chat', size: 10 + i } });
      assert.equal(a.statusCode, 200, a.body);
      const o = await call('POST', '/v1/outcomes', { decisionId: (a.json() as { decisionId: string }).decisionId, quality: 0.5 + (i % 5) / 10 });
      assert.equal(o.statusCode, 202, o.body);
    }
    await eventually(async () => {
      const e = (await rt.app!.inject({ method: 'GET', url: '/v1/pipelines/ops/ope?strategy=ops-L&resamples=10' })).json() as { events: number };
      return e.events >= 40;
    }, 120_000, 250);
    const r = await cli(['models', 'ope', 'ops', '--strategy', 'ops-L', '--limit', '1000', '--tolerance', '0.01', '--resamples', '50', '--url', rt.url!]);
    assert.equal(r.code, 0, r.stderr);
    const o = json<{ pipeline: string; strategy: string; events: number; tolerance: number }>(r.stdout);
    assert.equal(o.pipeline, 'ops');
    assert.equal(o.strategy, 'ops-L');
    assert.equal(o.tolerance, 0.01);
    assert.ok(o.events > 0, r.stdout);
    const bad = await cli(['models', 'ope', 'ops', '--strategy', 'ops-L', '--tolerance', '1', '--url', rt.url!]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--tolerance/);
  });
});
