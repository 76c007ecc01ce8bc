/**
 * Where each OTLP encoding spends the server's time: reads the CPU profile and the measured slices that
 * `BENCH_PROF=DIR node --import tsx bench/spans.ts` leaves in DIR, splits the profile's samples by the slice they
 * fall in (both on CLOCK_MONOTONIC), and prints per request, for JSON and protobuf side by side, the time of each
 * function (self, and inclusive for the request path). Samples outside the slices (start-up, warm-up) are left out.
 *   node --import tsx bench/_spans-profile.ts DIR [--top 30]
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { flag } from './lib.js';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

const dir = process.argv[2];
if (!dir) throw new Error('usage: bench/_spans-profile.ts DIR (written by BENCH_PROF=DIR bench/spans.ts)');
const top = Number(flag('top', '30'));
const file = readdirSync(dir)
  .filter((f) => f.endsWith('.cpuprofile'))
  .map((f) => `${dir}/${f}`)
  .sort((a, b) => statSync(b).size - statSync(a).size)[0];
if (!file) throw new Error(`no .cpuprofile in ${dir}`);
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const windows = JSON.parse(readFileSync(`${dir}/windows.json`, 'utf8')) as { wire: 'json' | 'protobuf'; from: number; to: number; ok: number }[];

const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const name = (id: number) => {
  const f = byId.get(id)!.callFrame;
  return `${f.functionName || '(anonymous)'} ${f.url.split('/').at(-1) ?? ''}${f.url ? `:${f.lineNumber + 1}` : ''}`;
};
const wires = ['json', 'protobuf'] as const;
const requests = { json: 0, protobuf: 0 };
for (const w of windows) requests[w.wire] += w.ok;
const self = { json: new Map<string, number>(), protobuf: new Map<string, number>() };
const incl = { json: new Map<string, number>(), protobuf: new Map<string, number>() };
const total = { json: 0, protobuf: 0 };
const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
let t = p.startTime;
p.samples.forEach((id, i) => {
  t += p.timeDeltas[i]!;
  const w = windows.find((x) => x.from <= t && t <= x.to)?.wire;
  if (!w) return;
  const dt = p.timeDeltas[i]!;
  total[w] += dt;
  add(self[w], name(id), dt);
  const seen = new Set<string>();
  for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
    const k = name(x);
    if (!seen.has(k)) add(incl[w], k, dt);
    seen.add(k);
  }
});

const per = (w: (typeof wires)[number], v: number) => v / Math.max(1, requests[w]);
console.log(`${file}: ${requests.json} JSON and ${requests.protobuf} protobuf requests in the measured slices`);
console.log(`sampled time per request: JSON ${per('json', total.json).toFixed(0)} µs, protobuf ${per('protobuf', total.protobuf).toFixed(0)} µs (idle included)`);
for (const [label, m] of [['self', self], ['inclusive', incl]] as const) {
  console.log(`\n${label} µs per request      JSON  protobuf      diff  function`);
  const keys = [...new Set([...m.json.keys(), ...m.protobuf.keys()])];
  const rows = keys.map((k) => ({ k, j: per('json', m.json.get(k) ?? 0), b: per('protobuf', m.protobuf.get(k) ?? 0) }));
  rows.sort((a, b) => Math.max(b.j, b.b) - Math.max(a.j, a.b));
  for (const r of rows.slice(0, top)) console.log(`${r.j.toFixed(0).padStart(30)} ${r.b.toFixed(0).padStart(9)} ${(r.b - r.j >= 0 ? '+' : '') + (r.b - r.j).toFixed(0).padStart(8)}  ${r.k}`);
}
