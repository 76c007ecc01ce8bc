/**
 * `npm test`: runs every test file in a child process of its own (`node --import tsx --test <file>`), a few at a
 * time, each under a time limit. A file that outlives its limit is killed with everything it started (its own
 * process group: servers, workers, redis-servers) and reported as TIMED OUT — the suite never hangs.
 *
 * Why not `node --test <all files>`: a file whose hooks or open handles never finish (a BullMQ worker left running
 * by a failed start, a connection nobody closes) kept the whole run waiting for half an hour on a busy machine.
 *
 * `--test-timeout` is not a per-test limit here: with `--test`, Node 20 applies it to each file's run as a whole
 * (measured: three 1.5 s tests under `--test-timeout=3000` fail at 3 s; without `--test` the flag is ignored). A
 * smaller default than the file's limit failed long files on a busy machine (the README walk-through, 40
 * commands, passed its first 18 and was cut at 300 s at load average 20). So it defaults to the file's limit less
 * 30 s: Node then names the test it cut, and the runner's kill at the file's limit stops what is left.
 *
 * Usage: node --import tsx test/run.ts [file …]      (default: every test/**\/*.test.ts, sorted, then the cluster
 *   stage: test/cluster/run.ts runs the suites that touch Redis again on a local 3-master Redis Cluster)
 *   APPORTION_TEST_CONCURRENCY   files at once (default: twice the CPUs, 2 to 8; most of a file's time is spent
 *                                waiting on its server, Redis and child processes: on 2 CPUs the whole suite took
 *                                9.9 min with 4 at once against about 15 min with 2, both passing)
 *   APPORTION_TEST_FILE_TIMEOUT_MS   limit per file (default 900000: 15 min)
 *   APPORTION_TEST_TIMEOUT_MS    passed as --test-timeout, which bounds the file's run as a whole (default: the
 *                                file's limit less 30 s)
 * Each file's output is printed whole when it ends; the exit status is 1 if any file failed or timed out.
 */
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';

const intEnv = (name: string, def: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
};

const concurrency = intEnv('APPORTION_TEST_CONCURRENCY', Math.min(8, Math.max(2, 2 * availableParallelism())));
const fileTimeoutMs = intEnv('APPORTION_TEST_FILE_TIMEOUT_MS', 900_000);
const testTimeoutMs = Math.min(intEnv('APPORTION_TEST_TIMEOUT_MS', Math.max(fileTimeoutMs - 30_000, 1)), fileTimeoutMs);
const KILL_GRACE_MS = 5000;

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    // test/cluster/ runs in the cluster stage (test/cluster/run.ts), against a cluster of its own.
    // node_modules: a test workspace's own packages (test/compat/otel3).
    if (statSync(p).isDirectory()) {
      if (p !== path.join('test', 'cluster') && name !== 'node_modules') out.push(...findTests(p));
    }
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

type Result = { file: string; status: 'passed' | 'failed' | 'timed out'; ms: number; tests: { pass: number; fail: number } };

/** Process groups of the files running now: interrupting the runner stops them (detached, they miss the terminal's ^C). */
const running = new Set<number>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    for (const pid of running) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    process.exit(130);
  });
}

function runFile(file: string): Promise<Result> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', `--test-timeout=${testTimeoutMs}`, '--test-reporter=spec', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so a timeout kills the file's children too.
      detached: true,
      env: process.env,
    });
    if (child.pid !== undefined) running.add(child.pid);
    const chunks: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => chunks.push(b));
    let timedOut = false;
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup('SIGTERM');
      setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS).unref();
    }, fileTimeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (child.pid !== undefined) running.delete(child.pid);
      // Whatever the file left behind (a server that ignored SIGTERM, a grandchild) goes with it.
      killGroup('SIGKILL');
      const ms = Date.now() - t0;
      const status = timedOut ? 'timed out' : code === 0 ? 'passed' : 'failed';
      process.stdout.write(`\n━━ ${file} (${(ms / 1000).toFixed(1)} s) ━━\n${Buffer.concat(chunks).toString('utf8')}`);
      if (timedOut) process.stdout.write(`✖ ${file}: TIMED OUT after ${fileTimeoutMs / 1000} s (APPORTION_TEST_FILE_TIMEOUT_MS); killed with its process group\n`);
      // The file's own summary lines (node's reporter ends with `ℹ pass N` and `ℹ fail N`; TAP with `# pass N`).
      const text = Buffer.concat(chunks).toString('utf8');
      const count = (label: string) => Number(new RegExp(`^(?:#|ℹ) ${label} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
      resolve({ file, status, ms, tests: { pass: count('pass'), fail: count('fail') } });
    });
  });
}

const files = process.argv.length > 2 ? process.argv.slice(2) : findTests('test').sort();
const results: Result[] = [];
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(concurrency, files.length) }, async () => {
    for (let i = next++; i < files.length; i = next++) results.push(await runFile(files[i]!));
  }),
);

const bad = results.filter((r) => r.status !== 'passed');
process.stdout.write(`\n━━ ${results.length} test files: ${results.length - bad.length} passed, ${bad.filter((r) => r.status === 'failed').length} failed, ${bad.filter((r) => r.status === 'timed out').length} timed out ━━\n`);
for (const r of bad) process.stdout.write(`  ${r.status.toUpperCase()}: ${r.file} (${(r.ms / 1000).toFixed(1)} s)\n`);
const passed = results.reduce((n, r) => n + r.tests.pass, 0);
// A file that failed or timed out without reporting a failing test still counts as one failure.
const failed = results.reduce((n, r) => n + (r.status === 'passed' ? r.tests.fail : Math.max(1, r.tests.fail)), 0);
process.stdout.write(`tests: ${passed} passed, ${failed} failed\n`);
const slowest = [...results].sort((a, b) => b.ms - a.ms).slice(0, 5);
process.stdout.write(`  slowest: ${slowest.map((r) => `${r.file} ${(r.ms / 1000).toFixed(0)} s`).join(', ')}\n`);
let clusterFailed = false;
if (process.argv.length <= 2) {
  // The whole suite: the cluster stage follows (it reports its own files and CROSSSLOT check).
  clusterFailed = await new Promise<boolean>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/cluster/run.ts'], { stdio: 'inherit', env: process.env });
    child.on('close', (code) => resolve(code !== 0));
  });
}
process.exitCode = bad.length > 0 || clusterFailed ? 1 : 0;
