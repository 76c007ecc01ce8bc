/**
 * Failover of a Redis Cluster with replicas under product load, from a seed.
 *
 *   node --import tsx bench/cluster-failover.ts [--seed 1] [--seconds 60] [--redis-port 0] [--port 0] [--node-timeout 3000]
 *
 * Starts a Redis Cluster of 3 masters and 3 replicas of its own (`redis-server --cluster-enabled yes`, AOF on with
 * `appendfsync always` as docker-compose.yml runs it, `redis-cli --cluster create … --cluster-replicas 1`; ports
 * `--redis-port`…+5 when given, free ones otherwise; the shared Redis is never touched) and `apportion serve` on it
 * (REDIS_CLUSTER_NODES) through bin/apportion.mjs. A seeded client then runs for `--seconds`:
 *
 * - allocations of three strategies (`@uniform`, `estimate`, `learned`), each recorded decision reported once with
 *   a known quality (a 503 or a hung call retried with the same body until 202 or 404; one in ten reported again
 *   after its 202, as a client that lost the answer);
 * - reservations on a budget tree (tenant → 2 workspaces → 3 agents each), each committed with a drawn amount
 *   (overruns included), retried with the same idempotency key;
 * - span ingestion: traces of 3 spans with known usage, retried on a 503.
 *
 * Meanwhile the seed draws the order and the targets of the faults: SIGKILL of a master (its replica is promoted),
 * `CLUSTER FAILOVER` on a replica, `DEBUG SLEEP` of a master (0.5–2.5 s), `CLIENT PAUSE` of a master (0.5–2.5 s), and
 * the killed node started again on its files (it rejoins as a replica). At the end it checks, against what the
 * client was told:
 *
 * - every outcome answered 202 is counted exactly once in its strategy's statistics (count and quality sum), and
 *   each learned decision's outcome is in the learner's intake (incoming list + training buffer) exactly once;
 * - at every budget level `allocated = remaining + reserved + spent`, `spent + debt` = what the commits that held it
 *   were told was charged, nothing stays reserved once everything is committed;
 * - the span rollup's calls and tokens equal the spans acknowledged;
 * - no call took longer than `--hang-ms` (5 s: the command bound is 1 s a command) and none was a 5xx other than 503;
 * - the sweeper expires a 1 s reservation taken after the last fault, the learner tick and rollout schedulers run
 *   again, `/readyz` answers 200, all without restarting the server.
 *
 * Writes a master acknowledged and had not yet replicated when it was killed can be lost by the promotion
 * (asynchronous replication): every count that disagrees is printed with what it lost.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Cluster, Redis } from 'ioredis';
import { mulberry32 } from '../src/learner/rng.js';
import { call, metric, quantile, startServer, type Answer, type Server } from './_faults-lib.js';
import { untilNode } from '../test/helpers/cluster.js';
import { freePort } from '../test/helpers/private-redis.js';
import { flag } from './lib.js';

const seed = Number(flag('seed', '1'));
const seconds = Number(flag('seconds', '60'));
const redisPortBase = Number(flag('redis-port', '0'));
const serverPort = flag('port', '0');
const nodeTimeout = Number(flag('node-timeout', '3000'));
const hangMs = Number(flag('hang-ms', '5000'));
const loseWrites = process.argv.includes('--lose-writes');
/** --lose-writes on the master of this key's slot (e.g. `{bull}`: the job queues; `{pipeline:failover}`: outcome statistics) instead of a drawn one. */
const loseKey = flag('lose-key', '');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rng = mulberry32(seed);
const pickWith = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const pick = <T>(xs: readonly T[]): T => pickWith(rng, xs);

