import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ERROR_CATALOG } from '../../src/errors/catalog.js';

describe('error catalog', () => {
  it('agrees with docs/errors.md, code by code and status by status', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const rows = new Map<string, number>();
    for (const m of doc.matchAll(/^\| ([A-Z_]+) \| (\d{3}) \|/gm)) rows.set(m[1]!, Number(m[2]));
    for (const [code, { status }] of Object.entries(ERROR_CATALOG)) {
      assert.equal(rows.get(code), status, `docs/errors.md row for ${code}`);
    }
    for (const code of rows.keys()) assert.ok(code in ERROR_CATALOG, `docs/errors.md lists ${code}, which the catalog lacks`);
  });
});
