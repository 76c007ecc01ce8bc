/**
 * How long `apportion --help` takes, against bare Node start-up (`node -e 0`) measured in the same run, runs
 * interleaved so machine load hits both alike. Target: under 1 s.
 *   node --import tsx bench/cli-help.ts [runs=7]
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const runs = Number(process.argv[2] ?? 7);

function time(args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
// Warm-up: the first run fills tsx's transform cache.
time(['bin/apportion.mjs', '--help']);
const base: number[] = [];
const tsxBase: number[] = [];
const help: number[] = [];
for (let i = 0; i < runs; i++) {
  base.push(time(['-e', '0']));
  tsxBase.push(time(['--import', 'tsx', '-e', '0']));
  help.push(time(['bin/apportion.mjs', '--help']));
}
const b = median(base);
const t = median(tsxBase);
const h = median(help);
console.log(`node -e 0                   median ${b.toFixed(0)} ms  (${runs} runs)`);
console.log(`node --import tsx -e 0      median ${t.toFixed(0)} ms`);
console.log(`apportion --help            median ${h.toFixed(0)} ms  = ${(h / b).toFixed(2)} × node -e 0, ${(h - t).toFixed(0)} ms above tsx start-up`);
console.log(`target < 1000 ms: ${h < 1000 ? 'met' : 'NOT met'} on this machine (load average ${(await import('node:os')).loadavg()[0]!.toFixed(1)})`);
