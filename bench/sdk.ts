/**
 * @apportion/sdk as a user installs it: install size and cold import time.
 *
 *   node --import tsx bench/sdk.ts [--runs 15]
 *
 * Packs the workspace (`npm pack`, which builds it), installs the tarball into an empty project and measures
 * the bytes under its node_modules (target ≤ 5 MB). Then, in fresh `node` processes (no tsx), times
 * `import('@apportion/sdk')` and `require('@apportion/sdk')` against two baselines measured alternately in the
 * same run: importing `node:http` (a built-in, no file) and an empty module file of the same flavour (the
 * loader's fixed cost for a first file, which no package can avoid); prints medians, the SDK's time over the
 * empty-file baseline, and the machine's load average (target: cold import ≤ 100 ms).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { flag, median, ROOT } from './lib.js';
import { dirSize } from './sdk-size.js';

const run = promisify(execFile);
const runs = Number(flag('runs', '15'));


async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'apportion-sdk-bench-'));
  try {
    const packed = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: join(ROOT, 'packages/sdk'), maxBuffer: 16 << 20 });
    const info = (JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; size: number; unpackedSize: number; entryCount: number }[])[0]!;
    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, version: '1.0.0' }));
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(dir, info.filename)], { cwd: app });
    const installed = dirSize(join(app, 'node_modules'));
    console.log(`bench/sdk: tarball ${(info.size / 1024).toFixed(1)} kB (${info.entryCount} files, ${(info.unpackedSize / 1024).toFixed(1)} kB unpacked)`);
    console.log(`install size     ${(installed / 1024).toFixed(1)} kB in node_modules  (target ≤ 5 MB: ${installed <= 5 * 1024 * 1024 ? 'met' : 'NOT met'})`);

    // Each sample is a fresh process: the time from just before the import to just after it resolves.
    writeFileSync(join(app, 'time.mjs'), `const t = performance.now(); await import(process.argv[2]); console.log(performance.now() - t);\n`);
    writeFileSync(join(app, 'time.cjs'), `const t = performance.now(); require(process.argv[2]); console.log(performance.now() - t);\n`);
    writeFileSync(join(app, 'empty.mjs'), 'export {};\n');
    writeFileSync(join(app, 'empty.cjs'), 'module.exports = {};\n');
    const cases = [
      ['baseline import("node:http")', 'time.mjs', 'node:http'],
      ['baseline import("./empty.mjs")', 'time.mjs', './empty.mjs'],
      ['import("@apportion/sdk")', 'time.mjs', '@apportion/sdk'],
      ['baseline require("node:http")', 'time.cjs', 'node:http'],
      ['baseline require("./empty.cjs")', 'time.cjs', './empty.cjs'],
      ['require("@apportion/sdk")', 'time.cjs', '@apportion/sdk'],
    ] as const;
    const samples = new Map<string, number[]>(cases.map(([name]) => [name, []]));
    for (let i = 0; i < runs; i++) {
      for (const [name, script, spec] of cases) {
        const { stdout } = await run(process.execPath, [script, spec], { cwd: app });
        samples.get(name)!.push(Number(stdout.trim()));
      }
    }
    const med = (name: string) => median(samples.get(name)!);
    for (const [name] of cases) console.log(`${name.padEnd(30)} median ${med(name).toFixed(1)} ms over ${runs} fresh processes`);
    for (const [flavour, http, empty, sdk] of [['ESM', cases[0][0], cases[1][0], cases[2][0]], ['CJS', cases[3][0], cases[4][0], cases[5][0]]] as const) {
      const ms = med(sdk);
      console.log(
        `cold import ${flavour}: ${ms.toFixed(1)} ms; ratio to node:http ${(ms / med(http)).toFixed(2)}; ${(ms - med(empty)).toFixed(1)} ms over an empty ${flavour} file  (target ≤ 100 ms: ${ms <= 100 ? 'met' : 'NOT met'})`,
      );
    }
    console.log(`load average during the run: ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${availableParallelism()} cores`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
