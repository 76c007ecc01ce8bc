/**
 * Fault-injection harness of bench/faults.ts (the `_` keeps bench/run-all.ts from running it as a benchmark): a private redis-server,
 * `apportion serve` started through the real bin (bin/apportion.mjs), and a steady load of allocations, outcomes
 * and reservations whose every answer is recorded with the time it was sent, so figures can be taken per fault
 * window afterwards. The load behaves like a careful client: a 503 (or a network error) on an outcome or a commit
 * is retried with the same body and idempotency key until it is answered.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const PIPELINE = 'faults';
export const TENANT = 'faults';
export const TENANT_SCOPE = `tenant:${TENANT}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Server {
  readonly url: string;
  readonly adminKey: string;
  readonly clientKey: string;
  readonly prefix: string;
  readonly child: ChildProcess;
  /** Every log line the server wrote (pino JSON). */
  readonly logs: string[];
  close(): Promise<void>;
}

/** Starts `node bin/apportion.mjs serve` against `redisUrl`, auth on; resolves with its URL once it listens. */
export async function startServer(redisUrl: string, env: Record<string, string> = {}): Promise<Server> {
  const prefix = `faults-${randomBytes(4).toString('hex')}`;
  const adminKey = `admin-${randomBytes(12).toString('hex')}`;
  const clientKey = `client-${randomBytes(12).toString('hex')}`;
  const child = spawn(process.execPath, ['bin/apportion.mjs', 'serve'], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: '0',
      REDIS_URL: redisUrl,
      APPORTION_KEY_PREFIX: prefix,
      APPORTION_ADMIN_KEY: adminKey,
      APPORTION_CLIENT_KEY: clientKey,
      APPORTION_SEED_EXAMPLES: 'false',
      APPORTION_RESERVATION_SWEEP_MS: '500',
      APPORTION_ROLLOUT_INTERVAL_MS: '1000',
      APPORTION_CONFIG_POLL_MS: '500',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const logs: string[] = [];
  let partial = '';
  let resolveUrl: (u: string) => void;
  const urlP = new Promise<string>((r) => (resolveUrl = r));
  child.stdout!.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      logs.push(line);
      if (line.includes('apportion started')) {
        const u = (JSON.parse(line) as { url?: string }).url;
        if (u) resolveUrl(u);
      }
    }
  });
  const url = await Promise.race([
    urlP,
    new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`server exited early with code ${code}`)))),
    sleep(120_000).then(() => Promise.reject(new Error('server did not start within 120 s'))),
  ]).catch((e: unknown) => {
    // A server that did not say it started (or exited) is not left running behind the bench.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    throw e;
  });
  return {
    url,
    adminKey,
    clientKey,
    prefix,
    child,
    logs,
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(20_000)]);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

export interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/** One HTTP call; a network error or a client-side timeout is status 0. */
export async function call(server: Server, method: string, path: string, body?: unknown, key: 'admin' | 'client' = 'client', timeoutMs = 15_000): Promise<Answer> {
  try {
    const res = await fetch(server.url + path, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), authorization: `Bearer ${key === 'admin' ? server.adminKey : server.clientKey}` },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: Record<string, unknown> = {};
    try {
      parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    } catch {
      parsed = { text };
    }
    return { status: res.status, body: parsed };
  } catch (e) {
    return { status: 0, body: { error: e instanceof Error ? e.message : String(e) } };
  }
}

/** The pipeline and the budget the load uses (admin calls; retried while the server answers 503). */
export async function provision(server: Server): Promise<void> {
  const must = async (method: string, path: string, body: unknown) => {
    for (let i = 0; ; i++) {
      const a = await call(server, method, path, body, 'admin');
      if (a.status >= 200 && a.status < 300) return;
      if (i > 100) throw new Error(`${method} ${path}: ${a.status} ${JSON.stringify(a.body)}`);
      await sleep(100);
    }
  };
  await must('PUT', `/v1/pipelines/${PIPELINE}`, {
    defaultTotalTokens: 4000,
    agents: [
      { name: 'planner', priority: 'critical', minTokens: 100 },
      { name: 'writer', priority: 'standard', minTokens: 100 },
    ],
  });
  await must('PUT', '/v1/budgets', { scope: TENANT_SCOPE, unit: 'TOKENS', allocated: 1_000_000_000_000 });
}

