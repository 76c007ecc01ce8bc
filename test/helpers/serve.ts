import { after, before } from 'node:test';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest } from './env.js';

/**
 * A server (API and workers) under `prefix` for the enclosing test file or describe block, listening on a real
 * socket: started in `before`, closed and its keys dropped in `after`. Tests read it as `.rt` (it exists once the
 * block's `before` has run). `env` adds to the test configuration (e.g. `PORT: '0'`).
 */
export function serveDuring(prefix: string, env: Record<string, string> = {}): { readonly rt: Running } {
  let running: Running | undefined;
  before(async () => {
    running = await startTest(prefix, { listen: true }, env);
  });
  after(async () => {
    await running?.close();
    await dropPrefix(prefix);
  });
  return {
    get rt(): Running {
      if (!running) throw new Error(`the server for ${prefix} has not started: read .rt inside a test or hook`);
      return running;
    },
  };
}
