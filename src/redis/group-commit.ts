/**
 * Group commit: callers submit items one at a time and each gets a promise that settles when the batch holding
 * its item has been written. Items that arrive while earlier writes are in flight (or within the same turn of
 * the event loop) share one write, up to `maxBatch` items. At low load a lone item is written on the next
 * turn of the event loop, alone, so latency does not grow; under load one write carries many items, so the
 * fixed cost of a write (for a BullMQ job: a Lua script, a job hash, an event) is paid once per batch.
 *
 * A failed write rejects every item of its batch; nothing of it is acknowledged.
 */
export interface GroupCommitOptions<T = unknown> {
  /** Most items one write carries. */
  readonly maxBatch: number;
  /** Most writes in flight at once. */
  readonly maxInFlight: number;
  /**
   * Longest a caller waits for its item, in ms: then its promise rejects with CommitTimeoutError. An item still
   * waiting for a write slot is dropped (never written) unless `keepUntil` keeps it queued; one already sent may
   * still be written — callers must treat a timeout as "not acknowledged", never as "not written". Default: no bound
   * (the write function's own).
   */
  readonly itemTimeoutMs?: number;
  /**
   * With `itemTimeoutMs`: until when (on `clock`) an item whose caller stopped waiting before it was sent stays
   * queued, to be sent with the next batch once a write slot frees; at or after it the item is dropped unsent. The
   * write function must itself refuse to write an item past this instant (a write sent just before it may reach the
   * store after it). Default: such an item is dropped at once.
   */
  readonly keepUntil?: (item: T) => number;
  /** The clock of `keepUntil`. Default Date.now. */
  readonly clock?: () => number;
  /** Called for each item dropped unsent (counted in `dropped` too), e.g. to count it in a metric. */
  readonly onDrop?: (item: T) => void;
}

/** A group-committed item was not acknowledged within `itemTimeoutMs`. */
export class CommitTimeoutError extends Error {
  constructor(
    ms: number,
    /**
     * Whether the item's write may have been or may still be sent: false when it was still waiting for a write slot
     * and was dropped (it never will be).
     */
    readonly sent: boolean = true,
  ) {
    super(`not written within ${ms} ms`);
    this.name = 'CommitTimeoutError';
  }
}

interface Waiting<T> {
  readonly item: T;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
  /** Set when its caller stopped waiting but the item stays queued (`keepUntil`): dropped unsent from then on. */
  keptUntil?: number;
}

const settledOnce = <T>(w: Waiting<T>, onSettle: () => void): Waiting<T> => {
  let done = false;
  return {
    item: w.item,
    resolve: () => {
      if (done) return;
      done = true;
      onSettle();
      w.resolve();
    },
    reject: (e) => {
      if (done) return;
      done = true;
      onSettle();
      w.reject(e);
    },
  };
};

export class GroupCommitter<T> {
  private pending: Waiting<T>[] = [];
  private inFlight = 0;
  private scheduled = false;
  /** Writes done and items written (how well batching works; callers report batch sizes through their write function). */
  writes = 0;
  items = 0;
  /** Items dropped unsent: their wait ran out while they waited for a write slot (and, with `keepUntil`, so did that). */
  dropped = 0;

  constructor(
    private readonly write: (items: readonly T[]) => Promise<void>,
    private readonly opts: GroupCommitOptions<T>,
  ) {
    if (!(opts.maxBatch >= 1) || !(opts.maxInFlight >= 1)) throw new RangeError('maxBatch and maxInFlight must be ≥ 1');
  }

  submit(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const ms = this.opts.itemTimeoutMs;
      if (ms === undefined) this.pending.push({ item, resolve, reject });
      else {
        let timer: NodeJS.Timeout | undefined;
        const w = settledOnce({ item, resolve, reject }, () => clearTimeout(timer));
        // The timer fires in the timers phase; the check (setImmediate) runs after the poll phase, so an answer that
        // arrived while the event loop was busy is taken first and a slow loop is not mistaken for a slow Redis.
        timer = setTimeout(
          () =>
            setImmediate(() => {
              const at = this.pending.indexOf(w);
              if (at >= 0) {
                const until = this.opts.keepUntil?.(item);
                if (until !== undefined && this.now() < until) {
                  // Stays queued: sent when a slot frees, unless `until` has passed by then.
                  w.keptUntil = until;
                  w.reject(new CommitTimeoutError(ms, true));
                  return;
                }
                this.pending.splice(at, 1);
                this.drop(item);
              }
              w.reject(new CommitTimeoutError(ms, at < 0));
            }),
          ms,
        );
        this.pending.push(w);
      }
      if (!this.scheduled) {
        this.scheduled = true;
        // After the current poll phase, so every request read in this turn joins the same write.
        setImmediate(() => {
          this.scheduled = false;
          this.pump();
        });
      }
    });
  }

  /** Items waiting for a write slot. */
  get backlog(): number {
    return this.pending.length;
  }

  private now(): number {
    return (this.opts.clock ?? Date.now)();
  }

  private drop(item: T): void {
    this.dropped++;
    this.opts.onDrop?.(item);
  }

  /** The next batch: up to `maxBatch` items from the front of the queue, those kept past their `keepUntil` dropped. */
  private take(): Waiting<T>[] {
    const batch: Waiting<T>[] = [];
    const now = this.opts.keepUntil ? this.now() : 0;
    let i = 0;
    for (; i < this.pending.length && batch.length < this.opts.maxBatch; i++) {
      const w = this.pending[i]!;
      if (w.keptUntil !== undefined && now >= w.keptUntil) this.drop(w.item);
      else batch.push(w);
    }
    this.pending.splice(0, i);
    return batch;
  }

  private pump(): void {
    while (this.inFlight < this.opts.maxInFlight && this.pending.length > 0) {
      const batch = this.take();
      if (batch.length === 0) continue;
      this.inFlight++;
      this.writes++;
      this.items += batch.length;
      let written: Promise<void>;
      try {
        written = this.write(batch.map((w) => w.item));
      } catch (e) {
        written = Promise.reject(e);
      }
      written.then(
        () => {
          for (const w of batch) w.resolve();
        },
        (e: unknown) => {
          for (const w of batch) w.reject(e);
        },
      ).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }
}
