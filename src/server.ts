import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/env.js';
import { buildApp } from './http/app.js';
import { createModules } from './modules.js';
import { closeCore, createCore, type Closeable, type Core, type ModuleParts } from './runtime.js';
import { seedExamples } from './seed.js';

export interface StartOptions {
  /** Serve the HTTP API. */
  readonly api: boolean;
  /** Run the BullMQ workers. */
  readonly workers: boolean;
  /** Listen on the configured port (false for tests that use app.inject). Default true. */
  readonly listen?: boolean;
  readonly defaultMetrics?: boolean;
}

export interface Running {
  readonly core: Core;
  readonly modules: readonly ModuleParts[];
  readonly app: FastifyInstance | undefined;
  /** Base URL when listening. */
  readonly url: string | undefined;
  /** Drains HTTP, then lets workers finish their active jobs, then closes connections. */
  close(): Promise<void>;
}

/** Starts the API, the workers, or both in one process (`apportion serve`). */
export async function start(config: Config, log: Logger, opts: StartOptions): Promise<Running> {
  const core = await createCore(config, log, { defaultMetrics: opts.defaultMetrics ?? false });
  const modules = await createModules(core);
  const workers: Closeable[] = [];
  if (opts.workers) {
    for (const m of modules) if (m.startWorkers) workers.push(...(await m.startWorkers()));
  }
  let app: FastifyInstance | undefined;
  let url: string | undefined;
  if (opts.api) {
    const outcomes = modules.flatMap((m) => m.queues ?? []).find((q) => q.name === 'outcomes');
    app = await buildApp({
      core,
      modules,
      workersReady: async () => (outcomes ? (await outcomes.getWorkers()).length > 0 : true),
    });
    await app.ready();
    if (config.seedExamples) await seedExamples(core, app);
    if (opts.listen !== false) {
      url = await app.listen({ port: config.port, host: config.host });
      if (!config.authEnabled) log.warn({ host: config.host }, 'auth is OFF (no APPORTION_ADMIN_KEY / APPORTION_CLIENT_KEY): listening on loopback only');
    }
  }
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      const t0 = Date.now();
      if (app) await app.close();
      log.info({ ms: Date.now() - t0 }, 'HTTP drained');
      await Promise.allSettled(workers.map((w) => w.close()));
      log.info({ ms: Date.now() - t0 }, 'workers closed');
      await Promise.allSettled(modules.map((m) => m.close?.()));
      await closeCore(core);
      log.info({ ms: Date.now() - t0 }, 'connections closed');
    })());
  return { core, modules, app, url, close };
}

/** Closes gracefully on SIGTERM/SIGINT; a second signal exits at once. */
export function closeOnSignals(running: Pick<Running, 'close'>, log: Logger): void {
  let count = 0;
  const handler = (signal: NodeJS.Signals) => {
    count++;
    if (count > 1) process.exit(130);
    log.info({ signal }, 'shutting down: draining HTTP and finishing active jobs');
    running.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
