/**
 * The CPU a test file costs run compiled (from the runner's mirror, plain node) against the same file run through
 * tsx's loader (the runner before the mirror), on a seeded random sample of the suite's files, each file run both
 * ways back to back (which way first alternates), in the same window: the ratio of the two CPU totals, the median
 * per-file ratio and difference, and the suite-wide difference the mean implies.
 *
 *   node --import tsx bench/test-runner-cpu.ts [--files 24] [--seed 1] [--list a.test.ts,b.test.ts]
 *
 * CPU is a file's process and every process it waited for (its servers, CLI runs), as test/run.ts counts it. Both ways
 * run `node --test --test-reporter=spec <file>`; a file that fails either way is reported and left out of the totals.
 */
import { mulberry32 } from '../src/learner/rng.js';
import { buildMirror, cpuOfRun, findTests, mirrorPath } from '../test/helpers/runner.js';
import { flag } from './lib.js';

const all = findTests('test').sort();
const seed = Number(flag('seed', '1'));
const listed = flag('list', '');
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
const rows: { file: string; tsx: number; compiled: number }[] = [];
console.log(`bench/test-runner-cpu: ${files.length} of the suite's ${all.length} files (seed ${seed}), each run through tsx and compiled, back to back`);
for (const [i, file] of files.entries()) {
  const ways = [
    ['tsx', ['--import', 'tsx', ...flags, file]],
    ['compiled', [...flags, mirrorPath(mirror, file)!]],
  ] as const;
  const order = i % 2 === 0 ? ways : [ways[1], ways[0]];
  const got: Record<string, { cpu: number; ok: boolean }> = {};
  for (const [way, args] of order) got[way] = await cpuOfRun(args);
  const t = got.tsx!;
  const c = got.compiled!;
  if (!t.ok || !c.ok) {
    console.log(`  ${file}: failed ${!t.ok ? 'through tsx' : ''}${!t.ok && !c.ok ? ' and ' : ''}${!c.ok ? 'compiled' : ''}; left out`);
    continue;
  }
  rows.push({ file, tsx: t.cpu, compiled: c.cpu });
  console.log(`  ${file}: tsx ${t.cpu.toFixed(2)} s, compiled ${c.cpu.toFixed(2)} s (${(c.cpu / t.cpu).toFixed(2)}×)`);
}

const sum = (f: (r: (typeof rows)[number]) => number) => rows.reduce((n, r) => n + f(r), 0);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const tsx = sum((r) => r.tsx);
const compiled = sum((r) => r.compiled);
const meanSaved = (tsx - compiled) / rows.length;
console.log(`files measured: ${rows.length}`);
console.log(`CPU, compiled ÷ tsx: ${(compiled / tsx).toFixed(3)} (${compiled.toFixed(1)} s against ${tsx.toFixed(1)} s)`);
console.log(`per file: median ratio ${median(rows.map((r) => r.compiled / r.tsx)).toFixed(3)}, median saving ${median(rows.map((r) => r.tsx - r.compiled)).toFixed(2)} s, mean saving ${meanSaved.toFixed(2)} s`);
console.log(`the suite's ${all.length} files (the cluster stage's reruns not counted) at the mean saving: ${(meanSaved * all.length).toFixed(0)} s of CPU less`);
