// `npm run build` (and `prepare`, so installing or packing builds it): dist/esm (ES modules) and dist/cjs
// (CommonJS, marked by its own package.json), each with declarations. Run through npm, which puts tsc on PATH.
// Builds into a fresh directory and swaps it in, so a process importing the package meanwhile never finds
// dist/ half-written or missing for more than a rename.
import { execFileSync } from 'node:child_process';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
const out = `dist.build-${process.pid}`;
const old = `dist.old-${process.pid}`;
try {
  execFileSync('tsc', ['-p', 'tsconfig.json', '--outDir', `${out}/esm`], { cwd: here, stdio: 'inherit' });
  execFileSync('tsc', ['-p', 'tsconfig.cjs.json', '--outDir', `${out}/cjs`], { cwd: here, stdio: 'inherit' });
  writeFileSync(`${here}/${out}/cjs/package.json`, '{ "type": "commonjs" }\n');
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
