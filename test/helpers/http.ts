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
