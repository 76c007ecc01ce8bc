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
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { mirror } from './mirror.mjs';

const here = fileURLToPath(new URL('..', import.meta.url));
/** Entry points (the `exports` map's, and local mode, loaded on first use). */
const ENTRIES = ['index', 'local', 'integrations/ai', 'integrations/openai-agents'];
/** The engine stays its own bundle: entries import it, never inline it. */
const engineExternal = {
  name: 'engine-external',
  setup(b) {
    b.onResolve({ filter: /engine\/index\.js$/ }, (a) => ({ path: a.path, external: true }));
  },
};
/** CJS main entry: local mode stays a separate file, loaded on first use. */
const localExternal = {
  name: 'local-external',
  setup(b) {
    b.onResolve({ filter: /^\.\/local\.js$/ }, (a) => ({ path: a.path, external: true }));
  },
};
/** CJS other entries: every module of the main entry is taken from the main bundle (one copy of each class). */
const fromIndex = (entry) => ({
  name: 'from-index',
  setup(b) {
    const index = entry.includes('/') ? '../index.js' : './index.js';
    b.onResolve({ filter: /^\.\.?\// }, (a) => {
      const target = join(dirname(a.importer), a.path).replace(/\.js$/, '');
      const rel = relative(join(here, 'src'), target);
      if (rel.startsWith('engine') || rel === 'local' || rel === 'local-types' || rel.startsWith('integrations/')) return undefined;
      return { path: index, external: true };
    });
  },
});
const out = `dist.build-${process.pid}`;
const old = `dist.old-${process.pid}`;
mirror();
try {
  execFileSync('tsc', ['-p', 'tsconfig.json', '--outDir', `${out}/esm`], { cwd: here, stdio: 'inherit' });
  execFileSync('tsc', ['-p', 'tsconfig.cjs.json', '--outDir', `${out}/cjs`], { cwd: here, stdio: 'inherit' });
  writeFileSync(`${here}/${out}/cjs/package.json`, '{ "type": "commonjs" }\n');
  // The engine: one self-contained bundle per format.
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
  }
  // The entries, bundled so a cold import reads a few files instead of one per module. ESM: code splitting, so
  // the classes the entries share (BudgetExceededError, the HTTP errors…) live in one chunk and `instanceof` holds
  // across `@apportion/sdk` and its subpaths. CJS (no splitting in esbuild): the main entry is one bundle, and
  // the other entries take every shared module from it (`require('./index.js')`), for the same reason.
  await build({
    entryPoints: ENTRIES.map((e) => `${here}/src/${e}.ts`),
    outdir: `${here}/${out}/esm`,
    outbase: `${here}/src`,
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    packages: 'external',
    platform: 'node',
    target: 'node20',
    format: 'esm',
    allowOverwrite: true,
    legalComments: 'none',
    logLevel: 'warning',
    plugins: [engineExternal],
  });
  for (const e of ENTRIES.filter((x) => x !== 'integrations/ai')) {
    await build({
      entryPoints: [`${here}/src/${e}.ts`],
      outfile: `${here}/${out}/cjs/${e}.js`,
      bundle: true,
      packages: 'external',
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      allowOverwrite: true,
      legalComments: 'none',
      logLevel: 'warning',
      plugins: [engineExternal, ...(e === 'index' ? [localExternal] : [fromIndex(e)])],
    });
  }
  // Keep the bundles and every declaration; drop tsc's per-module JavaScript they replace.
  for (const format of ['esm', 'cjs']) {
    const dir = `${here}/${out}/${format}`;
    for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
      if (!f.endsWith('.js')) continue;
      const keep = f === 'engine/index.js' || f.startsWith('chunks/') || ENTRIES.includes(f.slice(0, -3));
      if (!keep) rmSync(`${dir}/${f}`);
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
