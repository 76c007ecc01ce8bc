/**
 * POST /v1/allocations throughput and latency against the same server's no-op route.
 *
 *   node --import tsx bench/allocate.ts [--duration 5] [--rounds 3] [--connections 64] [--scenarios experiments,learned|none] [--cluster yes|no|only] [--server-prof DIR]
 *
 * Baseline (one fresh server): the no-op route (same request bodies), then allocations with the example pipeline's `estimate`
 * strategy (its default), in alternating rounds; the ratio is the median of the per-round ratios.
 *
 * Each scenario (bench/scenarios/<name>.ts exporting `setup(client) → { path, bodies }` and optionally
 * `toggle(client, on)`) gets its own fresh server and is compared with `estimate` on that server, again in
 * alternating rounds (with `toggle(false)` before each baseline round and `toggle(true)` before each scenario
 * round when the scenario has it). Alternating rounds keep the comparison fair on a machine whose load moves.
 *
 * Redis Cluster (`--cluster yes`, the default): a local Redis Cluster of three masters on loopback ports
 * (test/helpers/cluster.ts) and one private redis-server alike (no persistence), a server on each, the same `estimate`
 * allocations against each in alternating rounds; the ratio cluster / one Redis (target ≥ 0.8), with CPU per request.
 */
import { readdirSync } from 'node:fs';
import { ApportionClient } from '@apportion/sdk';
import { Redis } from 'ioredis';
import { LocalCluster } from '../test/helpers/cluster.js';
import { PrivateRedis } from '../test/helpers/private-redis.js';
import { cannon, childCpuSec, flag, fmt, REDIS_URL, redisCpuSec, spawnServer, withCpu, type BenchServer, type CannonResult, type Cpu } from './lib.js';

const duration = Number(flag('duration', '5'));
const rounds = Number(flag('rounds', '3'));
const connections = Number(flag('connections', '64'));
/** `--server-prof DIR`: each server writes a V8 CPU profile to DIR when it stops (where its time goes). */
const serverProf = flag('server-prof', '');
const profArgs = serverProf ? ['--cpu-prof', `--cpu-prof-dir=${serverProf}`] : [];
/** `--cluster no` skips the cluster comparison; `--cluster only` runs nothing else. */
const clusterFlag = flag('cluster', 'yes');
const onCluster = clusterFlag !== 'no';
/** Default: every scenario in bench/scenarios/; `--scenarios none` for the baseline only. */
const scenarios = flag(
  'scenarios',
  readdirSync(new URL('./scenarios/', import.meta.url))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.slice(0, -3))
    .join(','),
)
  .split(',')
  .filter((s) => s && s !== 'none');

const TASKS = ['refund', 'technical', 'billing', 'other'];
/** Varied, realistic requests: features differ per request, so no cache can hide the work. */
export function estimateBodies(n = 512): object[] {
  return Array.from({ length: n }, (_, i) => ({
    pipeline: 'support-triage',
    unitKey: `user-${i}`,
    features: { messageCount: 1 + ((i * 7) % 60), documentTokens: (i * 997) % 40_000, taskType: TASKS[i % TASKS.length]! },
  }));
}

