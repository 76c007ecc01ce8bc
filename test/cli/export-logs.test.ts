import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { learnerKeys } from '../../src/learner/keys.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { runCli } from '../helpers/cli.js';

// export-logs over a socket: it follows the logs cursor (each line once), and its λ is the pipeline's (qa-r bug 3:
// --cost-weight defaulted to 0, so _label_cost was −quality while OPE and training used quality − λ·cost).
const prefix = testPrefix('cli-export-logs');
const dir = mkdtempSync(path.join(tmpdir(), 'apportion-export-'));
let rt: Running;

const cli = (args: string[]) => runCli(args, process.env);

before(async () => {
  rt = await startTest(prefix, { listen: true });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(dir, { recursive: true, force: true });
});

describe('export-logs', () => {
  it("writes each line once, oldest first, with the pipeline's λ unless --cost-weight overrides it", async () => {
    const put = (url: string, body: unknown) => rt.app!.inject({ method: 'PUT', url, payload: body as object });
    assert.equal((await put('/v1/pipelines/lam', { defaultTotalTokens: 1000, agents: [{ name: 'a' }, { name: 'b' }] })).statusCode, 200);
    assert.equal((await put('/v1/strategies/lam-L', { pipeline: 'lam', kind: 'learned', params: { costWeight: 0.5 } })).statusCode, 200);
    const entries: string[] = [];
    for (let i = 1; i <= 25; i++) entries.push(`|${JSON.stringify({ id: `d-${i}`, t: 1_700_000_000_000 + i, s: 'lam-L', f: {}, T: 1000, b: { a: 600, b: 400 }, q: 0.8, c: 0.2 })}`);
    await rt.core.redis.lpush(learnerKeys(rt.core.keys, 'lam').incoming, ...entries);
    const out = path.join(dir, 'lam.dsjson');
    const r = await cli(['export-logs', 'lam', '--url', rt.url!, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { EventId: string; _label_cost: number });
    assert.deepEqual(lines.map((l) => l.EventId), entries.map((_, i) => `d-${i + 1}`));
    for (const l of lines) assert.ok(Math.abs(l._label_cost - -(0.8 - 0.5 * 0.2)) < 1e-12, String(l._label_cost));
    const r0 = await cli(['export-logs', 'lam', '--url', rt.url!, '--cost-weight', '0', '--limit', '3']);
    assert.equal(r0.code, 0, r0.stderr);
    const l0 = r0.stdout.trim().split('\n').map((l) => JSON.parse(l) as { EventId: string; _label_cost: number });
    assert.deepEqual(l0.map((l) => l.EventId), ['d-23', 'd-24', 'd-25'], 'the newest 3, oldest first');
    for (const l of l0) assert.ok(Math.abs(l._label_cost - -0.8) < 1e-12);
  });

  it('a failed export leaves the file at --out as it was, and an --out it cannot write is one line, not a stack trace', async () => {
    const out = path.join(dir, 'kept.dsjson');
    writeFileSync(out, 'an earlier export\n');
    const r = await cli(['export-logs', 'no-such-pipeline', '--url', rt.url!, '--out', out]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /PIPELINE_NOT_FOUND/);
    assert.equal(readFileSync(out, 'utf8'), 'an earlier export\n', 'the earlier file is not truncated');
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('kept.')), ['kept.dsjson'], 'no partial file is left');
    const bad = await cli(['export-logs', 'lam', '--url', rt.url!, '--out', path.join(dir, 'no-such-dir', 'x.dsjson')]);
    assert.equal(bad.code, 1, bad.stderr);
    assert.equal(bad.stderr.trim(), `--out ${path.join(dir, 'no-such-dir', 'x.dsjson')}: cannot write there (ENOENT)`);
    // A directory: refused before the export (it failed at the end, with the rename's raw EISDIR).
    const asDir = await cli(['export-logs', 'lam', '--url', rt.url!, '--out', dir]);
    assert.equal(asDir.code, 1, asDir.stderr);
    assert.equal(asDir.stderr.trim(), `--out ${dir}: is a directory (name a file)`);
    assert.deepEqual(readdirSync(path.dirname(dir)).filter((f) => f.startsWith(`${path.basename(dir)}.`) && f.endsWith('.partial')), [], 'no partial file beside it');
  });
});
