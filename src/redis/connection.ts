import { Cluster, Redis, type ClusterNode, type ClusterOptions, type Command, type RedisOptions } from 'ioredis';

/** Default bound on one request-path Redis command, in ms (`APPORTION_REDIS_COMMAND_TIMEOUT_MS`). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 1000;

export interface RedisConnectionOptions {
  /** BullMQ workers need `maxRetriesPerRequest: null`; request-path connections fail fast instead. */
  readonly forBullmq?: boolean;
  /** BullMQ producers: no offline queue, plain (non auto-pipelined) commands, as BullMQ recommends for Queue. */
  readonly forQueue?: boolean;
  /** Connection name shown by CLIENT LIST. */
  readonly name?: string;
  /**
   * Request-path connections only (not `forBullmq`): a command that has no answer after this many ms is
   * rejected ("Command timed out"). Default 1000. This is what bounds a request when Redis is connected but
   * does not answer (stalled, paused, swapping): no offline queue only helps when the socket is down.
   */
  readonly commandTimeoutMs?: number;
}

/**
 * Where Redis is: one server (`url`), or a Redis Cluster (`clusterNodes`, seed `host:port`s; the URL then only
 * contributes credentials, TLS and the database-independent options). A plain string is a URL.
 */
export interface RedisTarget {
  readonly url: string;
  readonly clusterNodes?: readonly string[] | undefined;
}

export type RedisTargetLike = RedisTarget | string;

/** The target a config names (REDIS_URL, REDIS_CLUSTER_NODES). */
export function redisTarget(config: { readonly redisUrl: string; readonly redisClusterNodes?: readonly string[] | undefined }): RedisTarget {
  return config.redisClusterNodes ? { url: config.redisUrl, clusterNodes: config.redisClusterNodes } : { url: config.redisUrl };
}

const asTarget = (t: RedisTargetLike): RedisTarget => (typeof t === 'string' ? { url: t } : t);

/**
 * ioredis options of a client made here. Without `replyMapping`: every client keeps ioredis' default (legacy)
 * replies, and ioredis' constructors type that option without `undefined`, which RedisOptions allows.
 */
export type ClientOptions = Omit<RedisOptions, 'replyMapping'>;

/** Credentials and TLS of a redis:// / rediss:// URL, as node options (cluster nodes share them). */
function urlAuth(url: string): ClientOptions {
  const u = new URL(url);
  const o: ClientOptions = {};
  if (u.username) o.username = decodeURIComponent(u.username);
  if (u.password) o.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') o.tls = {};
  return o;
}

/**
 * An ioredis client for a target, not connected when `options.lazyConnect` is set. On a cluster it is an ioredis
 * `Cluster`, typed as `Redis`: every command, pipeline, MULTI, EVALSHA, pub/sub and `duplicate()` the code base
 * uses exists on both with the same signature, and the few things that differ (SCAN, which must visit every
 * master, see `masters`) are handled where they are used. Reads and writes go to masters only.
 */
export function createRedisClient(target: RedisTargetLike, options: ClientOptions = {}): Redis {
  const t = asTarget(target);
  if (!t.clusterNodes) return new Redis(t.url, options);
  // No auto-pipelining on a cluster, whatever was asked: ioredis groups a batch by node when it is queued, so a slot
  // that moves meanwhile (a reshard, a rebalance, a failover) fails the batch with "All keys in the pipeline should
  // belong to the same slots allocation group", and a MOVED/ASK for one slot of a batch that is not all redirected
  // reaches the caller instead of being followed. Single commands follow MOVED and ASK on their own.
  const { enableOfflineQueue, enableAutoPipelining: _autoPipelining, lazyConnect, retryStrategy, ...node } = options;
  const clusterOptions = {
    redisOptions: { ...urlAuth(t.url), ...node },
    scaleReads: 'master',
    enableAutoPipelining: false,
    ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
    ...(retryStrategy ? { clusterRetryStrategy: (times: number) => retryStrategy(times) } : {}),
  } satisfies ClusterOptions;
  const nodes = t.clusterNodes.map((n) => {
    const cut = n.lastIndexOf(':');
    return { host: n.slice(0, cut).replace(/^\[|\]$/g, ''), port: Number(n.slice(cut + 1)) };
  });
  return new SettlingCluster(nodes, clusterOptions) as unknown as Redis;
}

/** Options of a cluster client (ioredis's generic constructor, at its default reply mapping). */
type SettlingOptions = NonNullable<ConstructorParameters<typeof Cluster<'legacy'>>[1]>;

/**
 * An ioredis `Cluster` whose `connect()` always settles. ioredis's own can hang for good: after the slot refresh it
 * runs a ready check (`CLUSTER INFO`), and when that fails — `cluster_state:fail` or a node that refuses, as during a
 * failover — the cluster disconnects and connects again by itself, and the first `connect()`'s promise is never
 * resolved nor rejected. BullMQ reconnects a worker's blocking connection with `connect()` after a fetch was cut
 * (`reconnectBlocking`) and awaits it, so a worker that hit this during a failover never fetched a job again (the
 * reservation sweeper and the learner tick stopped until the process restarted; bench/cluster-failover.ts). Here a
 * `connect()` also settles on the cluster's next `ready` (resolved) or `end` (rejected). `duplicate()` (how BullMQ
 * makes a worker's blocking connection) returns one of these too.
 */
class SettlingCluster extends Cluster {
  private readonly waiting = new Set<{ resolve: () => void; reject: (e: Error) => void }>();

