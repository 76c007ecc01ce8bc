import { AppError } from '../errors/app-error.js';
import { ControlConflict } from './store.js';

/** How many times a conditional control-plane write is recomputed from a fresh state before the caller gets a 409. */
export const WRITE_ATTEMPTS = 30;

/**
 * Runs `attempt` until its conditional write applies. `attempt` reads the current view, checks the request against
 * it and writes with an Expectation naming what it read; when another writer got in between (ControlConflict), the
 * snapshot is reloaded and `attempt` runs again on the new state, after a short jittered pause so racing writers
 * spread out. So every check a write passed (a tenant's ownership, a strategy's pipeline, a default strategy's
 * existence) still held when it applied. After WRITE_ATTEMPTS the caller gets 409 CONCURRENT_MODIFICATION.
 */
export async function writeFresh<T>(refresh: () => Promise<void>, what: string, attempt: () => Promise<T>): Promise<T> {
  for (let i = 0; i < WRITE_ATTEMPTS; i++) {
    try {
      return await attempt();
    } catch (e) {
      if (!(e instanceof ControlConflict)) throw e;
      await refresh();
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(100, 5 * 2 ** i)));
    }
  }
  throw new AppError('CONCURRENT_MODIFICATION', `${what} kept changing concurrently; retry`);
}
