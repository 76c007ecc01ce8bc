import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { runCli } from '../helpers/cli.js';

/**
 * The CLI's errors, run as a child process against a server with keys configured: a 401 without a key says how to
 * give one; an applied file that is not JSON, or an entry of it the server refuses, is named; `keys create
 * --expires-at` is checked before anything is sent.
 */
const prefix = testPrefix('cli-errors');
const ADMIN = 'cli-errors-admin-key-0123456789';
let rt: Running;
let dir: string;

/** The CLI with an environment of its own: no APPORTION_KEY / APPORTION_ADMIN_KEY unless given. */
function cli(args: string[], env: Record<string, string> = {}) {
  const base = { ...process.env };
  delete base.APPORTION_KEY;
  delete base.APPORTION_ADMIN_KEY;
  return runCli(args, { ...base, APPORTION_URL: rt.url!, ...env }, 120_000);
}
const noStack = (r: { stdout: string; stderr: string }) => {
  for (const out of [r.stdout, r.stderr]) assert.doesNotMatch(out, /\n\s+at |Node\.js v/, 'no stack trace');
};

before(async () => {
  rt = await startTest(prefix, { listen: true }, { APPORTION_ADMIN_KEY: ADMIN });
  dir = mkdtempSync(path.join(tmpdir(), 'apportion-cli-errors-'));
});
after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('CLI errors', () => {
  it('a 401 without a key says to pass --key or set APPORTION_KEY (and that APPORTION_ADMIN_KEY is not read)', async () => {
    const none = await cli(['keys', 'list']);
    assert.equal(none.code, 1, none.stderr);
    assert.match(none.stderr, /^401 UNAUTHORIZED: /);
    assert.match(none.stderr, /--key <key> or set APPORTION_KEY/);
    assert.doesNotMatch(none.stderr, /APPORTION_ADMIN_KEY/);
    noStack(none);
    // The operator's key in the variable the server reads, not in the one the CLI reads: the message says which.
    const adminOnly = await cli(['keys', 'list'], { APPORTION_ADMIN_KEY: ADMIN });
    assert.equal(adminOnly.code, 1, adminOnly.stderr);
    assert.match(adminOnly.stderr, /does not read APPORTION_ADMIN_KEY: export APPORTION_KEY=\$APPORTION_ADMIN_KEY/);
    // The top-level commands too (not only the domains').
    const stats = await cli(['stats', 'nope']);
    assert.equal(stats.code, 1, stats.stderr);
    assert.match(stats.stderr, /--key <key> or set APPORTION_KEY/);
    // A key given and wrong: the 401 alone, no hint about giving one.
    for (const given of [['--key', 'apk_wrong_wrong'], ['--key=apk_wrong_wrong']]) {
      const wrong = await cli(['keys', 'list', ...given]);
      assert.equal(wrong.code, 1, wrong.stderr);
      assert.match(wrong.stderr, /^401 UNAUTHORIZED: .*unknown key/);
      assert.doesNotMatch(wrong.stderr, /No key was given/);
    }
    const wrongEnv = await cli(['keys', 'list'], { APPORTION_KEY: 'apk_wrong_wrong' });
    assert.doesNotMatch(wrongEnv.stderr, /No key was given/);
    // With the key, as the README's sequence gives it.
    const ok = await cli(['keys', 'list'], { APPORTION_KEY: ADMIN });
    assert.equal(ok.code, 0, ok.stderr);
  });

  it('apply names a file that is not JSON', async () => {
    const file = path.join(dir, 'broken.json');
    writeFileSync(file, '{ "pipelines": [ { "id": "p", } ] }');
    for (const kind of ['pipelines', 'strategies', 'experiments']) {
      const r = await cli([kind, 'apply', file], { APPORTION_KEY: ADMIN });
      assert.equal(r.code, 1, `${kind}: ${r.stderr}`);
      assert.ok(r.stderr.startsWith(`${file}: not valid JSON: `), `${kind}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      noStack(r);
    }
  });

  it('apply names the entry the server refused, by kind and id', async () => {
    const file = path.join(dir, 'refused.json');
    writeFileSync(file, JSON.stringify({ pipelines: [{ id: 'research', agents: [{ name: 'a' }] }] }));
    const p = await cli(['pipelines', 'apply', file], { APPORTION_KEY: ADMIN });
    assert.equal(p.code, 1, p.stderr);
    assert.ok(p.stderr.startsWith(`${file}: pipelines/research: 400 VALIDATION_FAILED: body/defaultTotalTokens`), p.stderr);
    noStack(p);

    writeFileSync(file, JSON.stringify({ pipelines: [{ id: 'good', defaultTotalTokens: 1000, agents: [{ name: 'a' }] }] }));
    assert.equal((await cli(['pipelines', 'apply', file], { APPORTION_KEY: ADMIN })).code, 0);
    writeFileSync(file, JSON.stringify({ strategies: [{ id: 'ok-one', pipeline: 'good', kind: 'uniform' }, { id: 'bad-one', pipeline: 'good', kind: 'no-such-kind' }] }));
    const s = await cli(['strategies', 'apply', file], { APPORTION_KEY: ADMIN });
    assert.equal(s.code, 1, s.stderr);
    assert.match(s.stdout, /PUT \/v1\/strategies\/ok-one → version/);
    assert.ok(s.stderr.startsWith(`${file}: strategies/bad-one: 400 `), s.stderr);

    writeFileSync(file, JSON.stringify({ experiments: [{ id: 'exp-bad', pipeline: 'good' }] }));
    const e = await cli(['experiments', 'apply', file], { APPORTION_KEY: ADMIN });
    assert.equal(e.code, 1, e.stderr);
    assert.ok(e.stderr.startsWith(`${file}: experiments/exp-bad: 400 `), e.stderr);

    writeFileSync(file, JSON.stringify({ pipelines: [{ defaultTotalTokens: 1000, agents: [{ name: 'a' }] }] }));
    const noId = await cli(['pipelines', 'apply', file], { APPORTION_KEY: ADMIN });
    assert.equal(noId.code, 1, noId.stderr);
    assert.ok(noId.stderr.startsWith(`${file}: pipelines/0/id is missing`), noId.stderr);
  });

  it('keys create --expires-at: a value that is not a future ISO 8601 date-time is refused naming the option, nothing sent', async () => {
    const create = ['keys', 'create', '--tenant', 'acme', '--role', 'client', '--name', 'n'];
    for (const bad of ['notadate', '2027-01-31', '2027-02-30T00:00:00Z', '2027-01-31T25:00:00Z', '2027-01-31T00:00:00', '2027-01-31T00:00:00+02', '2001-01-01T00:00:00Z']) {
      const r = await cli([...create, '--expires-at', bad], { APPORTION_KEY: ADMIN });
      const what = `${bad}: ${r.stderr}`;
      assert.equal(r.code, 1, what);
      assert.ok(r.stderr.startsWith(`error: option '--expires-at <iso>' argument '${bad}' is invalid.`), what);
      assert.doesNotMatch(r.stderr, /body\//, what);
      assert.equal(r.stdout, '', what);
      noStack(r);
    }
    const list = await cli(['keys', 'list', '--tenant', 'acme'], { APPORTION_KEY: ADMIN });
    assert.deepEqual(JSON.parse(list.stdout).items ?? JSON.parse(list.stdout), [], 'nothing was created');
    for (const good of ['2099-01-31T00:00:00Z', '2099-01-31T09:30:00.5+02:00', '2099-01-31T09:30:00+0200']) {
      const r = await cli([...create, '--expires-at', good], { APPORTION_KEY: ADMIN });
      assert.equal(r.code, 0, `${good}: ${r.stderr}`);
      assert.match(JSON.parse(r.stdout).key, /^apk_/);
    }
  });
});
