import type { Redis } from 'ioredis';

/**
 * Registers learned decisions in their pipeline's pending set (decision id → wait-window deadline) in
 * batches: one variadic ZADD per pipeline every `flushMs` (or `maxBatch` entries) instead of a command per
 * allocation. Only the id and the deadline are sent: when a deadline passes without an outcome, the worker
 * builds the default-reward event from the decision record, which is stored anyway (training.ts).
 * A process that dies loses at most one batch of registrations; those decisions then simply never get the
 * default reward (an outcome for them still counts).
 */
export class PendingBatcher {
  /** Pending zset key → ZADD arguments (deadline, id, deadline, id, …). */
  private readonly batches = new Map<string, (string | number)[]>();
  private size = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly opts: { readonly flushMs?: number; readonly maxBatch?: number; readonly onError?: (err: unknown) => void } = {},
  ) {}

  /** `key`: the pipeline's pending zset (learnerKeys(…).pending). */
  add(key: string, decisionId: string, deadline: number): void {
    let b = this.batches.get(key);
    if (!b) {
      b = [];
      this.batches.set(key, b);
    }
    b.push(deadline, decisionId);
    if (++this.size >= (this.opts.maxBatch ?? 500)) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.opts.flushMs ?? 50).unref();
  }

  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batches = [...this.batches];
    this.batches.clear();
    this.size = 0;
    await Promise.all(
      batches.map(async ([key, args]) => {
        try {
          await this.redis.zadd(key, ...args);
        } catch (err) {
          this.opts.onError?.(err);
        }
      }),
    );
  }
}
