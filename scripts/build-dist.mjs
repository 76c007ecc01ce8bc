#!/usr/bin/env node
/**
 * Compiles src/ into dist/ with esbuild, file by file (the same transform tsx applies at run time; no type check,
 * `npm run lint` does that), and copies the Lua scripts beside their modules, so dist/ has src/'s layout and every
 * `new URL('…', import.meta.url)` resolves the same. Takes seconds. Writes dist/.build-stamp last: bin/apportion.mjs
 * runs dist/ only when the stamp is newer than every file under src/, and tsx otherwise.
 *   node scripts/build-dist.mjs             build
 *   node scripts/build-dist.mjs --if-stale  build only when src/ changed since the last build
 * Without esbuild (a production install) or without src/ it says so and exits 0: the bin then runs src/ through tsx.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, copyFileSync, statSync, writeFileSync, mkdtempSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const src = join(root, 'src');
const dist = join(root, 'dist');
export const STAMP = join(dist, '.build-stamp');
// The browser console has its own build (npm run build:console → dist/web).
const SKIP = [join(src, 'console', 'web')];

/** Every file under src/ that the server runs (TypeScript and its assets). */
function sources(dir = src, out = []) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (!SKIP.includes(p)) sources(p, out);
    } else out.push(p);
  }
  return out;
}

const quiet = process.argv.includes('--quiet');
const say = (m) => quiet || process.stdout.write(`${m}\n`);

if (!existsSync(src)) {
  say('build-dist: no src/ here; nothing to build');
  process.exit(0);
}
const files = sources();
if (process.argv.includes('--if-stale') && existsSync(STAMP)) {
  const built = statSync(STAMP).mtimeMs;
  if (files.every((f) => statSync(f).mtimeMs <= built)) {
    say('build-dist: dist/ is up to date');
    process.exit(0);
  }
}
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  say('build-dist: esbuild is not installed (a production install?); bin/apportion.mjs will run src/ through tsx');
  process.exit(0);
}

const started = Date.now();
const ts = files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
const assets = files.filter((f) => !f.endsWith('.ts'));
mkdirSync(dist, { recursive: true });
// Built beside dist/ and moved in file by file (rename is atomic), so a process running dist/ meanwhile never
// reads a half-written module.
const tmp = mkdtempSync(join(dist, '.next-'));
try {
  await esbuild.build({
    entryPoints: ts,
    outdir: tmp,
    outbase: src,
    bundle: false,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked',
    sourcesContent: false,
    logLevel: 'warning',
  });
  for (const a of assets) {
    const to = join(tmp, relative(src, a));
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(a, to);
  }
  const move = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      const to = join(dist, relative(tmp, p));
      if (e.isDirectory()) {
        mkdirSync(to, { recursive: true });
        move(p);
      } else renameSync(p, to);
    }
  };
  move(tmp);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
// The stamp carries the time the build started: a source saved during the build counts as newer.
writeFileSync(STAMP, `${JSON.stringify({ builtAt: new Date(started).toISOString(), modules: ts.length, assets: assets.length })}\n`);
const { utimesSync } = await import('node:fs');
utimesSync(STAMP, started / 1000, started / 1000);
say(`build-dist: ${ts.length} modules and ${assets.length} assets → dist/ in ${Date.now() - started} ms`);
