import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';

/**
 * Every API route the README and docs/*.md name (`GET /v1/models/:pipeline`, and the path and method of each `curl`
 * to localhost:3000) is one the server registers: docs/learner.md once sent readers to a `GET /v1/models` that
 * does not exist.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('doc-routes');
let rt: Running;

before(async () => {
  rt = await startTest(prefix);
});
after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

/** Method and path pattern of every route, from Fastify's route tree (`printRoutes({ commonPrefix: false })`). */
function registered(tree: string): { method: string; path: RegExp; text: string }[] {
  const out: { method: string; path: RegExp; text: string }[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+) \(([^)]*)\)/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    const text = stack.join('').replace(/\/\/+/g, '/');
    const path = new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:[A-Za-z]+/g, '[^/]+')}/?$`);
    for (const method of m[3]!.split(', ')) out.push({ method, path, text });
  }
  return out;
}

/** `METHOD /v1/…` in prose or tables, and `curl … localhost:3000/v1/…` (method from -X, else POST with a body, else GET). */
function mentioned(file: string, text: string): { where: string; method: string | undefined; path: string }[] {
  const out: { where: string; method: string | undefined; path: string }[] = [];
  // Placeholders (`<id>`, `{id}`, `…`) stand for one path segment.
  const concrete = (p: string) => p.replace(/<[^>]*>|\{[^}]*\}|…/g, 'x').split('?')[0]!.replace(/[.,;:]+$/, '');
  text.split('\n').forEach((line, i) => {
    const where = `${file}:${i + 1}`;
    for (const m of line.matchAll(/\b(GET|PUT|POST|DELETE|PATCH)\s+(\/v1\/[\w:\-/<>{}.…*]*)/g)) out.push({ where, method: m[1], path: concrete(m[2]!) });
    for (const m of line.matchAll(/[`\s(](\/v1\/[\w:\-/<>{}.…*]*)/g)) out.push({ where, method: undefined, path: concrete(m[1]!) });
    for (const m of line.matchAll(/curl ([^\n]*?)'?localhost:3000(\/v1\/[^\s'"]*)/g)) {
      const x = /-\w*X\s*(\w+)/.exec(m[1]!);
      out.push({ where, method: x ? x[1] : / -d\b|--data/.test(line) ? 'POST' : 'GET', path: concrete(m[2]!) });
    }
  });
  // A wildcard the docs use for a family of routes (`/v1/experiments/:id/*`) or the bare prefix is not one route.
  return out.filter((r) => !r.path.endsWith('*') && r.path !== '/v1/');
}

describe('routes named in the docs', () => {
  it('every route the README and docs/*.md name, with its method, is registered', () => {
    const routes = registered(rt.app!.printRoutes({ commonPrefix: false }));
    assert.ok(routes.some((r) => r.text === '/v1/models/:pipeline' && r.method === 'GET'), 'the route tree was read');
    const files = ['README.md', ...readdirSync(`${ROOT}docs`).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
    const missing: string[] = [];
    let checked = 0;
    for (const file of files) {
      for (const r of mentioned(file, readFileSync(`${ROOT}${file}`, 'utf8'))) {
        checked++;
        if (!routes.some((x) => (r.method === undefined || x.method === r.method) && x.path.test(r.path))) missing.push(`${r.where}: ${r.method ?? '(any method)'} ${r.path}`);
      }
    }
    assert.ok(checked > 100, `${checked} mentions`);
    assert.deepEqual(missing, []);
  });
});
