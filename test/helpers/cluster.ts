import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { setPriority, tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './private-redis.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A local Redis Cluster of `masters` masters (no replicas) on free loopback ports, each redis-server in a temp dir
 * of its own: `redis-server --cluster-enabled yes`, then `redis-cli --cluster create … --cluster-yes`, ready once
 * every node reports `cluster_state:ok`. `stop()` kills the servers and removes the dir.
 */
export class LocalCluster {
  private readonly procs: ChildProcess[] = [];
  private readonly dir = mkdtempSync(path.join(tmpdir(), 'apportion-cluster-'));

  private constructor(readonly ports: readonly number[]) {}

  static async start(masters = 3): Promise<LocalCluster> {
    const ports: number[] = [];
    while (ports.length < masters) {
      const p = await freePort();
      // The cluster bus listens on port + 10000: both must be free and below 65536.
      if (p + 10000 < 65536 && !ports.includes(p)) ports.push(p);
    }
    const c = new LocalCluster(ports);
    try {
      await c.boot();
    } catch (e) {
      c.stop();
      throw e;
    }
    return c;
  }

  /** `host:port,…`, as REDIS_CLUSTER_NODES takes it. */
  get nodes(): string {
    return this.ports.map((p) => `127.0.0.1:${p}`).join(',');
  }

  private spawnNode(port: number): ChildProcess {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', this.dir, '--cluster-enabled', 'yes',
      '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '5000', '--save', '', '--appendonly', 'no'];
    const p = spawn('redis-server', args, { stdio: 'ignore' });
    // At the priority of the shared Redis, not of a niced test run (`nice -n 10 npm test`): at load average 40 the
    // niced nodes answered so late that the cluster files failed on the product's 1 s command timeout, while the
    // same files passed on the shared Redis. Raising a priority needs the privilege (root, CAP_SYS_NICE); without
    // it the nodes keep the run's.
    try {
      if (p.pid !== undefined) setPriority(p.pid, 0);
    } catch {
      // Not permitted: the run's priority.
    }
    return p;
  }

  private async boot(): Promise<void> {
    for (const port of this.ports) this.procs.push(this.spawnNode(port));
    for (const port of this.ports) await this.waitFor(port, async (r) => (await r.ping()) === 'PONG', 'PONG');
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...this.ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed (${create.status}): ${create.stdout}${create.stderr}`);
    for (const port of this.ports) {
      await this.waitFor(port, async (r) => /cluster_state:ok/.test(String(await r.call('CLUSTER', 'INFO'))), 'cluster_state:ok');
    }
  }

  private waitFor(port: number, check: (r: Redis) => Promise<boolean>, what: string): Promise<void> {
    return untilNode(port, check, what);
  }

  /** Per node, how many commands it refused with CROSSSLOT since it started (INFO errorstats). */
  async crossSlotErrors(): Promise<number[]> {
    return Promise.all(
      this.ports.map(async (port) => {
        const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
        try {
          const info = await r.info('errorstats');
          const m = /errorstat_CROSSSLOT:count=(\d+)/.exec(info);
          return m ? Number(m[1]) : 0;
        } finally {
          r.disconnect();
        }
      }),
    );
  }

  /** Which of the given script SHA1s some node has cached (run at least once there: EVALSHA after EVAL, or EVAL). */
  async scriptsRun(shas: readonly string[]): Promise<boolean[]> {
    const perNode = await Promise.all(
      this.ports.map(async (port) => {
        const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
        try {
          return (await r.script('EXISTS', ...shas)) as number[];
        } finally {
          r.disconnect();
        }
      }),
    );
    return shas.map((_, i) => perNode.some((n) => n[i] === 1));
  }

  /** Per node, the number of keys it holds (DBSIZE). */
  async keysPerNode(): Promise<number[]> {
    return Promise.all(
      this.ports.map(async (port) => {
        const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
        try {
          return await r.dbsize();
        } finally {
          r.disconnect();
        }
      }),
    );
  }

  /**
   * Moves `slots` hash slots, keys included, from the i-th master to the j-th while clients keep calling: what an
   * operator's `redis-cli --cluster reshard` does (MIGRATING/IMPORTING, then MOVED). Resolves when it has finished.
   */
  async reshard(i: number, j: number, slots: number): Promise<void> {
    const id = async (port: number) => {
      const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
      try {
        return String(await r.call('CLUSTER', 'MYID'));
      } finally {
        r.disconnect();
      }
    };
    const [from, to] = [await id(this.ports[i]!), await id(this.ports[j]!)];
    const args = ['--cluster', 'reshard', `127.0.0.1:${this.ports[i]}`, '--cluster-from', from, '--cluster-to', to, '--cluster-slots', String(slots), '--cluster-yes', '--cluster-pipeline', '50'];
    await new Promise<void>((resolve, reject) => {
      const p = spawn('redis-cli', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      p.once('error', reject);
      p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`redis-cli --cluster reshard exited ${code}: ${err}`))));
    });
  }

  /** SIGKILL the i-th master (no replica takes over: once the others mark it failed, every node says cluster_state:fail). */
  kill(i: number): void {
    this.procs[i]?.kill('SIGKILL');
  }

  /** Starts the i-th master again on its cluster config (its slots, without its data); resolves once it answers PING. */
  async restart(i: number): Promise<void> {
    const port = this.ports[i]!;
    this.procs[i] = this.spawnNode(port);
    await this.waitFor(port, async (r) => (await r.ping()) === 'PONG', 'PONG');
  }

  /** Waits until the i-th node's CLUSTER INFO says `cluster_state:<state>`. */
  async state(i: number, state: 'ok' | 'fail'): Promise<void> {
    const re = new RegExp(`cluster_state:${state}`);
    await this.waitFor(this.ports[i]!, async (r) => re.test(String(await r.call('CLUSTER', 'INFO'))), `cluster_state:${state}`);
  }

  /** SIGSTOP the i-th master: its slots stall, the other shards answer (a stalled shard). */
  pause(i: number): void {
    this.procs[i]?.kill('SIGSTOP');
  }

  /** SIGCONT the i-th master (or every one). */
  resume(i?: number): void {
    for (const [k, p] of this.procs.entries()) if (i === undefined || k === i) p.kill('SIGCONT');
  }

  stop(): void {
    for (const p of this.procs) if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Waits until a fresh connection to the redis-server on `port` passes `check` (a refused or failing connection counts
 * as not yet), polling every 100 ms for at most `timeoutMs`; then throws naming `what`.
 */
export async function untilNode(port: number, check: (r: Redis) => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    r.on('error', () => undefined);
    const ok = await r
      .connect()
      .then(() => check(r))
      .catch(() => false);
    r.disconnect();
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis node 127.0.0.1:${port}: no ${what} within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}
