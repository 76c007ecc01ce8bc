import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

/** Redis key of a prefix's generation marker. */
export const generationKey = (prefix: string): string => `${prefix}:generation`;

export interface RedisReset {
  /** The marker this process knew. */
  readonly previous: string;
  /** The marker now in Redis (set by this process or by another that noticed first). */
  readonly current: string;
  /** True when this process found the marker missing; false when another process had already re-marked. */
  readonly detectedHere: boolean;
}

export interface GenerationOptions {
  /** How often the marker is checked, in ms (and on every reconnect). Default 1000. */
  readonly pollMs?: number;
  /** Called once per change of generation, never concurrently with itself. */
  readonly onReset: (reset: RedisReset) => void | Promise<void>;
  readonly onError?: (err: unknown) => void;
}

/**
 * Detects that Redis lost its data (restarted without persistence, flushed, failed over to an empty replica).
 * The first process to start on a prefix writes a random marker (`<p>:generation`, no TTL); every process
 * remembers it and checks it every second and on every reconnect. A missing marker means the data this
 * process's state was built on is gone: it writes a new one (SET NX: exactly one process wins) and reports a
 * reset. A marker that differs from the remembered one means another process already did: a reset too.
 *
 * Why a marker rather than INFO's run_id: run_id changes on every restart, also on one that reloaded its data
 * from AOF/RDB, which lost nothing; and a managed Redis may hide INFO.
 */
export class RedisGeneration {
  private known: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private readonly onReady = () => void this.check();

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly opts: GenerationOptions,
  ) {}

  /** The marker this process works under. */
  get current(): string | undefined {
    return this.known;
  }

  async start(): Promise<void> {
    this.known = await this.mark();
    this.redis.on('ready', this.onReady);
    this.timer = setInterval(() => void this.check(), this.opts.pollMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.redis.off('ready', this.onReady);
  }

  /** Checks the marker now; resolves after any reset it found has been handled. */
  check(): Promise<void> {
    this.checking ??= this.checkOnce().finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async checkOnce(): Promise<void> {
    const previous = this.known;
    if (previous === undefined) return;
    let seen: string | null;
    try {
      seen = await this.redis.get(this.key);
    } catch (e) {
      this.opts.onError?.(e);
      return;
    }
    if (seen === previous) return;
    let current: string;
    try {
      current = seen ?? (await this.mark());
    } catch (e) {
      this.opts.onError?.(e);
      return;
    }
    this.known = current;
    try {
      await this.opts.onReset({ previous, current, detectedHere: seen === null });
    } catch (e) {
      this.opts.onError?.(e);
    }
  }

  /** Sets a new marker unless one exists; returns the marker in Redis. */
  private async mark(): Promise<string> {
    const mine = randomUUID();
    const set = await this.redis.set(this.key, mine, 'NX');
    if (set === 'OK') return mine;
    const there = await this.redis.get(this.key);
    // Deleted between the two commands (a second loss): try again.
    return there ?? this.mark();
  }
}
