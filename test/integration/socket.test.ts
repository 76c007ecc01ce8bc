import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ApportionClient, ApportionHttpError } from '@apportion/sdk';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';
import { nodeEntry } from '../helpers/cli.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('socket');
const ADMIN = 'socket-admin-key-0123456789';
const CLIENT = 'socket-client-key-0123456789';
let rt: Running;

before(async () => {
  // A real listening server, with the example pipeline seeded as on a first start.
  rt = await startTest(prefix, { listen: true }, { APPORTION_ADMIN_KEY: ADMIN, APPORTION_CLIENT_KEY: CLIENT, APPORTION_SEED_EXAMPLES: 'true' });
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('over a real socket', () => {
  it('allocates with the seeded example, reports an outcome and reads stats with the SDK client', async () => {
    // A generous client timeout: the SDK's 5 s default is a timing assertion on a machine kept busy by other work
    // (the first allocation loads the tokenizer).
    const client = new ApportionClient({ url: rt.url!, key: CLIENT, timeoutMs: 120_000 });
    const a = await client.allocate({ pipeline: 'support-triage', features: { messageCount: 12, documentText: 'The invoice total is wrong. '.repeat(50), taskType: 'billing' } });
    assert.equal(a.strategy, 'support-estimate');
    assert.equal(a.reason, 'default');
    const sum = Object.values(a.budgets).reduce((s, b) => s + b.tokens, 0);
    assert.equal(sum + a.unallocatedTokens, a.totalTokens);
    await client.reportOutcome({ decisionId: a.decisionId, quality: 0.9, usage: { reasoner: { inputTokens: 900, outputTokens: 300 } } });
    const admin = new ApportionClient({ url: rt.url!, key: ADMIN, timeoutMs: 120_000 });
    const stats = await eventually(async () => {
      const s = (await admin.strategyStats('support-estimate')) as { count: number; cost: { n: number; mean: number } };
      return s.count === 1 ? s : undefined;
    });
    // The reasoner's price in the example (15 / 75 USD per MTok) prices the reported usage.
    assert.equal(stats.cost.n, 1);
    assert.ok(Math.abs(stats.cost.mean - (900 * 15 + 300 * 75) / 1e6) < 1e-12);
    await assert.rejects(client.request('GET', '/v1/pipelines'), (e: unknown) => e instanceof ApportionHttpError && e.statusCode === 403 && e.code === 'FORBIDDEN');
  });

  it('the CLI talks to it: allocate and stats', async () => {
    const env = { ...process.env, APPORTION_URL: rt.url!, APPORTION_KEY: ADMIN };
    const { stdout } = await run(process.execPath, [...nodeEntry('src/cli/main.ts'), 'allocate', 'support-triage', '--features', '{"messageCount":3}', '--total', '8000'], { cwd: ROOT, env });
    const a = JSON.parse(stdout) as { totalTokens: number; budgets: Record<string, { tokens: number }> };
    assert.equal(a.totalTokens, 8000);
    assert.deepEqual(Object.keys(a.budgets).sort(), ['formatter', 'orchestrator', 'reasoner', 'retriever', 'validator']);
    const bad = await run(process.execPath, [...nodeEntry('src/cli/main.ts'), 'allocate', 'nope'], { cwd: ROOT, env }).catch((e: { code: number; stderr: string }) => e);
    assert.equal((bad as { code: number }).code, 1);
    assert.match((bad as { stderr: string }).stderr, /404 PIPELINE_NOT_FOUND/);
  });
});
