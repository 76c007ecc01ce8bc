import { BlockList, isIP } from 'node:net';

/**
 * Process configuration: read from the environment once at start, validated, then frozen.
 * A bad value stops start-up with a message that names the variable.
 */

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  /** HTTP port. Default 3000. */
  readonly port: number;
  /** Interface to bind. Default 127.0.0.1; forced to loopback when no API keys are configured. */
  readonly host: string;
  /** The HOST asked for when it was replaced by 127.0.0.1 (no API key set and not a loopback address; not resolved). */
  readonly hostIgnored?: string;
  /** Redis connection URL. Default redis://127.0.0.1:6379. */
  readonly redisUrl: string;
  /**
   * Redis Cluster seed nodes (`REDIS_CLUSTER_NODES=host:port,…`); when set, every connection is an ioredis Cluster
   * (REDIS_URL then only contributes credentials and TLS). Undefined: one Redis at REDIS_URL.
   */
  readonly redisClusterNodes: readonly string[] | undefined;
  /**
   * Shards of the hot single-slot keys (decision buckets, span rollups), `APPORTION_REDIS_SHARDS`. Default 1 on
   * one Redis (the unsharded layout), 16 on a cluster. Fixed for a deployment's data.
   */
  readonly redisShards: number;
  /** Prefix of every Redis key and BullMQ queue name. Default `apportion`. */
  readonly keyPrefix: string;
  /** Bearer key allowed to do everything. Unset: no admin key. */
  readonly adminKey: string | undefined;
  /** Bearer key allowed to allocate and report outcomes only. Unset: no client key. */
  readonly clientKey: string | undefined;
  /** pino log level. Default info. */
  readonly logLevel: LogLevel;
  /** How long a decision waits for its outcome, in seconds (decision record TTL). Default 86400. */
  readonly rewardWindowSeconds: number;
  /** Largest accepted request body, in bytes. Default 1 MiB. */
  readonly bodyLimitBytes: number;
  /** Concurrency of the outcome worker. Default 16. */
  readonly outcomeConcurrency: number;
  /** Most outcomes one outcomes-queue job carries (intake's group commit). Default 64; 1 = a job per outcome. */
  readonly outcomeBatchMax: number;
  /** BullMQ job lock duration in ms; a job whose worker died is retried after about this long. Default 30000. */
  readonly jobLockMs: number;
  /**
   * On shutdown, how long workers get to finish their active jobs before they are closed without them (the jobs are
   * then retried as stalled, after their lock expires). Default 10000.
   */
  readonly workerDrainMs: number;
  /** Load example pipelines from experiments/ when the store is empty. Default true. */
  readonly seedExamples: boolean;
  /** Directory that holds trained model versions. Default ./models. */
  readonly modelsDir: string;
  /** Safety-net poll of the control-plane version in ms (changes normally arrive by pub/sub). Default 1000. */
  readonly configPollMs: number;
  /**
   * Start and report ready although Redis may evict keys (`maxmemory-policy` other than `noeviction`): budgets,
   * reservations, idempotency records and applied-markers can then vanish silently (src/redis/eviction.ts). Default false.
   */
  readonly allowEviction: boolean;
  /** Expose the hidden `POST /bench/noop` and `POST /bench/redis` routes that benchmarks use as baselines. Default false. */
  readonly benchRoutes: boolean;
  /**
   * Port of the OTLP/gRPC trace listener (`APPORTION_OTLP_GRPC_PORT`, on HOST beside the HTTP port; 4317 is the
   * protocol's usual port; 0: any free port). Unset: no gRPC listener (OTLP/HTTP on `POST /v1/traces` only).
   */
  readonly otlpGrpcPort: number | undefined;
  /** Port of the worker process's own GET /metrics and /healthz (`apportion worker`); undefined: none. */
  readonly workerMetricsPort: number | undefined;
  /** URL that receives budget threshold alerts (50/80/100 %) as JSON POSTs. Unset: alerts are only counted and streamed. */
  readonly budgetAlertWebhook: string | undefined;
  /** How long idempotency records and finished reservations are kept, in seconds (a replay after that is a new request). Default 3600. */
  readonly idempotencyTtlSeconds: number;
  /** How often the sweeper expires overdue reservations, in ms. Default 1000. */
  readonly reservationSweepMs: number;
  /**
   * How often a worker process upserts its job schedulers again (sweeper, rollout, learner ticks, purge), in ms: an
   * iteration BullMQ failed to schedule (an error while Redis stalled or restarted) is then re-created. Default 10000.
   */
  readonly schedulerRefreshMs: number;
  /** How long spans are kept after a trace's last write, in days. Default 30. */
  readonly spanRetentionDays: number;
  /** Most spans one trace may hold; further spans are rejected. Default 20000. */
  readonly maxSpansPerTrace: number;
  /** How often the rollout job evaluates running experiments (guardrails, SRM, ramps), in ms. Default 10000. */
  readonly rolloutIntervalMs: number;
  /** Bound on one request-path Redis command, in ms; a stalled Redis then fails a request instead of hanging it. Default 1000. */
  readonly redisCommandTimeoutMs: number;
  /** Whether any API key is configured (auth is on). */
  readonly authEnabled: boolean;
  /** Secret mixed into the keyed SHA-256 (HMAC) of stored API keys. Unset: a fixed label (keys are 256-bit random). */
  readonly keyPepper: string | undefined;
  /** Lifetime of a browser session (cookie) in seconds. Default 43200 (12 h). */
  readonly sessionTtlSeconds: number;
  /** Requests per key (or per address without a key) per rate-limit window; 0 = no rate limit. Default 0. */
  readonly rateLimitMax: number;
  /** Rate-limit window in ms. Default 60000. */
  readonly rateLimitWindowMs: number;
  /** Most time a client may take to send one whole request (headers and body), in ms. Default 30000. */
  readonly requestTimeoutMs: number;
  /** Most time a client may take to send the request headers, in ms. Default 10000. */
  readonly headersTimeoutMs: number;
  /** An idle keep-alive connection is closed after this long, in ms. Default 5000. */
  readonly keepAliveTimeoutMs: number;
  /**
   * On shutdown, how long kept-alive connections stay open (ms) so that a request a client writes on one as the drain
   * begins is answered 503 SHUTTING_DOWN with `Connection: close` instead of meeting a closed socket; ends early once
   * no connection is left. 0 = close idle connections at once. Default 1000.
   */
  readonly drainGraceMs: number;
  /** Characters of a `<x>Text` feature tokenized exactly; beyond this the count is estimated from a sample of this size. Default 4096. */
  readonly textTokenizeMaxChars: number;
  /** Bearer key required by GET /metrics (an operator admin key works too). Unset: /metrics is public. */
  readonly metricsKey: string | undefined;
  /** How long applied-outcome markers outlive the reward window, in seconds: the longest an accepted outcome may wait in the queue and still be applied. Default 21600. */
  readonly outcomeMarkerGraceSeconds: number;
  /** Completed outcome jobs are kept at most this many seconds… Default 600. */
  readonly jobKeepCompletedSeconds: number;
  /** …and at most this many. Default 1000. */
  readonly jobKeepCompletedCount: number;
  /** Failed outcome jobs are kept at most this many seconds… Default 604800 (7 days). */
  readonly jobKeepFailedSeconds: number;
  /** …and at most this many. Default 10000. */
  readonly jobKeepFailedCount: number;
  /** Model versions kept per pipeline besides every version that ever served. Default 20. */
  readonly modelVersionsKeep: number;
  /**
   * A retrain that has run this long (ms) at its trainer's CPU priority moves one step up (SCHED_IDLE → SCHED_OTHER
   * at nice 19 → nice 10), so retrains finish on a host whose cores are always busy. 0 = never. Default 30000.
   */
  readonly trainEscalateAfterMs: number;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`Invalid configuration: ${variable} ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function intVar(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(name, `must be an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** `REDIS_CLUSTER_NODES`: comma-separated host:port seed nodes (at least one), or undefined when unset. */
