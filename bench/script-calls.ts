/**
 * The client-side cost of a Lua script call: runScript (EVALSHA with an EVAL fallback) against ioredis's
 * defineCommand (the baseline, what runScript replaced), both auto-pipelined on one connection, calling the
 * decisions-put script in pairs as concurrent requests do.
 *
 *   node --import tsx bench/script-calls.ts [--batches 20000] [--rounds 3]
 *
 * Prints, per round and in alternating order, the wall time and the young-generation collections (scavenges)
 * per 10,000 batches, then the ratios runScript ÷ defineCommand (median over rounds). Every auto-pipelined batch
 * is a new ioredis Pipeline, which copies every defined command onto itself: with defineCommand's 18 scripts
 * that object is ~4 KB, the garbage the scavenge count shows.
 */
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { luaScripts, runScript } from '../src/redis/scripts.js';
import { flag, REDIS_URL } from './lib.js';

const batches = Number(flag('batches', '20000'));
const rounds = Number(flag('rounds', '3'));
const KEY = `bench-scripts-${process.pid}:{d}`;

const defined = new Redis(REDIS_URL, { enableAutoPipelining: true });
const plain = new Redis(REDIS_URL, { enableAutoPipelining: true });
for (const [name, { lua, numberOfKeys }] of luaScripts()) defined.defineCommand(name, numberOfKeys >= 0 ? { lua, numberOfKeys } : { lua });
const viaDefine = (i: number) => (defined as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>).decisionsPut!.call(defined, KEY, 2e9, `x${i % 1000}\x1f{}`, 4e12);
const viaRunScript = (i: number) => runScript(plain, 'decisionsPut', [KEY], [2e9, `x${i % 1000}\x1f{}`, 4e12]);

let scavenges = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) scavenges++;
}).observe({ entryTypes: ['gc'] });

async function measure(call: (i: number) => Promise<unknown>): Promise<{ ms: number; scavenges: number }> {
  for (let i = 0; i < 2000; i++) await call(i); // warm-up (and EVAL once for the uncached script)
  await new Promise((r) => setTimeout(r, 50));
  scavenges = 0;
  const t0 = performance.now();
  for (let b = 0; b < batches; b++) await Promise.all([call(2 * b), call(2 * b + 1)]);
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 50)); // let the observer see the last collections
  return { ms, scavenges: (scavenges * 10_000) / batches };
}

const time: number[] = [];
const gc: number[] = [];
console.log(`bench/script-calls: ${batches} batches of 2 concurrent calls per measurement, ${rounds} rounds`);
for (let r = 1; r <= rounds; r++) {
  const order = r % 2 ? (['defineCommand', 'runScript'] as const) : (['runScript', 'defineCommand'] as const);
  const res: Record<string, { ms: number; scavenges: number }> = {};
  for (const name of order) {
    res[name] = await measure(name === 'runScript' ? viaRunScript : viaDefine);
    console.log(`round ${r}: ${name.padEnd(13)} ${res[name]!.ms.toFixed(0).padStart(6)} ms, ${res[name]!.scavenges.toFixed(1)} scavenges per 10k batches`);
  }
  time.push(res.runScript!.ms / res.defineCommand!.ms);
  gc.push(res.runScript!.scavenges / res.defineCommand!.scavenges);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`runScript ÷ defineCommand: time ${median(time).toFixed(2)}, scavenges ${median(gc).toFixed(2)} (medians of ${rounds} rounds)`);
await plain.del(KEY);
defined.disconnect();
plain.disconnect();
