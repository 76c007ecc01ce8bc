/**
 * The CPU a test file costs run one way against another, on a seeded random sample of the suite's files, each file
 * run both ways back to back (which way first alternates), in the same window: the ratio of the two CPU totals, the
 * median per-file ratio and difference, and the suite-wide difference the mean implies.
 *
 *   node --import tsx bench/test-runner-cpu.ts [--ways tsx,compiled] [--files 24] [--seed 1] [--list a.test.ts,b.test.ts]
 *
 * A way: `tsx` (through tsx's loader, the runner before its mirror), `compiled` (from the runner's mirror with plain
 * node, test/run.ts), or `compiled+semi=<MB>` (compiled, with NODE_OPTIONS=--max-semi-space-size=<MB> for the file and
 * every Node process it starts: V8's young generation). The second way is reported against the first.
 *
 * CPU is a file's process and every process it waited for (its servers, CLI runs), as test/run.ts counts it. Every
 * way runs `node --test --test-reporter=spec <file>`; a file that fails either way is reported and left out of the
 * totals.
 */
import { mulberry32 } from '../src/learner/rng.js';
import { buildMirror, cpuOfRun, findTests, mirrorPath } from '../test/helpers/runner.js';
import { flag } from './lib.js';

const all = findTests('test').sort();
const seed = Number(flag('seed', '1'));
const listed = flag('list', '');
const wayNames = flag('ways', 'tsx,compiled').split(',');
if (wayNames.length !== 2) throw new Error(`--ways: two ways, comma-separated (e.g. tsx,compiled), got "${wayNames.join(',')}"`);
/** A way by its name: through tsx, or compiled with a young generation of `semiMb` (undefined: node's default). */
function parseWay(name: string): { tsx: boolean; semiMb?: string } {
  const m = /^(tsx|compiled)(?:\+semi=(\d+))?$/.exec(name);
  if (!m || (m[1] === 'tsx' && m[2] !== undefined)) throw new Error(`--ways: "${name}" is not tsx, compiled or compiled+semi=<MB>`);
  return { tsx: m[1] === 'tsx', ...(m[2] !== undefined ? { semiMb: m[2] } : {}) };
}
const parsed = new Map(wayNames.map((n) => [n, parseWay(n)]));
let files: string[];
if (listed !== '') files = listed.split(',');
else {
  const rng = mulberry32(seed);
  const pool = [...all];
  files = [];
  const n = Math.min(Number(flag('files', '24')), pool.length);
  while (files.length < n) files.push(pool.splice(Math.floor(rng() * pool.length), 1)[0]!);
}

const mirror = buildMirror();

const flags = ['--test', '--test-reporter=spec'];
/** How one way runs `file`: node's arguments and its environment. */
function way(name: string, file: string): { args: string[]; env: NodeJS.ProcessEnv } {
  const w = parsed.get(name)!;
  if (w.tsx) return { args: ['--import', 'tsx', ...flags, file], env: process.env };
  const env = w.semiMb !== undefined ? { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-semi-space-size=${w.semiMb}`.trim() } : process.env;
  return { args: [...flags, mirrorPath(mirror, file)!], env };
}
const [first, second] = wayNames as [string, string];
const rows: { file: string; a: number; b: number }[] = [];
console.log(`bench/test-runner-cpu: ${files.length} of the suite's ${all.length} files (seed ${seed}), each run ${first} and ${second}, back to back`);
for (const [i, file] of files.entries()) {
  const order = i % 2 === 0 ? [first, second] : [second, first];
  const got: Record<string, { cpu: number; ok: boolean }> = {};
  for (const name of order) {
    const w = way(name, file);
    got[name] = await cpuOfRun(w.args, w.env);
  }
  const a = got[first]!;
  const b = got[second]!;
  if (!a.ok || !b.ok) {
    console.log(`  ${file}: failed ${[!a.ok ? first : '', !b.ok ? second : ''].filter(Boolean).join(' and ')}; left out`);
    continue;
  }
  rows.push({ file, a: a.cpu, b: b.cpu });
  console.log(`  ${file}: ${first} ${a.cpu.toFixed(2)} s, ${second} ${b.cpu.toFixed(2)} s (${(b.cpu / a.cpu).toFixed(2)}×)`);
}

const sum = (f: (r: (typeof rows)[number]) => number) => rows.reduce((n, r) => n + f(r), 0);
const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const totalA = sum((r) => r.a);
const totalB = sum((r) => r.b);
const meanSaved = (totalA - totalB) / rows.length;
console.log(`files measured: ${rows.length}`);
console.log(`CPU, ${second} ÷ ${first}: ${(totalB / totalA).toFixed(3)} (${totalB.toFixed(1)} s against ${totalA.toFixed(1)} s)`);
console.log(`per file: median ratio ${median(rows.map((r) => r.b / r.a)).toFixed(3)}, median saving ${median(rows.map((r) => r.a - r.b)).toFixed(2)} s, mean saving ${meanSaved.toFixed(2)} s`);
console.log(`the suite's ${all.length} files (the cluster stage's reruns not counted) at the mean saving: ${(meanSaved * all.length).toFixed(0)} s of CPU less`);
