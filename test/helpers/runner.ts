import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
