import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../config/env.js';
import { AppError } from '../errors/app-error.js';

/** Who may call a route: `admin` (control plane) or `client` (allocations, outcomes; admin may too). */
export type Access = 'admin' | 'client' | 'public';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Bearer-key check for a route. With no keys configured auth is off (the server then binds loopback only).
 * Routes default to admin access; data-plane routes declare `config: { access: 'client' }`.
 */
export function authorize(config: Pick<Config, 'adminKey' | 'clientKey' | 'authEnabled'>, req: FastifyRequest): void {
  const access: Access = req.routeOptions.config?.access ?? 'admin';
  if (access === 'public' || !config.authEnabled) return;
  const header = req.headers.authorization;
  const m = header ? /^Bearer\s+(.+)$/i.exec(header) : null;
  if (!m) throw new AppError('UNAUTHORIZED', 'headers/authorization: missing "Bearer <key>"');
  const key = m[1]!.trim();
  if (config.adminKey && same(key, config.adminKey)) return;
  if (config.clientKey && same(key, config.clientKey)) {
    if (access === 'client') return;
    throw new AppError('FORBIDDEN', `headers/authorization: the client key may not call ${req.method} ${req.routeOptions.url}`);
  }
  throw new AppError('UNAUTHORIZED', 'headers/authorization: unknown key');
}
