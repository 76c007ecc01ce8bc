import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

/** A free loopback TCP port (the OS picks; the listener is closed before returning). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface PrivateRedisOptions {
  /** AOF persistence (`appendonly yes`). Default true. */
  readonly aof?: boolean;
  /** The AOF's fsync policy (default `always`, as docker-compose.yml runs it: see docs/architecture.md, "What is lost"). */
  readonly fsync?: 'always' | 'everysec';
}

/**
 * A redis-server of its own for fault injection: its own loopback port and data directory, so it can be paused
 * (SIGSTOP), killed (SIGKILL) and restarted with or without its data while the shared Redis on 6379, which other
 * work uses, is never touched. Restarts keep the port, so clients reconnect to the same URL.
 */
export class PrivateRedis {
  private proc: ChildProcess | undefined;
  private readonly dir = mkdtempSync(path.join(tmpdir(), 'apportion-redis-'));

  private constructor(
    readonly port: number,
    private readonly opts: PrivateRedisOptions,
  ) {}

  static async start(opts: PrivateRedisOptions = {}): Promise<PrivateRedis> {
    const r = new PrivateRedis(await freePort(), opts);
    await r.spawn();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Epoch ms the current redis-server process was started: before it, Redis was certainly down. */
  startedAt = 0;

  private async spawn(): Promise<void> {
    this.startedAt = Date.now();
    const aof = this.opts.aof ?? true;
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--appendonly', aof ? 'yes' : 'no', '--appendfsync', this.opts.fsync ?? 'always'];
    const proc = spawn('redis-server', args, { stdio: 'ignore' });
    this.proc = proc;
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = new Redis(this.url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      r.on('error', () => undefined);
      // PING answers LOADING while an AOF is replayed: wait for a real PONG.
      const ok = await r
        .connect()
        .then(() => r.ping())
        .then(
          (p) => p === 'PONG',
          () => false,
        );
      r.disconnect();
      if (ok) return;
      if (proc.exitCode !== null) throw new Error(`redis-server on port ${this.port} exited with code ${proc.exitCode}`);
      if (Date.now() > deadline) throw new Error(`redis-server on port ${this.port} did not answer within 20 s`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  /** SIGSTOP: connections stay open, nothing is answered (a stalled Redis). */
  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  /** SIGCONT. */
  resume(): void {
    this.proc?.kill('SIGCONT');
  }

  /** SIGKILL and wait for the exit (no shutdown save, no goodbye to clients). */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((res) => p.once('exit', () => res()));
    p.kill('SIGCONT');
    p.kill('SIGKILL');
    await exited;
    this.proc = undefined;
  }

  /** Starts again on the same port: `empty` deletes the data directory first (a Redis without persistence). */
  async restart(opts: { empty: boolean }): Promise<void> {
    await this.kill();
    if (opts.empty) {
      rmSync(this.dir, { recursive: true, force: true });
      mkdirSync(this.dir, { recursive: true });
    }
    await this.spawn();
  }

  /** Kills the server and deletes its data. */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
