/**
 * The CPU short test files cost sharing one process (a group, as test/run.ts runs them) against the same files each in
 * a process of its own (as the runner ran them before), on seeded random groups of the files the runner groups (not in
 * EXPECTED_S, not in ALONE, not in test/cluster/), each group run both ways back to back (which way first alternates),
 * in the same window: the ratio of the CPU totals, the saving per file, and the suite-wide saving it implies.
 *
 *   node --import tsx bench/test-groups.ts [--groups 3] [--size 8] [--seed 1]
 *
 * CPU is the processes' own and every process they waited for (servers, CLI runs), as test/run.ts counts it. Both
 * ways run `node --test --test-reporter=spec`; a group that fails either way is reported and left out of the totals.
 */
import { mulberry32 } from '../src/learner/rng.js';
import { ALONE, buildMirror, cpuOfRun, EXPECTED_S, findTests, mirrorPath, writeGroup } from '../test/helpers/runner.js';
import { flag } from './lib.js';

const all = findTests('test').sort();
const short = all.filter((f) => EXPECTED_S[f] === undefined && !ALONE.has(f));
const seed = Number(flag('seed', '1'));
const size = Number(flag('size', '8'));
const groups = Number(flag('groups', '3'));
const rng = mulberry32(seed);
const pool = [...short];
const picked: string[][] = [];
for (let g = 0; g < groups && pool.length >= size; g++) picked.push(Array.from({ length: size }, () => pool.splice(Math.floor(rng() * pool.length), 1)[0]!));

const mirror = buildMirror();
/** One `node --test` process to its end; its CPU seconds (with what it waited for) and whether it passed. */
const run = (args: string[]) => cpuOfRun(['--test', '--test-reporter=spec', ...args]);
async function alone(files: string[]): Promise<{ cpu: number; ok: boolean }> {
  let cpu = 0;
  let ok = true;
  for (const f of files) {
    const r = await run([mirrorPath(mirror, f)!]);
    cpu += r.cpu;
    ok &&= r.ok;
  }
  return { cpu, ok };
}

console.log(`bench/test-groups: ${picked.length} groups of ${size} of the ${short.length} files test/run.ts groups (seed ${seed}), each run alone and as one group, back to back`);
const rows: { alone: number; grouped: number }[] = [];
for (const [i, files] of picked.entries()) {
  const entry = writeGroup(mirror, `bench-group-${i + 1}`, files);
  let a: { cpu: number; ok: boolean };
  let g: { cpu: number; ok: boolean };
  if (i % 2 === 0) {
    a = await alone(files);
    g = await run([entry]);
  } else {
    g = await run([entry]);
    a = await alone(files);
  }
  const what = files.map((f) => f.replace(/^test\//, '')).join(', ');
  if (!a.ok || !g.ok) {
    console.log(`  group ${i + 1} (${what}): failed ${!a.ok ? 'alone' : ''}${!a.ok && !g.ok ? ' and ' : ''}${!g.ok ? 'grouped' : ''}; left out`);
    continue;
  }
  rows.push({ alone: a.cpu, grouped: g.cpu });
  console.log(`  group ${i + 1} (${what}): alone ${a.cpu.toFixed(1)} s, grouped ${g.cpu.toFixed(1)} s (${(g.cpu / a.cpu).toFixed(2)}×)`);
}
const aloneS = rows.reduce((n, r) => n + r.alone, 0);
const groupedS = rows.reduce((n, r) => n + r.grouped, 0);
const perFile = rows.length === 0 ? NaN : (aloneS - groupedS) / (rows.length * size);
console.log(`groups measured: ${rows.length}`);
console.log(`CPU, grouped ÷ alone: ${(groupedS / aloneS).toFixed(3)} (${groupedS.toFixed(1)} s against ${aloneS.toFixed(1)} s)`);
console.log(`saving per file ${perFile.toFixed(2)} s; over the ${short.length} grouped files of a whole run: about ${(perFile * short.length).toFixed(0)} s of CPU less`);
