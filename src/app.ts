import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Socket } from 'node:net';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { AppError } from './errors/app-error.js';
import { withDeadline } from './redis/deadline.js';
import { connectRedis, redisTarget } from './redis/connection.js';
import type { Core } from './kernel/core.js';
import type { ModuleParts } from './kernel/module.js';
import { configureTokenizer } from './strategies/tokens.js';
import { KeyStore } from './tenancy/keys.js';
import { tenancyRoutes } from './tenancy/routes.js';
import { SessionStore } from './tenancy/sessions.js';
import { Authenticator, checkMetricsAccess } from './tenancy/auth.js';
import { ErrorBody, type TypeBoxRequestProvider } from './http/common.js';
import { decodeContentEncoding } from './http/encoding.js';
import { lazySchemaCompilers } from './http/lazy-schemas.js';
import { clientErrorHandler, errorHandler, MAX_PARAM_LENGTH } from './http/errors.js';
import { tenantGuard } from './tenancy/guard.js';

const QUIET_ROUTES = new Set(['/healthz', '/readyz', '/metrics', '/console/assets/:name']);

export interface AppOptions {
  readonly core: Core;
  readonly modules: readonly ModuleParts[];
  /** Reports whether the workers this deployment expects are attached (for /readyz). */
  readonly workersReady?: () => Promise<boolean>;
  /** Mount the queue dashboard at /admin/queues. Default true. */
  readonly dashboard?: boolean;
}

