import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ConfigError } from '../config/env.js';
import { masters } from './connection.js';

/** The only `maxmemory-policy` under which Redis keeps every key Apportion writes. */
export const SAFE_POLICY = 'noeviction';

/** `host:port` of a connection, for messages. */
export function nodeName(node: Redis): string {
  const o = node.options;
  return `${o.host ?? '?'}:${o.port ?? '?'}`;
}

/** One `field:value` line of an INFO reply. */
export function infoField(info: string, field: string): string | undefined {
  const m = new RegExp(`^${field}:(.*?)\\r?$`, 'm').exec(info);
  return m?.[1];
}

/**
 * A node's `maxmemory-policy`: `CONFIG GET`, or, where CONFIG is disabled or renamed (as on some managed Redis),
 * INFO memory's `maxmemory_policy`. Undefined when neither answers.
 */
export async function readEvictionPolicy(node: Redis): Promise<string | undefined> {
  try {
    const r = (await node.config('GET', 'maxmemory-policy')) as unknown;
    if (Array.isArray(r) && typeof r[1] === 'string') return r[1];
  } catch {
    // CONFIG refused (unknown command, renamed, no ACL permission) or the node unreachable: INFO next.
  }
  try {
    return infoField(await node.info('memory'), 'maxmemory_policy');
  } catch {
    return undefined;
  }
}

/** A node's INFO stats `evicted_keys` (server-wide: every prefix and database). Undefined when unreadable. */
export async function readEvictedKeys(node: Redis): Promise<number | undefined> {
  try {
    const v = infoField(await node.info('stats'), 'evicted_keys');
    return v === undefined ? undefined : Number(v);
  } catch {
    return undefined;
  }
}

export interface EvictionGuardOptions {
  /** APPORTION_ALLOW_EVICTION: start and stay ready under an evicting policy (warnings only). */
  readonly allow: boolean;
  /** How often the policy and `evicted_keys` are read, in ms (and on every reconnect). */
  readonly pollMs: number;
  readonly log: Pick<Logger, 'warn' | 'error' | 'info'>;
  /** Called once each time a master is found to have an evicting policy (it was not before). */
  readonly onPolicy?: () => void;
  /** Called with how many more keys a master evicted since the last read. */
  readonly onEvicted?: (count: number) => void;
}

const RISK =
  'Redis may then evict budget ledgers, reservations, idempotency records and applied-markers at any time: limits skipped, spend that cannot be recorded, outcomes counted twice, without any error';

/**
 * Apportion relies on Redis keeping every key it writes, so Redis must run with `maxmemory-policy noeviction` (a
 * full Redis then refuses writes, which the API answers 503, instead of dropping state silently; every key has a
 * TTL, so volatile-* policies evict them too). At start-up (`checkAtStart`) an evicting policy on any master
 * refuses the start with a ConfigError, unless APPORTION_ALLOW_EVICTION is set; an unreadable policy is a warning.
 * While running (`check`, every `pollMs` and on reconnect) the policy is read again: an evicting one is logged at
 * error, counted, and makes `problem` (and so /readyz) say why the process is not ready; and `evicted_keys`
 * growing on a master is logged at error and counted.
 */
export class EvictionGuard {
  /** Why the process should not report ready (an evicting policy without the opt-out), or undefined. */
  problem: string | undefined;
  private readonly bad = new Map<string, string>();
  private readonly evicted = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private readonly onReady = () => void this.check();

  constructor(
    private readonly redis: Redis,
    private readonly opts: EvictionGuardOptions,
  ) {}

  /** Reads every master's policy once; throws a ConfigError naming the first evicting one unless allowed. */
  async checkAtStart(): Promise<void> {
    for (const node of masters(this.redis)) {
      const name = nodeName(node);
      const policy = await readEvictionPolicy(node);
      if (policy === undefined) {
        this.opts.log.warn(
          { node: name },
          `could not read Redis maxmemory-policy (CONFIG GET and INFO memory both refused): make sure it is ${SAFE_POLICY}, or Redis may evict Apportion's state silently`,
        );
        continue;
      }
      const n = await readEvictedKeys(node);
      if (n !== undefined) this.evicted.set(name, n);
      if (policy === SAFE_POLICY) continue;
      this.bad.set(name, policy);
      if (!this.opts.allow) {
        throw new ConfigError(
          'Redis maxmemory-policy',
          `is ${policy} on ${name}, but Apportion needs ${SAFE_POLICY}: ${RISK}. Run \`CONFIG SET maxmemory-policy ${SAFE_POLICY}\` (and set it in redis.conf), or set APPORTION_ALLOW_EVICTION=1 to run anyway at that risk`,
        );
      }
      this.opts.log.warn({ node: name, policy }, `Redis maxmemory-policy is ${policy}, not ${SAFE_POLICY}; starting anyway (APPORTION_ALLOW_EVICTION): ${RISK}`);
    }
  }

  start(): void {
    this.redis.on('ready', this.onReady);
    this.timer = setInterval(() => void this.check(), this.opts.pollMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.redis.off('ready', this.onReady);
  }

  /** Reads the policy and `evicted_keys` of every master now. Never throws; an unreadable node keeps its last state. */
  check(): Promise<void> {
    this.checking ??= this.checkOnce().finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async checkOnce(): Promise<void> {
    let nodes: Redis[];
    try {
      nodes = masters(this.redis);
    } catch {
      return;
    }
    await Promise.all(nodes.map((node) => this.checkNode(node)));
    const bad = [...this.bad].map(([name, policy]) => `${name}: ${policy}`);
    this.problem = bad.length > 0 && !this.opts.allow ? `Redis maxmemory-policy is not ${SAFE_POLICY} (${bad.join(', ')}): Redis may evict Apportion's state` : undefined;
  }

  private async checkNode(node: Redis): Promise<void> {
    const name = nodeName(node);
    const [policy, evicted] = await Promise.all([readEvictionPolicy(node), readEvictedKeys(node)]);
    if (policy !== undefined) {
      const was = this.bad.get(name);
      if (policy === SAFE_POLICY) {
        if (was !== undefined) {
          this.bad.delete(name);
          this.opts.log.info({ node: name }, `Redis maxmemory-policy is ${SAFE_POLICY} again`);
        }
      } else if (was !== policy) {
        this.bad.set(name, policy);
        this.opts.onPolicy?.();
        const msg = `Redis maxmemory-policy changed to ${policy} (needs ${SAFE_POLICY}): ${RISK}`;
        if (this.opts.allow) this.opts.log.warn({ node: name, policy }, `${msg} (APPORTION_ALLOW_EVICTION: still reporting ready)`);
        else this.opts.log.error({ node: name, policy }, `${msg}. /readyz answers 503 until it is ${SAFE_POLICY} again`);
      }
    }
    if (evicted !== undefined) {
      const last = this.evicted.get(name);
      this.evicted.set(name, evicted);
      // Lower than last time: the node restarted or its stats were reset; a new baseline.
      if (last !== undefined && evicted > last) {
        this.opts.onEvicted?.(evicted - last);
        this.opts.log.error(
          { node: name, evicted: evicted - last, evictedKeysTotal: evicted },
          `REDIS EVICTED KEYS (INFO stats evicted_keys grew by ${evicted - last}; counted for the whole server, not only this key prefix): Apportion's state may be gone. Set maxmemory-policy ${SAFE_POLICY} and give Redis more memory`,
        );
      }
    }
  }
}
