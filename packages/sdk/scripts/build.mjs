// `npm run build` (and `prepare`, so installing or packing builds it): dist/esm (ES modules) and dist/cjs
// (CommonJS, marked by its own package.json), each with declarations. Run through npm, which puts tsc on PATH.
// First copies the server's mirrored learner files (scripts/mirror.mjs). tsc compiles every module; then the
// engine (`@apportion/sdk/engine`, which local mode loads) is replaced by one esbuild bundle per format, with its
// two third-party pieces (murmurhash, and the typebox schema builder the mirrored feature declarations use)
// inlined, so the package keeps no runtime dependencies. The engine exports no class a caller checks with
// instanceof across entries, so a bundle of its own is safe.
// Builds into a fresh directory and swaps it in, so a process importing the package meanwhile never finds
// dist/ half-written or missing for more than a rename.
import { execFileSync } from 'node:child_process';
import { readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { mirror } from './mirror.mjs';

const here = fileURLToPath(new URL('..', import.meta.url));
const out = `dist.build-${process.pid}`;
const old = `dist.old-${process.pid}`;
mirror();
try {
  execFileSync('tsc', ['-p', 'tsconfig.json', '--outDir', `${out}/esm`], { cwd: here, stdio: 'inherit' });
  execFileSync('tsc', ['-p', 'tsconfig.cjs.json', '--outDir', `${out}/cjs`], { cwd: here, stdio: 'inherit' });
  writeFileSync(`${here}/${out}/cjs/package.json`, '{ "type": "commonjs" }\n');
  for (const format of ['esm', 'cjs']) {
    await build({
      entryPoints: [`${here}/src/engine/index.ts`],
      outfile: `${here}/${out}/${format}/engine/index.js`,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format,
      allowOverwrite: true,
      legalComments: 'none',
      logLevel: 'warning',
    });
    // The bundle replaces tsc's per-module engine output: keep only its declarations.
    const dir = `${here}/${out}/${format}/engine`;
    for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
      if (f.endsWith('.js') && f !== 'index.js') rmSync(`${dir}/${f}`);
    }
  }
  try {
    renameSync(`${here}/dist`, `${here}/${old}`);
  } catch {
    // first build: no dist yet
  }
  renameSync(`${here}/${out}`, `${here}/dist`);
} finally {
  rmSync(`${here}/${out}`, { recursive: true, force: true });
  rmSync(`${here}/${old}`, { recursive: true, force: true });
}
