import type { Redis } from 'ioredis';

/** Round trips per clock-offset estimate, and how often the estimate is renewed, ms. */
const CLOCK_SAMPLES = 3;
const CLOCK_RESYNC_MS = 60_000;

export interface RedisClockOptions {
  readonly redis: Redis;
  /** This host's wall clock. Default Date.now. */
  readonly wall?: () => number;
  /**
   * A sample whose best round trip exceeds this, ms, is too coarse and keeps the previous estimate (so an estimate
   * is off by at most half of it); an offset larger than it is reported as `large` (an unsynced host clock). Default 250.
   */
  readonly maxRttMs?: number;
  /** Called with each new estimate of Redis's clock minus the wall clock, ms, and whether it is larger than `maxRttMs`. */
  readonly onOffset?: (offsetMs: number, large: boolean) => void;
}

/**
 * This host's estimate of the Redis server's clock (`TIME`): deadlines that a script compares with `TIME` are sent on
 * it (reservation deadlines, decision-record deadlines), and the checks that rely on them read it. Of a few round
 * trips, the one with the shortest round trip is kept, its Redis time taken as read at the midpoint (error at most half
 * that round trip). Runs in the background (never on a request's path): on the first `now()`, every 60 s after, and
 * sooner on `resyncSoon`. A failed sample keeps the previous estimate.
 */
export class RedisClock {
  private offset = 0;
  private syncedAt = Number.NEGATIVE_INFINITY;
  private syncing: Promise<number> | undefined;
  private readonly wall: () => number;
  readonly maxRttMs: number;

  constructor(private readonly o: RedisClockOptions) {
    this.wall = o.wall ?? Date.now;
    this.maxRttMs = o.maxRttMs ?? 250;
  }

  /** The current estimate of Redis's clock minus this host's wall clock, ms (positive: this host is behind Redis). */
  get offsetMs(): number {
    return this.offset;
  }

  /** The estimate of Redis's clock now, ms (renewed in the background when older than 60 s). */
  now(): number {
    this.resyncSoon(CLOCK_RESYNC_MS);
    return this.wall() + this.offset;
  }

  /** Estimates the offset again (one at a time); resolves with the estimate. */
  sync(): Promise<number> {
    this.syncing ??= (async () => {
      try {
        let best: { rtt: number; offset: number } | undefined;
        for (let i = 0; i < CLOCK_SAMPLES; i++) {
          const t0 = this.wall();
          const [sec, usec] = await this.o.redis.time();
          const t1 = this.wall();
          const redisMs = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
          const rtt = t1 - t0;
          if (!best || rtt < best.rtt) best = { rtt, offset: redisMs - (t0 + t1) / 2 };
        }
        if (best!.rtt > this.maxRttMs) return this.offset;
        this.offset = Math.round(best!.offset);
        this.syncedAt = this.wall();
        this.o.onOffset?.(this.offset, Math.abs(this.offset) > this.maxRttMs);
        return this.offset;
      } finally {
        this.syncing = undefined;
      }
    })();
    return this.syncing;
  }

  /** Starts a new estimate in the background when the last one is at least `minAgeMs` old. */
  resyncSoon(minAgeMs: number): void {
    if (this.syncing === undefined && this.wall() - this.syncedAt >= minAgeMs) void this.sync().catch(() => undefined);
  }
}
