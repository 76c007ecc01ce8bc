/**
 * What authentication and tenant checks cost on the hot path: POST /v1/allocations with auth off against the same
 * server build with auth on, called with a tenant's data key (key resolved from the in-process cache, role check,
 * tenant guard on the pipeline), in alternating rounds of one run.
 *
 *   node --import tsx bench/auth.ts [--duration 5] [--rounds 4] [--connections 64]
 *
 * Two `apportion api` processes of the same code and configuration, one without keys (auth off) and one with
 * the env keys set; only the one under load is busy. The ratio is the median of the per-round req/s ratios;
 * server CPU µs per request is printed beside it (it moves less than req/s on a shared machine).
 */
import { randomBytes } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { Redis } from 'ioredis';
import { loadConfig } from '../src/config/env.js';
import { CONTROL_KINDS } from '../src/control/kinds.js';
import type { RawControlState } from '../src/control/store.js';
import { viewOf } from '../src/control/view.js';
import { Authenticator } from '../src/tenancy/auth.js';
import { tenantGuard } from '../src/tenancy/guard.js';
import { ApportionClient } from '@apportion/sdk';
import { KeyStore } from '../src/tenancy/keys.js';
import { SessionStore } from '../src/tenancy/sessions.js';
import { cannon, flag, fmt, REDIS_URL, spawnServer, withCpu, type BenchServer, type CannonResult, type Cpu } from './lib.js';

const duration = Number(flag('duration', '5'));
const rounds = Number(flag('rounds', '4'));
const connections = Number(flag('connections', '64'));

const TASKS = ['refund', 'technical', 'billing', 'other'];
/** The request bodies of bench/allocate.ts (importing that script would run it). */
function estimateBodies(n = 512): object[] {
  return Array.from({ length: n }, (_, i) => ({
    pipeline: 'support-triage',
    unitKey: `user-${i}`,
    features: { messageCount: 1 + ((i * 7) % 60), documentTokens: (i * 997) % 40_000, taskType: TASKS[i % TASKS.length]! },
  }));
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * The hooks alone, in process: the onRequest authenticator and the preHandler tenant guard, called as Fastify
 * calls them for POST /v1/allocations, with auth off and with a cached tenant key. Answers µs per request.
 */
async function hookCost(redis: Redis): Promise<{ off: number; on: number }> {
  const prefix = `bench-hooks-${randomBytes(4).toString('hex')}`;
  const keys = new KeyStore({ redis, prefix });
  const sessions = new SessionStore(redis, prefix, 60);
  const { key } = await keys.create({ tenant: 'default', role: 'client', name: 'bench' });
  const agents = [{ name: 'a' }, { name: 'b' }];
  const kinds = Object.fromEntries(CONTROL_KINDS.map((k) => [k, new Map()])) as unknown as RawControlState['kinds'];
  (kinds.pipelines as Map<string, unknown>).set('support-triage', { id: 'support-triage', version: 1, doc: { defaultTotalTokens: 1000, agents, tenant: 'default' } });
  const view = viewOf({ version: 1, kinds });
  const guard = tenantGuard(() => view);
  const on = new Authenticator(loadConfig({ APPORTION_ADMIN_KEY: 'bench-admin-key-0123456789' }), keys, sessions);
  const off = new Authenticator(loadConfig({}), keys, sessions);
  const request = (auth: boolean) =>
    ({
      method: 'POST',
      headers: auth ? { authorization: `Bearer ${key}`, 'content-type': 'application/json' } : { 'content-type': 'application/json' },
      routeOptions: { url: '/v1/allocations', config: { access: 'client' } },
      is404: false,
      params: {},
      query: {},
      body: { pipeline: 'support-triage', features: { messageCount: 3 } },
    }) as unknown as FastifyRequest;
  const time = async (auth: Authenticator, withKey: boolean): Promise<number> => {
    const n = 200_000;
    const reqs = Array.from({ length: 1000 }, () => request(withKey));
    for (let i = 0; i < 20_000; i++) {
      const r = reqs[i % reqs.length]!;
      await auth.authorize(r);
      await guard(r);
    }
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const r = reqs[i % reqs.length]!;
      await auth.authorize(r);
      await guard(r);
    }
    return Number(process.hrtime.bigint() - t0) / 1000 / n;
  };
  const offs: number[] = [];
  const ons: number[] = [];
  for (let i = 0; i < 5; i++) {
    offs.push(await time(off, false));
    ons.push(await time(on, true));
  }
  await redis.del(`${prefix}:{keys}:records`);
  return { off: median(offs), on: median(ons) };
}

interface Arm {
  readonly label: string;
  readonly server: BenchServer;
  readonly key: string | undefined;
}

