import { randomBytes } from 'node:crypto';
import { after } from 'node:test';
import { Redis } from 'ioredis';
import pino from 'pino';
import { loadConfig, type Config } from '../../src/config/env.js';
import type { ClientOptions, RedisTarget } from '../../src/redis/connection.js';
import { dropPrefix as dropPrefixAt } from '../../src/redis/prefix.js';
import { DecisionStore } from '../../src/allocation/decisions.js';
import type { DecisionReader } from '../../src/kernel/decision.js';
import { start, type Running, type StartOptions } from '../../src/server.js';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * `APPORTION_TEST_REDIS=cluster` (set for the cluster files by `npm test` and `npm run test:cluster`, with REDIS_CLUSTER_NODES naming a local cluster):
 * the suites that go through these helpers run against the cluster instead of the Redis at REDIS_URL.
 */
export const ON_CLUSTER = process.env.APPORTION_TEST_REDIS === 'cluster';
if (ON_CLUSTER && !process.env.REDIS_CLUSTER_NODES) throw new Error('APPORTION_TEST_REDIS=cluster needs REDIS_CLUSTER_NODES');
const CLUSTER_ENV: Record<string, string> = ON_CLUSTER ? { REDIS_CLUSTER_NODES: process.env.REDIS_CLUSTER_NODES! } : {};

/** Where the suites' Redis is: REDIS_URL, or the cluster of REDIS_CLUSTER_NODES under APPORTION_TEST_REDIS=cluster. */
export const REDIS_TARGET: RedisTarget = ON_CLUSTER ? { url: REDIS_URL, clusterNodes: process.env.REDIS_CLUSTER_NODES!.split(',') } : { url: REDIS_URL };

/** A key prefix of its own for one test file (every key and queue lives under it). */
export function testPrefix(name: string): string {
  return `t-${name}-${randomBytes(4).toString('hex')}`;
}

export function testConfig(prefix: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    REDIS_URL,
    ...CLUSTER_ENV,
    APPORTION_KEY_PREFIX: prefix,
    LOG_LEVEL: 'silent',
    APPORTION_SEED_EXAMPLES: 'false',
    PORT: '0',
    ...env,
  });
}

export const silentLog = pino({ level: 'silent' });

/** Starts an in-process Apportion (no socket by default) under its own prefix. */
export async function startTest(prefix: string, opts: Partial<StartOptions> = {}, env: Record<string, string> = {}): Promise<Running> {
  return start(testConfig(prefix, env), silentLog, { api: true, workers: true, listen: false, ...opts });
}

/** Deletes every key under the prefix. */
export function dropPrefix(prefix: string): Promise<void> {
  return dropPrefixAt(REDIS_TARGET, prefix);
}

/** Fails if `p` has not settled within `ms`: a hang, not a slow answer (a bound only, never a latency assertion). */
export async function within<T>(p: Promise<T>, ms = 10_000, what = 'the call'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (hung)`)), ms)));
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls until `check` returns a truthy value or the deadline passes (no timing assertions: only a bound). */
export async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const FIVE_AGENTS = {
  defaultTotalTokens: 16000,
  agents: [
    { name: 'orchestrator', priority: 'critical', minTokens: 500, maxTokens: 6000 },
    { name: 'retriever', priority: 'standard', minTokens: 300, maxTokens: 6000 },
    { name: 'reasoner', priority: 'critical', minTokens: 1000, maxTokens: 12000 },
    { name: 'validator', priority: 'standard', minTokens: 200, maxTokens: 3000 },
    { name: 'formatter', priority: 'background', minTokens: 100, maxTokens: 1500 },
  ],
};

/**
 * A Redis client for one test file (on REDIS_URL, with the file's options): disconnected, and the file's key prefix
 * dropped, after the file's tests.
 */
export function testRedis(prefix: string, options: ClientOptions = {}): Redis {
  const redis = new Redis(REDIS_URL, options);
  after(async () => {
    redis.disconnect();
    await dropPrefix(prefix);
  });
  return redis;
}

/** The decision records of a running test server, as the learner is handed them (the allocation's DecisionStore). */
export function decisionsOf(rt: Running): DecisionReader {
  const c = rt.core.config;
  return new DecisionStore(rt.core.redis, rt.core.keys, c.rewardWindowSeconds, Math.ceil(c.redisCommandTimeoutMs / 2));
}
