import { AppError } from '../errors/app-error.js';
import { ControlConflict } from './store.js';
import type { ControlView } from './view.js';

/** How many times a conditional control-plane write is recomputed from a fresh state before the caller gets a 409. */
export const WRITE_ATTEMPTS = 30;

/** What writeFresh needs of the process: its snapshot (reloaded on a conflict) and the global version in Redis. */
export interface FreshState {
  readonly view: () => ControlView;
  readonly snapshot: { refresh(): Promise<void> };
  readonly store: { version(): Promise<number> };
}

/**
 * Runs `attempt` until its conditional write applies. `attempt` reads the current view, checks the request against
 * it and writes with an Expectation naming what it read; when another writer got in between (ControlConflict), the
 * snapshot is reloaded and `attempt` runs again on the new state, after a jittered exponential pause (capped at
 * 100 ms) so racing writers spread out. So every check a write passed (a tenant's ownership, a strategy's pipeline, a
 * default strategy's existence) still held when it applied. After WRITE_ATTEMPTS the caller gets 409
 * CONCURRENT_MODIFICATION.
 *
 * A refusal (an AppError: "no pipeline", "id taken", …) is also only answered when it was decided on the current
 * state: if the control plane in Redis has moved past the view the attempt read (a write made through another process
 * that this snapshot has not received yet), the snapshot is reloaded and the request decided again (once). So a client that
 * creates a pipeline through one instance and a strategy for it through another is not told the pipeline is missing.
 */
export async function writeFresh<T>(state: FreshState, what: string, attempt: () => Promise<T>): Promise<T> {
  let rechecked = false;
  for (let i = 0; i < WRITE_ATTEMPTS; i++) {
    const seen = state.view().version;
    try {
      return await attempt();
    } catch (e) {
      if (e instanceof AppError) {
        // Decided again once at most: a busy control plane (model documents written by the trainer) must not turn a
        // refusal into CONCURRENT_MODIFICATION.
        if (rechecked || !(await reloadIfBehind(state, seen))) throw e;
        rechecked = true;
        continue;
      }
      if (!(e instanceof ControlConflict)) throw e;
      await state.snapshot.refresh();
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(100, 5 * 2 ** i)));
    }
  }
  throw new AppError('CONCURRENT_MODIFICATION', `${what} kept changing concurrently; retry`);
}

/**
 * For a refusal decided on a view at version `seen`: whether the control plane in Redis has moved past it (a write
 * through another process this snapshot has not received yet), in which case the snapshot is reloaded and the
 * caller decides again. Redis unreachable: false (the refusal stands).
 */
export async function reloadIfBehind(state: FreshState, seen: number): Promise<boolean> {
  const now = await state.store.version().catch(() => seen);
  if (now === seen) return false;
  await state.snapshot.refresh();
  return true;
}
