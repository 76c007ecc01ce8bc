import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { mulberry32 } from '../../src/learner/rng.js';
import { WORLDS_DIR } from '../../src/learner/sim/world.js';
import { closedPort, runCli } from '../helpers/cli.js';

// `apportion simulate` with bad input refuses it by name before it drives anything: a world file that is not a world
// (generated from a real one, seeded: a field removed or given another type) names the file and the field (it failed
// with "Cannot read properties of undefined (reading 'map')"), and an --out that is a directory is refused before the
// run (it failed with a raw EISDIR after the whole run). The server's port is closed: nothing may be sent.
const dir = mkdtempSync(path.join(tmpdir(), 'apportion-sim-input-'));
const cli = (args: string[]) => runCli(args, process.env, 120_000);
after(() => rmSync(dir, { recursive: true, force: true }));

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
/** Paths of every value in a document (objects and arrays walked). */
function paths(v: Json, at: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = at.length ? [at] : [];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

describe('simulate with bad input', () => {
  it('refuses a world file that is not a world, naming the file and the field, before sending anything', async () => {
    const port = await closedPort();
    const base = JSON.parse(readFileSync(path.join(WORLDS_DIR, 'support-basic.json'), 'utf8')) as { [k: string]: Json };
    const rng = mulberry32(20261204);
    // Required fields (drift, description's optional siblings aside) removed or retyped.
    const required = paths(base).filter((p) => !['perMessage', 'perDocToken', 'task', 'weightByTask', 'drift'].some((k) => p.includes(k)) && !(p[0] === 'tasks' && p.length > 1) && !(p[0] === 'agents' && p.length > 2 && p[2] === 'name'));
    const cases: { doc: Json; what: string }[] = [{ doc: {}, what: 'empty object' }, { doc: [], what: 'an array' }];
    for (let i = 0; i < 6; i++) {
      const p = required[Math.floor(rng() * required.length)]!;
      const doc = structuredClone(base) as Json;
      let parent = doc as { [k: string]: Json } | Json[];
      for (const k of p.slice(0, -1)) parent = (parent as { [k: string]: Json })[k as string] as { [k: string]: Json };
      const last = p[p.length - 1]!;
      const retype = rng() < 0.5;
      if (Array.isArray(parent)) parent[last as number] = 'x';
      else if (retype) parent[last] = typeof parent[last] === 'string' ? 5 : 'x';
      else delete parent[last];
      cases.push({ doc, what: `${retype ? 'retyped' : 'removed'} /${p.join('/')}` });
    }
    for (const [i, c] of cases.entries()) {
      const file = path.join(dir, `bad-${i}.json`);
      writeFileSync(file, JSON.stringify(c.doc));
      const r = await cli(['simulate', file, '--url', `http://127.0.0.1:${port}`, '--outcomes', '5', '--quiet']);
      assert.equal(r.code, 1, `${c.what}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^world ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: /`), `${c.what}: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /Cannot read properties|cannot reach/, c.what);
    }
    const notJson = path.join(dir, 'not.json');
    writeFileSync(notJson, '{ "name": ');
    const r = await cli(['simulate', notJson, '--url', `http://127.0.0.1:${port}`, '--outcomes', '5', '--quiet']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^world .*not\.json: not JSON/);
  });

  it('refuses an --out that is a directory or in no directory before the run', async () => {
    const port = await closedPort();
    const asDir = await cli(['simulate', 'support-basic', '--url', `http://127.0.0.1:${port}`, '--outcomes', '5', '--quiet', '--out', dir]);
    assert.equal(asDir.code, 1, asDir.stderr);
    assert.equal(asDir.stderr.trim(), `--out ${dir}: is a directory (name a file)`);
    const nowhere = path.join(dir, 'no-such-dir', 'chart.html');
    const r = await cli(['simulate', 'support-basic', '--url', `http://127.0.0.1:${port}`, '--outcomes', '5', '--quiet', '--out', nowhere]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trim(), `--out ${nowhere}: cannot write there (its directory ${path.dirname(nowhere)} does not exist)`);
  });
});