interface Arm {
  readonly label: string;
  readonly path: string;
  readonly bodies: readonly object[];
  readonly before?: () => Promise<void>;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Alternates baseline and candidate for `rounds` rounds; prints each and returns the median ratio. */
async function compare(server: BenchServer, base: Arm, cand: Arm, target: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  const run = async (arm: Arm, sec: number): Promise<CannonResult & { cpu: Cpu }> => {
    await arm.before?.();
    const m = await withCpu(server, redis, () =>
      cannon({ url: server.url, path: arm.path, bodies: arm.bodies, key: server.clientKey, connections, durationSec: sec }),
    );
    return { ...m.r, cpu: m.cpu };
  };
  /** CPU µs per request: counts work rather than waiting, so it moves less than req/s on a shared machine. */
  const perReq = (x: CannonResult & { cpu: Cpu }) => {
    const n = x.total;
    return { server: (x.cpu.server / n) * 1e6, redis: (x.cpu.redis / n) * 1e6, gen: (x.cpu.gen / n) * 1e6 };
  };
  const cpuFmt = (x: CannonResult & { cpu: Cpu }) => {
    const c = perReq(x);
    return `cpu µs/req: server ${c.server.toFixed(0)} redis ${c.redis.toFixed(0)} generator ${c.gen.toFixed(0)}`;
  };
  try {
    await run(base, 2); // warm-up: JIT, connection pools, compiled strategies
    await run(cand, 2);
    const ratios: number[] = [];
    const all: { base: (CannonResult & { cpu: Cpu })[]; cand: (CannonResult & { cpu: Cpu })[] } = { base: [], cand: [] };
    for (let r = 0; r < rounds; r++) {
      const b = await run(base, duration);
      const c = await run(cand, duration);
      all.base.push(b);
      all.cand.push(c);
      ratios.push(c.rps / b.rps);
      console.log(`  round ${r + 1}: ${base.label.padEnd(22)} ${fmt(b)}  ${cpuFmt(b)}`);
      console.log(`  round ${r + 1}: ${cand.label.padEnd(22)} ${fmt(c)}  ${cpuFmt(c)}`);
    }
    const med = (k: 'p50' | 'p99', xs: CannonResult[]) => median(xs.map((x) => x[k])).toFixed(2);
    const medCpu = (xs: (CannonResult & { cpu: Cpu })[]) => {
      const s = median(xs.map((x) => perReq(x).server));
      const r = median(xs.map((x) => perReq(x).redis));
      return `server ${s.toFixed(0)} + redis ${r.toFixed(0)} µs/req`;
    };
    console.log(
      `${cand.label}: median ${median(all.cand.map((x) => x.rps)).toFixed(0)} req/s (p50 ${med('p50', all.cand)} ms, p99 ${med('p99', all.cand)} ms, ${medCpu(all.cand)}) vs ${base.label} ${median(all.base.map((x) => x.rps)).toFixed(0)} req/s (p50 ${med('p50', all.base)} ms, p99 ${med('p99', all.base)} ms, ${medCpu(all.base)})`,
    );
    console.log(`ratio ${cand.label}/${base.label} = ${median(ratios).toFixed(3)} (median of ${rounds} alternating rounds; ${target})`);
  } finally {
    redis.disconnect();
  }
}

/**
 * The same allocations on one Redis and on a local 3-master Redis Cluster: one server each (both up for the whole
 * comparison, loaded one at a time), alternating rounds, median of the per-round ratios cluster / one Redis.
 */
async function clusterComparison(estimate: Arm): Promise<void> {
  console.log('\n--- one Redis vs a local Redis Cluster of 3 masters (a server each, each on Redis of its own) ---');
  // Both arms get Redis servers of their own, configured alike (no persistence): the shared Redis at REDIS_URL
  // may be busy with other work, which would weigh on one arm only.
  const cluster = await LocalCluster.start(3);
  const own = await PrivateRedis.start({ aof: false });
  let single: BenchServer | undefined;
  let clustered: BenchServer | undefined;
  const redisConns: Redis[] = [];
  try {
    single = await spawnServer({ REDIS_URL: own.url }, profArgs);
    clustered = await spawnServer({ REDIS_CLUSTER_NODES: cluster.nodes }, profArgs);
    // CPU per request (server process + its Redis: the one server, or the three cluster nodes summed)
    // counts work rather than waiting: on a shared machine it moves far less than req/s.
    const singleRedis = [new Redis(own.url)];
    const clusterRedis = cluster.ports.map((port) => new Redis({ host: '127.0.0.1', port }));
    redisConns.push(...singleRedis, ...clusterRedis);
    const redisCpu = async (rs: Redis[]) => (await Promise.all(rs.map((r) => redisCpuSec(r)))).reduce((a, b) => a + b, 0);
    const run = async (server: BenchServer, sec: number) => {
      const rs = server === single ? singleRedis : clusterRedis;
      const s0 = childCpuSec(server.child.pid!);
      const r0 = await redisCpu(rs);
      const res = await cannon({ url: server.url, path: estimate.path, bodies: estimate.bodies, key: server.clientKey, connections, durationSec: sec });
      const serverUs = ((childCpuSec(server.child.pid!) - s0) / res.total) * 1e6;
      const redisUs = (((await redisCpu(rs)) - r0) / res.total) * 1e6;
      return { ...res, serverUs, redisUs };
    };
    // Warm-up, a full round each: two servers that just started (JIT, tokenizer, the cluster's node connections,
    // the workers' first jobs) would otherwise weigh on the first measured rounds.
    for (let w = 0; w < 2; w++) {
      await run(single, duration);
      await run(clustered, duration);
    }
    const ratios: number[] = [];
    const rps: { single: number[]; cluster: number[] } = { single: [], cluster: [] };
    const cpu: { single: number[]; cluster: number[]; singleRedis: number[]; clusterRedis: number[] } = { single: [], cluster: [], singleRedis: [], clusterRedis: [] };
    for (let r = 0; r < rounds; r++) {
      // The order alternates too: neither arm always runs first after a pause.
      const [a, b] = r % 2 === 0 ? [single, clustered] : [clustered, single];
      const ra = await run(a, duration);
      const rb = await run(b, duration);
      const s = a === single ? ra : rb;
      const c = a === single ? rb : ra;
      if (s.errors + s.non2xx + c.errors + c.non2xx > 0) throw new Error(`failed requests: one Redis ${s.errors + s.non2xx}, cluster ${c.errors + c.non2xx}`);
      rps.single.push(s.rps);
      rps.cluster.push(c.rps);
      ratios.push(c.rps / s.rps);
      cpu.single.push(s.serverUs);
      cpu.cluster.push(c.serverUs);
      cpu.singleRedis.push(s.redisUs);
      cpu.clusterRedis.push(c.redisUs);
      const us = (x: { serverUs: number; redisUs: number }) => `cpu µs/req: server ${x.serverUs.toFixed(0)} redis ${x.redisUs.toFixed(0)}`;
      console.log(`  round ${r + 1}: ${'one Redis'.padEnd(22)} ${fmt(s)}  ${us(s)}`);
      console.log(`  round ${r + 1}: ${'Redis Cluster (3)'.padEnd(22)} ${fmt(c)}  ${us(c)}`);
    }
    const perNode = await cluster.keysPerNode();
    console.log(`estimate on the cluster: median ${median(rps.cluster).toFixed(0)} req/s vs one Redis ${median(rps.single).toFixed(0)} req/s; keys per cluster node ${perNode.join(' / ')}`);
    console.log(
      `cpu µs/req (medians): one Redis server ${median(cpu.single).toFixed(0)} + redis ${median(cpu.singleRedis).toFixed(0)}; cluster server ${median(cpu.cluster).toFixed(0)} + redis (3 nodes) ${median(cpu.clusterRedis).toFixed(0)}`,
    );
    console.log(
      `server cpu per request, one Redis / cluster = ${(median(cpu.single) / median(cpu.cluster)).toFixed(3)} (the API process is the bottleneck: its capacity ratio)`,
    );
    console.log(`ratio cluster/single = ${median(ratios).toFixed(3)} (median of ${rounds} alternating rounds; target ≥ 0.8)`);
    const crossSlot = (await cluster.crossSlotErrors()).reduce((x, y) => x + y, 0);
    if (crossSlot > 0) throw new Error(`the cluster refused ${crossSlot} command(s) with CROSSSLOT`);
  } finally {
    for (const r of redisConns) r.disconnect();
    await clustered?.close().catch(() => undefined);
    await single?.close();
    cluster.stop();
    await own.stop();
  }
}

async function main(): Promise<void> {
  console.log(`bench/allocate: ${connections} connections, ${rounds} alternating rounds of ${duration} s`);
  const estimate: Arm = { label: 'estimate', path: '/v1/allocations', bodies: estimateBodies() };
  if (clusterFlag === 'only') return clusterComparison(estimate);
  {
    const server = await spawnServer({}, profArgs);
    try {
      // The no-op route gets the very same request bodies: the ratio is what allocating costs on top of
      // receiving, authenticating and parsing the same request.
      await compare(server, { label: 'noop', path: '/bench/noop', bodies: estimate.bodies }, estimate, 'target ≥ 0.6');
    } finally {
      await server.close();
    }
  }
  if (onCluster) await clusterComparison(estimate);
  for (const name of scenarios) {
    console.log(`\n--- scenario ${name} (fresh server) ---`);
    const server = await spawnServer({}, profArgs);
    try {
      const mod = (await import(`./scenarios/${name}.ts`)) as {
        setup(client: ApportionClient): Promise<{ path: string; bodies: object[] }>;
        toggle?(client: ApportionClient, on: boolean): Promise<void>;
      };
      const admin = new ApportionClient({ url: server.url, key: server.adminKey });
      const { path, bodies } = await mod.setup(admin);
      const toggle = mod.toggle;
      await compare(
        server,
        { ...estimate, ...(toggle ? { before: () => toggle(admin, false) } : {}) },
        { label: name, path, bodies, ...(toggle ? { before: () => toggle(admin, true) } : {}) },
        name === 'learned' ? 'target ≥ 0.8' : name === 'experiments' ? 'target ≥ 0.9' : 'no target',
      );
    } finally {
      await server.close();
    }
  }
}

await main();
