/**
 * The console's one way to call the API: same-origin, with the session cookie (`credentials: 'same-origin'`)
 * and the `x-apportion-csrf: 1` header that state-changing requests authenticated by cookie must carry.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
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
    throw new ApiError(res.status, e.code ?? `HTTP_${res.status}`, e.message ?? (res.statusText || `HTTP ${res.status}`));
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
