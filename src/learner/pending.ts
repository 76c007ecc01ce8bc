import type { Redis } from 'ioredis';

/**
 * Registers learned decisions in their pipeline's pending set (ticket → wait-window deadline, and the
 * default-reward event) in batches: one ZADD and one HSET per pipeline every `flushMs` (or `maxBatch`
 * entries) instead of two Redis commands per allocation. A process that dies loses at most one batch of
 * registrations; those decisions then simply never get the default reward (an outcome for them still counts).
 */
export class PendingBatcher {
  private readonly batches = new Map<string, { zset: string; hash: string; z: (string | number)[]; h: string[] }>();
  private size = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly opts: { readonly flushMs?: number; readonly maxBatch?: number; readonly onError?: (err: unknown) => void } = {},
  ) {}

  add(zset: string, hash: string, ticket: string, deadline: number, event: string): void {
    let b = this.batches.get(zset);
    if (!b) {
      b = { zset, hash, z: [], h: [] };
      this.batches.set(zset, b);
    }
    b.z.push(deadline, ticket);
    b.h.push(ticket, event);
    if (++this.size >= (this.opts.maxBatch ?? 500)) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.opts.flushMs ?? 50).unref();
  }

  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batches = [...this.batches.values()];
    this.batches.clear();
    this.size = 0;
    await Promise.all(
      batches.map(async (b) => {
        try {
          // The hash first: a ticket in the zset always has its event (the sweep skips ones without).
          await this.redis.hset(b.hash, ...b.h);
          await this.redis.zadd(b.zset, ...b.z);
        } catch (err) {
          this.opts.onError?.(err);
        }
      }),
    );
  }
}
