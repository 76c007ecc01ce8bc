/**
 * Local evaluation: allocations per second in process (one thread = one core) against the HTTP path's throughput,
 * measured in the same run.
 *
 *   node --import tsx bench/local-eval.ts [--seconds 3] [--duration 5] [--connections 64] [--baseline DIR] [--rounds 3]
 *
 * Starts `apportion serve` (auth on), creates the shared-vector pipelines (test/localeval/fixtures.ts: every
 * built-in kind, experiments, a learned strategy with a serving model and a candidate), syncs an SDK in local mode
 * with the client key, then for each strategy kind runs `allocateNow` (the engine plus the decision record; not
 * shipped: maxBuffer 0) over 1,024 varied requests for `--seconds`, and drives POST /v1/allocations with the
 * same estimate requests from autocannon for `--duration`. "Per core" is measured as allocations per CPU-second
 * (this process's CPU time for local; the server's plus Redis's for HTTP), which a shared, loaded machine does not
 * distort; wall-clock rates are printed beside. Prints the ratio local ÷ HTTP per core. Targets: ≥ 200,000/s for uniform/static/estimate, ≥ 30,000/s for learned, ≥ 50× HTTP.
 *
 * `--baseline DIR` also loads another build of the SDK (DIR is a copy of an older `packages/sdk/dist`, e.g.
 * `cp -r packages/sdk/dist /tmp/sdk-base` before a change) and, per kind, alternates `--rounds` timed passes of
 * that build and this one over the same requests, printing each build's median and the ratio this ÷ baseline.
 * Only local mode is compared (the server runs this checkout's code).
 */
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Apportion } from '@apportion/sdk';
import { Redis } from 'ioredis';
import { ControlStore } from '../src/control/store.js';
import { createKeys } from '../src/redis/keys.js';
import { mulberry32 } from '../src/learner/rng.js';
import { randomRequest, setUp } from '../test/localeval/fixtures.js';
import { cannon, flag, fmt, REDIS_URL, spawnServer, withCpu } from './lib.js';

const fmtN = (x: number) => Math.round(x).toLocaleString('en-US').padStart(10);

const seconds = Number(flag('seconds', '3'));
const duration = Number(flag('duration', '5'));
const connections = Number(flag('connections', '64'));
const baselineDir = flag('baseline', '');
const rounds = Number(flag('rounds', '3'));

type Evaluator = Awaited<ReturnType<Apportion['evaluator']>>;

