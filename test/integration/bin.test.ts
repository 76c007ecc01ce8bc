/**
 * The documented ways to run Apportion, run for real: `bin/apportion.mjs` (what `npx apportion` and the package's
 * `bin` start) as a child process. The bin registers tsx in-process, so a child it forks does not inherit the
 * loader from the command line: the learner's trainer child must still start ("Unknown file extension .ts" made
 * every retrain fail there), and a retrain that never succeeds must be loud in `simulate`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from '../../src/learner/rng.js';
import { contextFeatures, loadWorld, sampleContext, simulateOutcome, worldFeatures, worldPipeline } from '../../src/learner/sim/world.js';
import { dropPrefix, eventually, REDIS_URL } from '../helpers/env.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function runBin(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/apportion.mjs', ...args], { cwd: ROOT, env: { ...process.env, REDIS_URL, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('apportion serve through the bin: a retrain runs in the trainer child and produces a model', async () => {
  const prefix = `t-bin-${randomBytes(4).toString('hex')}`;
  const models = mkdtempSync(path.join(tmpdir(), 'apportion-bin-models-'));
  const admin = `admin-${randomBytes(12).toString('hex')}`;
  const child = spawn(process.execPath, ['bin/apportion.mjs', 'serve'], {
    cwd: ROOT,
    env: { ...process.env, REDIS_URL, PORT: '0', APPORTION_KEY_PREFIX: prefix, APPORTION_ADMIN_KEY: admin, APPORTION_SEED_EXAMPLES: 'false', APPORTION_MODELS_DIR: models, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let logs = '';
  child.stdout.on('data', (b: Buffer) => (logs += b.toString()));
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
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
    rmSync(models, { recursive: true, force: true });
    await dropPrefix(prefix);
  }
});

test('simulate through the bin is loud when no model was trained', async () => {
  // Ten outcomes: fewer than a retrain needs, so every retrain is skipped and the model stays v0.
  const res = await runBin(['simulate', 'support-basic', '--local', '--outcomes', '10', '--checkpoint', '10', '--quiet', '--no-lockstep'], { LOG_LEVEL: 'silent' });
  assert.equal(res.code, 1, `${res.stdout}\n${res.stderr}`);
  assert.match(res.stdout, /model v0/);
  assert.match(res.stderr, /WARNING: no model was trained after 10 outcomes/);
});

test('the bin answers --help', async () => {
  const res = await runBin(['--help']);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /serve/);
});
