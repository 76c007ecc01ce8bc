import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import type { Redis } from 'ioredis';
import { jsonDecoder } from '../redis/decode.js';

/** What a key may do within its tenant: `client` = data plane, `analyst` = read everything, `admin` = everything. */
export type Role = 'admin' | 'analyst' | 'client';
export const ROLES: readonly Role[] = ['admin', 'analyst', 'client'];

import { isTenantName, TENANT_PATTERN } from '../http/tenancy.js';

/** Tenant names (the rule every route applies, src/http/tenancy.ts). */
export { isTenantName, TENANT_PATTERN };

/** The stored record of an API key (never the key itself: only its keyed hash). */
export interface KeyRecord {
  readonly id: string;
  readonly tenant: string;
  readonly role: Role;
  readonly name: string;
  /** HMAC-SHA256(pepper, secret), hex. */
  readonly hash: string;
  readonly createdAt: string;
  readonly expiresAt?: string;
  readonly revokedAt?: string;
  /** Requests per rate-limit window for this key; unset = the configured default. */
  readonly rateLimit?: number;
}

/** A stored key record as read back from Redis (records that do not match are treated as absent). */
const decodeKeyRecord = jsonDecoder(
  Type.Object({
    id: Type.String(),
    tenant: Type.String(),
    role: Type.Union(ROLES.map((r) => Type.Literal(r))),
    name: Type.String(),
    hash: Type.String(),
    createdAt: Type.String(),
    expiresAt: Type.Optional(Type.String()),
    revokedAt: Type.Optional(Type.String()),
    rateLimit: Type.Optional(Type.Number()),
  }),
);

/** The key as listed: no hash. */
export type KeyInfo = Omit<KeyRecord, 'hash'>;

/**
 * Key format: `apk_<id>_<secret>` — a recognisable prefix (secret scanners and people can tell what leaked),
 * a 16-hex-digit id used to find the record (64 bits, not secret), and a 256-bit base64url secret.
 */
