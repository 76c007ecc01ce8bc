import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** Console JS budget (gzipped), checked on every build. */
export const MAX_GZIP_BYTES = 300 * 1024;

/**
 * Bundles the console (src/console/web) into dist/web: app.js (minified ES module), app.css, index.html.
 * Prints the gzipped size of the JS and fails when it is over the budget.
 */
export async function buildConsole(outDir = fileURLToPath(new URL('../../dist/web/', import.meta.url))): Promise<{ bytes: number; gzipBytes: number }> {
  const web = fileURLToPath(new URL('./web/', import.meta.url));
  mkdirSync(outDir, { recursive: true });
  const result = await build({
    entryPoints: [`${web}main.ts`],
    outfile: `${outDir}app.js`,
    bundle: true,
    format: 'esm',
    minify: true,
    sourcemap: false,
    target: ['es2022'],
    legalComments: 'none',
    logLevel: 'warning',
    write: false,
  });
  // Each file is written beside its target and renamed over it, so a server starting meanwhile (or another
  // build running at the same time) never reads half a file.
  const put = (name: string, data: string | Uint8Array) => {
    const tmp = `${outDir}.${name}.${process.pid}.tmp`;
    writeFileSync(tmp, data);
    renameSync(tmp, `${outDir}${name}`);
  };
  put('app.js', result.outputFiles[0]!.contents);
  put('app.css', readFileSync(`${web}app.css`));
  put('index.html', readFileSync(`${web}index.html`));
  const js = readFileSync(`${outDir}app.js`);
  return { bytes: js.length, gzipBytes: gzipSync(js, { level: 9 }).length };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { bytes, gzipBytes } = await buildConsole();
  const kb = (n: number) => `${(n / 1024).toFixed(1)} kB`;
  process.stdout.write(`console JS: ${kb(bytes)} minified, ${kb(gzipBytes)} gzipped (budget ${kb(MAX_GZIP_BYTES)})\n`);
  if (gzipBytes > MAX_GZIP_BYTES) {
    process.stderr.write('console JS is over its gzipped budget\n');
    process.exit(1);
  }
}
