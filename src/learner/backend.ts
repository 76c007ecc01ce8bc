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
    try {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      const dist = path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm'));
      wasm.setWasmPaths(`${dist}${path.sep}`);
      if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend refused');
    } catch {
      await tf.setBackend('cpu');
    }
    await tf.ready();
    log?.('tensorflow backend loaded', tf.getBackend());
    return { tf, backend: tf.getBackend() };
  })();
  return loading;
}
