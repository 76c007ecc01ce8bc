import { Type } from '@sinclair/typebox';
import { parse as parseCookie, serialize } from 'cookie';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../config/env.js';
import { AppError } from '../errors/app-error.js';
import { csrfSafe, type Authenticator } from './auth.js';
import { ErrorBody, errorResponses, type ApiApp } from '../http/common.js';
import { TENANT_PATTERN, type KeyStore } from './keys.js';
import { SESSION_COOKIE, type SessionStore } from './sessions.js';

const Role = Type.Union([Type.Literal('admin'), Type.Literal('analyst'), Type.Literal('client')]);
const KeyCreateBody = Type.Object(
  {
    tenant: Type.String({ pattern: TENANT_PATTERN }),
    role: Role,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    expiresAt: Type.Optional(Type.String({ format: 'date-time', description: 'ISO 8601; the key stops working then.' })),
    rateLimit: Type.Optional(Type.Integer({ minimum: 1, description: 'Requests per rate-limit window for this key (default: APPORTION_RATE_LIMIT_MAX).' })),
  },
  { additionalProperties: false },
);
type KeyCreateBody = { tenant: string; role: 'admin' | 'analyst' | 'client'; name: string; expiresAt?: string; rateLimit?: number };
const KeyInfo = Type.Object({
  id: Type.String(),
  tenant: Type.String(),
  role: Role,
  name: Type.String(),
  createdAt: Type.String(),
  expiresAt: Type.Optional(Type.String()),
  revokedAt: Type.Optional(Type.String()),
  rateLimit: Type.Optional(Type.Integer()),
});
const KeyCreated = Type.Object({ id: Type.String(), key: Type.String({ description: 'Shown once; only its keyed hash is stored.' }), tenant: Type.String(), role: Role, name: Type.String() });
const KeyListQuery = Type.Object({ tenant: Type.Optional(Type.String({ pattern: TENANT_PATTERN })) }, { additionalProperties: false });
const KeyParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const SessionBody = Type.Object({ key: Type.String({ minLength: 1, maxLength: 512 }) }, { additionalProperties: false });
const WhoAmI = Type.Object({
  authEnabled: Type.Boolean(),
  tenant: Type.Union([Type.String(), Type.Null()]),
  role: Type.Union([Role, Type.Null()]),
  keyId: Type.Union([Type.String(), Type.Null()]),
});

export interface TenancyRouteDeps {
  readonly config: Pick<Config, 'authEnabled' | 'sessionTtlSeconds'>;
  readonly keys: KeyStore;
  readonly sessions: SessionStore;
  readonly auth: Authenticator;
}

/** API keys (`/v1/keys`), browser sessions (`/v1/session`) and `/v1/whoami`. */
export function tenancyRoutes(app: ApiApp, d: TenancyRouteDeps): void {
  const tags = ['keys'];
  app.post(
    '/v1/keys',
    {
      config: { access: 'admin' },
      schema: { tags, summary: 'Create an API key for a tenant and role; the key is answered once', body: KeyCreateBody, response: { 201: KeyCreated, ...errorResponses } },
    },
    async (req, reply) => {
      const b = req.body;
      const own = req.principal.tenant;
      if (own !== null && b.tenant !== own) throw new AppError('FORBIDDEN', `body/tenant: a key of tenant "${own}" may only create keys for "${own}"`);
      if (b.expiresAt !== undefined && !(Date.parse(b.expiresAt) > Date.now())) throw new AppError('VALIDATION_FAILED', 'body/expiresAt must be in the future');
      const { id, key } = await d.keys.create(b);
      return reply.status(201).send({ id, key, tenant: b.tenant, role: b.role, name: b.name });
    },
  );
  app.get(
    '/v1/keys',
    {
      config: { access: 'admin' },
      schema: { tags, summary: "List API keys (no secrets): the caller's tenant, or for an operator every tenant or ?tenant=", querystring: KeyListQuery, response: { 200: Type.Object({ items: Type.Array(KeyInfo) }), ...errorResponses } },
    },
    async (req) => ({ items: await d.keys.list(req.principal.tenant ?? req.query.tenant) }),
  );
  app.delete(
    '/v1/keys/:id',
    {
      config: { access: 'admin' },
      schema: { tags, summary: 'Revoke an API key (refused by every process within a second; its sessions end)', params: KeyParams, response: { 200: KeyInfo, ...errorResponses } },
    },
    async (req) => {
      const { id } = req.params;
      const r = await d.keys.revoke(id, req.principal.tenant ?? undefined);
      if (!r) throw new AppError('KEY_NOT_FOUND', `params/id: no key "${id}"`);
      return r;
    },
  );

  app.post(
    '/v1/session',
    {
      config: { access: 'public' },
      schema: { tags: ['session'], summary: 'Sign a browser in with an API key: sets the HttpOnly apportion_session cookie', body: SessionBody, response: { 204: Type.Null(), 400: ErrorBody, 401: ErrorBody } },
    },
    async (req, reply) => {
      if (!d.config.authEnabled) return reply.status(204).send();
      const p = await d.auth.byKey(req.body.key.trim());
      if (!p) throw new AppError('UNAUTHORIZED', 'body/key: unknown, revoked or expired key');
      const sid = await d.sessions.open(d.auth.sessionBinding(p));
      void reply.header('set-cookie', serialize(SESSION_COOKIE, sid, { httpOnly: true, sameSite: 'strict', path: '/', secure: overTls(req), maxAge: d.config.sessionTtlSeconds }));
      return reply.status(204).send();
    },
  );
  app.delete(
    '/v1/session',
    { config: { access: 'public' }, schema: { tags: ['session'], summary: 'Sign out: ends the session and clears the cookie (with the cookie, x-apportion-csrf: 1 or a same-origin Origin is required)', response: { 204: Type.Null(), 403: ErrorBody } } },
    async (req, reply) => {
      const sid = req.headers.cookie ? parseCookie(req.headers.cookie)[SESSION_COOKIE] : undefined;
      // Ending a session is a state change made by the cookie: a cross-site request must not sign the browser out.
      if (sid && d.config.authEnabled && !csrfSafe(req)) {
        throw new AppError('CSRF_HEADER_REQUIRED', 'headers/x-apportion-csrf: required on DELETE /v1/session with a session cookie (or a same-origin Origin)');
      }
      if (sid) await d.sessions.close(sid);
      void reply.header('set-cookie', serialize(SESSION_COOKIE, '', { httpOnly: true, sameSite: 'strict', path: '/', secure: overTls(req), maxAge: 0, expires: new Date(0) }));
      return reply.status(204).send();
    },
  );
  app.get(
    '/v1/whoami',
    { config: { access: 'any' }, schema: { tags: ['session'], summary: 'Who the caller is (public while auth is off)', response: { 200: WhoAmI, 401: ErrorBody } } },
    async (req) => {
      if (!d.config.authEnabled) return { authEnabled: false, tenant: null, role: null, keyId: null };
      const p = req.principal;
      return { authEnabled: true, tenant: p.tenant, role: p.role, keyId: p.keyId };
    },
  );
}

const overTls = (req: FastifyRequest): boolean => req.protocol === 'https';