/** One timed pass of `seconds` over `bodies`: allocations per CPU-second and per wall second. */
function pass(local: Evaluator, bodies: readonly Parameters<Evaluator['allocateNow']>[0][]): { rate: number; wall: number } {
  let n = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const until = t0 + seconds * 1000;
  while (performance.now() < until) {
    for (let i = 0; i < 1000; i++) local.allocateNow(bodies[(n + i) & 1023]!);
    n += 1000;
  }
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { rate: n / ((c.user + c.system) / 1e6), wall: n / wall };
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const server = await spawnServer();
  const redis = new Redis(REDIS_URL);
  try {
    const op = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(server.url + path, {
        method,
        headers: { authorization: `Bearer ${server.adminKey}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      if (res.status >= 300) throw new Error(`${method} ${path} → ${res.status} ${await res.text()}`);
      return res.status === 204 ? undefined : res.json();
    };
    const store = new ControlStore(redis, createKeys(server.prefix));
    await setUp(op, (id, doc) => store.put('models', id, doc));

    const sdk = new Apportion({ url: server.url, key: server.clientKey, mode: 'local', maxBuffer: 0 });
    await sdk.ready();
    const local = await sdk.evaluator();
    let baseSdk: Apportion | undefined;
    let base: Evaluator | undefined;
    if (baselineDir) {
      const mod = (await import(pathToFileURL(resolve(baselineDir, 'esm/index.js')).href)) as { Apportion: typeof Apportion };
      baseSdk = new mod.Apportion({ url: server.url, key: server.clientKey, mode: 'local', maxBuffer: 0 });
      await baseSdk.ready();
      base = await baseSdk.evaluator();
    }
    const rng = mulberry32(1);
    const varied = (pipeline: string, strategy: string) =>
      Array.from({ length: 1024 }, () => {
        let r = randomRequest(rng);
        while (r.pipeline !== pipeline) r = randomRequest(rng);
        // Token counts as numbers: a raw text feature is tokenized (the same cost on both paths).
        const { documentText: _t, ...features } = r.features ?? {};
        return { ...r, features, strategy };
      });
    const kinds = [
      ['uniform', varied('lv-five', 'five-uniform')],
      ['static', varied('lv-five', 'five-static')],
      ['estimate', varied('lv-five', 'five-estimate')],
      ['priority-pool', varied('lv-five', 'five-pool')],
      ['experiments (routed)', varied('lv-five', '').map(({ strategy: _s, ...r }) => r)],
      ['learned', varied('lv-learned', 'learned-sq')],
    ] as const;
    const rates: Record<string, number> = {};
    const wallRates: Record<string, number> = {};
    console.log(`bench/local-eval: load average ${loadavg()[0]!.toFixed(1)}, ${seconds} s per kind in process`);
    for (const [label, bodies] of kinds) {
      // Warm-up (compilation, JIT), then timed.
      for (let i = 0; i < 20_000; i++) local.allocateNow(bodies[i & 1023]!);
      if (!base) {
        const r = pass(local, bodies);
        rates[label] = r.rate;
        wallRates[label] = r.wall;
        console.log(`local ${label.padEnd(22)} ${fmtN(r.rate)} allocations per CPU-second (one core)   ${fmtN(r.wall)} /s wall`);
        continue;
      }
      for (let i = 0; i < 20_000; i++) base.allocateNow(bodies[i & 1023]!);
      const mine: number[] = [];
      const theirs: number[] = [];
      const walls: number[] = [];
      for (let k = 0; k < rounds; k++) {
        theirs.push(pass(base, bodies).rate);
        const r = pass(local, bodies);
        mine.push(r.rate);
        walls.push(r.wall);
      }
      rates[label] = median(mine);
      wallRates[label] = median(walls);
      console.log(
        `local ${label.padEnd(22)} ${fmtN(rates[label]!)} allocations per CPU-second (one core); baseline ${fmtN(median(theirs))}; ratio ${(rates[label]! / median(theirs)).toFixed(2)}×  (medians of ${rounds} alternating passes)`,
      );
    }
    await sdk.close();
    await baseSdk?.close();
    const httpBodies = kinds[2][1];
    const { r: http, cpu, wall } = await withCpu(server, redis, () =>
      cannon({ url: server.url, path: '/v1/allocations', bodies: httpBodies, key: server.clientKey, connections, durationSec: duration }),
    );
    // The HTTP path's cost per allocation: the server's CPU and Redis's (the decision record), per core as above.
    const httpPerCore = http.total / (cpu.server + cpu.redis);
    console.log(`HTTP POST /v1/allocations (estimate) ${fmt(http)}`);
    console.log(`HTTP ${fmtN(httpPerCore)} allocations per CPU-second (server ${cpu.server.toFixed(1)} s + Redis ${cpu.redis.toFixed(1)} s CPU for ${http.total} in ${wall.toFixed(1)} s)`);
    const ratio = rates.estimate! / httpPerCore;
    console.log(`ratio local estimate ÷ HTTP, per core: ${ratio.toFixed(1)}×   (wall clock: local ${Math.round(wallRates.estimate!)}/s vs HTTP ${Math.round(http.rps)} req/s = ${(wallRates.estimate! / http.rps).toFixed(0)}×)`);
    const fast = ['uniform', 'static', 'estimate'].every((k) => rates[k]! >= 200_000);
    console.log(`targets: uniform/static/estimate ≥ 200,000/s ${fast ? 'met' : 'NOT met'}; learned ≥ 30,000/s ${rates.learned! >= 30_000 ? 'met' : 'NOT met'}; ≥ 50× HTTP ${ratio >= 50 ? 'met' : 'NOT met'}`);
  } finally {
    redis.disconnect();
    await server.close();
  }
}

await main();
