import { Redis } from 'ioredis';

/** A Redis URL with any password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * On a cluster (`REDIS_CLUSTER_NODES`): one PING to each seed node (REDIS_URL's credentials and TLS) until one
 * answers; otherwise `checkRedis(url)`.
 */
export async function checkRedisTarget(url: string, clusterNodes: readonly string[] | undefined, timeoutMs = 3000): Promise<string | undefined> {
  if (!clusterNodes) return checkRedis(url, timeoutMs);
  const problems: string[] = [];
  const base = new URL(url);
  for (const node of clusterNodes) {
    // Built afresh rather than by setting `host` on REDIS_URL: on a URL with no host (`rediss://`, allowed on a
    // cluster) that setter drops the port, and the PING would go to the node's host on 6379.
    const u = new URL(`${base.protocol}//${node}`);
    u.username = base.username;
    u.password = base.password;
    u.search = base.search;
    const p = await checkRedis(u.toString(), timeoutMs);
    if (!p) return undefined;
    problems.push(p.split('\n')[0]!);
  }
  return [`No seed node of REDIS_CLUSTER_NODES answered:`, ...problems].join('\n');
}

/**
 * One PING to `REDIS_URL` before start-up, without retries, so a missing Redis is reported as such (naming the
 * variable and how to start one) rather than as ioredis' bare "Connection is closed.". Resolves to an error
 * message, or undefined when Redis answered.
 */
export async function checkRedis(url: string, timeoutMs = 3000): Promise<string | undefined> {
  const redis = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: timeoutMs });
  let last: Error | undefined;
  redis.on('error', (e: Error) => (last = e));
  try {
    await redis.connect();
    await redis.ping();
    return undefined;
  } catch (e) {
    const reason = (last ?? (e as Error)).message;
    return [
      `Cannot reach Redis at ${redactUrl(url)} (REDIS_URL): ${reason}.`,
      'Apportion keeps all its state in Redis 7+. Start one with `redis-server --daemonize yes`',
      '(Debian/Ubuntu: `apt-get install redis-server`; Docker: `docker compose up -d redis`), or point REDIS_URL at yours.',
    ].join('\n');
  } finally {
    redis.disconnect();
  }
}
