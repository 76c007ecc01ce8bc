/**
 * Shared benchmark plumbing. The server runs in a child process (`apportion serve`) so the load generator
 * does not share its event loop; every run uses a fresh key prefix, dropped at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import type { Redis } from 'ioredis';
import { dropPrefix as dropPrefixAt } from '../src/redis/prefix.js';
import { foreignWorld } from '../src/learner/sim/foreign.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface BenchServer {
  readonly url: string;
  readonly adminKey: string;
  readonly clientKey: string;
  readonly prefix: string;
  readonly child: ChildProcess;
  close(): Promise<void>;
}

/**
 * Starts `apportion serve` (API + workers; or `api` / `worker` alone) on a free port with auth on and the bench
 * no-op route. A worker started for an api server passes that server's prefix (and keys are irrelevant to it).
 */
export async function spawnServer(
  env: Record<string, string> = {},
  nodeArgs: readonly string[] = [],
  command: 'serve' | 'api' | 'worker' = 'serve',
  prefixOverride?: string,
): Promise<BenchServer> {
  const prefix = prefixOverride ?? `bench-${randomBytes(4).toString('hex')}`;
  const adminKey = `admin-${randomBytes(12).toString('hex')}`;
  const clientKey = `client-${randomBytes(12).toString('hex')}`;
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'src/cli/main.ts', command], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: '0',
      REDIS_URL,
      APPORTION_KEY_PREFIX: prefix,
      APPORTION_ADMIN_KEY: adminKey,
      APPORTION_CLIENT_KEY: clientKey,
      APPORTION_BENCH_ROUTES: 'true',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const onData = (chunk: Buffer) => {
      buf += chunk.toString();
      for (const line of buf.split('\n')) {
        if (!line.includes('apportion started')) continue;
        try {
          const u = (JSON.parse(line) as { url?: string }).url ?? (command === 'worker' ? '(worker)' : undefined);
          if (u) {
            child.stdout!.off('data', onData);
            child.stdout!.resume();
            resolve(u);
            return;
          }
        } catch {
          /* partial line */
        }
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited early with code ${code}`)));
    setTimeout(() => reject(new Error('server did not start within 60 s')), 60_000).unref();
  });
  return {
    url,
    adminKey,
    clientKey,
    prefix,
    child,
    async close() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
      await dropPrefix(prefix);
    },
  };
}

export function dropPrefix(prefix: string): Promise<void> {
  return dropPrefixAt(REDIS_URL, prefix);
}

export interface CannonOptions {
  readonly url: string;
  readonly method?: 'GET' | 'POST' | 'PUT';
  readonly path: string;
  /** One body for every request, or many cycled through. */
  readonly body?: unknown;
  readonly bodies?: readonly unknown[];
  readonly key?: string;
  readonly connections?: number;
  readonly pipelining?: number;
  readonly durationSec?: number;
}

export interface CannonResult {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly non2xx: number;
  readonly total: number;
}

/** Runs autocannon against one route; latencies in ms. */
export async function cannon(o: CannonOptions): Promise<CannonResult> {
  const bodies = (o.bodies ?? (o.body !== undefined ? [o.body] : [])).map((b) => JSON.stringify(b));
  let i = 0;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (o.key) headers.authorization = `Bearer ${o.key}`;
  const result = await autocannon({
    url: o.url,
    connections: o.connections ?? 64,
    pipelining: o.pipelining ?? 1,
    duration: o.durationSec ?? 10,
    requests: [
      {
        method: o.method ?? 'POST',
        path: o.path,
        headers,
        ...(bodies.length ? { setupRequest: (req: autocannon.Request) => ({ ...req, body: bodies[i++ % bodies.length] }) } : {}),
      },
    ],
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    non2xx: result.non2xx,
    total: result.requests.total,
  };
}

export function fmt(r: CannonResult): string {
  return `${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  errors ${r.errors}  non-2xx ${r.non2xx}`;
}

/** Parses `--name value` flags. */
/**
 * The worlds outside the model's class (src/learner/sim/foreign.ts) at entries `indexes` of
 * experiments/family/foreign-seeds.json: entry i is seed i with composition kinds[i % kinds.length]. `'all'`: every entry.
 */
export function foreignWorlds(indexes: readonly number[] | 'all'): { readonly seed: number; readonly world: ReturnType<typeof foreignWorld> }[] {
  const file = JSON.parse(readFileSync(new URL('../experiments/family/foreign-seeds.json', import.meta.url), 'utf8')) as { kinds: Parameters<typeof foreignWorld>[1][]; seeds: number[] };
  const at = indexes === 'all' ? file.seeds.map((_, i) => i) : indexes;
  return at.map((i) => {
    const seed = file.seeds[i];
    if (seed === undefined) throw new Error(`experiments/family/foreign-seeds.json has no entry ${i} (0–${file.seeds.length - 1})`);
    return { seed, world: foreignWorld(seed, file.kinds[i % file.kinds.length]!) };
  });
}

export function flag(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def;
}

/**
 * The tier benches' flags for the learned strategy's parameters (default the service's): `--token-share s
 * [--token-spread δ]` (guaranteed token perturbations around the greedy action), `--epsilon-decay p` / `--gap-weight γ`
 * (`tierEpsilonDecay`, the exploration rate's decay exponent budget·(from/v)^p; `tierGapWeight`, γ of the
 * inverse-gap weighting), `--control-min m` / `--control-margin x` (the guard's control share floor while the serving
 * version leads, 0.05 = a fixed share, and the lead beyond which the share falls: controlShareMin, controlShareMargin),
 * `--train-every n` (outcomes between retrains, `trainEvery`; the tier default TIER_TRAIN_EVERY); `--serving-floor x`
 * (the tier loop's gate: GateRule.servingFloor, the least estimate against the serving version; default none).
 */
export function tierPolicyFlags() {
  const f = {
    tokenShare: flag('token-share', ''),
    tokenSpread: flag('token-spread', ''),
    epsilonDecay: flag('epsilon-decay', ''),
    gapWeight: flag('gap-weight', ''),
    controlMin: flag('control-min', ''),
    controlMargin: flag('control-margin', ''),
    trainEvery: flag('train-every', ''),
    servingFloor: flag('serving-floor', ''),
    exploreFirst: flag('explore-first', ''),
    exploreFirstShare: flag('explore-first-share', ''),
    probationShare: flag('probation-share', ''),
    probationMargin: flag('probation-margin', ''),
  };
  const params = {
    ...(f.epsilonDecay !== '' ? { tierEpsilonDecay: Number(f.epsilonDecay) } : {}),
    ...(f.gapWeight !== '' ? { tierGapWeight: Number(f.gapWeight) } : {}),
    ...(f.controlMin !== '' ? { controlShareMin: Number(f.controlMin) } : {}),
    ...(f.controlMargin !== '' ? { controlShareMargin: Number(f.controlMargin) } : {}),
    ...(f.tokenShare !== '' ? { tierTokenShare: Number(f.tokenShare) } : {}),
    ...(f.tokenSpread !== '' ? { tierTokenSpread: Number(f.tokenSpread) } : {}),
    ...(f.trainEvery !== '' ? { trainEvery: Number(f.trainEvery) } : {}),
    ...(f.exploreFirst !== '' ? { exploreFirst: Number(f.exploreFirst) } : {}),
    ...(f.exploreFirstShare !== '' ? { exploreFirstShare: Number(f.exploreFirstShare) } : {}),
    ...(f.probationShare !== '' ? { probationShare: Number(f.probationShare) } : {}),
    ...(f.probationMargin !== '' ? { probationMargin: Number(f.probationMargin) } : {}),
  };
  // The tier loop's gate rule (TierLoopOptions.gate): `--serving-floor x`, GateRule.servingFloor.
  const loop = f.servingFloor !== '' ? { gate: { servingFloor: Number(f.servingFloor) } } : {};
  const label = `token share ${f.tokenShare || 'default'}${f.tokenSpread ? `, spread ${f.tokenSpread}` : ''}, exploration decay p ${f.epsilonDecay || 'default'}, gap weight γ ${f.gapWeight || 'default'}, control share floor ${f.controlMin || 'default'}, margin ${f.controlMargin || 'default'}, retrain every ${f.trainEvery || 'default'} outcomes${f.servingFloor !== '' ? `, gate serving floor ${f.servingFloor}` : ''}${f.exploreFirst !== '' ? `, explore-first ${f.exploreFirst} at share ${f.exploreFirstShare || 'default'}` : ''}, probation share ${f.probationShare || 'default'}, margin ${f.probationMargin || 'default'}`;
  return { ...f, params, loop, label };
}

/** CPU seconds used by the load generator (this process), the server process and Redis while `fn` runs. */
export interface Cpu {
  gen: number;
  server: number;
  redis: number;
  /** Share of the machine's CPU time that was idle (from /proc/stat; NaN where there is none). */
  idle: number;
  /** Seconds the server's main thread was runnable but not running (/proc/<pid>/schedstat). */
  serverWait: number;
}

/** The machine's CPU counters (user … steal, in ticks), or undefined where /proc/stat does not exist. */
function machineTicks(): number[] | undefined {
  try {
    return readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  } catch {
    return undefined;
  }
}

/** Seconds a thread has waited on a run queue (second field of schedstat, ns); NaN where unavailable. */
function runQueueWaitSec(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
  } catch {
    return Number.NaN;
  }
}

export function childCpuSec(pid: number): number {
  let f: string;
  try {
    f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return Number.NaN; // the server exited (its log says why)
  }
  const parts = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(parts[11]) + Number(parts[12])) / 100; // utime + stime in clock ticks (100 Hz)
}

export async function redisCpuSec(r: Redis): Promise<number> {
  const info = await r.info('cpu');
  const v = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  return v('used_cpu_user') + v('used_cpu_sys');
}

export async function withCpu<T>(server: BenchServer, redis: Redis, fn: () => Promise<T>): Promise<{ r: T; cpu: Cpu; wall: number }> {
  const g0 = process.cpuUsage();
  const s0 = childCpuSec(server.child.pid!);
  const r0 = await redisCpuSec(redis);
  const m0 = machineTicks();
  const w0 = runQueueWaitSec(server.child.pid!);
  const t0 = performance.now();
  const r = await fn();
  const wall = (performance.now() - t0) / 1000;
  const g = process.cpuUsage(g0);
  const m1 = machineTicks();
  const d = m0 && m1 ? m1.map((v, i) => v - m0[i]!) : undefined;
  const idle = d ? d[3]! / d.reduce((a, b) => a + b, 0) : Number.NaN;
  return {
    r,
    wall,
    cpu: {
      gen: (g.user + g.system) / 1e6,
      server: childCpuSec(server.child.pid!) - s0,
      redis: (await redisCpuSec(redis)) - r0,
      idle,
      serverWait: runQueueWaitSec(server.child.pid!) - w0,
    },
  };
}

/** Cores kept busy, and CPU µs per HTTP request (robust-ish to a shared machine: it counts work, not waiting). */
export const cpuLine = (c: Cpu, wall: number, requests: number) =>
  `cpu (cores busy): load generator ${(c.gen / wall).toFixed(2)}  server ${(c.server / wall).toFixed(2)}  redis ${(c.redis / wall).toFixed(2)}` +
  `   µs/request: generator ${((c.gen / requests) * 1e6).toFixed(0)}  server ${((c.server / requests) * 1e6).toFixed(0)}  redis ${((c.redis / requests) * 1e6).toFixed(0)}` +
  `   machine idle ${c.idle.toFixed(2)}, server main thread runnable-but-waiting ${(c.serverWait / wall).toFixed(2)}`;

export interface PacedOptions {
  readonly url: string;
  readonly path: string;
  readonly bodies: readonly unknown[];
  readonly key?: string;
  /** Requests per second, sent on a fixed schedule whatever the responses do (open loop). */
  readonly rate: number;
  readonly durationSec: number;
  /** Sockets to spread the requests over (keep-alive). */
  readonly sockets?: number;
}

export interface PacedResult {
  readonly sent: number;
  readonly ok: number;
  readonly errors: number;
  /** Latencies in ms, measured from each request's scheduled send time (so queueing behind a stall counts:
   * no coordinated omission), with a microsecond timer. */
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  /** p99 of how late the generator itself sent requests (timer and GC delays in this process): when it is close
   * to p99, the tail is the generator's, not the server's. */
  readonly sendLagP99: number;
  /** Every successful request's latency (ms, ascending), for pooling windows (LatencyHistogram). */
  readonly latencies: readonly number[];
}

/**
 * An open-loop load generator at a fixed request rate: for comparing latency at a load the server can carry
 * (autocannon drives a closed loop as fast as it can, and reports whole milliseconds).
 */
export async function paced(o: PacedOptions): Promise<PacedResult> {
  const u = new URL(o.url);
  const agent = new Agent({ keepAlive: true, maxSockets: o.sockets ?? 32, noDelay: true });
  const bodies = o.bodies.map((b) => JSON.stringify(b));
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (o.key) headers.authorization = `Bearer ${o.key}`;
  const lat: number[] = [];
  const lag: number[] = [];
  let sent = 0;
  let errors = 0;
  const total = Math.round(o.rate * o.durationSec);
  const start = performance.now();
  const interval = 1000 / o.rate;
  const inflight = new Set<Promise<void>>();
  const fire = (due: number, body: string) => {
    lag.push(performance.now() - due);
    const p = new Promise<void>((resolve) => {
      const req = request(
        { agent, host: u.hostname, port: u.port, path: o.path, method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) } },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode && res.statusCode < 300) lat.push(performance.now() - due);
            else errors++;
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(body);
    });
    inflight.add(p);
    void p.then(() => inflight.delete(p));
  };
  while (sent < total) {
    const now = performance.now();
    // Send everything that is due (a late timer catches up at once, keeping the schedule).
    while (sent < total && start + sent * interval <= now) {
      fire(start + sent * interval, bodies[sent % bodies.length]!);
      sent++;
    }
    const next = start + sent * interval - performance.now();
    await new Promise((r) => (next > 1 ? setTimeout(r, Math.floor(next)) : setImmediate(r)));
  }
  await Promise.all(inflight);
  agent.destroy();
  lat.sort((a, b) => a - b);
  lag.sort((a, b) => a - b);
  const q = (xs: number[], p: number) => (xs.length ? xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]! : Number.NaN);
  return {
    sent,
    ok: lat.length,
    errors,
    p50: q(lat, 0.5),
    p99: q(lat, 0.99),
    p999: q(lat, 0.999),
    max: lat.length ? lat[lat.length - 1]! : Number.NaN,
    sendLagP99: q(lag, 0.99),
    latencies: lat,
  };
}

/**
 * Latencies binned on a log scale (1 % wide bins from 10 µs to ~100 s): windows of a run are pooled by adding
 * their bins, which makes resampling whole windows (cluster bootstrap) cheap.
 */
export class LatencyHistogram {
  static readonly MIN_MS = 0.01;
  static readonly GROWTH = 1.01;
  static readonly BINS = Math.ceil(Math.log(1e7) / Math.log(LatencyHistogram.GROWTH)) + 1;
  readonly counts = new Float64Array(LatencyHistogram.BINS);
  total = 0;

  static of(latencies: readonly number[]): LatencyHistogram {
    const h = new LatencyHistogram();
    for (const ms of latencies) {
      const b = ms <= LatencyHistogram.MIN_MS ? 0 : Math.floor(Math.log(ms / LatencyHistogram.MIN_MS) / Math.log(LatencyHistogram.GROWTH));
      h.counts[Math.min(LatencyHistogram.BINS - 1, b)]! += 1;
      h.total++;
    }
    return h;
  }

  /** The windows' latencies together. */
  static pool(hs: readonly LatencyHistogram[]): LatencyHistogram {
    return hs.reduce((acc, h) => acc.add(h), new LatencyHistogram());
  }

  add(o: LatencyHistogram): this {
    for (let i = 0; i < this.counts.length; i++) this.counts[i]! += o.counts[i]!;
    this.total += o.total;
    return this;
  }

  /** The q-quantile (upper edge of its bin, so within 1 % above the exact value). */
  quantile(q: number): number {
    const rank = q * this.total;
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen > rank) return LatencyHistogram.MIN_MS * LatencyHistogram.GROWTH ** (i + 1);
    }
    return Number.NaN;
  }
}

/** The nearest-rank p-quantile of the finite values (the lower middle for the median of an even count); NaN when there are none. */
export function rankQuantile(xs: readonly number[], p: number): number {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? v[Math.min(v.length - 1, Math.max(0, Math.ceil(p * v.length) - 1))]! : NaN;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * The ratio of the medians of per-window values (B ÷ A, e.g. each window's p99), with a 95 % percentile-bootstrap
 * interval resampling windows within each group: the typical window, robust to one window wrecked by a stall of
 * the machine (the pooled quantile is not).
 */
export function medianRatio(a: readonly number[], b: readonly number[], rng: () => number, resamples = 2000): { ratio: number; lo: number; hi: number } {
  const draw = (xs: readonly number[]) => median(xs.map(() => xs[Math.floor(rng() * xs.length)]!));
  const ratios = Array.from({ length: resamples }, () => draw(b) / draw(a)).sort((x, y) => x - y);
  return { ratio: median(b) / median(a), lo: ratios[Math.floor(0.025 * resamples)]!, hi: ratios[Math.floor(0.975 * resamples) - 1]! };
}

/**
 * The ratio of the pooled q-quantile of windows B to that of windows A, with a 95 % percentile-bootstrap interval
 * that resamples whole windows within each group (a window is the unit that varies: latencies inside one window
 * are correlated, so resampling single requests would understate the spread).
 */
export function pooledQuantileRatio(
  a: readonly LatencyHistogram[],
  b: readonly LatencyHistogram[],
  q: number,
  rng: () => number,
  resamples = 2000,
): { ratio: number; lo: number; hi: number } {
  const pool = LatencyHistogram.pool;
  const draw = (hs: readonly LatencyHistogram[]) => pool(hs.map(() => hs[Math.floor(rng() * hs.length)]!));
  const ratios: number[] = [];
  for (let r = 0; r < resamples; r++) ratios.push(draw(b).quantile(q) / draw(a).quantile(q));
  ratios.sort((x, y) => x - y);
  return { ratio: pool(b).quantile(q) / pool(a).quantile(q), lo: ratios[Math.floor(0.025 * resamples)]!, hi: ratios[Math.floor(0.975 * resamples) - 1]! };
}

export function fmtPaced(r: PacedResult): string {
  return `${r.sent} sent  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  p99.9 ${r.p999.toFixed(2)} ms  max ${r.max.toFixed(1)} ms  errors ${r.errors}  (generator send lag p99 ${r.sendLagP99.toFixed(2)} ms)`;
}

/** Scrapes the server's /metrics once; the returned reader gives a sample's value by its name with labels as exposed,
 * e.g. `x_total` or `x_count{kind="major"}` (undefined when absent). */
export async function scrapeMetrics(server: BenchServer): Promise<(name: string) => number | undefined> {
  const text = await (await fetch(new URL('/metrics', server.url), { headers: { authorization: `Bearer ${server.adminKey}` } })).text();
  return (name) => {
    const v = new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1];
    return v === undefined ? undefined : Number(v);
  };
}

/**
 * The server's event-loop delay since the previous call (prom-client's monitor, reset at every /metrics scrape):
 * max and p99 in ms; and the major (Mark-Compact) collections it has run so far. Tells a stall inside the server's process (GC, a long synchronous turn) from one elsewhere.
 */
export async function serverLoopDelay(server: BenchServer): Promise<{ max: number; p99: number; majorGcs: number }> {
  const read = await scrapeMetrics(server);
  const ms = (stat: string) => (read(`apportion_nodejs_eventloop_lag_${stat}_seconds`) ?? Number.NaN) * 1000;
  return { max: ms('max'), p99: ms('p99'), majorGcs: read('apportion_nodejs_gc_duration_seconds_count{kind="major"}') ?? Number.NaN };
}

export const fmtLoop = (d: { max: number; p99: number }) => `server loop delay p99 ${d.p99.toFixed(1)} ms, max ${d.max.toFixed(1)} ms`;

/** A uniform draw in [0, 1): the simulations' seeded generators (mulberry32 and the like). */
export type Rand = () => number;
/** A standard normal draw (Box–Muller). */
export const normal = (u: Rand): number => {
  let x = 0;
  while (x === 0) x = u();
  return Math.sqrt(-2 * Math.log(x)) * Math.cos(2 * Math.PI * u());
};
/** A unit's own effect: a standard normal draw cut to [−1, 1]. */
export const effect = (u: Rand): number => Math.max(-1, Math.min(1, normal(u)));
/** x cut to [0, 1]. */
export const clip = (x: number): number => Math.min(1, Math.max(0, x));
/** Draws of a geometric count ≥ 1 with the given mean (outcomes per unit). */
export const geometric = (mean: number) => (u: Rand): number => 1 + Math.floor(Math.log(1 - u()) / Math.log(1 - 1 / mean));
