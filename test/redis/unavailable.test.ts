import { CommitTimeoutError } from '../../src/redis/group-commit.js';
import { RecordDeadlineError } from '../../src/allocation/decisions.js';
/**
 * Which errors are a Redis outage (a 503 and a retry) rather than a bug (a 500), with the error objects ioredis
 * itself makes. Found by an external evaluation: during a Redis Cluster failover ioredis gave up on commands with a plain
 * `Error("Too many Cluster redirections. Last error: …")` wrapping the last redirection or connection error, and
 * POST /v1/spans answered 500 INTERNAL.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Cluster, ReplyError } from 'ioredis';
import { createRequire } from 'node:module';
import { isRedisUnavailable } from '../../src/redis/unavailable.js';
import { REDIS_URL } from '../helpers/env.js';

// ioredis's own error classes (CommonJS default exports, not re-exported from its index).
const require = createRequire(import.meta.url);
const ClusterAllFailedError = (require('ioredis/built/errors/ClusterAllFailedError.js') as { default: { new (m: string, last: Error): Error; defaultMessage: string } }).default;
const MaxRetriesPerRequestError = (require('ioredis/built/errors/MaxRetriesPerRequestError.js') as { default: new (n: number) => Error }).default;

type Handlers = { maxRedirections: (e: Error) => void; defaults: () => void };
const handleError = (Cluster.prototype as unknown as { handleError: (e: Error, ttl: { value?: number }, h: Handlers) => void }).handleError;

/** The error ioredis's Cluster rejects a command with when its last allowed redirection fails with `last`. */
function redirectionsExhausted(last: Error): Error {
  let out: Error | undefined;
  handleError.call({ options: { maxRedirections: 16 } }, last, { value: 1 }, { maxRedirections: (e) => (out = e), defaults: () => undefined });
  assert.ok(out, 'ioredis did not give up');
  return out;
}

describe('isRedisUnavailable', () => {
  it('a cluster command that ran out of redirections during a failover is unavailable, whatever the last retryable error', () => {
    const lastErrors = [
      new Error('Connection is closed.'),
      new Error('Command timed out (no answer from Redis within 1000 ms)'),
      new ReplyError('MOVED 9263 127.0.0.1:34326'),
      new ReplyError('ASK 9263 127.0.0.1:34326'),
      new ReplyError('TRYAGAIN Multiple keys request during rehashing of slot'),
      new ReplyError('CLUSTERDOWN The cluster is down'),
    ];
    for (const last of lastErrors) {
      const e = redirectionsExhausted(last);
      assert.match(e.message, /^Too many Cluster redirections\. Last error: /);
      assert.equal(isRedisUnavailable(e), true, e.message);
    }
  });

  it('a script error reached after the redirections is still a bug (500)', () => {
    const e = redirectionsExhausted(new ReplyError('ERR user_script:1: Script attempted to access nonexistent global variable'));
    assert.equal(isRedisUnavailable(e), false, e.message);
    assert.equal(isRedisUnavailable(redirectionsExhausted(new ReplyError('CROSSSLOT Keys in request don\'t hash to the same slot'))), false);
  });

  it('the cluster client with no reachable slot map, and no offline queue, is unavailable', async () => {
    assert.equal(isRedisUnavailable(new ClusterAllFailedError(ClusterAllFailedError.defaultMessage, new Error('Connection is closed.'))), true);
    assert.equal(isRedisUnavailable(new MaxRetriesPerRequestError(1)), true);
    // A real cluster client pointed at a Redis that is not a cluster: it cannot load a slot map.
    const url = new URL(REDIS_URL);
    const cluster = new Cluster([{ host: url.hostname, port: Number(url.port || 6379) }], { lazyConnect: true, clusterRetryStrategy: () => null, enableOfflineQueue: false });
    cluster.on('error', () => undefined);
    const err = await cluster.connect().then(
      () => undefined,
      (e: unknown) => e,
    );
    cluster.disconnect();
    assert.ok(err instanceof Error);
    assert.equal(isRedisUnavailable(err), true, `${(err as Error).name}: ${(err as Error).message}`);
    const notReady = await cluster.get('k').catch((e: unknown) => e);
    assert.ok(notReady instanceof Error);
    assert.equal(isRedisUnavailable(notReady), true, (notReady as Error).message);
  });

  it('a group-committed write not confirmed in time, or a decision record past its deadline, is unavailable (503: POST /v1/decisions/batch answered 500 for it)', () => {
    assert.equal(isRedisUnavailable(new CommitTimeoutError(50, true)), true);
    assert.equal(isRedisUnavailable(new CommitTimeoutError(50, false)), true);
    assert.equal(isRedisUnavailable(new RecordDeadlineError('x')), true);
  });

  it('a script error or CROSSSLOT on its own stays a bug', () => {
    assert.equal(isRedisUnavailable(new ReplyError('ERR Error running script')), false);
    assert.equal(isRedisUnavailable(new ReplyError("CROSSSLOT Keys in request don't hash to the same slot")), false);
    assert.equal(isRedisUnavailable(new ReplyError("OOM command not allowed when used memory > 'maxmemory'.")), true);
  });
});