export const KEY_PREFIX = 'apk_';
const KEY_FORMAT = /^apk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export function parseKey(key: string): { id: string; secret: string } | undefined {
  const m = KEY_FORMAT.exec(key);
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

/** Redis layout of the key store (one slot, `{keys}`). */
export function keyStoreKeys(prefix: string) {
  return {
    /** hash: key id → KeyRecord JSON. */
    records: `${prefix}:{keys}:records`,
    /** string: bumped on every revocation (the safety-net poll compares it). */
    version: `${prefix}:{keys}:version`,
    /** channel: the id of a revoked key. */
    channel: `${prefix}:keys-revoked`,
  };
}

export interface KeyStoreOptions {
  readonly redis: Redis;
  readonly prefix: string;
  /** HMAC key for stored hashes (APPORTION_KEY_PEPPER); default a fixed label. */
  readonly pepper?: string | undefined;
  readonly now?: () => number;
}

/** What a presented key resolves to. */
export interface KeyPrincipal {
  readonly keyId: string;
  readonly tenant: string;
  readonly role: Role;
  readonly rateLimit?: number;
}

/**
 * API keys as data. Keys are 256-bit random secrets, so a keyed SHA-256 (HMAC with the pepper) is enough to
 * store them: a slow password hash protects low-entropy secrets, and would cost every request. Checks compare
 * hashes in constant time. Records are cached in process (the hot path does no Redis call for a known key);
 * a revocation is published on a channel and every process drops the key at once, with a poll of the
 * revocation counter every `pollMs` (default 500) as the safety net for a lost message.
 */
export class KeyStore {
  private readonly k: ReturnType<typeof keyStoreKeys>;
  private readonly pepper: string;
  private readonly now: () => number;
  /** id → record (or null: known missing). */
  private readonly cache = new Map<string, KeyRecord | null>();
  /** key string → principal, for keys already verified (skips the HMAC); cleared with the cache. */
  private readonly verified = new Map<string, { record: KeyRecord; principal: KeyPrincipal }>();
  private version: string | null = null;
  private timer: NodeJS.Timeout | undefined;
  private subscriber: Redis | undefined;

  constructor(private readonly o: KeyStoreOptions) {
    this.k = keyStoreKeys(o.prefix);
    this.pepper = o.pepper ?? 'apportion-api-key-v1';
    this.now = o.now ?? Date.now;
  }

  private hash(secret: string): string {
    return createHmac('sha256', this.pepper).update(secret).digest('hex');
  }

  /** Creates a key; the returned `key` is shown once and never stored. */
  async create(input: { tenant: string; role: Role; name: string; expiresAt?: string; rateLimit?: number }): Promise<{ id: string; key: string; record: KeyInfo }> {
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const record: KeyRecord = {
      id,
      tenant: input.tenant,
      role: input.role,
      name: input.name,
      hash: this.hash(secret),
      createdAt: new Date(this.now()).toISOString(),
      ...(input.expiresAt !== undefined ? { expiresAt: new Date(input.expiresAt).toISOString() } : {}),
      ...(input.rateLimit !== undefined ? { rateLimit: input.rateLimit } : {}),
    };
    const created = await this.o.redis.hsetnx(this.k.records, id, JSON.stringify(record));
    if (created !== 1) return this.create(input); // a 64-bit id collision: draw again
    this.cache.delete(id);
    return { id, key: `${KEY_PREFIX}${id}_${secret}`, record: info(record) };
  }

  async list(tenant?: string): Promise<KeyInfo[]> {
    const all = await this.o.redis.hvals(this.k.records);
    return all
      .flatMap((j): KeyRecord[] => {
        const r = decodeKeyRecord(j);
        return r ? [r] : [];
      })
      .filter((r) => tenant === undefined || r.tenant === tenant)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id))
      .map(info);
  }

  async get(id: string): Promise<KeyRecord | undefined> {
    const j = await this.o.redis.hget(this.k.records, id);
    return j ? decodeKeyRecord(j) : undefined;
  }

  /**
   * Revokes a key (kept, marked revoked, for the audit trail), bumps the revocation counter and announces the
   * id, in one MULTI. Answers the record, or undefined when there is none (or `tenant` is given and differs).
   */
  async revoke(id: string, tenant?: string): Promise<KeyInfo | undefined> {
    const r = await this.get(id);
    if (!r || (tenant !== undefined && r.tenant !== tenant)) return undefined;
    const revoked: KeyRecord = r.revokedAt ? r : { ...r, revokedAt: new Date(this.now()).toISOString() };
    await this.o.redis.multi().hset(this.k.records, id, JSON.stringify(revoked)).incr(this.k.version).publish(this.k.channel, id).exec();
    this.forget(id);
    return info(revoked);
  }

  /** Resolves a presented key: a principal, or undefined (unknown, wrong secret, revoked, expired). */
  async verify(key: string): Promise<KeyPrincipal | undefined> {
    const hit = this.verified.get(key);
    if (hit) return usable(hit.record, this.now()) ? hit.principal : undefined;
    const parsed = parseKey(key);
    if (!parsed) return undefined;
    const record = await this.record(parsed.id);
    if (!record) return undefined;
    const a = Buffer.from(this.hash(parsed.secret), 'hex');
    const b = Buffer.from(record.hash, 'hex');
    if (a.length !== b.length || !timingSafeEqual(a, b)) return undefined;
    if (!usable(record, this.now())) return undefined;
    const principal: KeyPrincipal = { keyId: record.id, tenant: record.tenant, role: record.role, ...(record.rateLimit !== undefined ? { rateLimit: record.rateLimit } : {}) };
    if (this.verified.size >= 10_000) this.verified.clear();
    this.verified.set(key, { record, principal });
    return principal;
  }

  /** The principal of a key id still in force (sessions are bound to a key id), else undefined. */
  async byId(id: string): Promise<KeyPrincipal | undefined> {
    const record = await this.record(id);
    if (!record || !usable(record, this.now())) return undefined;
    return { keyId: record.id, tenant: record.tenant, role: record.role, ...(record.rateLimit !== undefined ? { rateLimit: record.rateLimit } : {}) };
  }

  private async record(id: string): Promise<KeyRecord | undefined> {
    const c = this.cache.get(id);
    if (c !== undefined) return c ?? undefined;
    const r = (await this.get(id)) ?? null;
    // Unknown ids are not cached: a flood of made-up ids must not grow the map (the rate limit counts such requests
    // per client address, src/app.ts).
    if (r) {
      if (this.cache.size >= 100_000) this.cache.clear();
      this.cache.set(id, r);
    }
    return r ?? undefined;
  }

  private forget(id: string): void {
    this.cache.delete(id);
    for (const [k, v] of this.verified) if (v.record.id === id) this.verified.delete(k);
  }

  private clear(): void {
    this.cache.clear();
    this.verified.clear();
  }

  /** Subscribes to revocations and starts the safety-net poll. `subscriber` becomes owned by the store. */
  async start(subscriber: Redis, pollMs = 500): Promise<void> {
    this.subscriber = subscriber;
    subscriber.on('message', (channel: string, id: string) => {
      if (channel === this.k.channel) this.forget(id);
    });
    // After a reconnect, messages sent while disconnected are lost: start from an empty cache.
    subscriber.on('ready', () => this.clear());
    await subscriber.subscribe(this.k.channel);
    this.version = await this.o.redis.get(this.k.version).catch(() => null);
    this.timer = setInterval(() => void this.poll(), pollMs);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    const v = await this.o.redis.get(this.k.version).catch(() => undefined);
    if (v === undefined) return;
    if (v !== this.version) {
      this.version = v;
      this.clear();
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.subscriber) {
      await this.subscriber.quit().catch(() => undefined);
      this.subscriber.disconnect();
    }
  }
}

function usable(r: KeyRecord, now: number): boolean {
  if (r.revokedAt !== undefined) return false;
  return r.expiresAt === undefined || Date.parse(r.expiresAt) > now;
}

function info(r: KeyRecord): KeyInfo {
  const { hash: _hash, ...rest } = r;
  return rest;
}
