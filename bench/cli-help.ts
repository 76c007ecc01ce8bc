/**
 * How long `apportion --help` takes, against bare Node start-up (`node -e 0`) measured in the same run, runs
 * interleaved so machine load hits both alike. The bin runs the compiled dist/ (built first if src/ changed since
 * the last build, as `npm start` does); the same command run from source through tsx (APPORTION_FROM_SOURCE=1) is
 * shown for reference. Target: under 1 s.
 *   node --import tsx bench/cli-help.ts [runs=9]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const runs = Number(process.argv[2] ?? 9);

function time(args: string[], env: Record<string, string> = {}): { ms: number; stderr: string } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms, stderr: r.stderr.toString() };
}

execFileSync(process.execPath, ['scripts/build-dist.mjs', '--if-stale'], { cwd: root, stdio: 'inherit' });
// Warm-up (disk cache, tsx's transform cache), and a check that the bin really runs dist/.
const which = time(['bin/apportion.mjs', '--help'], { APPORTION_DEBUG_BIN: '1' }).stderr.trim();
if (!which.includes('running dist/')) throw new Error(`the bin did not run dist/: ${which}`);
time(['bin/apportion.mjs', '--help'], { APPORTION_FROM_SOURCE: '1' });

const load0 = loadavg()[0]!;
const base: number[] = [];
const help: number[] = [];
const source: number[] = [];
for (let i = 0; i < runs; i++) {
  base.push(time(['-e', '0']).ms);
  help.push(time(['bin/apportion.mjs', '--help']).ms);
  // From source is slow: every third round is enough for a reference.
  if (i % 3 === 0) source.push(time(['bin/apportion.mjs', '--help'], { APPORTION_FROM_SOURCE: '1' }).ms);
}
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: number[]) => sorted(xs)[Math.floor(xs.length / 2)]!;
const range = (xs: number[]) => `${sorted(xs)[0]!.toFixed(0)}–${sorted(xs).at(-1)!.toFixed(0)}`;
const b = median(base);
const h = median(help);
const s = median(source);
console.log(`node -e 0                          median ${b.toFixed(0)} ms  (range ${range(base)}, ${base.length} runs)`);
console.log(`apportion --help (dist/)           median ${h.toFixed(0)} ms  (range ${range(help)}, ${help.length} runs)  = ${(h / b).toFixed(2)} × node -e 0, +${(h - b).toFixed(0)} ms`);
console.log(`apportion --help (src/ via tsx)    median ${s.toFixed(0)} ms  (range ${range(source)}, ${source.length} runs)  = ${(s / b).toFixed(2)} × node -e 0`);
console.log(`target < 1000 ms: ${h < 1000 ? 'met' : 'NOT met'} (load average ${load0.toFixed(1)} → ${loadavg()[0]!.toFixed(1)})`);
