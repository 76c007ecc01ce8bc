#!/usr/bin/env node
/**
 * Builds a mirror of the repository in which every TypeScript file also exists compiled (x.ts beside
 * x.js, esbuild file by file: the transform tsx applies at run time, no type check), so the test runner can run a
 * test file with plain `node` instead of through tsx's loader (each of the suite's ~240 processes then skips the
 * loader thread and its per-import round trips: about 1.5 s of CPU per file on this machine; see test/run.ts).
 *
 * Layout: the mirror has the repository's layout, so every `new URL('…', import.meta.url)` resolves as it does in
 * the repository: tracked TypeScript files are copied and compiled; every other tracked file, and the untracked
 * outputs a test may read (dist/, node_modules, packages/<name>/dist, a nested node_modules), are symbolic links to the
 * repository's. Packages resolve through the repository's node_modules (the mirror sits inside the repository).
 * Each run of the suite builds its own mirror (test/run.ts: .test-build/run-<pid>, removed when it ends), so two
 * runs in one checkout never share one. Takes a few seconds.
 *   node scripts/build-tests.mjs <dir> [--quiet]     (dir: under the repository, so packages resolve)
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = process.argv.slice(2).find((a) => !a.startsWith('--'));
if (out === undefined) {
  process.stderr.write('usage: node scripts/build-tests.mjs <dir> [--quiet]\n');
  process.exit(2);
}
const mirror = resolve(out);
if (relative(root, mirror).startsWith('..') || mirror === root) {
  process.stderr.write(`build-tests: ${out} is not a directory under the repository\n`);
  process.exit(2);
}
const quiet = process.argv.includes('--quiet');
const say = (m) => quiet || process.stdout.write(`${m}\n`);

/** The repository's files: git's list when this is a checkout (with generated sources under packages/<name>/src), else a walk (without node_modules, dist, .git). */
function repoFiles() {
  try {
    const git = (...args) => execFileSync('git', ['ls-files', '-z', ...args], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\0');
    // Sources a package's build generates beside its own (ignored by git, e.g. the SDK's copies of learner files) too.
    const files = [...git('--cached', '--others', '--exclude-standard'), ...git('--others', '--ignored', '--exclude-standard', '--', ':(glob)packages/*/src/**')];
    return [...new Set(files)].filter((f) => f !== '' && existsSync(join(root, f)));
  } catch {
    const out = [];
    const walk = (dir) => {
      for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
        const p = dir === '' ? e.name : `${dir}/${e.name}`;
        if (e.isDirectory()) {
          if (!['node_modules', 'dist', '.git', '.test-build'].includes(e.name)) walk(p);
        } else out.push(p);
      }
    };
    walk('');
    return out;
  }
}

/** Untracked directories a test may read through the mirror: build outputs and nested installs. */
function untrackedDirs(files) {
  const dirs = new Set(['dist', 'node_modules']);
  for (const f of files) {
    const m = /^(packages\/[^/]+)\/package\.json$/.exec(f);
    if (m) dirs.add(`${m[1]}/dist`);
    const n = /^(.*)\/package\.json$/.exec(f);
    if (n && n[1].startsWith('test/')) dirs.add(`${n[1]}/node_modules`);
  }
  return [...dirs].filter((d) => existsSync(join(root, d)));
}

const started = Date.now();
const files = repoFiles().filter((f) => !f.startsWith('.test-build/') && !join(root, f).startsWith(`${mirror}/`));
const ts = files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
const compiled = new Set(ts);
const esbuild = await import('esbuild');
rmSync(mirror, { recursive: true, force: true });
const tmp = mirror;
try {
  const link = (rel) => {
    const to = join(tmp, rel);
    mkdirSync(dirname(to), { recursive: true });
    symlinkSync(relative(dirname(to), join(root, rel)), to);
  };
  for (const f of files) {
    if (compiled.has(f)) {
      const to = join(tmp, f);
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(join(root, f), to);
    } else link(f);
  }
  for (const d of untrackedDirs(files)) link(d);
  await esbuild.build({
    entryPoints: ts.map((f) => join(root, f)),
    outdir: tmp,
    outbase: root,
    bundle: false,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'warning',
  });
} catch (err) {
  rmSync(tmp, { recursive: true, force: true });
  throw err;
}
say(`build-tests: ${ts.length} modules compiled, ${files.length - ts.length} files linked → ${relative(root, mirror)}/ in ${Date.now() - started} ms`);
