import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { nodeEntry } from '../helpers/cli.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('npm run screenshots', () => {
  it('without Chromium: one line naming the path and how to install it, exit 1, no stack', async () => {
    const missing = '/nonexistent/apportion-test-chromium';
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, nodeEntry('test/browser/screenshots.ts'), { cwd: ROOT, env: { ...process.env, APPORTION_CHROMIUM: missing }, timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.ok(r.stderr.startsWith(`${missing} not found`), r.stderr);
    assert.match(r.stderr, /apt-get install -y chromium/);
    assert.doesNotMatch(r.stderr, /\n\s+at |^Error:|Node\.js v/m, 'no stack');
    assert.equal(r.stdout, '');
  });
});
