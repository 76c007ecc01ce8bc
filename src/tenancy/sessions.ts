import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';

/** The cookie a browser session travels in (HttpOnly, SameSite=Strict, Path=/; Secure over TLS). */
export const SESSION_COOKIE = 'apportion_session';

/**
 * Browser sessions: an opaque 256-bit random id in the cookie; Redis keeps, under the SHA-256 of that id (so a
 * Redis dump holds no usable session), the id of the key that opened it, with a TTL. The session carries no
 * tenant or role of its own: every request resolves the key id again, so revoking the key ends the session.
 */
export class SessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
  ) {}

  private key(sid: string): string {
    return `${this.prefix}:session:${createHash('sha256').update(sid).digest('hex')}`;
  }

  async open(keyId: string): Promise<string> {
    const sid = randomBytes(32).toString('base64url');
    await this.redis.set(this.key(sid), keyId, 'EX', this.ttlSeconds);
    return sid;
  }

  /** The key id bound to the session, or undefined (unknown, expired, malformed). */
  async keyIdOf(sid: string): Promise<string | undefined> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(sid)) return undefined;
    return (await this.redis.get(this.key(sid))) ?? undefined;
  }

  async close(sid: string): Promise<void> {
    if (/^[A-Za-z0-9_-]{43}$/.test(sid)) await this.redis.del(this.key(sid));
  }
}
