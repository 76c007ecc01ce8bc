import assert from 'node:assert/strict';

/** What a JSON endpoint answered: the status, the body parsed (undefined when it is not JSON) and as text. */
export interface JsonReply {
  readonly status: number;
  // Tests read answers of many shapes; each asserts the fields it relies on.
  readonly json: any;
  readonly text: string;
}

/** A client for JSON calls to a test server whose base URL `base()` gives (read at each call: servers restart). */
export function jsonHttp(base: () => string): (method: string, path: string, body?: unknown) => Promise<JsonReply> {
  return async (method, path, body) => {
    const r = await fetch(`${base()}${path}`, { method, ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}) });
    const text = await r.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.status, json, text };
  };
}

/**
 * A client for set-up calls that must succeed: asserts a 2xx (naming the call and the answer) and returns the body
 * parsed ({} when empty).
 */
export function okHttp(base: () => string): (method: string, path: string, body?: unknown) => Promise<any> {
  const call = jsonHttp(base);
  return async (method, path, body) => {
    const r = await call(method, path, body);
    assert.ok(r.status < 300, `${method} ${path} → ${r.status} ${r.text}`);
    return r.text ? r.json : {};
  };
}
