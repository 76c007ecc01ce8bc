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

/** The configured keys as bytes, computed once per config object (not twice per request). */
const keyBytes = new WeakMap<object, { admin?: Buffer; client?: Buffer }>();

function keysOf(config: Pick<Config, 'adminKey' | 'clientKey'>): { admin?: Buffer; client?: Buffer } {
  let k = keyBytes.get(config);
  if (!k) {
    k = { ...(config.adminKey ? { admin: Buffer.from(config.adminKey) } : {}), ...(config.clientKey ? { client: Buffer.from(config.clientKey) } : {}) };
    keyBytes.set(config, k);
  }
  return k;
}

/** Constant-time comparison (for keys of the same length; the length itself is not secret). */
function same(x: Buffer, y: Buffer | undefined): boolean {
  return y !== undefined && x.length === y.length && timingSafeEqual(x, y);
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
  const key = Buffer.from(m[1]!.trim());
  const known = keysOf(config);
  if (same(key, known.admin)) return;
  if (same(key, known.client)) {
    // An unknown route answers 404 to any valid key (it has no access level to enforce).
    if (access === 'client' || req.is404) return;
    throw new AppError('FORBIDDEN', `headers/authorization: the client key may not call ${req.method} ${req.routeOptions.url}`);
  }
  throw new AppError('UNAUTHORIZED', 'headers/authorization: unknown key');
}