async function main(): Promise<void> {
  console.log(`bench/auth: ${connections} connections, ${rounds} alternating rounds of ${duration} s, POST /v1/allocations (estimate)`);
  const off = await spawnServer({ APPORTION_ADMIN_KEY: '', APPORTION_CLIENT_KEY: '' }, [], 'api');
  const on = await spawnServer({}, [], 'api');
  const redis = new Redis(REDIS_URL);
  try {
    // The example pipeline is seeded without a tenant, so it belongs to `default`: a client key of that tenant.
    const admin = new ApportionClient({ url: on.url, key: on.adminKey });
    const { key } = await admin.request<{ key: string }>('POST', '/v1/keys', { tenant: 'default', role: 'client', name: 'bench' });
    const arms: Arm[] = [
      { label: 'auth off', server: off, key: undefined },
      { label: 'auth on (tenant key)', server: on, key },
    ];
    const bodies = estimateBodies();
    const run = async (arm: Arm, sec: number): Promise<CannonResult & { cpu: Cpu }> => {
      const m = await withCpu(arm.server, redis, () => cannon({ url: arm.server.url, path: '/v1/allocations', bodies, ...(arm.key ? { key: arm.key } : {}), connections, durationSec: sec }));
      return { ...m.r, cpu: m.cpu };
    };
    for (const a of arms) await run(a, 2); // warm-up
    const res = new Map<string, (CannonResult & { cpu: Cpu })[]>(arms.map((a) => [a.label, []]));
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      // ABBA order: a machine whose load drifts favours neither arm.
      let b: CannonResult & { cpu: Cpu };
      let c: CannonResult & { cpu: Cpu };
      if (r % 2 === 0) {
        b = await run(arms[0]!, duration);
        c = await run(arms[1]!, duration);
      } else {
        c = await run(arms[1]!, duration);
        b = await run(arms[0]!, duration);
      }
      res.get(arms[0]!.label)!.push(b);
      res.get(arms[1]!.label)!.push(c);
      if (b.non2xx + c.non2xx > 0) throw new Error(`non-2xx answers: off ${b.non2xx}, on ${c.non2xx}`);
      ratios.push(c.rps / b.rps);
      cpuRatios.push(c.cpu.server / c.total / (b.cpu.server / b.total));
      for (const [arm, x] of [[arms[0]!, b], [arms[1]!, c]] as const) {
        console.log(`  round ${r + 1}: ${arm.label.padEnd(22)} ${fmt(x)}  server cpu ${((x.cpu.server / x.total) * 1e6).toFixed(0)} µs/req`);
      }
    }
    for (const a of arms) {
      const xs = res.get(a.label)!;
      console.log(`${a.label}: median ${median(xs.map((x) => x.rps)).toFixed(0)} req/s, p50 ${median(xs.map((x) => x.p50)).toFixed(2)} ms, p99 ${median(xs.map((x) => x.p99)).toFixed(2)} ms, server ${median(xs.map((x) => (x.cpu.server / x.total) * 1e6)).toFixed(0)} µs/req`);
    }
    console.log(`ratio auth-on/auth-off throughput = ${median(ratios).toFixed(3)} (median of ${rounds} alternating rounds; target ≥ 0.95)`);
    console.log(`ratio auth-on/auth-off server CPU per request = ${median(cpuRatios).toFixed(3)} (≤ 1.05 means ≤ 5 % more work)`);
    // On a shared machine req/s moves by more than 5 % between rounds; the hooks' own cost is measured directly.
    const hooks = await hookCost(redis);
    const alloc = median(res.get(arms[0]!.label)!.map((x) => (x.cpu.server / x.total) * 1e6));
    const extra = hooks.on - hooks.off;
    console.log(`hooks in process (authenticate + tenant guard): auth off ${hooks.off.toFixed(2)} µs/req, auth on ${hooks.on.toFixed(2)} µs/req → +${extra.toFixed(2)} µs/req`);
    // Conservative: also against the cheapest auth-off round (the least inflated by other load on the machine).
    const fastest = Math.min(...res.get(arms[0]!.label)!.map((x) => (x.cpu.server / x.total) * 1e6));
    for (const [what, base] of [['median', alloc], ['cheapest round', fastest]] as const) {
      console.log(`share of an allocation's server CPU (${what} of the auth-off arm: ${base.toFixed(0)} µs/req) = ${((100 * extra) / base).toFixed(2)} % → throughput ratio ≥ ${(base / (base + extra)).toFixed(3)} (target ≥ 0.95)`);
    }
  } finally {
    redis.disconnect();
    await Promise.all([off.close(), on.close()]);
  }
}

await main();
