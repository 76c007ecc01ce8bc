import type { Redis } from 'ioredis';
import { AppError } from '../errors/app-error.js';
import { runScript } from '../redis/scripts.js';

/**
 * Fail closed: any failure to reach Redis (connection refused or closed, no offline queue, timeouts,
 * LOADING, READONLY, CLUSTERDOWN…) becomes 503 REDIS_UNAVAILABLE, so a reservation is refused, never granted.
 * A Lua error is a bug and stays a 500.
 */
export function storeFailure(e: unknown): never {
  if (e instanceof AppError) throw e;
  const err = e as Error;
  const msg = err?.message ?? String(e);
  if (err?.name === 'ReplyError' && /script|user_script|attempt to|Lua/i.test(msg)) throw err;
  throw new AppError('REDIS_UNAVAILABLE', `budget store unreachable: ${msg}`);
}

/** Runs a budgets script, mapping store failures to 503. */
export function run<T>(redis: Redis, name: string, keys: readonly string[], args: readonly (string | number)[], dynamic: boolean): Promise<T> {
  let p: Promise<T>;
  try {
    p = runScript<T>(redis, name, keys, args, dynamic);
  } catch (e) {
    return Promise.reject(storeFailure(e));
  }
  return p.catch(storeFailure);
}
