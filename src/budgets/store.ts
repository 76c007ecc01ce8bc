import type { Redis } from 'ioredis';
import { AppError } from '../errors/app-error.js';
import { callScript, type ScriptName, type ScriptReply } from '../redis/scripts.js';

/**
 * Fail closed: any failure to reach Redis (connection refused or closed, no offline queue, timeouts,
 * LOADING, READONLY, CLUSTERDOWN…) becomes 503 REDIS_UNAVAILABLE, so a reservation is refused, never granted.
 * A Lua error (or a CROSSSLOT refusal on a cluster) is a bug and stays a 500.
 */
export function storeFailure(e: unknown): never {
  if (e instanceof AppError) throw e;
  const err = e as Error;
  const msg = err?.message ?? String(e);
  if (err?.name === 'ReplyError' && /script|user_script|attempt to|Lua|CROSSSLOT/i.test(msg)) throw err;
  throw new AppError('REDIS_UNAVAILABLE', `budget store unreachable: ${msg}`);
}

/** How long a budgets script may take before the request is answered 503. Default 2000 ms. */
export const STORE_TIMEOUT_MS = 2000;

/**
 * Runs a budgets script, mapping store failures to 503. A store that is connected but does not answer (blocked
 * by a slow command, failing over) also fails closed after `timeoutMs`: the caller gets 503 and may retry with
 * the same idempotency key — if the script did run late, the retry replays its answer instead of acting twice.
 */
export function run<N extends ScriptName>(redis: Redis, name: N, keys: readonly string[], args: readonly (string | number)[], timeoutMs = STORE_TIMEOUT_MS): Promise<ScriptReply<N>> {
  type T = ScriptReply<N>;
  let p: Promise<T>;
  try {
    p = callScript(redis, name, keys, args);
  } catch (e) {
    return Promise.reject(storeFailure(e));
  }
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new AppError('REDIS_UNAVAILABLE', `budget store did not answer within ${timeoutMs} ms; retry with the same idempotency key`)),
      timeoutMs,
    );
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        try {
          storeFailure(e);
        } catch (x) {
          reject(x);
        }
      },
    );
  });
}