function clusterNodesVar(env: Env): readonly string[] | undefined {
  const raw = env.REDIS_CLUSTER_NODES?.trim();
  if (!raw) return undefined;
  const nodes = raw.split(',').map((n) => n.trim()).filter((n) => n !== '');
  for (const n of nodes) {
    const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/.exec(n);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      throw new ConfigError('REDIS_CLUSTER_NODES', `must be comma-separated host:port seed nodes, got "${n}"`);
    }
  }
  if (nodes.length === 0) throw new ConfigError('REDIS_CLUSTER_NODES', 'names no node');
  return Object.freeze(nodes);
}

function boolVar(env: Env, name: string, def: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function keyVar(env: Env, name: string): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  if (raw.length < 16) throw new ConfigError(name, 'must be at least 16 characters long');
  return raw;
}

function urlVar(env: Env, name: string): string | undefined {
  const raw = env[name]?.trim();
  if (!raw) return undefined;
  try {
    const u = new URL(raw);
    if (u.protocol === 'http:' || u.protocol === 'https:') return raw;
  } catch {
    /* reported below */
  }
  throw new ConfigError(name, `must be an http:// or https:// URL, got "${raw}"`);
}

/** One label of a host name: letters, digits, `-` (not at either end) and `_` (container names), 1-63 characters. */
const HOST_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/**
 * `HOST`: an IP address (IPv6 with or without brackets; given to the listener without them) or a host name. A name
 * whose last label is a number (`999.1.1.1`, `10.0.1`) is a mistyped address, not a name. Whether a name resolves,
 * and to an address of this machine, is known only when the server listens (see `listenError` in server.ts).
 */
