import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { ConfigError, type Config } from './config/env.js';
import { buildApp, buildWorkerMetricsApp } from './app.js';
import { createModules } from './modules.js';
import type { Core } from './kernel/core.js';
import type { Closeable, ModuleParts } from './kernel/module.js';
import type { OtlpGrpcServer } from './http/otlp-grpc.js';
import { closeWorkers } from './kernel/drain.js';
import { closeCore, createCore } from './runtime.js';
import { seedExamples } from './seed.js';
import { queuesReady } from './redis/queues-ready.js';

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
  /** Port of the OTLP/gRPC listener (APPORTION_OTLP_GRPC_PORT), when one listens. */
  readonly grpcPort: number | undefined;
  /** Base URL of a worker-only process's metrics listener (APPORTION_WORKER_METRICS_PORT), when one listens. */
  readonly metricsUrl: string | undefined;
  /**
   * Drains HTTP (at most 20 s), then lets workers finish their active jobs (at most `workerDrainMs`; past it they are
   * closed without them and the jobs are retried as stalled), then closes connections.
   */
  close(): Promise<void>;
}

/**
 * A listener that could not start because of its address or port, as the ConfigError that names the variable to
 * change (`PORT` or `APPORTION_*_PORT`, or `HOST`) and how: Node's own error (`listen EADDRINUSE …`, `getaddrinfo
 * ENOTFOUND …`, or grpc-js's wording of them) names neither. Any other error is returned as it is.
 */
export function listenError(err: unknown, host: string, port: number, portVariable: string): unknown {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  const text = `${code} ${typeof e?.message === 'string' ? e.message : ''}`;
  if (/EADDRINUSE/.test(text)) {
    return new ConfigError(portVariable, `${port} is already in use on ${host} (EADDRINUSE): stop what listens there, or set ${portVariable} to a free port (0 picks one)`);
  }
  if (/EACCES/.test(text)) {
    return new ConfigError(portVariable, `${port} may not be opened by this user on ${host} (EACCES): use a port above 1023, or set ${portVariable} to 0 for any free port`);
  }
  if (/EADDRNOTAVAIL/.test(text)) {
    return new ConfigError('HOST', `"${host}" is not an address of this machine (EADDRNOTAVAIL): use one of its interfaces' addresses, 0.0.0.0 (all), or 127.0.0.1`);
  }
  if (/ENOTFOUND|EAI_AGAIN|EAI_NONAME|Name resolution failed/.test(text)) {
    return new ConfigError('HOST', `"${host}" does not resolve to an address (ENOTFOUND): use an IP address of this machine, or a name that resolves to one`);
  }
  if (/EAFNOSUPPORT/.test(text)) return new ConfigError('HOST', `"${host}": this machine has no such address family (EAFNOSUPPORT), e.g. IPv6 switched off`);
  return err;
}

/** `listen()` with its address and port problems reported as `listenError` does. */
async function listenNamed<T>(listen: () => Promise<T>, host: string, port: number, portVariable: string): Promise<T> {
  try {
    return await listen();
  } catch (e) {
    throw listenError(e, host, port, portVariable);
  }
}

/** Longest a shutdown waits for HTTP requests in flight before it closes the workers anyway. */
const HTTP_DRAIN_MS = 20_000;

/**
 * Starts the API, the workers, or both in one process (`apportion serve`). A start that fails half-way closes
 * what it had opened (HTTP server, BullMQ workers, queues, connections) before it rethrows.
 */