/** Builds the Fastify app: auth, the one error handler, OpenAPI, metrics, health, and every module's routes. */
export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const { core } = opts;
  configureTokenizer({ maxChars: core.config.textTokenizeMaxChars });
  const app = Fastify({
    loggerInstance: core.log as FastifyBaseLogger,
    bodyLimit: core.config.bodyLimitBytes,
    // Slow clients cannot hold connections: the whole request (headers and body) must arrive within
    // requestTimeout (answered 408, then closed), and an idle keep-alive connection is closed after keepAliveTimeout.
    requestTimeout: core.config.requestTimeoutMs,
    keepAliveTimeout: core.config.keepAliveTimeoutMs,
    // Node checks those deadlines every connectionsCheckingInterval (default 30 s); check at a tenth of the smaller.
    http: { connectionsCheckingInterval: Math.max(50, Math.min(core.config.requestTimeoutMs, core.config.headersTimeoutMs) / 10) },
    logController: new LogController({ disableRequestLogging: true }),
    // No per-plugin start timer (Fastify's default is 10 s). Every plugin here is an async function, so none can
    // forget to call done() — the case the timer exists for; on a busy machine it only fails a healthy start
    // (@fastify/swagger-ui reading its static files took longer than 10 s under CPU load). Start-up is bounded by
    // whoever runs the process: the orchestrator's start-up probe, the test runner's per-file limit.
    pluginTimeout: 0,
    // While closing, new requests are answered by the hook below (503 SHUTTING_DOWN, the error body every route
    // uses), not by Fastify's own 503 body, which has no code.
    return503OnClosing: false,
    // The router's own refusals (a path parameter too long, or not valid percent-encoding) go through the one error
    // handler: a catalogued 400, not Fastify's 414 with its own code.
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors: (err, req, reply) => errorHandler(err, req, reply),
    // What Node answers before a route is reached (a slow client's 408, bytes that are not HTTP, headers too large)
    // gets the error body with a code too, not Fastify's default body, which has none.
    clientErrorHandler: clientErrorHandler({
      requestTimeoutMs: core.config.requestTimeoutMs,
      headersTimeoutMs: Math.min(core.config.headersTimeoutMs, core.config.requestTimeoutMs),
    }),
    // No type coercion: a number feature must stay a number, and "40" must not pass as 40.
    ajv: { customOptions: { allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: true } },
    // Fastify's own compilers, each route's schemas compiled on the route's first call rather than all at start.
    schemaController: { compilersFactory: lazySchemaCompilers() },
  }).withTypeProvider<TypeBoxTypeProvider>();
  // With compilers given as above, fastify no longer lower-cases a header schema's names: no route may declare one.
  app.addHook('onRoute', (route) => {
    if (route.schema?.headers !== undefined) throw new Error(`${route.method} ${route.url}: a headers schema is not supported (src/http/lazy-schemas.ts)`);
  });
  app.server.headersTimeout = Math.min(core.config.headersTimeoutMs, core.config.requestTimeoutMs);

  // API keys as data, browser sessions, and the authenticator that resolves every request's caller.
  const keyStore = new KeyStore({ redis: core.redis, prefix: core.keys.prefix, pepper: core.config.keyPepper });
  await keyStore.start(await connectRedis(redisTarget(core.config), { name: 'apportion-keys-sub', forBullmq: true }));
  app.addHook('onClose', async () => keyStore.stop());
  const sessions = new SessionStore(core.redis, core.keys.prefix, core.config.sessionTtlSeconds);
  const auth = new Authenticator(core.config, keyStore, sessions);

  // The API speaks JSON only: a text/plain body is a 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');
  app.addSchema(ErrorBody);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((req, reply) => {
    errorHandler(new AppError('ROUTE_NOT_FOUND', `${req.method} ${req.url.split('?')[0]}: no such route`), req, reply);
  });
  // Draining: requests in flight finish and every answer says `Connection: close`. For APPORTION_DRAIN_GRACE_MS the
  // listener and the kept-alive connections stay open, so a request a client wrote on an idle connection as the drain
  // began gets 503 SHUTTING_DOWN (the hook below) rather than a reset. The grace ends early once no connection is
  // left; then the listener closes.
  // No connection is then closed while a request may be on its way: Node's server.close() (and closeIdleConnections)
  // destroys every connection whose next request it has not parsed yet — an idle kept-alive connection a client is
  // writing on, or one accepted a moment ago whose request is still unread — and the client got a reset or "other
  // side closed" with no answer (seen under load as the grace ended). Instead an idle kept-alive connection is closed
  // by Node's keep-alive timeout (the one its last answer advertised in `Keep-Alive: timeout=`, which clients honour),
  // and a request written on it until then gets 503 SHUTTING_DOWN; a connection that never sent a whole request is
  // closed after APPORTION_HEADERS_TIMEOUT_MS (Node stops enforcing its own timeouts once the listener is closed).
  let closing = false;
  const connections = new Set<Socket>();
  const opened = new WeakMap<Socket, number>();
  const used = new WeakSet<Socket>();
  app.server.on('connection', (socket: Socket) => {
    connections.add(socket);
    opened.set(socket, Date.now());
    socket.once('close', () => connections.delete(socket));
  });
  app.server.on('request', (req: { socket: Socket }) => used.add(req.socket));
  app.addHook('preClose', async () => {
    closing = true;
    if (app.server.listening) await drainGrace(connections, core.config.drainGraceMs);
    app.server.closeIdleConnections = () => undefined;
    const headersTimeoutMs = app.server.headersTimeout;
    const timer = setInterval(() => {
      const now = Date.now();
      for (const s of connections) if (!used.has(s) && now - (opened.get(s) ?? now) >= headersTimeoutMs) s.destroy();
    }, 50);
    app.server.once('close', () => clearInterval(timer));
  });
  // First hook: while draining, a request that arrives on a kept-alive connection is refused before any work, with
  // a catalogued code, and every answer tells the client not to reuse the connection.
  app.addHook('onRequest', async () => {
    if (closing) throw new AppError('SHUTTING_DOWN', 'this server is shutting down and takes no new requests: retry (another instance, or this one once it is back)');
  });
  app.addHook('onSend', async (_req, reply) => {
    if (closing) void reply.header('connection', 'close');
  });
  // Authentication resolves the caller first (the rate limit counts per key), but its refusal is raised only in
  // preParsing, after the rate limit's onRequest hook: a flood of missing or made-up keys is limited per client
  // address like any keyless request, and a refused request's body is never read.
  app.addHook('onRequest', async (req) => {
    try {
      await auth.authorize(req);
    } catch (e) {
      if (!(e instanceof AppError)) throw e;
      req.authFailure = e;
    }
  });
  app.addHook('preParsing', async (req) => {
    if (req.authFailure) throw req.authFailure;
  });
  // After the authentication refusal (a refused request's body is never read): Content-Encoding on every route.
  app.addHook('preParsing', decodeContentEncoding);
  app.addHook('preHandler', tenantGuard(core.view));
  app.addHook('onResponse', async (req, reply) => {
    core.metrics.httpDuration.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
    // One line per request; probes, metrics scrapes and console assets only at debug, so they do not drown the rest.
    req.log[QUIET_ROUTES.has(req.routeOptions.url ?? '') ? 'debug' : 'info']({ method: req.method, url: req.url, statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 }, 'request');
  });

  // Before the plugins that add these routes (an awaited register adds its routes at once): /docs stays public
  // once keys are set, as an OpenAPI document and UI hold no data.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/docs')) route.config = { ...route.config, access: 'public' };
    // The queue dashboard shows every tenant's jobs: operator keys only (a browser signs in via /v1/session).
    if (route.url.startsWith('/admin/queues')) route.config = { ...route.config, access: 'operator' };
  });
  // Per key (per client address without one), counted in Redis so every API process shares the count. Always
  // registered (a key's own rateLimit applies even when the default is off); a request with no limit to apply
  // is let through before any Redis work.
  await app.register(rateLimit, {
    global: true,
    redis: core.redis,
    nameSpace: `${core.keys.prefix}:ratelimit:`,
    timeWindow: core.config.rateLimitWindowMs,
    max: async (req) => req.principal?.rateLimit ?? core.config.rateLimitMax,
    keyGenerator: (req) => (req.principal?.keyId ? `key:${req.principal.keyId}` : `ip:${req.ip}`),
    allowList: (req) => req.url === '/healthz' || req.url === '/readyz' || !((req.principal?.rateLimit ?? core.config.rateLimitMax) > 0),
    // A store error must not turn every request into a 500; the request's own Redis calls fail closed anyway.
    skipOnError: true,
    // ctx.after is the time left until the window resets, not its length: the message names the configured window.
    errorResponseBuilder: (_req, ctx) =>
      new AppError('RATE_LIMITED', `too many requests: ${ctx.max} per ${windowText(core.config.rateLimitWindowMs)} window exceeded; retry after ${Math.ceil(ctx.ttl / 1000)} s`),
  });
  await app.register(swagger, {
    openapi: {
      info: { title: 'Apportion', version: '0.1.0', description: 'Token budget allocation for multi-agent LLM pipelines.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });
  tenancyRoutes(app, { config: core.config, keys: keyStore, sessions, auth });

  app.get('/healthz', { config: { access: 'public' }, schema: { hide: true } }, async () => ({ status: 'ok' }));
  // Bounded, both checks at once: a stalled Redis is a 503 within the command timeout, not a hang.
  app.get('/readyz', { config: { access: 'public' }, schema: { hide: true } }, async (_req, reply) => {
    const bound = core.config.redisCommandTimeoutMs;
    const [redis, workers] = await Promise.all([
      withDeadline(core.redis.ping(), bound, 'ping').then(
        () => true,
        () => false,
      ),
      opts.workersReady ? withDeadline(opts.workersReady(), bound, 'worker check').catch(() => false) : true,
    ]);
    // An evicting maxmemory-policy (src/redis/eviction.ts): Redis answers, but may drop state silently. Writes refused
    // (src/redis/write-probe.ts: the last probe's answer, written every few seconds, never by this route): Redis
    // answers PING and reads, but every route that writes would answer 503.
    const eviction = core.eviction.problem;
    const refused = core.writes.problem;
    const writable = refused === undefined;
    const reason = [eviction, refused].filter((r) => r !== undefined).join('; ');
    const ready = redis && workers && writable && eviction === undefined;
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not-ready', redis, writable, workers, ...(reason ? { reason } : {}) });
  });
  if (core.config.benchRoutes) {
    // Baseline for benchmarks: same server, same hooks (auth, metrics), same JSON body parsing, no work.
    app.post('/bench/noop', { config: { access: 'client' }, schema: { hide: true } }, async () => ({ ok: true }));
    // The same plus one Redis round trip (PING on the request-path connection): separates what the hop to
    // Redis costs from what a route's own scripts cost.
    app.post('/bench/redis', { config: { access: 'client' }, schema: { hide: true } }, async () => ({ ok: (await core.redis.ping()) === 'PONG' }));
  }
  const queues = opts.modules.flatMap((m) => m.queues ?? []);
  app.get('/metrics', { config: { access: 'metrics' }, schema: { hide: true } }, async (req, reply) => {
    // Here as well as in the authenticator, which lets every request through while no API key is configured: a set
    // metrics key guards /metrics either way.
    checkMetricsAccess(core.config, req.headers.authorization);
    const text = await metricsText(core, queues);
    return reply.type(core.metrics.registry.contentType).send(text);
  });

  if (opts.dashboard !== false && queues.length > 0) {
    const serverAdapter = new FastifyAdapter();
    serverAdapter.setBasePath('/admin/queues');
    createBullBoard({ queues: queues.map((q) => new BullMQAdapter(q)), serverAdapter });
    await app.register(serverAdapter.registerPlugin(), { prefix: '/admin/queues' });
  }

  for (const m of opts.modules) if (m.routes) await app.register(async (scope) => m.routes!(scope.withTypeProvider<TypeBoxRequestProvider>()));
  return app;
}

/** Resolves when no connection is left open, or after `ms` (the drain's grace for kept-alive connections). */
function drainGrace(connections: ReadonlySet<Socket>, ms: number): Promise<void> {
  if (ms <= 0 || connections.size === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      clearInterval(poll);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const poll = setInterval(() => connections.size === 0 && done(), 10);
  });
}

/** The process's metrics in Prometheus text, queue depths sampled first (a failed sample is logged, not fatal). */
export async function metricsText(core: Core, queues: readonly { readonly name: string; getJobCounts(...states: string[]): Promise<Record<string, number>> }[]): Promise<string> {
  await Promise.all(
    queues.map(async (q) => {
      const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized');
      for (const [state, n] of Object.entries(counts)) core.metrics.queueDepth.set({ queue: q.name, state }, n);
    }),
  ).catch((err: unknown) => core.log.warn({ err }, 'queue depth sampling failed'));
  return core.metrics.registry.metrics();
}

/**
 * The worker process's own small HTTP listener (`apportion worker` with APPORTION_WORKER_METRICS_PORT): GET /metrics
 * (the same access rule as the API's) and GET /healthz. The worker's counters (outcomes processed, retrains, guard
 * reverts) live in its process, so in a split deployment this is where they are scraped.
 */
export async function buildWorkerMetricsApp(core: Core, modules: readonly ModuleParts[]): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: core.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    pluginTimeout: 0,
    // Node's default timeouts here (this listener does not take the API's): its client errors get the error body.
    clientErrorHandler: clientErrorHandler(),
  });
  const queues = modules.flatMap((m) => m.queues ?? []);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((req, reply) => {
    errorHandler(new AppError('ROUTE_NOT_FOUND', `${req.method} ${req.url.split('?')[0]}: no such route (this is the worker's metrics listener: GET /metrics, /healthz)`), req, reply);
  });
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/metrics', async (req, reply) => {
    checkMetricsAccess(core.config, req.headers.authorization);
    const text = await metricsText(core, queues);
    return reply.type(core.metrics.registry.contentType).send(text);
  });
  return app;
}

/** A rate-limit window for people: "60 s", "1.5 min", "2 h". */
function windowText(ms: number): string {
  const s = ms / 1000;
  if (s < 120) return `${Number(s.toFixed(3))} s`;
  if (s < 7200) return `${Number((s / 60).toFixed(2))} min`;
  return `${Number((s / 3600).toFixed(2))} h`;
}