let unmet = 0;
const line = (what: string, value: string, ok: boolean, target: string) => {
  if (!ok) unmet++;
  process.stdout.write(`${ok ? 'ok      ' : 'NOT MET '} ${what.padEnd(60)} ${value.padEnd(30)} target ${target}\n`);
};
const log = (s: string) => process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${s}\n`);
const t0 = Date.now();

/** A Redis Cluster of 3 masters + 3 replicas, each node a redis-server of this process with its own dir. */
class ReplicaCluster {
  readonly procs = new Map<number, ChildProcess>();
  private readonly dir = mkdtempSync(path.join(tmpdir(), 'apportion-failover-'));
  constructor(readonly ports: readonly number[]) {}

  get nodes(): string {
    return this.ports.map((p) => `127.0.0.1:${p}`).join(',');
  }

  startNode(port: number): void {
    const dir = path.join(this.dir, String(port));
    mkdirSync(dir, { recursive: true });
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
      '--cluster-node-timeout', String(nodeTimeout), '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--enable-debug-command', 'yes'];
    this.procs.set(port, spawn('redis-server', args, { stdio: 'ignore' }));
  }

  async boot(): Promise<void> {
    for (const p of this.ports) this.startNode(p);
    for (const p of this.ports) await untilNode(p, async (r) => (await r.ping()) === 'PONG', 'PONG');
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...this.ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create: ${create.stdout}${create.stderr}`);
    await this.settled();
  }

  /** Every live node says cluster_state:ok and every master has a connected replica or was just left without one. */
  async settled(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let ok = true;
      for (const p of this.live()) {
        const info = await this.cmd(p, ['CLUSTER', 'INFO']).catch(() => '');
        if (!/cluster_state:ok/.test(String(info))) ok = false;
      }
      if (ok) return;
      if (Date.now() > deadline) throw new Error('cluster not ok within the bound');
      await sleep(100);
    }
  }

  live(): number[] {
    return this.ports.filter((p) => this.procs.get(p)?.exitCode === null && this.procs.get(p)?.signalCode === null);
  }

  async cmd(port: number, args: string[], timeoutMs = 5000): Promise<unknown> {
    const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, commandTimeout: timeoutMs });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return await r.call(args[0]!, ...args.slice(1));
    } finally {
      r.disconnect();
    }
  }


  /** Roles as a live node sees them: port → { master: bool, failed: bool }. */
  async topology(): Promise<Map<number, { master: boolean; failed: boolean; masterOf?: number }>> {
    for (const p of this.live()) {
      const text = String(await this.cmd(p, ['CLUSTER', 'NODES']).catch(() => ''));
      if (!text) continue;
      const byId = new Map<string, number>();
      const rows = text.trim().split('\n').map((l) => l.split(' '));
      for (const r of rows) byId.set(r[0]!, Number(r[1]!.split('@')[0]!.split(':')[1]));
      const out = new Map<number, { master: boolean; failed: boolean; masterOf?: number }>();
      for (const r of rows) {
        const port = Number(r[1]!.split('@')[0]!.split(':')[1]);
        const flags = r[2]!;
        const masterOf = r[3] !== '-' ? byId.get(r[3]!) : undefined;
        out.set(port, { master: flags.includes('master'), failed: /fail/.test(flags), ...(masterOf !== undefined ? { masterOf } : {}) });
      }
      return out;
    }
    throw new Error('no live node answers CLUSTER NODES');
  }

  async liveMasters(): Promise<number[]> {
    const t = await this.topology();
    const live = new Set(this.live());
    return [...t].filter(([p, n]) => n.master && !n.failed && live.has(p)).map(([p]) => p).sort((a, b) => a - b);
  }

  async liveReplicas(): Promise<number[]> {
    const t = await this.topology();
    const live = new Set(this.live());
    return [...t].filter(([p, n]) => !n.master && !n.failed && live.has(p) && n.masterOf !== undefined && live.has(n.masterOf)).map(([p]) => p).sort((a, b) => a - b);
  }

  kill(port: number): void {
    this.procs.get(port)?.kill('SIGKILL');
  }

  stop(): void {
    for (const p of this.procs.values()) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------------

const PIPELINE = 'failover';
const TENANT = 'fo';
const STRATEGIES = ['@uniform', 'fo-estimate', 'fo-learned'] as const;
const WORKSPACES = ['w0', 'w1'];
const AGENTS = ['a0', 'a1', 'a2'];
const ALLOCATED = { tenant: 40_000_000, workspace: 25_000_000, agent: 10_000_000 };

interface Sample {
  readonly route: string;
  readonly at: number;
  readonly ms: number;
  readonly status: number;
  readonly code?: string;
}

const samples: Sample[] = [];
async function timed(server: Server, route: string, method: string, p: string, body?: unknown, key: 'admin' | 'client' = 'client'): Promise<Answer> {
  const at = Date.now();
  const a = await call(server, method, p, body, key, 30_000);
  const code = typeof a.body.code === 'string' ? a.body.code : undefined;
  samples.push({ route, at, ms: Date.now() - at, status: a.status, ...(code ? { code } : {}) });
  return a;
}

/** Calls until the answer is not a 503 / network error (at most `bound` ms); returns the last answer. */
async function untilDefinite(server: Server, route: string, method: string, p: string, body: unknown, key: 'admin' | 'client' = 'client', bound = 90_000): Promise<Answer> {
  const end = Date.now() + bound;
  for (;;) {
    const a = await timed(server, route, method, p, body, key);
    if ((a.status !== 503 && a.status !== 0 && a.status !== 500 && a.status !== 502) || Date.now() > end) return a;
    await sleep(200);
  }
}

class Client {
  stopped = false;
  seq = 0;
  /** decision id → { strategy, quality } of every outcome answered 202. */
  readonly accepted = new Map<string, { strategy: string; quality: number }>();
  readonly outcome404: string[] = [];
  readonly unrecorded = { count: 0 };
  /** Per scope: what commits that held it were told was charged; holds of granted reservations not committed. */
  readonly charged = new Map<string, number>();
  readonly open = new Map<string, { scopes: string[]; amount: number }>();
  readonly lostReservations: string[] = [];
  commits = 0;
  /** Span keys acknowledged (accepted or duplicate), with their tokens. */
  readonly spans = new Map<string, number>();
  readonly unexpected: string[] = [];
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly server: Server, private readonly r: () => number) {}

  async run(loops: number): Promise<void> {
    const ls: Promise<void>[] = [];
    for (let i = 0; i < loops; i++) ls.push(this.loop(i));
    await Promise.all(ls);
    while (this.pending.size) await Promise.all(this.pending);
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private async loop(i: number): Promise<void> {
    while (!this.stopped) {
      const u = this.r();
      if (u < 0.55) await this.allocate(i);
      else if (u < 0.85) await this.reserve();
      else await this.ingest();
      await sleep(10 + Math.floor(this.r() * 30));
    }
  }

  private async allocate(i: number): Promise<void> {
    const n = this.seq++;
    const strategy = STRATEGIES[n % STRATEGIES.length]!;
    const features = { taskType: pickWith(this.r, ['refund', 'technical', 'billing']), messageCount: 1 + Math.floor(this.r() * 30), documentTokens: Math.floor(this.r() * 8000) };
    const a = await timed(this.server, 'allocate', 'POST', '/v1/allocations', { pipeline: PIPELINE, strategy, unitKey: `u${i}-${n}`, features });
    if (a.status !== 200) {
      if (a.status !== 503 && a.status !== 0) this.unexpected.push(`allocate ${a.status} ${JSON.stringify(a.body).slice(0, 200)}`);
      return;
    }
    if (a.body.recorded !== true) {
      this.unrecorded.count++;
      return;
    }
    const decisionId = a.body.decisionId as string;
    const quality = Math.round(this.r() * 1000) / 1000;
    const again = this.r() < 0.1;
    this.track(this.report(decisionId, strategy, quality, again));
  }

  private async report(decisionId: string, strategy: string, quality: number, again: boolean): Promise<void> {
    const body = { decisionId, quality, costUsd: 0.01, usage: { planner: { inputTokens: 300, outputTokens: 100 }, writer: { outputTokens: 200 } } };
    const a = await untilDefinite(this.server, 'outcome', 'POST', '/v1/outcomes', body);
    if (a.status === 202) {
      this.accepted.set(decisionId, { strategy, quality });
      if (again) {
        const b = await untilDefinite(this.server, 'outcome', 'POST', '/v1/outcomes', body);
        if (b.status !== 202) this.unexpected.push(`outcome repeat ${decisionId}: ${b.status} ${JSON.stringify(b.body).slice(0, 200)}`);
      }
    } else if (a.status === 404) this.outcome404.push(decisionId);
    else this.unexpected.push(`outcome ${decisionId}: ${a.status} ${JSON.stringify(a.body).slice(0, 200)}`);
  }

  private async reserve(): Promise<void> {
    const n = this.seq++;
    const scope = `tenant:${TENANT}/workspace:${pickWith(this.r, WORKSPACES)}/agent:${pickWith(this.r, AGENTS)}`;
    const amount = 500 + Math.floor(this.r() * 1500);
    const body = { scope, unit: 'TOKENS', amount, ttlMs: 120_000, idempotencyKey: `r-${seed}-${n}` };
    const a = await untilDefinite(this.server, 'reserve', 'POST', '/v1/reservations', body);
    if (a.status !== 201) {
      if (a.status !== 409) this.unexpected.push(`reserve ${a.status} ${JSON.stringify(a.body).slice(0, 200)}`);
      return;
    }
    const id = a.body.id as string;
    const scopes = a.body.scopes as string[];
    this.open.set(id, { scopes, amount });
    // Used: mostly within the hold, one in ten over it.
    const used = this.r() < 0.1 ? amount + 1 + Math.floor(this.r() * 300) : 1 + Math.floor(this.r() * amount);
    this.track(this.commit(id, scopes, used, `c-${seed}-${n}`));
  }

  private async commit(id: string, scopes: string[], used: number, idempotencyKey: string): Promise<void> {
    await sleep(Math.floor(this.r() * 200));
    const a = await untilDefinite(this.server, 'commit', 'POST', `/v1/reservations/${encodeURIComponent(id)}/commit`, { amount: used, idempotencyKey });
    if (a.status === 200) {
      this.commits++;
      this.open.delete(id);
      for (const s of scopes) this.charged.set(s, (this.charged.get(s) ?? 0) + Number(a.body.charged));
    } else if (a.status === 404) {
      this.open.delete(id);
      this.lostReservations.push(id);
    } else this.unexpected.push(`commit ${id}: ${a.status} ${JSON.stringify(a.body).slice(0, 200)}`);
  }

  private async ingest(): Promise<void> {
    const n = this.seq++;
    const traceId = `t-${seed}-${n}`;
    // A root agent span (no usage of its own: a parent with usage above children with usage is an aggregate and not
    // counted, docs/costs.md) and two LLM calls under it.
    const spans = [0, 1, 2].map((k) => ({
      traceId,
      spanId: `s${k}`,
      ...(k > 0
        ? { parentSpanId: 's0', model: 'gpt-4o-mini', usage: { input: 100 + k, output: 10 * (k + 1) } }
        : { sessionId: `sess-${n}`, customer: 'cust-failover', kind: 'agent' }),
      agent: pickWith(this.r, ['planner', 'writer', 'checker']),
      start: Date.now() - 1000,
      end: Date.now(),
    }));
    const a = await untilDefinite(this.server, 'spans', 'POST', '/v1/spans', { spans });
    if (a.status !== 200 && a.status !== 202) {
      this.unexpected.push(`spans ${a.status} ${JSON.stringify(a.body).slice(0, 200)}`);
      return;
    }
    const rejected = (a.body.rejected as unknown[] | undefined)?.length ?? 0;
    if (rejected) this.unexpected.push(`spans rejected: ${JSON.stringify(a.body.rejected).slice(0, 200)}`);
    else for (const s of spans) if ("usage" in s) this.spans.set(`${traceId}/${s.spanId}`, s.usage.input + s.usage.output);
  }
}

// ---------------------------------------------------------------------------------------------------------------

const ports: number[] = [];
if (redisPortBase) for (let i = 0; i < 6; i++) ports.push(redisPortBase + i);
else while (ports.length < 6) {
  const p = await freePort();
  if (p + 10000 < 65536 && !ports.includes(p)) ports.push(p);
}
const cluster = new ReplicaCluster(ports);
let server: Server | undefined;
const stopAll = async () => {
  await server?.close().catch(() => undefined);
  cluster.stop();
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void stopAll().then(() => process.exit(130)));

try {
  await cluster.boot();
  log(`cluster of 3 masters + 3 replicas on ${cluster.nodes} (AOF always, node timeout ${nodeTimeout} ms), seed ${seed}`);
  server = await startServer('redis://', {
    REDIS_CLUSTER_NODES: cluster.nodes,
    PORT: serverPort,
    APPORTION_RESERVATION_SWEEP_MS: '500',
    APPORTION_SCHEDULER_REFRESH_MS: '2000',
  });
  const s = server;
  log(`server ${s.url}, prefix ${s.prefix}`);

  const must = async (method: string, p: string, body: unknown) => {
    const a = await untilDefinite(s, 'setup', method, p, body, 'admin');
    if (a.status < 200 || a.status >= 300) throw new Error(`${method} ${p}: ${a.status} ${JSON.stringify(a.body)}`);
  };
  await must('PUT', `/v1/pipelines/${PIPELINE}`, {
    defaultTotalTokens: 8000,
    agents: [
      { name: 'planner', priority: 'critical', minTokens: 200 },
      { name: 'writer', priority: 'standard', minTokens: 200 },
      { name: 'checker', priority: 'background', minTokens: 100 },
    ],
  });
  await must('PUT', `/v1/pipelines/${PIPELINE}/features`, {
    features: [
      { name: 'taskType', type: 'categorical', values: ['refund', 'technical', 'billing'] },
      { name: 'messageCount', type: 'numeric', transform: 'log' },
      { name: 'documentTokens', type: 'numeric', transform: 'log' },
    ],
  });
  await must('PUT', '/v1/strategies/fo-estimate', {
    pipeline: PIPELINE,
    kind: 'estimate',
    params: { margin: 1.2, agents: { planner: { base: 600, per: { messageCount: 30 } }, writer: { base: 1500, per: { documentTokens: 0.2 } }, checker: { base: 200 } } },
  });
  await must('PUT', '/v1/strategies/fo-learned', { pipeline: PIPELINE, kind: 'learned', params: { costWeight: 0.5 } });
  await must('PUT', '/v1/budgets', { scope: `tenant:${TENANT}`, unit: 'TOKENS', allocated: ALLOCATED.tenant });
  for (const w of WORKSPACES) {
    await must('PUT', '/v1/budgets', { scope: `tenant:${TENANT}/workspace:${w}`, unit: 'TOKENS', allocated: ALLOCATED.workspace });
    for (const ag of AGENTS) {
      await must('PUT', '/v1/budgets', { scope: `tenant:${TENANT}/workspace:${w}/agent:${ag}`, unit: 'TOKENS', allocated: ALLOCATED.agent, overagePolicy: 'ALLOW_IF_AVAILABLE' });
    }
  }
  log('provisioned: pipeline, 3 strategies, 9 budgets');

  const client = new Client(s, mulberry32(seed * 7919 + 1));
  const running = client.run(6);

  // The fault schedule, drawn from the seed.
  const middle = ['failover', 'sleep', 'pause'];
  for (let i = middle.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [middle[i], middle[j]] = [middle[j]!, middle[i]!];
  }
  const killAt = Math.floor(rng() * (middle.length + 1));
  let plan = [...middle];
  plan.splice(killAt, 0, 'kill');
  plan.splice(plan.indexOf('kill') + 1 + Math.floor(rng() * (plan.length - plan.indexOf('kill'))), 0, 'restart');
  // --lose-writes: the replica of a master stops (SIGSTOP) and its link is dropped for 2 s of load, then the master is
  // killed and the stale replica promoted: what the master acknowledged meanwhile is gone, as asynchronous replication allows.
  if (loseWrites) plan = ['lag-kill', 'restart'];
  const gap = Math.max(2000, Math.floor((seconds * 1000 - 8000) / (plan.length + 1)));
  log(`fault plan: ${plan.join(' → ')} (about ${(gap / 1000).toFixed(1)} s apart)`);
  const windows: { fault: string; from: number; to: number; detail: string }[] = [];
  let killed: number | undefined;
  await sleep(gap);
  for (const f of plan) {
    const from = Date.now();
    let detail = '';
    if (f === 'lag-kill') {
      const t = await cluster.topology();
      killed = pick(await cluster.liveMasters());
      if (loseKey) {
        const slot = Number(await cluster.cmd(cluster.live()[0]!, ['CLUSTER', 'KEYSLOT', loseKey]));
        const shards = (await cluster.cmd(cluster.live()[0]!, ['CLUSTER', 'SLOTS'])) as [number, number, [string, number]][];
        killed = shards.find(([a, b]) => slot >= a && slot <= b)![2][1];
      }
      const replica = [...t].find(([, n]) => n.masterOf === killed)![0];
      cluster.procs.get(replica)!.kill('SIGSTOP');
      // The master drops the link (what it already sent waits in the stopped replica's socket and would still arrive):
      // from now on its writes reach only its own replication backlog.
      await cluster.cmd(killed, ['CLIENT', 'KILL', 'TYPE', 'replica']);
      await sleep(2000);
      cluster.kill(killed);
      cluster.procs.get(replica)!.kill('SIGCONT');
      detail = `SIGSTOP replica ${replica}, its link dropped for 2 s of load, SIGKILL its master ${killed}, SIGCONT ${replica}`;
      log(detail);
      const began = Date.now();
      for (;;) {
        const role = await cluster.cmd(replica, ['ROLE']).catch(() => undefined);
        const info = await cluster.cmd(replica, ['CLUSTER', 'INFO']).catch(() => '');
        if (Array.isArray(role) && role[0] === 'master' && /cluster_state:ok/.test(String(info))) break;
        if (Date.now() - began > 60_000) throw new Error(`stale replica ${replica} not promoted within 60 s`);
        await sleep(100);
      }
      detail += `; ${replica} promoted after ${((Date.now() - began) / 1000).toFixed(1)} s`;
    } else if (f === 'kill') {
      killed = pick(await cluster.liveMasters());
      cluster.kill(killed);
      detail = `SIGKILL master ${killed}`;
      log(detail);
      const promoted = Date.now();
      for (;;) {
        // Promoted: the killed node is marked failed and three other nodes are masters, as every live node sees it.
        const t = await cluster.topology().catch(() => undefined);
        const info = await cluster.cmd(cluster.live()[0]!, ['CLUSTER', 'INFO']).catch(() => '');
        const others = t ? [...t].filter(([p, n]) => p !== killed && n.master && !n.failed).length : 0;
        if (t?.get(killed)?.failed && others === 3 && /cluster_state:ok/.test(String(info))) break;
        if (Date.now() - promoted > 60_000) throw new Error('no replica promoted within 60 s');
        await sleep(100);
      }
      detail += `; replica promoted, cluster ok after ${((Date.now() - promoted) / 1000).toFixed(1)} s`;
    } else if (f === 'restart') {
      if (killed === undefined) continue;
      cluster.startNode(killed);
      detail = `restart ${killed}`;
      const back = Date.now();
      for (;;) {
        const role = await cluster.cmd(killed, ['ROLE']).catch(() => undefined);
        if (Array.isArray(role) && role[0] === 'slave' && role[3] === 'connected') break;
        if (Date.now() - back > 60_000) throw new Error(`${killed} did not rejoin as a connected replica within 60 s`);
        await sleep(100);
      }
      detail += `; rejoined as a connected replica after ${((Date.now() - back) / 1000).toFixed(1)} s`;
    } else if (f === 'failover') {
      const replicas = await cluster.liveReplicas();
      const r = pick(replicas);
      const reply = await cluster.cmd(r, ['CLUSTER', 'FAILOVER']).catch((e: Error) => e.message);
      detail = `CLUSTER FAILOVER on replica ${r}: ${String(reply)}`;
      const began = Date.now();
      for (;;) {
        const role = await cluster.cmd(r, ['ROLE']).catch(() => undefined);
        if (Array.isArray(role) && role[0] === 'master') break;
        if (Date.now() - began > 30_000) {
          detail += ' (not promoted within 30 s)';
          break;
        }
        await sleep(50);
      }
      detail += `; ${r} master after ${((Date.now() - began) / 1000).toFixed(2)} s`;
    } else if (f === 'sleep') {
      const m = pick(await cluster.liveMasters());
      const secs = (0.5 + rng() * 2).toFixed(1);
      detail = `DEBUG SLEEP ${secs} on master ${m}`;
      await cluster.cmd(m, ['DEBUG', 'SLEEP', secs], 10_000).catch((e: Error) => (detail += ` (${e.message})`));
    } else if (f === 'pause') {
      const m = pick(await cluster.liveMasters());
      const msPause = 500 + Math.floor(rng() * 2000);
      detail = `CLIENT PAUSE ${msPause} ALL on master ${m}`;
      await cluster.cmd(m, ['CLIENT', 'PAUSE', String(msPause), 'ALL']).catch((e: Error) => (detail += ` (${e.message})`));
      await sleep(msPause);
    }
    windows.push({ fault: f, from, to: Date.now(), detail });
    log(detail);
    await sleep(gap);
  }
  const lastFault = Date.now();
  const remaining = seconds * 1000 - (Date.now() - t0);
  if (remaining > 0) await sleep(remaining);
  client.stopped = true;
  await running;
  log(`load stopped: ${client.accepted.size} outcomes accepted, ${client.commits} commits, ${client.spans.size} spans acknowledged`);

  // ---- checks ------------------------------------------------------------------------------------------------
  const admin = new Cluster(ports.filter((p) => cluster.live().includes(p)).map((port) => ({ host: '127.0.0.1', port })), { scaleReads: 'master' });
  admin.on('error', () => undefined);
  const bull = (name: string) => {
    const q = new Queue(name, { connection: admin as unknown as Redis, prefix: `${s.prefix}:{bull}` });
    q.on('error', () => undefined);
    return q;
  };
  const outcomesQ = bull('outcomes');
  const drainStart = Date.now();
  for (;;) {
    const c = await outcomesQ.getJobCounts('waiting', 'delayed', 'active', 'prioritized').catch(() => undefined);
    if (c && Object.values(c).every((n) => n === 0)) break;
    if (Date.now() - drainStart > 60_000) break;
    await sleep(200);
  }
  const failedJobs = await outcomesQ.getJobCounts('failed');
  line('outcome jobs failed', String(failedJobs.failed), failedJobs.failed === 0, '0');

  // 1. Outcomes: statistics per strategy.
  for (const st of STRATEGIES) {
    const mine = [...client.accepted.values()].filter((x) => x.strategy === st);
    const a = await call(s, 'GET', `/v1/strategies/${encodeURIComponent(st)}/stats?pipeline=${PIPELINE}`, undefined, 'admin');
    const count = Number(a.body.count ?? NaN);
    const mean = Number((a.body.quality as { mean?: number } | undefined)?.mean ?? NaN);
    const sum = mine.reduce((t, x) => t + x.quality, 0);
    line(`${st}: outcomes counted = outcomes answered 202`, `${count} vs ${mine.length}`, count === mine.length, 'equal');
    line(`${st}: quality sum counted = reported`, `${(mean * count).toFixed(3)} vs ${sum.toFixed(3)}`, Math.abs(mean * count - sum) < 1e-6 * Math.max(1, sum), 'equal');
  }
  line('outcomes answered 404 after a recorded allocation', String(client.outcome404.length), client.outcome404.length === 0, '0');

  // 2. Learner intake: incoming + buffer, by decision id.
  await sleep(6000); // one learner tick moves incoming into the buffer
  const lk = (part: string) => `${s.prefix}:{pipeline:${PIPELINE}}:learner:${part}`;
  const incoming = ((await admin.lrange(lk('incoming'), 0, -1)) as string[]).map((x) => x.slice(x.indexOf('|') + 1)).filter(Boolean);
  const buffer = (await admin.lrange(lk('buffer'), 0, -1)) as string[];
  const seen = new Map<string, number>();
  for (const raw of [...incoming, ...buffer]) {
    try {
      const e = JSON.parse(raw) as { id: string; d?: 1 };
      if (e.d !== 1) seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
    } catch {
      /* not an event */
    }
  }
  const learned = [...client.accepted].filter(([, x]) => x.strategy === 'fo-learned').map(([id]) => id);
  const missing = learned.filter((id) => !seen.has(id));
  const twice = [...seen].filter(([, n]) => n > 1);
  const strangers = [...seen.keys()].filter((id) => !client.accepted.has(id));
  line('learned outcomes in the learner intake', `${learned.length - missing.length} of ${learned.length}`, missing.length === 0, 'all');
  line('learner events twice / of outcomes never accepted', `${twice.length} / ${strangers.length}`, twice.length === 0 && strangers.length === 0, '0 / 0');
  process.stdout.write(`         (learner intake holds ${seen.size} events: ${[...seen.keys()].filter((id) => client.accepted.get(id)?.strategy === 'fo-learned').length} learned, ${[...seen.keys()].filter((id) => client.accepted.get(id)?.strategy !== 'fo-learned').length} of other strategies)\n`);

  // 3. Budgets at every level.
  const bal = await call(s, 'GET', `/v1/balances?scope=${encodeURIComponent(`tenant:${TENANT}`)}&unit=TOKENS`, undefined, 'admin');
  const balances = (bal.body.balances as { scope: string; allocated: number; remaining: number; reserved: number; spent: number; debt: number }[] | undefined) ?? [];
  line('budget levels read', String(balances.length), balances.length === 9, '9');
  for (const b of balances) {
    const told = client.charged.get(b.scope) ?? 0;
    const ok = b.allocated === b.remaining + b.reserved + b.spent && b.spent + b.debt === told && b.reserved === 0;
    line(`${b.scope.replace(`tenant:${TENANT}`, 't')}: a=r+res+s, spent+debt=charged, res=0`, `${b.allocated}=${b.remaining}+${b.reserved}+${b.spent}, ${b.spent + b.debt} vs ${told}`, ok, 'all hold');
  }
  line('reservations granted whose commit found them gone (404)', String(client.lostReservations.length), client.lostReservations.length === 0, '0');

  // 4. Spans.
  const rep = await call(s, 'GET', '/v1/reports/costs?groupBy=customer', undefined, 'admin');
  const row = (rep.body.rows as { key: string; calls: number; tokens: { total: number } }[] | undefined)?.find((r) => r.key.endsWith('cust-failover'));
  const tokens = [...client.spans.values()].reduce((t, x) => t + x, 0);
  line('span rollup: calls, tokens = acknowledged', `${row?.calls} ${row?.tokens.total} vs ${client.spans.size} ${tokens}`, row?.calls === client.spans.size && row?.tokens.total === tokens, 'equal');

  // 5. Latency and status codes.
  const routes = [...new Set(samples.map((x) => x.route))].filter((r) => r !== 'setup');
  for (const r of routes) {
    const xs = samples.filter((x) => x.route === r);
    const mx = xs.reduce((m, x) => Math.max(m, x.ms), 0);
    const codes = new Map<string, number>();
    for (const x of xs) if (x.status >= 500 || x.status === 0) codes.set(`${x.status}${x.code ? ` ${x.code}` : ''}`, (codes.get(`${x.status}${x.code ? ` ${x.code}` : ''}`) ?? 0) + 1);
    const bad = [...codes.keys()].filter((c) => !c.startsWith('503'));
    line(`${r}: ${xs.length} calls, p99 / max ms; 5xx`, `${quantile(xs.map((x) => x.ms), 0.99)} / ${mx}; ${[...codes].map(([c, n]) => `${c}×${n}`).join(', ') || 'none'}`, mx <= hangMs && bad.length === 0, `max ≤ ${hangMs}, only 503`);
  }
  for (const w of windows) {
    const xs = samples.filter((x) => x.at >= w.from && x.at < w.to + 3000);
    const errs = xs.filter((x) => x.status >= 500 || x.status === 0).length;
    process.stdout.write(`         during ${w.fault.padEnd(8)} (+3 s): ${xs.length} calls, ${errs} 5xx/no answer, max ${Math.max(0, ...xs.map((x) => x.ms))} ms — ${w.detail}\n`);
  }
  for (const u of client.unexpected.slice(0, 10)) process.stdout.write(`         unexpected: ${u}\n`);
  line('unexpected answers (not 2xx, 404, 409 or 503)', String(client.unexpected.length), client.unexpected.length === 0, '0');

  // 6. Schedulers and readiness after the last fault, without a restart.
  const swept = Date.now();
  const r1 = await untilDefinite(s, 'setup', 'POST', '/v1/reservations', { scope: `tenant:${TENANT}/workspace:w0/agent:a0`, unit: 'TOKENS', amount: 10, ttlMs: 1000, idempotencyKey: `sweep-${seed}` });
  let sweptMs: number | undefined;
  while (r1.status === 201 && Date.now() - swept < 15_000) {
    const g = await call(s, 'GET', `/v1/reservations/${encodeURIComponent(r1.body.id as string)}`);
    const b = await call(s, 'GET', `/v1/balances?scope=${encodeURIComponent(`tenant:${TENANT}/workspace:w0/agent:a0`)}&unit=TOKENS`, undefined, 'admin');
    const held = (b.body.balances as { scope: string; reserved: number }[] | undefined)?.find((x) => x.scope === `tenant:${TENANT}/workspace:w0/agent:a0`)?.reserved;
    if (g.body.state === 'EXPIRED' && held === 0) {
      sweptMs = Date.now() - swept;
      break;
    }
    await sleep(100);
  }
  line('1 s reservation after the faults swept (hold returned)', sweptMs === undefined ? 'never' : `${(sweptMs / 1000).toFixed(1)} s`, sweptMs !== undefined && sweptMs < 10_000, '< 10 s');
  for (const name of ['budgets', 'rollout', 'learner-tick', 'pipelines']) {
    const q = bull(name);
    const list = await q.getJobSchedulers(0, -1).catch(() => []);
    const next = Math.max(0, ...list.map((x) => x.next ?? 0));
    const ran = list.some((x) => (x.iterationCount ?? 0) >= 2) && next > lastFault;
    line(`${name} scheduler scheduled after the last fault`, list.map((x) => `${x.key}#${x.iterationCount}`).join(' '), ran, 'next run after it');
    if (!ran) {
      const counts = await q.getJobCounts('active', 'waiting', 'delayed', 'prioritized', 'completed', 'failed').catch(() => ({}));
      const jobs = await q.getJobs(['active', 'waiting', 'delayed', 'prioritized'], 0, 10).catch(() => []);
      process.stdout.write(`         ${name}: schedulers ${JSON.stringify(list)}; counts ${JSON.stringify(counts)}; jobs ${JSON.stringify(jobs.map((j) => ({ id: j.id, ts: j.timestamp, delay: j.delay, processedOn: j.processedOn, attempts: j.attemptsMade })))}; now ${Date.now()}\n`);
    }
    await q.close().catch(() => undefined);
  }
  const ready = await call(s, 'GET', '/readyz');
  line('/readyz without a restart', String(ready.status), ready.status === 200, '200');
  const loss = await metric(s, 'apportion_redis_data_loss_total');
  line('data loss reported', String(loss ?? 0), (loss ?? 0) === 0, '0');
  if (process.argv.includes('--measure-wait')) {
    // What WAIT-based durability would cost a write: a script write alone, and followed by WAIT 1 (its replica has
    // it) — alternated, sequential and with 16 at once, on the cluster the load ran on.
    const key = `${s.prefix}:{wait-probe}:h`;
    // One pipeline each (one round trip): WAIT has no key and goes to the node of the pipeline's keyed command.
    const script = "return redis.call('HINCRBY', KEYS[1], 'n', 1)";
    const write = () => admin.pipeline().eval(script, 1, key).exec();
    const withWait = () => admin.pipeline().eval(script, 1, key).call('WAIT', '1', '1000').exec();
    const time = async (fn: () => Promise<unknown>, n: number, par: number) => {
      const t = process.hrtime.bigint();
      await Promise.all(Array.from({ length: par }, async () => {
        for (let i = 0; i < n / par; i++) await fn();
      }));
      return Number(process.hrtime.bigint() - t) / 1e6 / n;
    };
    for (const par of [1, 16]) {
      const a: number[] = [];
      const b: number[] = [];
      for (let round = 0; round < 4; round++) {
        a.push(await time(write, 2000, par));
        b.push(await time(withWait, 2000, par));
      }
      const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
      process.stdout.write(`         WAIT 1 after each write (${par} at once): ${med(b).toFixed(3)} ms a write against ${med(a).toFixed(3)} ms without (ratio ${(med(b) / med(a)).toFixed(2)})\n`);
    }
  }
  await outcomesQ.close().catch(() => undefined);
  admin.disconnect();
  const logFile = path.join(tmpdir(), `apportion-failover-${seed}.log`);
  writeFileSync(logFile, s.logs.join('\n'));
  const loud = s.logs.filter((l) => /"level":(40|50|60)/.test(l));
  process.stdout.write(`\nserver log: ${logFile} (${loud.length} lines at warn or above)\n`);
  const byMsg = new Map<string, number>();
  for (const l of loud) {
    const m = /"msg":"([^"]{0,140})/.exec(l)?.[1] ?? l.slice(0, 140);
    byMsg.set(m, (byMsg.get(m) ?? 0) + 1);
  }
  for (const [m, n] of byMsg) process.stdout.write(`         ${n}× ${m}\n`);
  process.stdout.write(`\nseed ${seed}: ${unmet === 0 ? 'all checks met' : `${unmet} check(s) NOT MET`}\n`);
} finally {
  await stopAll();
}
process.exitCode = unmet === 0 ? 0 : 1;
