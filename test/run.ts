/**
 * `npm test`: runs the test files in child processes (`node --test <file>`; the short files eight to a process, see
 * "Short files share a process" below), a few at a time, each process under a time limit. A process that outlives its
 * limit is killed with everything it started (its own process group: servers, workers, redis-servers) and reported
 * as TIMED OUT — the suite never hangs.
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
 * Order: longest first. A file's expected time is its entry in EXPECTED_S below (seconds on 2 CPUs with the suite
 * around it; files not listed count as UNLISTED_S), and files start in that order, longest first, the cluster files
 * among them: run alphabetically, the longest files (the console's browser tests, the README walk-through) started
 * minutes in and the run ended with one of them alone on the machine. A checked-in list, not a timing cache: a CI
 * run is a fresh clone, and the order is the same on every machine. The summary names files that took over
 * LIST_HINT_S without a list entry, so the list can be kept up to date; its figures need only be roughly right.
 *
 * The cluster files (CLUSTER_SUITES of test/cluster/run.ts: the suites that touch Redis, again on a local 3-master
 * Redis Cluster, test/helpers/cluster.ts) run in the same pool as the rest, not after it: the cluster has loopback
 * ports of its own and every file its own key prefix, so they share nothing with the files on the local Redis. At
 * most two of them run at once (they share the one cluster); the cluster's CROSSSLOT and every-script checks
 * (checkCluster) run when all of them have finished.
 *
 * Usage: node --import tsx test/run.ts [file …]      (default: every test/**\/*.test.ts and the cluster files; with
 *   files named, just those, on the local Redis, and no cluster)
 *   APPORTION_TEST_CONCURRENCY   files at once, the cluster files included (default: twice the CPUs, 2 to 8; most of
 *                                a file's time is spent waiting on its server, Redis and child processes: on 2 CPUs
 *                                the whole suite took 9.9 min with 4 at once against about 15 min with 2, both
 *                                passing); when set, also the most cluster files at once (default 2)
 *   APPORTION_TEST_FILE_TIMEOUT_MS   limit per file (default 900000: 15 min)
 *   APPORTION_TEST_TIMEOUT_MS    passed as --test-timeout, which bounds the file's run as a whole (default: the
 *                                file's limit less 30 s)
 * Each file's output is printed whole when it ends, under a heading with its wall time and CPU time (with the
 * processes it waited for); the summary adds the files' CPU total and the heaviest files. The CPU total is the
 * suite's floor on a given machine: 1,650–1,890 s on 2 CPUs (2026-12-05, fresh clones on a quiet machine, each file
 * alone and through tsx) is 14–16 min however the files are scheduled. Four such runs, two at each: 3 files at once
 * 16 min 58 s and 19 min 15 s end to end, 4 at once 17 min 33 s and 18 min 52 s — no difference the machine's noise
 * does not cover. So a shorter suite needs cheaper files, not another order. The exit status is 1 if any file failed
 * or timed out.
 *
 * Cheaper files: each runs compiled (below: `compiled`, the mirror). `node --import tsx bench/test-runner-cpu.ts
 * --files 24 --seed 1` (2026-12-05, 23 files that passed both ways, each run both ways back to back, load average
 * 10–20): CPU compiled ÷ through tsx 0.835 (188.6 s against 225.9 s), median per file 0.72×, mean saving 1.62 s a file,
 * about 345 s of the suite's CPU (380 s with the cluster stage's reruns): a floor of about 12 min on 2 CPUs, not 15.
 * And the short files share processes, eight to one (below, "Short files share a process"): `node --import tsx
 * bench/test-groups.ts --groups 3 --size 8 --seed 1` (2026-12-05, beside a whole run of the suite): CPU grouped ÷
 * alone 0.540 (40.4 s against 74.8 s), 1.43 s a file, about 225 s over the 157 files grouped.
 *
 * Not adopted: a larger young generation for every Node process of the run (NODE_OPTIONS=--max-semi-space-size=64,
 * fewer scavenges). `node --import tsx bench/test-runner-cpu.ts --ways compiled,compiled+semi=64 --files 24 --seed 2`
 * (2026-12-05, load average 7, stopped after 10 files): dearer on 8 of 10 (1.06–1.25×; revert-recovery 0.98×,
 * control-share 1.17×). Also not adopted: dropping the async hook node:test installs in every test process (init and
 * destroy for every promise: 25× the CPU of a bare promise chain, and ~7 % of a learner file's CPU in a profile). Its
 * init maps each async resource to its test, and `it`/`before`/`after` find their suite through it (a file's
 * top-level `after` never ran without it); keeping init and dropping destroy did not measurably change a file's CPU.
 */
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { ALONE, buildMirror, childrenCpuS, EXPECTED_S, findTests, mirrorPath, UNLISTED_S, writeGroup } from './helpers/runner.js';
import { LocalCluster } from './helpers/cluster.js';
import { checkCluster, CLUSTER_CONCURRENCY, CLUSTER_SUITES, clusterEnv } from './cluster/run.js';

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

