import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * CPU seconds of this process's reaped children so far (Linux: cutime + cstime of /proc/self/stat), undefined
 * elsewhere. A child's own CPU and that of every process it waited for (a test file's servers, CLI runs, browsers)
 * are added when this process reaps it, so the increase across one child's run is that child's CPU.
 */
export function childrenCpuS(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // Fields after the command name (in parentheses, which may hold spaces): cutime and cstime are the 16th and 17th.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[13]) + Number(rest[14])) / clockTicks();
  } catch {
    return undefined;
  }
}

let ticks: number | undefined;
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/**
 * The suite's test files under `dir` (`test`, relative to the working directory): every *.test.ts except under
 * test/cluster/ (the cluster stage runs those, test/cluster/run.ts) and node_modules (a test workspace's own
 * packages, test/compat/otel3).
 */
export function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) {
      if (p !== path.join('test', 'cluster') && name !== 'node_modules') out.push(...findTests(p));
    } else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Builds this process's compiled mirror of the repository (scripts/build-tests.mjs: every TypeScript file compiled
 * beside itself, everything else linked) at .test-build/run-<pid>, removed when this process exits; mirrors left by
 * processes that are gone (killed runs) are removed first. Returns its directory.
 */
export function buildMirror(): string {
  const dir = path.join(REPO, '.test-build');
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    const pid = Number(/^run-(\d+)$/.exec(name)?.[1]);
    if (Number.isInteger(pid) && !pidAlive(pid)) rmSync(path.join(dir, name), { recursive: true, force: true });
  }
  const mirror = path.join(dir, `run-${process.pid}`);
  execFileSync(process.execPath, [path.join(REPO, 'scripts', 'build-tests.mjs'), mirror], { stdio: 'inherit' });
  process.on('exit', () => rmSync(mirror, { recursive: true, force: true }));
  return mirror;
}

/** The compiled form of TypeScript file `file` (a path from the working directory) in `mirror`; undefined outside the repository. */
export function mirrorPath(mirror: string, file: string): string | undefined {
  const rel = path.relative(REPO, path.resolve(file));
  if (rel.startsWith('..') || path.isAbsolute(rel) || !rel.endsWith('.ts')) return undefined;
  return path.join(mirror, rel.replace(/\.ts$/, '.js'));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The files that took 75 s or more in whole runs on a busy 2-CPU machine (load average 20 to 40: the figures are
 * long, their order is what counts), rounded to 5 s: the order files start in, longest first. A cluster file's entry
 * is `<file> [cluster]`. Unlisted files count as UNLISTED_S and, in a whole run, share a process with other short
 * files (test/run.ts, "Short files share a process").
 */
export const EXPECTED_S: Record<string, number> = {
  'test/integration/readme.test.ts': 640,
  'test/browser/console.test.ts': 385,
  'test/learner/guard-api.test.ts': 380,
  'test/learner/drift-api.test.ts': 365,
  'test/learner/unseen-http.test.ts': 350,
  'test/cli/cli.test.ts': 295,
  'test/tiers/learned.test.ts': 290,
  'test/learner/revert-recovery.test.ts': 280,
  'test/integration/bin.test.ts': 280,
  'test/learner/safe-start-cost.test.ts': 225,
  'test/learner/gate-backoff.test.ts': 220,
  'test/learner/control-share.test.ts': 195,
  'test/browser/failures.test.ts': 190,
  'test/integration/worker-crash.test.ts': 185,
  'test/learner/trainer-priority.test.ts': 180,
  'test/browser/signin.test.ts': 175,
  'test/integration/fault-schedule.test.ts': 170,
  'test/sdk/package.test.ts': 170,
  'test/rollout/cli.test.ts': 165,
  'test/localeval/vectors.test.ts': 165,
  'test/learner/propensity-api.test.ts': 165,
  'test/learner/loop-guard.test.ts': 165,
  'test/integration/api-fuzz.test.ts': 160,
  'test/learner/api.test.ts': 155,
  'test/tiers/localeval.test.ts': 150,
  'test/tiers/drift.test.ts': 150,
  'test/rollout/lifecycle.test.ts': 145,
  'test/learner/safe-start.test.ts': 140,
  'test/learner/guard.test.ts': 135,
  'test/learner/drift-forget.test.ts': 130,
  'test/learner/gate.test.ts': 130,
  'test/browser/tenant.test.ts': 130,
  'test/cli/cli-errors.test.ts': 125,
  'test/learner/train.test.ts': 115,
  'test/budgets/concurrency.test.ts': 115,
  'test/cli/cli-docs.test.ts': 115,
  'test/cli/budgets-cli.test.ts': 110,
  'test/browser/content.test.ts': 105,
  'test/localeval/local.test.ts': 100,
  'test/tiers/support-wait.test.ts': 100,
  'test/tiers/tier-loop-guard.test.ts': 100,
  'test/localeval/probe-shipping.test.ts': 95,
  'test/rollout/routing.test.ts': 95,
  'test/rollout/holdout.test.ts': 95,
  'test/strategies/tokenizer-lazy.test.ts': 95,
  'test/strategies/tokenizer-equal.test.ts': 90,
  'test/browser/learning-curve.test.ts': 85,
  'test/tiers/policy.test.ts': 80,
  'test/tenancy/hardening.test.ts': 80,
  'test/budgets/property.test.ts': 80,
  'test/tenancy/revocation.test.ts': 80,
  'test/tenancy/keys.test.ts': 80,
  'test/budgets/cli.test.ts': 75,
  'test/integration/api-fuzz.test.ts [cluster]': 385,
  'test/cluster/scale-out.test.ts [cluster]': 315,
  'test/integration/worker-crash.test.ts [cluster]': 150,
  'test/rollout/lifecycle.test.ts [cluster]': 110,
  'test/integration/outcome-receipts.test.ts [cluster]': 100,
  'test/learner/api.test.ts [cluster]': 100,
  'test/budgets/concurrency.test.ts [cluster]': 75,
};
export const UNLISTED_S = 10;

/** Files that keep a process of their own in a whole run: they add a process-wide listener (process.on) the next file of a group would inherit. */
export const ALONE: ReadonlySet<string> = new Set(['test/sdk/agents-hooks-listeners.test.ts']);

/**
 * Writes a group's module into the mirror (`<mirror>/.<name>.test.mjs`) and returns its path: it imports each of
 * `members` (test files, relative to the repository) compiled, inside a suite named after the file, one after another
 * (test/run.ts, "Short files share a process").
 */
export function writeGroup(mirror: string, name: string, members: readonly string[]): string {
  const entry = path.join(mirror, `.${name}.test.mjs`);
  const body = members.map((m) => {
    const js = mirrorPath(mirror, m);
    if (js === undefined) throw new Error(`${m} is not a TypeScript file of the repository`);
    return `describe(${JSON.stringify(m)}, async () => { await import(${JSON.stringify(pathToFileURL(js).href)}); });`;
  });
  writeFileSync(entry, `import { describe } from 'node:test';\n${body.join('\n')}\n`);
  return entry;
}

/** Runs `node <args>` (in `env`, default this process's) to its end (output ignored): its CPU seconds with every process it waited for, and whether it passed. */
export function cpuOfRun(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<{ cpu: number; ok: boolean }> {
  const before = childrenCpuS() ?? 0;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: 'ignore', env });
    child.on('exit', (code) => resolve({ cpu: (childrenCpuS() ?? 0) - before, ok: code === 0 }));
  });
}
