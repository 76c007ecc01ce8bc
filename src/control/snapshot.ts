import type { Redis } from 'ioredis';
import type { Keys } from '../redis/keys.js';
import type { ControlStore, RawControlState } from './store.js';

export interface SnapshotSourceOptions {
  /** Safety-net poll of the global version, in ms, in case a pub/sub message is missed. Default 1000. */
  readonly pollMs?: number;
  readonly onError?: (err: unknown) => void;
}

/**
 * Every process's in-memory copy of the control plane. Readers take `current()` — an immutable object
 * swapped whole on refresh — so a request never sees half-updated state and the hot path reads no Redis.
 * Refreshes are triggered by the `config-changed` channel, by a 1 s version poll, and by local writes.
 */
export class SnapshotSource {
  private state: RawControlState | undefined;
  private inflight: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  /** Set by reload(): the next load replaces the state even if its version is lower. */
  private replace = false;
  private readonly listeners = new Set<(s: RawControlState) => void>();

  constructor(
    private readonly store: ControlStore,
    private readonly subscriber: Redis,
    private readonly keys: Keys,
    private readonly opts: SnapshotSourceOptions = {},
  ) {}

  async start(): Promise<void> {
    await this.subscriber.subscribe(this.keys.configChannel());
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel !== this.keys.configChannel()) return;
      if (this.state && Number(message) <= this.state.version) return;
      void this.refresh();
    });
    await this.refresh();
    const pollMs = this.opts.pollMs ?? 1000;
    this.timer = setInterval(() => {
      this.store
        .version()
        .then((v) => {
          if (!this.state || v !== this.state.version) return this.refresh();
          return undefined;
        })
        .catch((e: unknown) => this.opts.onError?.(e));
    }, pollMs);
    this.timer.unref();
  }

  current(): RawControlState {
    if (!this.state) throw new Error('control snapshot not loaded yet');
    return this.state;
  }

  onChange(fn: (s: RawControlState) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Reloads the whole state; concurrent calls coalesce into at most one more load. */
  refresh(): Promise<void> {
    if (this.inflight) {
      this.again = true;
      return this.inflight;
    }
    this.inflight = (async () => {
      try {
        do {
          this.again = false;
          const replace = this.replace;
          const next = await this.store.loadAll();
          if (!this.state || replace || next.version >= this.state.version) {
            if (replace) this.replace = false;
            this.state = next;
            for (const fn of this.listeners) fn(next);
          }
        } while (this.again);
      } catch (e) {
        this.opts.onError?.(e);
        if (!this.state) throw e;
      } finally {
        this.inflight = undefined;
      }
    })();
    return this.inflight;
  }

  /**
   * Replaces the state with what Redis holds now, whatever its version: after Redis lost its data the versions
   * start again from 0, and refresh() would keep serving documents that exist only in this process's memory.
   */
  async reload(): Promise<void> {
    this.replace = true;
    if (this.inflight) {
      // A load in flight may have read the old data: load once more after it.
      this.again = true;
      await this.inflight;
      if (!this.replace) return;
    }
    await this.refresh();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.subscriber.quit().catch(() => undefined);
    this.subscriber.disconnect();
  }
}