/** A file that took longer than this without an entry in EXPECTED_S is named in the summary. */
const LIST_HINT_S = 75;

/**
 * One file to run: on the local Redis, or (`env` set) on the cluster. `label` names it in the output. `members`: the
 * test files a group runs in its one process (`file` is then the generated module that imports them).
 */
type Job = { file: string; label: string; cluster: boolean; env: NodeJS.ProcessEnv; expectedS: number; members?: readonly string[] };
type Result = {
  label: string;
  cluster: boolean;
  listed: boolean;
  status: 'passed' | 'failed' | 'timed out';
  ms: number;
  cpuS: number | undefined;
  tests: { pass: number; fail: number };
  /** A group's files, each with its wall time and whether it passed, read from the reporter's line for it. */
  members?: { file: string; ms: number | undefined; passed: boolean | undefined }[];
};

// CPU of the files: the increase of childrenCpuS (test/helpers/runner.ts) seen in a file's exit handler. Two
// files that end in the same instant may be reaped together and one of them then carries both (the total stays right).
let cpuSeen = childrenCpuS();

/** Process groups of the files running now: interrupting the runner stops them (detached, they miss the terminal's ^C). */
const running = new Set<number>();
/** Stops the local Redis Cluster of the cluster files, once started (also on an interrupt). */
let stopCluster = (): void => undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    for (const pid of running) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    stopCluster();
    process.exit(130);
  });
}

