// `npm run build` (and `prepare`, so installing or packing builds it): dist/esm (ES modules) and dist/cjs
// (CommonJS, marked by its own package.json), each with declarations. Run through npm, which puts tsc on PATH.
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('..', import.meta.url));
rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
for (const project of ['tsconfig.json', 'tsconfig.cjs.json']) execFileSync('tsc', ['-p', project], { cwd: here, stdio: 'inherit' });
writeFileSync(new URL('../dist/cjs/package.json', import.meta.url), '{ "type": "commonjs" }\n');