export interface Sample {
  readonly kind: 'allocate' | 'outcome' | 'reserve' | 'commit';
  /** Epoch ms the request was sent, and how long its answer took. */
  readonly at: number;
  readonly ms: number;
  readonly status: number;
  readonly recorded?: boolean;
}

/**
 * Steady load: `allocRate` allocations a second (each recorded decision gets an outcome), `reserveRate`
 * reservations a second (each committed with a used amount ≤ its hold). Keeps what was acknowledged.
 */
export class Load {
  readonly samples: Sample[] = [];
  /** Decisions whose outcome was answered 202 (each reported until it was). */
  readonly ackedOutcomes = new Set<string>();
  /** Outcomes given up on (404: the decision record is gone, e.g. Redis lost its data). */
  readonly droppedOutcomes = new Set<string>();
  /** Tokens reported used by commits that were answered 200, and what those answers said was charged. */
  usedAcked = 0;
  chargedAcked = 0;
  commitsAcked = 0;
  /** Reservations granted (201), and commits that found their reservation gone (404/409: not charged). */
  reservesGranted = 0;
  commitsLost = 0;
  private stopped = false;
  private readonly loops: Promise<void>[] = [];
  private readonly pending = new Set<Promise<void>>();
  private seq = 0;
  private readonly tag = randomBytes(3).toString('hex');

  constructor(
    private readonly server: Server,
    private readonly o: { readonly allocRate: number; readonly reserveRate: number; readonly concurrency?: number },
  ) {}

  start(): void {
    const c = this.o.concurrency ?? 4;
    for (let i = 0; i < c && this.o.allocRate > 0; i++) this.loops.push(this.paced(this.o.allocRate / c, () => this.allocateOnce()));
    for (let i = 0; i < c && this.o.reserveRate > 0; i++) this.loops.push(this.paced(this.o.reserveRate / c, () => this.reserveOnce()));
  }

  /** Stops sending new work; waits until every outcome and commit in flight has been answered (or given up). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    while (this.pending.size > 0) await Promise.all(this.pending);
  }

  private async paced(rate: number, fn: () => Promise<void>): Promise<void> {
    const every = 1000 / rate;
    let next = Date.now();
    while (!this.stopped) {
      next += every;
      // An answer that took long does not queue a burst behind it: the loop sends at most one request at a time.
      const p = fn();
      this.track(p);
      await p;
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      else next = Date.now();
    }
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private async timed(kind: Sample['kind'], method: string, path: string, body: unknown): Promise<Answer> {
    const at = Date.now();
    const a = await call(this.server, method, path, body);
    this.samples.push({ kind, at, ms: Date.now() - at, status: a.status, ...(kind === 'allocate' ? { recorded: a.body.recorded === true } : {}) });
    return a;
  }

  private async allocateOnce(): Promise<void> {
    const a = await this.timed('allocate', 'POST', '/v1/allocations', { pipeline: PIPELINE, unitKey: `u${this.seq++}` });
    if (a.status !== 200 || a.body.recorded !== true) return;
    const decisionId = a.body.decisionId as string;
    // Reported in the background, as a client would after the work: the allocation loop keeps its pace.
    this.track(this.reportOutcome(decisionId));
  }

  private async reportOutcome(decisionId: string): Promise<void> {
    const body = { decisionId, quality: 0.8, usage: { planner: { inputTokens: 50, outputTokens: 20 } } };
    for (;;) {
      const a = await this.timed('outcome', 'POST', '/v1/outcomes', body);
      if (a.status === 202) {
        this.ackedOutcomes.add(decisionId);
        return;
      }
      if (a.status === 404) {
        this.droppedOutcomes.add(decisionId);
        return;
      }
      if (a.status !== 503 && a.status !== 0) throw new Error(`outcome ${decisionId}: ${a.status} ${JSON.stringify(a.body)}`);
      await sleep(250);
    }
  }

  /**
   * A reservation, retried with the same idempotency key while the answer is 503 (for up to ~20 s): a reserve
   * that timed out may still have been applied when Redis answered again, and only a replay with the same key
   * finds that hold (its answer is the original grant) instead of leaving it held until its TTL.
   */
  private async reserveOnce(): Promise<void> {
    const n = this.seq++;
    const body = { scope: `${TENANT_SCOPE}/agent:a${n % 4}`, unit: 'TOKENS', amount: 1000, ttlMs: 120_000, idempotencyKey: `r-${this.tag}-${n}` };
    let a = await this.timed('reserve', 'POST', '/v1/reservations', body);
    for (let i = 0; (a.status === 503 || a.status === 0) && i < 80 && !this.stopped; i++) {
      await sleep(250);
      a = await this.timed('reserve', 'POST', '/v1/reservations', body);
    }
    if (a.status !== 201) return;
    this.reservesGranted++;
    this.track(this.commit(a.body.id as string, 1 + ((n * 7919) % 1000), `c-${this.tag}-${n}`));
  }