function runFile(job: Job): Promise<Result> {
  const { label } = job;
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, runWith(job, ['--test', `--test-timeout=${testTimeoutMs}`, '--test-reporter=spec']), {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so a timeout kills the file's children too.
      detached: true,
      env: job.env,
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
    // 'exit' comes when the child is reaped (its CPU is in ours from then); 'close' may come later, once its pipes end.
    let cpuS: number | undefined;
    child.on('exit', () => {
      const now = childrenCpuS();
      if (now !== undefined && cpuSeen !== undefined) cpuS = now - cpuSeen;
      cpuSeen = now;
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (child.pid !== undefined) running.delete(child.pid);
      // Whatever the file left behind (a server that ignored SIGTERM, a grandchild) goes with it.
      killGroup('SIGKILL');
      const ms = Date.now() - t0;
      const status = timedOut ? 'timed out' : code === 0 ? 'passed' : 'failed';
      const cpu = cpuS === undefined ? '' : `, CPU ${cpuS.toFixed(1)} s`;
      process.stdout.write(`\n━━ ${label} (${(ms / 1000).toFixed(1)} s${cpu}) ━━\n${Buffer.concat(chunks).toString('utf8')}`);
      if (timedOut) process.stdout.write(`✖ ${label}: TIMED OUT after ${fileTimeoutMs / 1000} s (APPORTION_TEST_FILE_TIMEOUT_MS); killed with its process group\n`);
      // The file's own summary lines (node's reporter ends with `ℹ pass N` and `ℹ fail N`; TAP with `# pass N`).
      const text = Buffer.concat(chunks).toString('utf8');
      const count = (label: string) => Number(new RegExp(`^(?:#|ℹ) ${label} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
      // A group's files are its top-level suites: the spec reporter's `✔ <file> (<ms>ms)` or `✖ <file> (<ms>ms)` line.
      const members = job.members?.map((m) => {
        const line = new RegExp(`^([✔✖]) ${m.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(([\\d.]+)ms\\)$`, 'm').exec(text);
        return { file: m, ms: line ? Number(line[2]) : undefined, passed: line ? line[1] === '✔' : undefined };
      });
      resolve({ label, cluster: job.cluster, listed: job.members !== undefined || EXPECTED_S[label] !== undefined, status, ms, cpuS, tests: { pass: count('pass'), fail: count('fail') }, ...(members ? { members } : {}) });
    });
  });
}

/**
 * The files run compiled, from a mirror of the repository this run builds (scripts/build-tests.mjs: every TypeScript
 * file compiled beside itself, everything else linked; test/helpers/runner.ts), with plain `node`: through tsx's
 * loader each file's process paid about 1.6 s more CPU (the loader thread and its round trip per import; see the
 * header). A file's child processes of the repository's TypeScript entry points run compiled too (nodeEntry,
 * test/helpers/cli.ts). APPORTION_TEST_COMPILED=0 runs them through tsx instead. A file outside the repository
 * always runs through tsx.
 */
const compiled = process.env.APPORTION_TEST_COMPILED !== '0';
const mirror = compiled ? buildMirror() : undefined;
cpuSeen = childrenCpuS(); // the build's CPU is no file's
function runWith(job: Job, flags: string[]): string[] {
  if (job.members) return [...flags, job.file]; // a group's module, written into the mirror: already JavaScript
  const js = mirror === undefined ? undefined : mirrorPath(mirror, job.file);
  return js === undefined ? ['--import', 'tsx', ...flags, job.file] : [...flags, js];
}

const whole = process.argv.length <= 2;
const files = whole ? findTests('test').sort() : process.argv.slice(2);
const job = (file: string, env?: NodeJS.ProcessEnv): Job => {
  const label = env ? `${file} [cluster]` : file;
  return { file, label, cluster: env !== undefined, env: env ?? process.env, expectedS: EXPECTED_S[label] ?? UNLISTED_S };
};

/**
 * Short files share a process, `groupSize` at a time (APPORTION_TEST_GROUP, default 8; 1: every file alone). Most of
 * a short file's CPU was its start: Node, the test runner, and the modules of the server it builds (fastify, BullMQ,
 * ioredis, the product's own: about 1.2 s), paid again by each of some 170 files. In a group the modules load once:
 * `node --import tsx bench/test-groups.ts` measures the saving against the same files run alone, in the same run.
 * A group is a generated module in the mirror that imports each file inside a suite named after it
 * (`describe('<file>', async () => { await import(<file>) })`): the file's hooks and tests are that suite's, so a
 * file's `before`/`after`/`beforeEach` apply to its own tests only, and its tests run after the previous file's
 * `after` hooks. Its output carries a line per file (`✔ <file> (<ms>ms)`) read for the summary; a failing test is
 * named under its file. Grouped: the whole suite's files run compiled, not in EXPECTED_S (short) and not in ALONE; the
 * cluster stage's short files likewise, in groups of their own on the cluster.
 */
const groupSize = intEnv('APPORTION_TEST_GROUP', 8);
/** Takes the short files out of `list` (those on the local Redis, or the cluster's) and returns their groups. */
function groupShort(list: Job[], tag: string): Job[] {
  if (!whole || mirror === undefined || groupSize <= 1) return list;
  const short = list.filter((j) => EXPECTED_S[j.label] === undefined && !ALONE.has(j.file));
  const out = list.filter((j) => !short.includes(j));
  for (let i = 0; i < short.length; i += groupSize) {
    const members = short.slice(i, i + groupSize).map((j) => j.file);
    const k = i / groupSize + 1;
    const entry = writeGroup(mirror, `${tag.replace(/\W+/g, '-')}-${k}`, members);
    const { cluster, env } = short[i]!;
    out.push({ file: entry, label: `${tag} ${k} (${members.length} files: ${members.map((m) => m.replace(/^test\//, '')).join(', ')})`, cluster, env, expectedS: UNLISTED_S * members.length, members });
  }
  return out;
}
const jobs = groupShort(files.map((f) => job(f)), 'group');

// The whole suite: the cluster files too, on a cluster started now (a cluster that does not start fails the run, the
// other files still run).
let cluster: LocalCluster | undefined;
let clusterError: string | undefined;
if (whole) {
  try {
    cluster = await LocalCluster.start(3);
    const env = { ...process.env, ...clusterEnv(cluster.nodes) };
    jobs.push(...groupShort(CLUSTER_SUITES.map((f) => job(f, env)), 'cluster group'));
    process.stdout.write(`━━ Redis Cluster of 3 masters on ${cluster.nodes}: ${CLUSTER_SUITES.length} test files run on it ([cluster]) ━━\n`);
  } catch (e) {
    clusterError = `the local Redis Cluster did not start: ${String(e)}`;
    process.stdout.write(`✖ ${clusterError}\n`);
  }
}
stopCluster = () => cluster?.stop();

// Longest first (stable: alphabetical among equals). The cluster files have a lane of their own, `clusterConcurrency`
// wide: it is kept full while any are left (a cluster file goes before the other files whenever the lane has room), so
// the narrow lane is not what the run waits for at the end.
jobs.sort((a, b) => b.expectedS - a.expectedS);
const clusterConcurrency = Math.min(concurrency, process.env.APPORTION_TEST_CONCURRENCY ? concurrency : CLUSTER_CONCURRENCY);
const results: Result[] = [];
await new Promise<void>((done) => {
  let active = 0;
  let clusterActive = 0;
  const pump = () => {
    while (active < concurrency) {
      const c = clusterActive < clusterConcurrency ? jobs.findIndex((j) => j.cluster) : -1;
      const i = c >= 0 ? c : jobs.findIndex((j) => !j.cluster);
      if (i < 0) break;
      const [j] = jobs.splice(i, 1) as [Job];
      active++;
      if (j.cluster) clusterActive++;
      void runFile(j).then((r) => {
        results.push(r);
        active--;
        if (j.cluster) clusterActive--;
        pump();
      });
    }
    if (active === 0 && jobs.length === 0) done();
  };
  pump();
});

const bad = results.filter((r) => r.status !== 'passed');
// A group counts as its files, each by its own line (a file without one counts as the group: cut by its time limit, or
// its process died first). A group that failed with every file passed (an error outside the files' suites) is a failure.
const statuses = results.flatMap((r): Result['status'][] => {
  if (!r.members) return [r.status];
  const own = r.members.map((m): Result['status'] => (m.passed === true ? 'passed' : m.passed === false ? 'failed' : r.status));
  return r.status !== 'passed' && own.every((x) => x === 'passed') ? [...own.slice(1), 'failed'] : own;
});
const groups = results.filter((r) => r.members);
const grouped = groups.length ? ` (${groups.reduce((n, r) => n + r.members!.length, 0)} of them ${groupSize} to a process, in ${groups.length})` : '';
const tally = (s: Result['status']) => statuses.filter((x) => x === s).length;
process.stdout.write(`\n━━ ${statuses.length} test files${grouped}: ${tally('passed')} passed, ${tally('failed')} failed, ${tally('timed out')} timed out ━━\n`);
for (const r of bad) {
  process.stdout.write(`  ${r.status.toUpperCase()}: ${r.label} (${(r.ms / 1000).toFixed(1)} s)\n`);
  // In a group, the files that failed (or never reported: cut by the time limit, or a crash of the process).
  for (const m of r.members?.filter((m) => m.passed !== true) ?? []) process.stdout.write(`    ${m.passed === false ? 'FAILED' : 'NO RESULT'}: ${m.file}\n`);
}
const passed = results.reduce((n, r) => n + r.tests.pass, 0);
// A file that failed or timed out without reporting a failing test still counts as one failure.
const failed = results.reduce((n, r) => n + (r.status === 'passed' ? r.tests.fail : Math.max(1, r.tests.fail)), 0);
process.stdout.write(`tests: ${passed} passed, ${failed} failed\n`);
const slowest = [...results].sort((a, b) => b.ms - a.ms).slice(0, 5);
process.stdout.write(`  slowest: ${slowest.map((r) => `${r.members ? `group of ${r.members.length}` : r.label} ${(r.ms / 1000).toFixed(0)} s`).join(', ')}\n`);
const cpuResults = results.filter((r) => r.cpuS !== undefined);
if (cpuResults.length > 0) {
  const total = cpuResults.reduce((n, r) => n + r.cpuS!, 0);
  const heaviest = [...cpuResults].filter((r) => !r.members).sort((a, b) => b.cpuS! - a.cpuS!).slice(0, 8);
  process.stdout.write(`  CPU of the files (with the processes they waited for): ${total.toFixed(0)} s; most (of the files with a process of their own): ${heaviest.map((r) => `${r.label} ${r.cpuS!.toFixed(0)} s`).join(', ')}\n`);
}
// A grouped file's own time is its suite's (its share of the group's process).
const unlisted = [
  ...results.filter((r) => !r.listed && r.ms > LIST_HINT_S * 1000).map((r) => ({ label: r.label, ms: r.ms })),
  ...results.flatMap((r) => r.members ?? []).filter((m) => m.ms !== undefined && m.ms > LIST_HINT_S * 1000).map((m) => ({ label: m.file, ms: m.ms! })),
];
if (whole && unlisted.length) process.stdout.write(`  over ${LIST_HINT_S} s with no entry in test/run.ts's EXPECTED_S (they start late, or share a process): ${unlisted.map((r) => `${r.label} ${(r.ms / 1000).toFixed(0)} s`).join(', ')}\n`);

let clusterFailed = clusterError !== undefined;
if (cluster) {
  try {
    const checks = await checkCluster(cluster, true);
    process.stdout.write(`${checks.lines.join('\n')}\n`);
    if (!checks.ok) clusterFailed = true;
  } catch (e) {
    process.stdout.write(`✖ the cluster's checks could not run: ${String(e)}\n`);
    clusterFailed = true;
  } finally {
    stopCluster();
  }
}
process.exitCode = bad.length > 0 || clusterFailed ? 1 : 0;
