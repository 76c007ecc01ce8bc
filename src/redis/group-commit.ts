/**
 * Group commit: callers submit items one at a time and each gets a promise that settles when the batch holding
 * its item has been written. Items that arrive while earlier writes are in flight (or within the same turn of
 * the event loop) share one write, up to `maxBatch` items. At low load a lone item is written on the next
 * turn of the event loop, alone, so latency does not grow; under load one write carries many items, so the
 * fixed cost of a write (for a BullMQ job: a Lua script, a job hash, an event) is paid once per batch.
 *
 * A failed write rejects every item of its batch; nothing of it is acknowledged.
 */
export interface GroupCommitOptions {
  /** Most items one write carries. */
  readonly maxBatch: number;
  /** Most writes in flight at once. */
  readonly maxInFlight: number;
  /**
   * Longest a caller waits for its item, in ms: then its promise rejects with CommitTimeoutError. An item still
   * waiting for a write slot is dropped (never written); one already sent may still be written — callers must treat
   * a timeout as "not acknowledged", never as "not written". Default: no bound (the write function's own).
   */
  readonly itemTimeoutMs?: number;
}

/** A group-committed item was not acknowledged within `itemTimeoutMs`. */
export class CommitTimeoutError extends Error {
  constructor(
    ms: number,
    /** Whether the item's write had been sent: false when it was still waiting for a write slot (it never will be). */
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

  constructor(
    private readonly write: (items: readonly T[]) => Promise<void>,
    private readonly opts: GroupCommitOptions,
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
              if (at >= 0) this.pending.splice(at, 1);
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

  private pump(): void {
    while (this.inFlight < this.opts.maxInFlight && this.pending.length > 0) {
      const batch = this.pending.splice(0, this.opts.maxBatch);
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
