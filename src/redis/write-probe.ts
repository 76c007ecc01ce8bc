import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import { isCluster, masters } from './connection.js';
import { withDeadline } from './deadline.js';
import { nodeName } from './eviction.js';

/** How often each process writes its readiness probe (ms): one small write per master, whatever the probe rate. */
export const WRITE_PROBE_INTERVAL_MS = 2000;

export interface WriteProbeOptions {
  /** Key prefix (APPORTION_KEY_PREFIX): the probe writes `<p>:{ready:<n>}` = 1, expiring a minute after its last write. */
  readonly prefix: string;
  readonly intervalMs?: number;
  /** Bound of one write (the request path's command timeout). */
  readonly timeoutMs: number;
  readonly log: Pick<Logger, 'error' | 'info'>;
  /** Called each time writes go from accepted to refused. */
  readonly onRefused?: () => void;
}

/**
 * Whether Redis takes writes, for /readyz. A Redis can answer PING and every read while it refuses every write: a
 * replica (`READONLY`), a master over `maxmemory` under `noeviction` (`OOM`), one short of `min-replicas-to-write`
 * (`NOREPLICAS`), one whose last RDB save failed under `stop-writes-on-bgsave-error` (`MISCONF`). The process then
 * answers 503 on every route that writes (allocations answer without their record), so it should not be given
 * traffic. Every `intervalMs` (and on each reconnect) this writes one small key per master (`SET … PX`, on the
 * request-path connection) and keeps the answer: /readyz reads `problem`, it never writes itself. Only an error
 * *reply* counts as refused; a write that timed out or whose connection dropped leaves the last state (PING in
 * /readyz reports an unreachable or stalled Redis), so a Redis back after a restart is not kept out for an interval.
 */
export class WriteProbe {
  /** Why writes are refused (the error Redis answered, per master), or undefined while they are accepted. */
  problem: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** On a cluster: master `host:port` → a probe key whose slot it holds (found by CLUSTER KEYSLOT, kept). */
  private readonly keyOf = new Map<string, string>();
  /** The masters the keys were last searched for, and when (a reshard moves slots: searched again every minute). */
  private searched = { names: '', at: 0 };
  private readonly onReady = () => void this.check();

  constructor(
    private readonly redis: Redis,
    private readonly opts: WriteProbeOptions,
  ) {}

  private get intervalMs(): number {
    return this.opts.intervalMs ?? WRITE_PROBE_INTERVAL_MS;
  }

  start(): void {
    void this.check();
    this.redis.on('ready', this.onReady);
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.redis.off('ready', this.onReady);
  }

  /** Probes now (a probe already running is shared). Never throws. */
  check(): Promise<void> {
    this.running ??= this.probe()
      .catch(() => undefined)
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private async probe(): Promise<void> {
    const keys = await this.keys();
    if (keys.length === 0) return;
    // Long past the next probe (a busy event loop delays it): the key stays, and so nothing under the prefix moves.
    const ttl = String(Math.max(60_000, this.intervalMs * 30));
    const refused: string[] = [];
    let answered = 0;
    await Promise.all(
      keys.map(async ([name, key]) => {
        try {
          // The same value each time (only its expiry moves): nothing under the prefix changes while writes pass.
          await withDeadline(this.redis.set(key, '1', 'PX', ttl), this.opts.timeoutMs, 'write probe');
          answered++;
        } catch (e) {
          // An error reply (ioredis ReplyError): Redis is there and refuses the write.
          if (e instanceof Error && e.name === 'ReplyError') {
            answered++;
            refused.push(`${keys.length > 1 ? `${name}: ` : ''}${e.message}`);
          }
        }
      }),
    );
    if (answered < keys.length && refused.length === 0) return; // unreachable or stalled: PING says so; keep the last state
    const problem = refused.length > 0 ? `Redis refuses writes (${refused.join('; ')})` : undefined;
    if (problem && !this.problem) {
      this.opts.onRefused?.();
      this.opts.log.error({ reason: problem }, `${problem}: /readyz answers 503 until a write is accepted again`);
    } else if (!problem && this.problem) this.opts.log.info('Redis accepts writes again: /readyz ready');
    this.problem = problem;
  }

  /** [master name, probe key] pairs: one key on one Redis; on a cluster one key per master, in a slot it holds. */
  private async keys(): Promise<[string, string][]> {
    const key = (n: number) => `${this.opts.prefix}:{ready:${n}}`;
    if (!isCluster(this.redis)) return [[nodeName(this.redis), key(0)]];
    const cluster = this.redis as unknown as Cluster;
    const names = masters(this.redis).map(nodeName);
    const now = Date.now();
    if (names.join(',') !== this.searched.names || now - this.searched.at > 60_000) {
      this.searched = { names: names.join(','), at: now };
      this.keyOf.clear();
      // Tags tried in order until each master holds one (a few dozen KEYSLOT calls per search; a master that holds no
      // slot takes no write and gets no key).
      try {
        for (let n = 0; n < 1024 && names.some((m) => !this.keyOf.has(m)); n++) {
          const slot = Number(await cluster.cluster('KEYSLOT', key(n)));
          const owner = cluster.slots[slot]?.[0];
          if (owner !== undefined && names.includes(owner) && !this.keyOf.has(owner)) this.keyOf.set(owner, key(n));
        }
      } catch {
        this.searched = { names: '', at: 0 }; // searched again next time
      }
    }
    return [...this.keyOf];
  }
}
