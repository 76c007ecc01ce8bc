import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ApportionClient } from '@apportion/sdk';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, FIVE_AGENTS, REDIS_URL, startTest, testPrefix } from '../helpers/env.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('shutdown');
let rt: Running | undefined;

after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

describe('graceful shutdown', () => {
  it('SIGTERM during a burst of outcomes: exits 0, and every accepted outcome is applied (after restart if need be)', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve'], {
      cwd: ROOT,
      env: { ...process.env, PORT: '0', REDIS_URL, APPORTION_KEY_PREFIX: prefix, APPORTION_SEED_EXAMPLES: 'false', LOG_LEVEL: 'info', APPORTION_OUTCOME_CONCURRENCY: '2' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const url = await eventually(() => {
      const line = out.split('\n').find((l) => l.includes('apportion started'));
      return line ? (JSON.parse(line) as { url: string }).url : undefined;
    }, 30_000);
    const client = new ApportionClient({ url });
    await client.request('PUT', '/v1/pipelines/p', FIVE_AGENTS);
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) ids.push((await client.allocate({ pipeline: 'p' })).decisionId);
    let accepted = 0;
    const sends = ids.map((decisionId, i) =>
      client.reportOutcome({ decisionId, quality: (i % 10) / 10 }).then(
        () => accepted++,
        () => undefined, // refused while draining: not accepted, so not owed
      ),
    );
    await new Promise((r) => setTimeout(r, 20));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    await Promise.all(sends);
    assert.equal(await exited, 0);
    assert.ok(accepted > 0, 'some outcomes were accepted before the drain');

    // A fresh worker finishes whatever the stopped one left queued; every accepted outcome counts exactly once.
    rt = await startTest(prefix, { workers: true });
    const stats = await eventually(async () => {
      const s = (await rt!.app!.inject({ method: 'GET', url: '/v1/strategies/@uniform/stats?pipeline=p' })).json();
      return s.count >= accepted ? s : undefined;
      // A bound, not a target: on a machine kept busy by other work a fresh worker took longer than 30 s to start.
    }, 180_000);
    assert.equal(stats.count, accepted);
  });
});
