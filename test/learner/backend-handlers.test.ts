import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

/**
 * Loading TensorFlow.js (src/learner/backend.ts, the wasm backend here) must leave the process's crash handling as it
 * was: the wasm backend's emscripten glue installs uncaughtException / unhandledRejection handlers that re-throw from
 * inside the handler, so a process that loaded it (the server's worker, for its start-up backend line and the
 * in-process training fallback) died of any unhandled rejection with exit code 7 and the glue's line on stderr
 * instead of the error's origin. Checked in a child process (a crash is what is tested): after loadTf, the
 * process has no crash handlers it did not have before, and an unhandled rejection ends it as Node ends it
 * (exit code 1, the error's own message and stack). Checked to fail: without restoreProcessHandlers in backend.ts
 * the child reports one added handler of each kind and exits with code 7.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const CHILD = `
const events = ['uncaughtException', 'unhandledRejection'];
const before = events.map((e) => process.listenerCount(e));
const { loadTf } = await import(${JSON.stringify(path.join(ROOT, 'src/learner/backend.ts'))});
const { backend } = await loadTf();
console.log(JSON.stringify({ backend, before, after: events.map((e) => process.listenerCount(e)) }));
setTimeout(() => void Promise.reject(new Error('the real error: marker-5b1f')), 10);
`;

describe('learner: loading TensorFlow.js keeps the process crash handlers', { timeout: 120_000 }, () => {
  it('adds no uncaughtException/unhandledRejection handler, and a crash reports its real error', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], { cwd: ROOT, encoding: 'utf8', timeout: 110_000 });
    const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
    assert.ok(line, `child printed no result; stderr: ${r.stderr.slice(0, 2000)}`);
    const got = JSON.parse(line) as { backend: string; before: number[]; after: number[] };
    assert.deepEqual(got.after, got.before, `handlers before ${got.before.join('/')}, after loading the ${got.backend} backend ${got.after.join('/')}`);
    assert.equal(r.status, 1, `exit code ${r.status} (7: a handler re-threw); stderr: ${r.stderr.slice(0, 500)}`);
    assert.match(r.stderr, /the real error: marker-5b1f/);
  });
});
