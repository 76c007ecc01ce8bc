import { createHash, timingSafeEqual } from 'node:crypto';
import { parse as parseCookie } from 'cookie';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../config/env.js';
import { AppError } from '../errors/app-error.js';
import type { KeyStore, Role } from './keys.js';
import { SESSION_COOKIE, type SessionStore } from './sessions.js';

/**
 * Who may call a route (`config: { access }`); without one, GET/HEAD routes are `read` and the rest `admin`.
 * - `public`: anyone, no key;
 * - `any`: any valid key (e.g. whoami);
 * - `client`: the data plane — client and admin keys; analysts too for GET;
 * - `read`: analyst and admin keys;
 * - `admin`: admin keys;
 * - `operator`: the env admin key only (every tenant: price overrides, the queue dashboard);
 * - `metrics`: public unless APPORTION_METRICS_KEY is set, then that key or the env admin key.
 */
export type Access = 'public' | 'any' | 'client' | 'read' | 'admin' | 'operator' | 'metrics';

/** The caller of a request. `tenant: null` = every tenant (an operator key, or auth off). */
export interface Principal {
  readonly keyId: string | null;
  readonly tenant: string | null;
  readonly role: Role | null;
  readonly operator: boolean;
  readonly via: 'bearer' | 'cookie' | 'none';
  /** Per-key rate limit override. */
  readonly rateLimit?: number;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal: Principal;
    /** Why authentication refused the request: raised after the rate limit has counted it (src/app.ts). */
    authFailure?: Error;
  }
}

/** Auth off: every request acts as the operator admin (the server then binds loopback only). */
export const OPEN: Principal = Object.freeze({ keyId: null, tenant: null, role: 'admin', operator: true, via: 'none' });
const ENV_ADMIN: Principal = Object.freeze({ keyId: 'env:admin', tenant: null, role: 'admin', operator: true, via: 'bearer' });
const ENV_CLIENT: Principal = Object.freeze({ keyId: 'env:client', tenant: null, role: 'client', operator: true, via: 'bearer' });
const ANONYMOUS: Principal = Object.freeze({ keyId: null, tenant: null, role: null, operator: false, via: 'none' });

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

export function accessOf(req: FastifyRequest): Access {
  return req.routeOptions.config?.access ?? (SAFE.has(req.method) ? 'read' : 'admin');
}

/** Whether a role may call a route of this access level with this method. */
export function allows(access: Access, p: Principal, method: string): boolean {
  switch (access) {
    case 'public':
    case 'metrics':
      return true;
    case 'any':
      return p.role !== null;
    case 'client':
      return p.role === 'client' || p.role === 'admin' || (p.role === 'analyst' && SAFE.has(method));
    case 'read':
      return p.role === 'analyst' || p.role === 'admin';
    case 'admin':
      return p.role === 'admin';
    case 'operator':
      return p.role === 'admin' && p.operator;
  }
}

const fingerprint = (key: string) => createHash('sha256').update(key).digest('hex').slice(0, 16);

/** Constant-time comparison (for keys of the same length; the length itself is not secret). */
function same(x: Buffer, y: Buffer | undefined): boolean {
  return y !== undefined && x.length === y.length && timingSafeEqual(x, y);
}

type AuthConfig = Pick<Config, 'adminKey' | 'clientKey' | 'authEnabled' | 'metricsKey'>;

/**
 * Who may read /metrics: anyone while no metrics key is set, else a bearer of the metrics key or the env admin key,
 * whether or not API keys are configured (a metrics key set on a server without them still guards /metrics).
 * Throws UNAUTHORIZED otherwise. The API's and the worker's /metrics both use it.
 */
export function checkMetricsAccess(config: AuthConfig, authorization: string | undefined): void {
  if (!config.metricsKey) return;
  const m = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
  if (!m) throw new AppError('UNAUTHORIZED', 'headers/authorization: /metrics needs "Bearer <APPORTION_METRICS_KEY>"');
  const b = Buffer.from(m[1]!.trim());
  if (same(b, Buffer.from(config.metricsKey)) || same(b, config.adminKey ? Buffer.from(config.adminKey) : undefined)) return;
  throw new AppError('UNAUTHORIZED', 'headers/authorization: not the metrics key');
}

/**
 * Resolves the caller of every request — `Authorization: Bearer <key>` (an env key or a key from the store) or
 * the `apportion_session` cookie — and enforces the route's access level. Tenant scope is enforced per route
 * (src/http/tenancy.ts): this only says who is calling.
 */
export class Authenticator {
  private readonly admin?: Buffer;
  private readonly client?: Buffer;
  /** The principal of each verified key (the key store caches those objects), built once. */
  private readonly principals = new WeakMap<object, Principal>();

  constructor(
    private readonly config: AuthConfig,
    private readonly keys: KeyStore,
    private readonly sessions: SessionStore,
  ) {
    if (config.adminKey) this.admin = Buffer.from(config.adminKey);
    if (config.clientKey) this.client = Buffer.from(config.clientKey);
  }

