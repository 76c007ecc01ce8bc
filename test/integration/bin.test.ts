/**
 * The documented ways to run Apportion, run for real: `bin/apportion.mjs` (what `npx apportion` and the package's
 * `bin` start) as a child process, both ways it runs: the compiled dist/ (scripts/build-dist.mjs) and src/ through
 * tsx, which the bin registers in-process, so a child it forks does not inherit the loader from the command line.
 * Either way the learner's trainer child must start ("Unknown file extension .ts" made every retrain fail there),
 * and a retrain that never succeeds must be loud in `simulate`. Which one the bin picks is checked on a scratch tree.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from '../../src/learner/rng.js';
import { contextFeatures, loadWorld, sampleContext, simulateOutcome, worldFeatures, worldPipeline } from '../../src/learner/sim/world.js';
import { dropPrefix, eventually, REDIS_URL } from '../helpers/env.js';

// The repository itself (not the test runner's compiled mirror, whose package.json links to it): what the bin picks
// between, dist/ or src/, is the repository's.
const ROOT = path.dirname(realpathSync(fileURLToPath(new URL('../../package.json', import.meta.url))));

function runBin(args: readonly string[], env: Record<string, string> = {}, root = ROOT): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/apportion.mjs', ...args], { cwd: root, env: { ...process.env, REDIS_URL, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

// What `npm install` and `npm start` do: dist/ is current before the bin runs it.
const buildDist = () => execFileSync(process.execPath, ['scripts/build-dist.mjs', '--if-stale', '--quiet'], { cwd: ROOT, stdio: 'inherit' });
before(buildDist);

const WAYS = [
  { name: 'dist/', env: {} as Record<string, string> },
  { name: 'src/ through tsx', env: { APPORTION_FROM_SOURCE: '1' } as Record<string, string> },
];

for (const way of WAYS)
test(`apportion serve through the bin from ${way.name}: a retrain runs in the trainer child and produces a model`, async () => {
  const prefix = `t-bin-${randomBytes(4).toString('hex')}`;
  const models = mkdtempSync(path.join(tmpdir(), 'apportion-bin-models-'));
  const admin = `admin-${randomBytes(12).toString('hex')}`;
  const child = spawn(process.execPath, ['bin/apportion.mjs', 'serve'], {
    cwd: ROOT,
    env: { ...process.env, REDIS_URL, PORT: '0', APPORTION_KEY_PREFIX: prefix, APPORTION_ADMIN_KEY: admin, APPORTION_SEED_EXAMPLES: 'false', APPORTION_MODELS_DIR: models, LOG_LEVEL: 'info', APPORTION_DEBUG_BIN: '1', ...way.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let logs = '';
  let errs = '';
  child.stdout.on('data', (b: Buffer) => (logs += b.toString()));
  child.stderr.on('data', (b: Buffer) => {
    errs += b.toString();
    process.stderr.write(b);
  });
  try {
    const url = await eventually(() => /"url":"(http:[^"]+)"[^\n]*apportion started/.exec(logs)?.[1], 120_000, 100);
    const call = async <T>(method: string, p: string, body?: unknown): Promise<T> => {
      const res = await fetch(url + p, {
        method,
        headers: { authorization: `Bearer ${admin}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      assert.ok(res.ok, `${method} ${p}: ${res.status} ${text}`);
      return (text.startsWith('{') ? JSON.parse(text) : text) as T;
    };
    const world = loadWorld('support-basic');
    await call('PUT', '/v1/pipelines/w', worldPipeline(world));
    await call('PUT', '/v1/pipelines/w/features', worldFeatures(world));
    await call('PUT', '/v1/strategies/learned-w', { pipeline: 'w', kind: 'learned', params: { trainEvery: 100_000, trainIntervalSeconds: 3600 } });
    const rng = mulberry32(11);
    for (let i = 0; i < 40; i++) {
      const x = sampleContext(world, rng);
      const a = await call<{ decisionId: string; budgets: Record<string, { tokens: number }> }>('POST', '/v1/allocations', { pipeline: 'w', strategy: 'learned-w', features: contextFeatures(x) });
      const out = simulateOutcome(world, 0, x, world.agents.map((ag) => a.budgets[ag.name]!.tokens), rng);
      await call('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: out.quality, usage: out.usage });
    }
    // The outcomes reach the training buffer through the outcome worker and the learner tick; then retrain.
    await eventually(async () => (await call<{ items: unknown[] }>('GET', '/v1/pipelines/w/logs?limit=100')).items.length >= 40, 120_000, 500);
    await call('POST', '/v1/models/w/train');
    // A failed retrain fails the test at once (it used to: "Unknown file extension .ts" in the trainer child).
    const model = await eventually(async () => {
      if (/apportion_learner_retrains_total\{result="failed"\} [1-9]/.test(await call<string>('GET', '/metrics'))) return -1;
      // A trained version is listed at once (it serves only after it clears the activation gate).
      return Math.max(0, ...(await call<{ versions: { version: number }[] }>('GET', '/v1/models/w')).versions.map((v) => v.version));
    }, 240_000, 500);
    assert.ok(Number(model) >= 1, 'the retrain failed: see apportion_learner_retrains_total{result="failed"} and the log above');
    const metrics = await call<string>('GET', '/metrics');
    assert.match(metrics, /apportion_learner_retrains_total\{result="trained"\} [1-9]/);
    assert.doesNotMatch(metrics, /apportion_learner_retrains_total\{result="failed"\}/);
    assert.doesNotMatch(logs, /Unknown file extension/);
    assert.match(errs, new RegExp(`apportion: running ${way.name.replace('/', '\\/')}`));
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    rmSync(models, { recursive: true, force: true });
    await dropPrefix(prefix);
  }
});

test('simulate through the bin is loud when no model was trained', async () => {
  // Ten outcomes: fewer than a retrain needs, so every retrain is skipped and the model stays v0. Its own temporary
  // directory (APPORTION_MODELS_DIR unset): --local's models directory must be gone afterwards (it was left behind by
  // every run), the chart stays.
  const tmp = mkdtempSync(path.join(tmpdir(), 'apportion-bin-sim-'));
  try {
    const res = await runBin(['simulate', 'support-basic', '--local', '--outcomes', '10', '--checkpoint', '10', '--quiet', '--no-lockstep'], { LOG_LEVEL: 'silent', TMPDIR: tmp, APPORTION_MODELS_DIR: undefined as unknown as string });
    assert.equal(res.code, 1, `${res.stdout}\n${res.stderr}`);
    assert.match(res.stdout, /model v0/);
    assert.match(res.stderr, /WARNING: no model was trained after 10 outcomes/);
    const left = readdirSync(tmp);
    assert.ok(left.includes('apportion-sim-support-basic.html'), left.join(', '));
    assert.deepEqual(left.filter((f) => f.startsWith('apportion-sim-models-')), [], 'no models directory left behind');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('the bin answers --help from dist/ and from src/', async () => {
  buildDist();
  const res = await runBin(['--help'], { APPORTION_DEBUG_BIN: '1' });
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /serve/);
  assert.match(res.stderr, /apportion: running dist\/ \(dist\/ is up to date\)/);
  const fromSource = await runBin(['--help'], { APPORTION_DEBUG_BIN: '1', APPORTION_FROM_SOURCE: '1' });
  assert.equal(fromSource.code, 0, fromSource.stderr);
  assert.equal(fromSource.stdout, res.stdout);
  assert.match(fromSource.stderr, /apportion: running src\/ through tsx/);
});

test('the bin runs dist/ only when it is built and not older than any file under src/', async () => {
  // A scratch tree with the real bin, whose dist/ and src/ entry points only say which one ran.
  const dir = mkdtempSync(path.join(tmpdir(), 'apportion-bin-pick-'));
  try {
    mkdirSync(path.join(dir, 'bin'));
    copyFileSync(path.join(ROOT, 'bin/apportion.mjs'), path.join(dir, 'bin/apportion.mjs'));
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
    mkdirSync(path.join(dir, 'src/cli'), { recursive: true });
    mkdirSync(path.join(dir, 'src/redis/lua'), { recursive: true });
    mkdirSync(path.join(dir, 'dist/cli'), { recursive: true });
    writeFileSync(path.join(dir, 'src/cli/main.ts'), "const ran: string = 'src';\nconsole.log(ran);\n");
    writeFileSync(path.join(dir, 'src/redis/lua/a.lua'), 'return 1\n');
    writeFileSync(path.join(dir, 'dist/cli/main.js'), "console.log('dist');\n");
    const at = (s: number) => new Date(Date.now() + s * 1000);
    for (const f of ['src/cli/main.ts', 'src/redis/lua/a.lua']) utimesSync(path.join(dir, f), at(-60), at(-60));
    const pick = async (env: Record<string, string> = {}) => {
      const r = await runBin([], { APPORTION_DEBUG_BIN: '1', ...env }, dir);
      assert.equal(r.code, 0, r.stderr);
      return { ran: r.stdout.trim(), why: r.stderr.trim() };
    };

    assert.deepEqual(await pick(), { ran: 'src', why: 'apportion: running src/ through tsx (dist/ is not built (npm install or node scripts/build-dist.mjs builds it))' });
    writeFileSync(path.join(dir, 'dist/.build-stamp'), '{}\n');
    utimesSync(path.join(dir, 'dist/.build-stamp'), at(-30), at(-30));
    assert.deepEqual(await pick(), { ran: 'dist', why: 'apportion: running dist/ (dist/ is up to date)' });
    assert.deepEqual(await pick({ APPORTION_FROM_SOURCE: '1' }), { ran: 'src', why: 'apportion: running src/ through tsx (APPORTION_FROM_SOURCE=1)' });
    // A Lua script edited after the build counts like a module.
    utimesSync(path.join(dir, 'src/redis/lua/a.lua'), at(-10), at(-10));
    assert.deepEqual(await pick(), { ran: 'src', why: 'apportion: running src/ through tsx (dist/ is older than src/redis/lua/a.lua)' });
    utimesSync(path.join(dir, 'dist/.build-stamp'), at(-5), at(-5));
    assert.equal((await pick()).ran, 'dist');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
