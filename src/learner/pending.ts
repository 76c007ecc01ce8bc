import type { Redis } from 'ioredis';
import { runScript } from '../redis/scripts.js';

/**
 * Registers learned decisions in their pipeline's pending set (ticket → wait-window deadline, and the
 * default-reward event) in batches: one learner-pending.lua call per pipeline every `flushMs` (or
 * `maxBatch` entries) instead of Redis commands per allocation. A ticket whose outcome was already
 * ingested (it can overtake its batched registration) is not registered. A process that dies loses at most one batch of
 * registrations; those decisions then simply never get the default reward (an outcome for them still counts).
 */
export class PendingBatcher {
  private readonly batches = new Map<string, { keys: readonly [string, string, string]; records: string[] }>();
  private size = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly opts: { readonly flushMs?: number; readonly maxBatch?: number; readonly onError?: (err: unknown) => void } = {},
  ) {}

  /** `keys`: the pipeline's pending zset, pending-data hash and resolved zset (learnerKeys). */
  add(keys: readonly [string, string, string], ticket: string, deadline: number, event: string): void {
    let b = this.batches.get(keys[0]);
    if (!b) {
      b = { keys, records: [] };
      this.batches.set(keys[0], b);
    }
    // JSON escapes control characters, so \x1e / \x1f cannot occur inside the event.
    b.records.push(`${ticket}\x1f${deadline}\x1f${event}`);
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
          await runScript(this.redis, 'learnerPending', b.keys, [Date.now(), b.records.join('\x1e')]);
        } catch (err) {
          this.opts.onError?.(err);
        }
      }),
    );
  }
}