export async function start(config: Config, log: Logger, opts: StartOptions): Promise<Running> {
  const core = await createCore(config, log, { defaultMetrics: opts.defaultMetrics ?? false });
  const workers: Closeable[] = [];
  let modules: readonly ModuleParts[] = [];
  let app: FastifyInstance | undefined;
  let grpc: OtlpGrpcServer | undefined;
  let metricsApp: FastifyInstance | undefined;
  let schedulerRefresh: NodeJS.Timeout | undefined;
  const shutdown = async () => {
    const t0 = Date.now();
    clearInterval(schedulerRefresh);
    // Scraped until the workers stop would be nicer, but a closing process's counters are not worth a later exit.
    if (metricsApp) await metricsApp.close().catch((err: unknown) => log.warn({ err }, 'worker metrics listener did not close cleanly'));
    // gRPC first: its calls go through the app, which must still be open for the ones in flight.
    if (grpc) await grpc.close();
    if (app) {
      // Bounded: under heavy CPU load a drain was seen never to finish (listener closed, no connection left, close()
      // pending for 15 minutes), which kept the workers, and the process, alive. Past the bound the rest still closes.
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        app.close().then(() => true),
        new Promise<false>((r) => (timer = setTimeout(() => r(false), HTTP_DRAIN_MS))),
      ]);
      clearTimeout(timer);
      if (!drained) log.warn({ ms: HTTP_DRAIN_MS }, 'HTTP drain did not finish in time; closing the workers and connections anyway');
    }
    log.info({ ms: Date.now() - t0 }, 'HTTP drained');
    const results = await closeWorkers(workers, config.workerDrainMs, log);
    log.info({ ms: Date.now() - t0, forced: results.filter((r) => r === 'forced').length }, 'workers closed');
    await Promise.allSettled(modules.map((m) => m.close?.()));
    await closeCore(core);
    log.info({ ms: Date.now() - t0 }, 'connections closed');
  };
  let url: string | undefined;
  let metricsUrl: string | undefined;
  try {
    modules = await createModules(core);
    // A queue without an 'error' listener prints every failed reconnect to stderr (BullMQ's fallback): log them.
    for (const q of modules.flatMap((m) => m.queues ?? [])) {
      q.on('error', (err: Error) => log.warn({ err: { message: err.message }, queue: q.name }, 'queue connection error (Redis unreachable?)'));
    }
    // A queue whose one start-up check of Redis failed refuses every job for good (redis/queues-ready.ts): stop instead.
    await queuesReady(modules.flatMap((m) => m.queues ?? []));
    if (opts.workers) {
      for (const m of modules) if (m.startWorkers) workers.push(...(await m.startWorkers()));
      // Redis lost its data: the schedulers (sweeper, rollout, learner ticks) went with it.
      const upsertSchedulers = async () => {
        for (const m of modules) await m.schedulers?.();
      };
      core.onRedisReset(async () => {
        await upsertSchedulers();
        log.warn({ modules: modules.filter((m) => m.schedulers).map((m) => m.name) }, 'job schedulers re-created');
      });
      schedulerRefresh = keepSchedulers(upsertSchedulers, config.schedulerRefreshMs, log);
      // A worker-only process has no API to carry its counters: it serves them itself when asked to.
      if (!opts.api && opts.listen !== false) {
        if (config.workerMetricsPort !== undefined) {
          metricsApp = await buildWorkerMetricsApp(core, modules);
          const port = config.workerMetricsPort;
          metricsUrl = await listenNamed(() => metricsApp!.listen({ port, host: config.host }), config.host, port, 'APPORTION_WORKER_METRICS_PORT');
          log.info({ url: `${metricsUrl}/metrics` }, 'worker metrics listening');
        } else {
          log.info('worker metrics are not served (set APPORTION_WORKER_METRICS_PORT to scrape this process)');
        }
      }
    }
    if (opts.api) {
      const outcomes = modules.flatMap((m) => m.queues ?? []).find((q) => q.name === 'outcomes');
      const built = await buildApp({
        core,
        modules,
        workersReady: async () => (outcomes ? (await outcomes.getWorkers()).length > 0 : true),
      });
      app = built;
      await built.ready();
      if (config.seedExamples) {
        await seedExamples(core, built);
        // The documented rule, again: the example pipeline is loaded on the first start of an (empty) dataset.
        core.onRedisReset(async () => void (await seedExamples(core, built)));
      }
      if (opts.listen !== false) {
        url = await listenNamed(() => built.listen({ port: config.port, host: config.host }), config.host, config.port, 'PORT');
        if (!config.authEnabled) {
          log.warn(
            { host: config.host, ...(config.hostIgnored !== undefined ? { hostIgnored: config.hostIgnored } : {}) },
            config.hostIgnored !== undefined
              ? `auth is OFF (no APPORTION_ADMIN_KEY / APPORTION_CLIENT_KEY): HOST "${config.hostIgnored}" ignored (not resolved), listening on loopback only`
              : 'auth is OFF (no APPORTION_ADMIN_KEY / APPORTION_CLIENT_KEY): listening on loopback only',
          );
        }
        const grpcPort = config.otlpGrpcPort;
        if (grpcPort !== undefined) {
          // Imported only when it listens: @grpc/grpc-js is a second or more of a start-up on a busy machine.
          const { startOtlpGrpc } = await import('./http/otlp-grpc.js');
          grpc = await listenNamed(() => startOtlpGrpc(built, config.host, grpcPort, config.bodyLimitBytes, log), config.host, grpcPort, 'APPORTION_OTLP_GRPC_PORT');
        }
      }
    }
  } catch (e) {
    // A setting to change (a port in use, an address not of this machine) is said in one line; anything else is a
    // defect, logged with its stack.
    if (e instanceof ConfigError) log.error({ variable: e.variable }, `start-up failed: ${e.message}; closing what was opened`);
    else log.error({ err: e }, 'start-up failed; closing what was opened');
    await shutdown().catch((err: unknown) => log.error({ err }, 'clean-up after a failed start-up failed'));
    throw e;
  }
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= shutdown());
  return { core, modules, app, url, grpcPort: grpc?.port, metricsUrl, close };
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

/**
 * Upserts every module's job schedulers (`upsert`) again every `everyMs` (idempotent: an existing scheduler keeps its next run's
 * time). BullMQ schedules a scheduler's next iteration from the worker, after it takes the current one; when that
 * write fails with anything but a refused connection (a command timeout while Redis stalls, LOADING after a restart)
 * it logs "the next repeatable job will not be scheduled" and the scheduler never runs again: the sweeper would stop
 * returning expired holds, rollouts would stop being evaluated, the learner would stop ticking, until a restart. The
 * upsert re-creates the missing iteration. A failed refresh is logged once until one succeeds again.
 */
export function keepSchedulers(upsert: () => Promise<void>, everyMs: number, log: Logger): NodeJS.Timeout {
  let failing = false;
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    void (async () => {
      try {
        await upsert();
        if (failing) log.info('job schedulers refreshed again');
        failing = false;
      } catch (err) {
        if (!failing) log.warn({ err: { message: (err as Error).message } }, 'job scheduler refresh failed (Redis unreachable?); retried every interval');
        failing = true;
      } finally {
        running = false;
      }
    })();
  }, everyMs);
  timer.unref();
  return timer;
}