  /** The onRequest hook. */
  async authorize(req: FastifyRequest): Promise<void> {
    const access = accessOf(req);
    if (!this.config.authEnabled) {
      req.principal = OPEN;
      return;
    }
    if (access === 'metrics') return this.metricsAccess(req);
    const header = req.headers.authorization;
    const cookieHeader = req.headers.cookie;
    if (access === 'public') {
      // Public routes never refuse; a valid key still says who is calling.
      const m = header ? /^Bearer\s+(.+)$/i.exec(header) : null;
      req.principal = (m ? await this.byKey(m[1]!.trim()) : undefined) ?? ANONYMOUS;
      return;
    }
    let p: Principal | undefined;
    if (header) {
      const m = /^Bearer\s+(.+)$/i.exec(header);
      if (!m) throw new AppError('UNAUTHORIZED', 'headers/authorization: missing "Bearer <key>"');
      p = await this.byKey(m[1]!.trim());
      if (!p) throw new AppError('UNAUTHORIZED', 'headers/authorization: unknown key (or revoked, or expired)');
    } else if (cookieHeader?.includes(SESSION_COOKIE)) {
      const sid = parseCookie(cookieHeader)[SESSION_COOKIE];
      p = sid ? await this.bySession(sid) : undefined;
      if (!p) throw new AppError('UNAUTHORIZED', `cookies/${SESSION_COOKIE}: unknown or expired session, or its key was revoked`);
      if (!SAFE.has(req.method) && !csrfSafe(req)) {
        throw new AppError('CSRF_HEADER_REQUIRED', `headers/x-apportion-csrf: required on ${req.method} with a session cookie (or a same-origin Origin)`);
      }
    } else {
      throw new AppError('UNAUTHORIZED', 'headers/authorization: missing "Bearer <key>"');
    }
    req.principal = p;
    // An unknown route answers 404 to any valid key (it has no access level to enforce).
    if (req.is404 || allows(access, p, req.method)) return;
    throw new AppError('FORBIDDEN', `headers/authorization: a ${p.role} key may not call ${req.method} ${req.routeOptions.url}`);
  }

  /** Resolves a bearer key: an env (operator) key, or one from the key store. */
  async byKey(key: string): Promise<Principal | undefined> {
    // Only a key of an env key's length can be it (the length is not secret); then compare in constant time.
    if (key.length === this.config.adminKey?.length && same(Buffer.from(key), this.admin)) return ENV_ADMIN;
    if (key.length === this.config.clientKey?.length && same(Buffer.from(key), this.client)) return ENV_CLIENT;
    const k = await this.keys.verify(key);
    if (!k) return undefined;
    let p = this.principals.get(k);
    if (!p) {
      p = Object.freeze({ keyId: k.keyId, tenant: k.tenant, role: k.role, operator: false, via: 'bearer' as const, ...(k.rateLimit !== undefined ? { rateLimit: k.rateLimit } : {}) });
      this.principals.set(k, p);
    }
    return p;
  }

  /** What a session is bound to: `env:<role>:<fingerprint>` for an env key (so rotating it ends its sessions), else the key id. */
  sessionBinding(p: Principal): string {
    if (p.keyId === 'env:admin') return `env:admin:${fingerprint(this.config.adminKey!)}`;
    if (p.keyId === 'env:client') return `env:client:${fingerprint(this.config.clientKey!)}`;
    return p.keyId!;
  }

  private async bySession(sid: string): Promise<Principal | undefined> {
    const bound = await this.sessions.keyIdOf(sid);
    if (!bound) return undefined;
    if (bound.startsWith('env:')) {
      const [, role, fp] = bound.split(':');
      if (role === 'admin' && this.config.adminKey && fp === fingerprint(this.config.adminKey)) return { keyId: 'env:admin', tenant: null, role: 'admin', operator: true, via: 'cookie' };
      if (role === 'client' && this.config.clientKey && fp === fingerprint(this.config.clientKey)) return { keyId: 'env:client', tenant: null, role: 'client', operator: true, via: 'cookie' };
      return undefined;
    }
    const k = await this.keys.byId(bound);
    return k ? { keyId: k.keyId, tenant: k.tenant, role: k.role, operator: false, via: 'cookie', ...(k.rateLimit !== undefined ? { rateLimit: k.rateLimit } : {}) } : undefined;
  }

  private async metricsAccess(req: FastifyRequest): Promise<void> {
    req.principal = ANONYMOUS;
    checkMetricsAccess(this.config, req.headers.authorization);
  }
}

/**
 * Cookie-authenticated state changes must prove they come from the console or a page of this server: the
 * console sends `x-apportion-csrf: 1` (a custom header, which a cross-site form cannot add), and same-origin
 * pages such as the queue dashboard send an `Origin` equal to this server's own: the same scheme, host and port.
 * SameSite=Strict is the first line. Any other header value (`0`, `false`, empty) is no proof.
 *
 * The server's own origin is the scheme the request arrived over and its Host header. The app does not set
 * Fastify's `trustProxy`, so `X-Forwarded-Proto` is not believed: behind a proxy that terminates TLS the server
 * sees plain HTTP, and pages served over https prove themselves with the header (the console does), not by Origin.
 */
export function csrfSafe(req: FastifyRequest): boolean {
  if (req.headers['x-apportion-csrf'] === '1') return true;
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (!origin || origin === 'null' || !host) return false;
  try {
    return new URL(origin).origin === new URL(`${req.protocol}://${host}`).origin;
  } catch {
    return false;
  }
}