  private async commit(id: string, used: number, idempotencyKey: string): Promise<void> {
    for (;;) {
      const a = await this.timed('commit', 'POST', `/v1/reservations/${encodeURIComponent(id)}/commit`, { amount: used, idempotencyKey });
      if (a.status === 200) {
        this.commitsAcked++;
        this.usedAcked += used;
        this.chargedAcked += Number(a.body.charged ?? 0);
        return;
      }
      if (a.status === 404 || a.status === 409) {
        this.commitsLost++;
        return;
      }
      if (a.status !== 503 && a.status !== 0) throw new Error(`commit ${id}: ${a.status} ${JSON.stringify(a.body)}`);
      await sleep(250);
    }
  }

  /** Samples of one kind sent within [from, to). */
  within(kind: Sample['kind'], from: number, to: number): Sample[] {
    return this.samples.filter((s) => s.kind === kind && s.at >= from && s.at < to);
  }
}

export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}

/** The tenant's ledger as the API reports it. */
export async function tenantBalance(server: Server): Promise<{ spent: number; reserved: number; debt: number } | undefined> {
  const a = await call(server, 'GET', `/v1/balances?scope=${encodeURIComponent(TENANT_SCOPE)}&unit=TOKENS`, undefined, 'admin');
  const b = (a.body.balances as { scope: string; spent: number; reserved: number; debt: number }[] | undefined)?.find((x) => x.scope === TENANT_SCOPE);
  return b ? { spent: b.spent, reserved: b.reserved, debt: b.debt } : undefined;
}

/** Outcomes counted for the pipeline's default strategy (`@uniform`). */
export async function outcomesCounted(server: Server): Promise<number> {
  const a = await call(server, 'GET', `/v1/strategies/@uniform/stats?pipeline=${PIPELINE}`, undefined, 'admin');
  return Number(a.body.count ?? NaN);
}

/** BullMQ queues of the server, read directly (job schedulers, depth). */
export function queuesOf(server: Server, redisUrl: string): { queues: Record<string, Queue>; connection: Redis } {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined);
  const prefix = `${server.prefix}:bull`;
  const queues: Record<string, Queue> = {};
  for (const name of ['outcomes', 'budgets', 'rollout', 'learner-tick']) {
    const q = new Queue(name, { connection, prefix });
    q.on('error', () => undefined);
    queues[name] = q;
  }
  return { queues, connection };
}

/** Waits until the outcomes queue holds nothing waiting, delayed or active (every queued outcome applied). */
export async function drained(queue: Queue, timeoutMs = 60_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const c = await queue.getJobCounts('waiting', 'delayed', 'active', 'prioritized').catch(() => undefined);
    if (c && Object.values(c).every((n) => n === 0)) return true;
    await sleep(200);
  }
  return false;
}

/** A scheduler has run since `since` (epoch ms): its next run is scheduled after a run that happened after `since`. */
export async function schedulerRanSince(queue: Queue, since: number): Promise<boolean> {
  const list = await queue.getJobSchedulers(0, -1).catch(() => []);
  return list.some((s) => (s.iterationCount ?? 0) >= 2 && (s.next ?? 0) > since);
}

/** Reads a counter from /metrics (sum over its labels); undefined when absent. */
export async function metric(server: Server, name: string): Promise<number | undefined> {
  try {
    const text = await (await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    let sum: number | undefined;
    for (const line of text.split('\n')) {
      if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  } catch {
    return undefined;
  }
}

/** Polls `check` every 100 ms until true; the ms it took, or undefined after `timeoutMs` (a bound, not a target). */
export async function timeUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<number | undefined> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (await check().catch(() => false)) return Date.now() - t0;
    await sleep(100);
  }
  return undefined;
}