function hostVar(env: Env): string | undefined {
  const raw = env.HOST?.trim();
  if (!raw) return undefined;
  const bare = raw.replace(/^\[(.*)\]$/, '$1');
  if (isIP(bare) === 6 || (bare === raw && isIP(raw) === 4)) return bare;
  const labels = raw.replace(/\.$/, '').split('.');
  if (raw.length <= 253 && labels.every((l) => HOST_LABEL.test(l)) && !/^\d+$/.test(labels.at(-1)!)) return raw;
  throw new ConfigError('HOST', `must be an IP address (127.0.0.1, 0.0.0.0, ::1, ::) or a host name, got "${raw}"`);
}

/**
 * Whether HOST names a loopback interface, decided on the parsed address (127.0.0.0/8, ::1, an IPv4-mapped
 * 127.x) or the name `localhost` — never by prefix, so `127.example.com` or `127.0.0.1.nip.io` is not loopback.
 */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  const v = isIP(h);
  if (v === 4) return LOOPBACK.check(h, 'ipv4');
  if (v === 6) return LOOPBACK.check(h, 'ipv6') || LOOPBACK_MAPPED.check(h, 'ipv6');
  return false;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
const LOOPBACK_MAPPED = new BlockList();
LOOPBACK_MAPPED.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** A URL as a message may show it: the password of `scheme://user:password@…` replaced, parsed or not. */
function withoutPassword(url: string): string {
  return url.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/[^:@/?#]*:)[^@/?#]*@/, '$1***@');
}

/**
 * `REDIS_URL`: `redis://` or `rediss://`, with a host — ioredis reads a URL without one (`redis://`, `redis:///0`)
 * as 127.0.0.1:6379, so a host left out would connect to whatever listens there. On a cluster
 * (`REDIS_CLUSTER_NODES`) the URL gives only credentials and TLS, and may name no host (`rediss://`).
 */
function redisUrlVar(env: Env, clusterNodes: readonly string[] | undefined): string {
  const raw = env.REDIS_URL?.trim() || 'redis://127.0.0.1:6379';
  const form = 'redis://[user:password@]host[:port][/db] (or rediss:// for TLS)';
  let u: URL | undefined;
  try {
    u = new URL(raw);
  } catch {
    /* reported below */
  }
  if (!u || (u.protocol !== 'redis:' && u.protocol !== 'rediss:')) {
    throw new ConfigError('REDIS_URL', `must be a URL of the form ${form}, got "${withoutPassword(raw)}"`);
  }
  if (u.hostname === '' && !clusterNodes) {
    throw new ConfigError('REDIS_URL', `names no host, got "${withoutPassword(raw)}": write ${form}`);
  }
  if (u.port === '0') throw new ConfigError('REDIS_URL', `port must be between 1 and 65535, got "${withoutPassword(raw)}"`);
  if (!/^(\/\d*)?$/.test(u.pathname)) {
    throw new ConfigError('REDIS_URL', `path must be a database number (/0, /1, …), got "${withoutPassword(raw)}"`);
  }
  return raw;
}

/** Validates the environment and returns a frozen Config, or throws ConfigError naming the variable. */
export function loadConfig(env: Env = process.env): Config {
  const redisClusterNodes = clusterNodesVar(env);
  const redisUrl = redisUrlVar(env, redisClusterNodes);
  const keyPrefix = env.APPORTION_KEY_PREFIX?.trim() || 'apportion';
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(keyPrefix)) {
    throw new ConfigError('APPORTION_KEY_PREFIX', 'must be 1-64 characters of letters, digits, _ . -');
  }
  const logLevel = (env.LOG_LEVEL?.trim() || 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got "${env.LOG_LEVEL}"`);
  }
  const adminKey = keyVar(env, 'APPORTION_ADMIN_KEY');
  const clientKey = keyVar(env, 'APPORTION_CLIENT_KEY');
  if (adminKey !== undefined && adminKey === clientKey) {
    throw new ConfigError('APPORTION_CLIENT_KEY', 'must differ from APPORTION_ADMIN_KEY');
  }
  const authEnabled = adminKey !== undefined || clientKey !== undefined;
  let host = hostVar(env) ?? '127.0.0.1';
  let hostIgnored: string | undefined;
  if (!authEnabled && !isLoopback(host)) {
    hostIgnored = host;
    host = '127.0.0.1';
  }

  return Object.freeze({
    port: intVar(env, 'PORT', 3000, 0, 65535),
    host,
    ...(hostIgnored !== undefined ? { hostIgnored } : {}),
    redisUrl,
    redisClusterNodes,
    redisShards: intVar(env, 'APPORTION_REDIS_SHARDS', redisClusterNodes ? 16 : 1, 1, 1024),
    keyPrefix,
    adminKey,
    clientKey,
    logLevel,
    rewardWindowSeconds: intVar(env, 'APPORTION_REWARD_WINDOW_SECONDS', 86_400, 1, 30 * 86_400),
    bodyLimitBytes: intVar(env, 'APPORTION_BODY_LIMIT_BYTES', 1_048_576, 1024, 64 * 1_048_576),
    outcomeConcurrency: intVar(env, 'APPORTION_OUTCOME_CONCURRENCY', 16, 1, 1024),
    outcomeBatchMax: intVar(env, 'APPORTION_OUTCOME_BATCH_MAX', 64, 1, 1000),
    jobLockMs: intVar(env, 'APPORTION_JOB_LOCK_MS', 30_000, 500, 600_000),
    workerDrainMs: intVar(env, 'APPORTION_WORKER_DRAIN_MS', 10_000, 0, 600_000),
    seedExamples: boolVar(env, 'APPORTION_SEED_EXAMPLES', true),
    modelsDir: env.APPORTION_MODELS_DIR?.trim() || 'models',
    configPollMs: intVar(env, 'APPORTION_CONFIG_POLL_MS', 1000, 50, 3_600_000),
    allowEviction: boolVar(env, 'APPORTION_ALLOW_EVICTION', false),
    benchRoutes: boolVar(env, 'APPORTION_BENCH_ROUTES', false),
    otlpGrpcPort: env.APPORTION_OTLP_GRPC_PORT?.trim() ? intVar(env, 'APPORTION_OTLP_GRPC_PORT', 0, 0, 65535) : undefined,
    workerMetricsPort: env.APPORTION_WORKER_METRICS_PORT?.trim() ? intVar(env, 'APPORTION_WORKER_METRICS_PORT', 0, 0, 65535) : undefined,
    budgetAlertWebhook: urlVar(env, 'APPORTION_BUDGET_ALERT_WEBHOOK'),
    idempotencyTtlSeconds: intVar(env, 'APPORTION_IDEMPOTENCY_TTL_SECONDS', 3600, 1, 30 * 86_400),
    reservationSweepMs: intVar(env, 'APPORTION_RESERVATION_SWEEP_MS', 1000, 50, 3_600_000),
    schedulerRefreshMs: intVar(env, 'APPORTION_SCHEDULER_REFRESH_MS', 10_000, 100, 3_600_000),
    spanRetentionDays: intVar(env, 'APPORTION_SPAN_RETENTION_DAYS', 30, 1, 3650),
    maxSpansPerTrace: intVar(env, 'APPORTION_MAX_SPANS_PER_TRACE', 20_000, 10, 1_000_000),
    rolloutIntervalMs: intVar(env, 'APPORTION_ROLLOUT_INTERVAL_MS', 10_000, 100, 3_600_000),
    redisCommandTimeoutMs: intVar(env, 'APPORTION_REDIS_COMMAND_TIMEOUT_MS', 1000, 50, 600_000),
    authEnabled,
    keyPepper: keyVar(env, 'APPORTION_KEY_PEPPER'),
    sessionTtlSeconds: intVar(env, 'APPORTION_SESSION_TTL_SECONDS', 43_200, 60, 30 * 86_400),
    rateLimitMax: intVar(env, 'APPORTION_RATE_LIMIT_MAX', 0, 0, 100_000_000),
    rateLimitWindowMs: intVar(env, 'APPORTION_RATE_LIMIT_WINDOW_MS', 60_000, 100, 86_400_000),
    requestTimeoutMs: intVar(env, 'APPORTION_REQUEST_TIMEOUT_MS', 30_000, 100, 3_600_000),
    headersTimeoutMs: intVar(env, 'APPORTION_HEADERS_TIMEOUT_MS', 10_000, 100, 3_600_000),
    keepAliveTimeoutMs: intVar(env, 'APPORTION_KEEP_ALIVE_TIMEOUT_MS', 5000, 100, 3_600_000),
    drainGraceMs: intVar(env, 'APPORTION_DRAIN_GRACE_MS', 1000, 0, 15_000),
    textTokenizeMaxChars: intVar(env, 'APPORTION_TEXT_TOKENIZE_MAX_CHARS', 4096, 256, 16_777_216),
    metricsKey: keyVar(env, 'APPORTION_METRICS_KEY'),
    outcomeMarkerGraceSeconds: intVar(env, 'APPORTION_OUTCOME_MARKER_GRACE_SECONDS', 21_600, 60, 30 * 86_400),
    jobKeepCompletedSeconds: intVar(env, 'APPORTION_JOB_KEEP_COMPLETED_SECONDS', 600, 0, 7 * 86_400),
    jobKeepCompletedCount: intVar(env, 'APPORTION_JOB_KEEP_COMPLETED_COUNT', 1000, 0, 1_000_000),
    jobKeepFailedSeconds: intVar(env, 'APPORTION_JOB_KEEP_FAILED_SECONDS', 7 * 86_400, 0, 30 * 86_400),
    jobKeepFailedCount: intVar(env, 'APPORTION_JOB_KEEP_FAILED_COUNT', 10_000, 0, 1_000_000),
    modelVersionsKeep: intVar(env, 'APPORTION_MODEL_VERSIONS_KEEP', 20, 1, 100_000),
    trainEscalateAfterMs: intVar(env, 'APPORTION_TRAIN_ESCALATE_AFTER_MS', 30_000, 0, 86_400_000),
  });
}

/** Documented variables, kept here so the README table and a test can agree with the code. */
export const CONFIG_VARIABLES = [
  'PORT',
  'HOST',
  'REDIS_URL',
  'REDIS_CLUSTER_NODES',
  'APPORTION_REDIS_SHARDS',
  'APPORTION_KEY_PREFIX',
  'APPORTION_ADMIN_KEY',
  'APPORTION_CLIENT_KEY',
  'LOG_LEVEL',
  'APPORTION_REWARD_WINDOW_SECONDS',
  'APPORTION_ROLLOUT_INTERVAL_MS',
  'APPORTION_BODY_LIMIT_BYTES',
  'APPORTION_OUTCOME_CONCURRENCY',
  'APPORTION_OUTCOME_BATCH_MAX',
  'APPORTION_JOB_LOCK_MS',
  'APPORTION_WORKER_DRAIN_MS',
  'APPORTION_SEED_EXAMPLES',
  'APPORTION_MODELS_DIR',
  'APPORTION_CONFIG_POLL_MS',
  'APPORTION_ALLOW_EVICTION',
  'APPORTION_BENCH_ROUTES',
  'APPORTION_OTLP_GRPC_PORT',
  'APPORTION_WORKER_METRICS_PORT',
  'APPORTION_BUDGET_ALERT_WEBHOOK',
  'APPORTION_IDEMPOTENCY_TTL_SECONDS',
  'APPORTION_RESERVATION_SWEEP_MS',
  'APPORTION_SCHEDULER_REFRESH_MS',
  'APPORTION_SPAN_RETENTION_DAYS',
  'APPORTION_MAX_SPANS_PER_TRACE',
  'APPORTION_REDIS_COMMAND_TIMEOUT_MS',
  'APPORTION_KEY_PEPPER',
  'APPORTION_SESSION_TTL_SECONDS',
  'APPORTION_RATE_LIMIT_MAX',
  'APPORTION_RATE_LIMIT_WINDOW_MS',
  'APPORTION_REQUEST_TIMEOUT_MS',
  'APPORTION_HEADERS_TIMEOUT_MS',
  'APPORTION_KEEP_ALIVE_TIMEOUT_MS',
  'APPORTION_DRAIN_GRACE_MS',
  'APPORTION_TEXT_TOKENIZE_MAX_CHARS',
  'APPORTION_METRICS_KEY',
  'APPORTION_OUTCOME_MARKER_GRACE_SECONDS',
  'APPORTION_JOB_KEEP_COMPLETED_SECONDS',
  'APPORTION_JOB_KEEP_COMPLETED_COUNT',
  'APPORTION_JOB_KEEP_FAILED_SECONDS',
  'APPORTION_JOB_KEEP_FAILED_COUNT',
  'APPORTION_MODEL_VERSIONS_KEEP',
  'APPORTION_TRAIN_ESCALATE_AFTER_MS',
] as const;
