import { createRequire } from 'node:module';
import path from 'node:path';

export type Tf = typeof import('@tensorflow/tfjs');

let loading: Promise<{ tf: Tf; backend: string }> | undefined;

/**
 * Loads TensorFlow.js once per process: `@tensorflow/tfjs-node` when it is installed (native libtensorflow),
 * else `@tensorflow/tfjs` with the wasm backend (its .wasm files resolved from the package's dist
 * directory), else the pure-JS cpu backend. Only the training worker calls this: serving evaluates the
 * exported weights in plain TypeScript (model.ts).
 */
export function loadTf(log?: (msg: string, backend: string) => void): Promise<{ tf: Tf; backend: string }> {
  loading ??= (async () => {
    try {
      const name = '@tensorflow/tfjs-node';
      const tf = (await import(name)) as Tf;
      await tf.ready();
      log?.('tensorflow backend loaded', tf.getBackend());
      return { tf, backend: tf.getBackend() };
    } catch {
      // Not installed (it downloads libtensorflow at install time, which may be blocked): fall through.
    }
    const tf = await import('@tensorflow/tfjs');
    const own = processHandlers();
    try {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      const dist = path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm'));
      wasm.setWasmPaths(`${dist}${path.sep}`);
      if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend refused');
    } catch {
      await tf.setBackend('cpu');
    } finally {
      restoreProcessHandlers(own);
    }
    await tf.ready();
    restoreProcessHandlers(own);
    log?.('tensorflow backend loaded', tf.getBackend());
    return { tf, backend: tf.getBackend() };
  })();
  return loading;
}

const PROCESS_EVENTS = ['uncaughtException', 'unhandledRejection'] as const;

/** The process's own crash handlers (listeners of uncaughtException and unhandledRejection), before loading the wasm backend. */
function processHandlers(): Map<string, readonly ((...args: unknown[]) => void)[]> {
  return new Map(PROCESS_EVENTS.map((e) => [e, listenersOf(e)]));
}

/**
 * Removes the crash handlers added since `own` was taken. The wasm backend's emscripten glue installs handlers that
 * re-throw every uncaught exception and unhandled rejection from inside the handler: the process then dies with
 * exit code 7 and, on stderr, the glue's own (minified) line instead of the error's origin, and Node's own handling
 * (and any handler the process installs later) no longer decides. Without them, a crash reports its real error.
 */
function restoreProcessHandlers(own: ReadonlyMap<string, readonly ((...args: unknown[]) => void)[]>): void {
  for (const e of PROCESS_EVENTS) {
    const keep = own.get(e) ?? [];
    for (const l of listenersOf(e)) if (!keep.includes(l)) process.removeListener(e as 'uncaughtException', l);
  }
}

function listenersOf(e: (typeof PROCESS_EVENTS)[number]): ((...args: unknown[]) => void)[] {
  // One event name at a time for the typings (process.listeners has an overload per event).
  return (e === 'uncaughtException' ? process.listeners('uncaughtException') : process.listeners('unhandledRejection')) as ((...args: unknown[]) => void)[];
}
