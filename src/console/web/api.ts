/**
 * The console's one way to call the API: same-origin, with the session cookie (`credentials: 'same-origin'`)
 * and the `x-apportion-csrf: 1` header that state-changing requests authenticated by cookie must carry.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds to wait before retrying (a 429's `retry-after` header), when the server said. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

/** Called when the API answers 401: the console shows the sign-in page. */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

/** `signingIn`: a 401 means the key was refused, not that a session ended (no redirect to the sign-in page). */
export async function api<T>(method: string, path: string, body?: unknown, opts: { signingIn?: boolean } = {}): Promise<T> {
  const headers: Record<string, string> = { 'x-apportion-csrf': '1', accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const e = (parsed ?? {}) as { code?: string; message?: string };
    if (res.status === 401 && !opts.signingIn) onUnauthorized();
    const retry = Number(res.headers.get('retry-after'));
    throw new ApiError(res.status, e.code ?? `HTTP_${res.status}`, e.message ?? (res.statusText || `HTTP ${res.status}`), Number.isFinite(retry) && res.headers.has('retry-after') ? retry : undefined);
  }
  return parsed as T;
}

export const get = <T>(path: string) => api<T>('GET', path);

/** GET that answers undefined on 404 (an optional part of the API, e.g. a pipeline without a model). */
export async function getOptional<T>(path: string): Promise<T | undefined> {
  try {
    return await get<T>(path);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return undefined;
    throw e;
  }
}

/** One read of a batch: its answer, or why there is none (never a silent zero). */
export type Read<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: ApiError };

/** What a batch of reads met: a 429 stops it (the reads not yet sent are not sent: `skipped`). */
export interface Batch<T> {
  readonly results: Read<T>[];
  readonly rateLimited?: { readonly retryAfter?: number; readonly skipped: number };
}

const asApiError = (e: unknown): ApiError => (e instanceof ApiError ? e : new ApiError(0, 'NETWORK', e instanceof Error ? e.message : String(e)));

/**
 * Runs `read` over `items` at most `concurrency` at a time (a page with many pipelines or strategies must not
 * send hundreds of requests at once, nor one after another). After a 429 no further read is started: those
 * answer the same RATE_LIMITED error, and `rateLimited` says how many were skipped and when to retry.
 */
export async function readAll<I, T>(items: readonly I[], read: (item: I) => Promise<T>, concurrency = 6): Promise<Batch<T>> {
  const results: Read<T>[] = new Array(items.length);
  let next = 0;
  let limited: ApiError | undefined;
  let skipped = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      if (limited) {
        results[i] = { ok: false, error: limited };
        skipped++;
        continue;
      }
      try {
        results[i] = { ok: true, value: await read(items[i]!) };
      } catch (e) {
        const error = asApiError(e);
        if (error.status === 429) limited ??= error;
        results[i] = { ok: false, error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return { results, ...(limited ? { rateLimited: { ...(limited.retryAfter !== undefined ? { retryAfter: limited.retryAfter } : {}), skipped } } : {}) };
}

export interface WhoAmI {
  readonly authEnabled: boolean;
  readonly tenant?: string | null;
  readonly role?: string | null;
  readonly keyId?: string | null;
}

/** Who the console is signed in as; `{ authEnabled: false }` when the server has no keys or no session routes. */
export async function whoami(): Promise<WhoAmI | 'signed-out'> {
  const res = await fetch('/v1/whoami', { credentials: 'same-origin', headers: { accept: 'application/json' } });
  if (res.status === 404) return { authEnabled: false };
  if (res.status === 401) return 'signed-out';
  if (!res.ok) throw new ApiError(res.status, `HTTP_${res.status}`, `GET /v1/whoami: ${res.status}`);
  return (await res.json()) as WhoAmI;
}

export const signIn = (key: string) => api<void>('POST', '/v1/session', { key }, { signingIn: true });
export const signOut = () => api<void>('DELETE', '/v1/session');