  constructor(startupNodes: ClusterNode[], options: SettlingOptions) {
    super(startupNodes, options);
    this.on('ready', () => this.settle());
    this.on('end', () => this.settle(new Error('Connection is closed.')));
    // Cluster's duplicate() with the same merge of options, but a SettlingCluster (generic in ioredis's types: assigned).
    const duplicate = (nodes: ClusterNode[] = [], override: SettlingOptions = {}): Cluster => {
      const merged: SettlingOptions = { ...options, ...override };
      if (options.redisOptions && override.redisOptions) merged.redisOptions = { ...options.redisOptions, ...override.redisOptions };
      return new SettlingCluster(nodes.length > 0 ? nodes : startupNodes.slice(0), merged);
    };
    (this as unknown as { duplicate: typeof duplicate }).duplicate = duplicate;
  }

  private settle(err?: Error): void {
    const all = [...this.waiting];
    this.waiting.clear();
    for (const w of all) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  override connect(): Promise<void> {
    const first = super.connect();
    return new Promise<void>((resolve, reject) => {
      const w = { resolve, reject };
      this.waiting.add(w);
      first.then(
        () => {
          this.waiting.delete(w);
          resolve();
        },
        (e: unknown) => {
          this.waiting.delete(w);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }
}

/** Whether a client is a Redis Cluster client. */
export function isCluster(redis: Redis): boolean {
  return (redis as unknown as { isCluster?: boolean }).isCluster === true;
}

/** The clients of every master (the client itself on one Redis): what SCAN, FLUSH-like walks and INFO must visit. */
export function masters(redis: Redis): Redis[] {
  return isCluster(redis) ? (redis as unknown as Cluster).nodes('master') : [redis];
}

/**
 * Opens an ioredis connection and waits until it is ready. Request-path connections use auto-pipelining
 * (concurrent requests share round trips), no offline queue and a command timeout, so a command fails
 * instead of hanging both when Redis is unreachable and when it is reachable but does not answer:
 * reservations must fail closed, allocations must fall back, outcome intake must answer 503.
 *
 * BullMQ connections get no command timeout: workers use blocking commands and wait out outages.
 */
export async function connectRedis(target: RedisTargetLike, opts: RedisConnectionOptions = {}): Promise<Redis> {
  const base: ClientOptions = {
    lazyConnect: true,
    connectionName: opts.name ?? 'apportion',
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
  };
  const options: ClientOptions = opts.forBullmq
    ? { ...base, maxRetriesPerRequest: null, enableOfflineQueue: true }
    : opts.forQueue
      ? { ...base, maxRetriesPerRequest: 1, enableOfflineQueue: false }
      : { ...base, maxRetriesPerRequest: 1, enableOfflineQueue: false, enableAutoPipelining: true };
  const redis = createRedisClient(target, options);
  if (!opts.forBullmq) {
    const ms = opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    boundCommands(redis, ms);
    // On a cluster the bound applies at the cluster client (commands waiting for a slot map or a redirection)
    // and at every node connection (commands of pipelines and auto-pipelined batches are written there).
    if (isCluster(redis)) (redis as unknown as Cluster).on('+node', (node: Redis) => boundCommands(node, ms));
  }
  // An error event without a listener crashes the process; reconnection is handled by retryStrategy.
  redis.on('error', () => undefined);
  await redis.connect();
  if (isCluster(redis)) await connectMasters(redis);
  return redis;
}

/**
 * A cluster client is ready once it has the slot map; it connects to each node on that node's first command,
 * which then waits for a TCP connect and a ready check: at start-up, on a busy host, longer than the command bound
 * (BullMQ's Queue never recovers from a failed first command). Every master is connected before the client is
 * handed out (bounded at 10 s per node: a node that does not answer is left to connect on first use).
 */
async function connectMasters(redis: Redis): Promise<void> {
  await Promise.all(
    masters(redis).map(
      (node) =>
        new Promise<void>((resolve) => {
          if (node.status === 'ready') return resolve();
          const timer = setTimeout(resolve, 10_000);
          node.once('ready', () => {
            clearTimeout(timer);
            resolve();
          });
          if (node.status === 'wait') node.connect().catch(() => undefined);
        }),
    ),
  );
}

const bounded = new WeakSet<object>();
const timed = new WeakSet<Command>();

/**
 * ioredis's `commandTimeout`, but measured the way a caller feels it: the timer fires in the timers phase and
 * the command is failed from the check phase (setImmediate), after the poll phase has read whatever replies
 * arrived. With ioredis's own option, an event loop busy for longer than the bound (a synchronous module load,
 * a long GC) failed commands whose answers were already in the socket: a slow process mistaken for a stalled
 * Redis. Every command goes through sendCommand, including those of pipelines, MULTI and auto-pipelining.
 */
function boundCommands(redis: Redis, ms: number): void {
  if (bounded.has(redis)) return;
  bounded.add(redis);
  const send = redis.sendCommand.bind(redis) as (command: Command, ...rest: unknown[]) => unknown;
  const withBound = (command: Command, ...rest: unknown[]): unknown => {
    const out = send(command, ...rest);
    // One timer per command: on a cluster it passes through the cluster client and then a node connection.
    if (command.isSettled || timed.has(command)) return out;
    timed.add(command);
    const timer = setTimeout(
      () =>
        setImmediate(() => {
          if (!command.isSettled) command.reject(new Error(`Command timed out (no answer from Redis within ${ms} ms)`));
        }),
      ms,
    );
    const clear = () => clearTimeout(timer);
    command.promise.then(clear, clear);
    return out;
  };
  redis.sendCommand = withBound as typeof redis.sendCommand;
}
