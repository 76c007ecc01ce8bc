import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';
import { nodeEntry } from '../helpers/cli.js';

const run = promisify(execFile);
const prefix = testPrefix('budget-cli');
const server = serveDuring(prefix, { APPORTION_RESERVATION_SWEEP_MS: '3600000' });

const cli = async (...args: string[]) =>
  (await run(process.execPath, [...nodeEntry('src/cli/main.ts'), ...args, '--url', server.rt.url!], { cwd: new URL('../..', import.meta.url).pathname })).stdout;

describe('apportion budgets', () => {
  it('sets, debits and lists budgets from the shell', async () => {
    const set = JSON.parse(await cli('budgets', 'set', 'tenant:cli/workspace:w', '1000', '--unit', 'TOKENS', '--policy', 'ALLOW_WITH_OVERDRAFT', '--overdraft', '50'));
    assert.equal(set.allocated, 1000);
    assert.equal(set.overagePolicy, 'ALLOW_WITH_OVERDRAFT');
    const debit = JSON.parse(await cli('budgets', 'debit', 'tenant:cli/workspace:w/agent:a', '1030', '--unit', 'TOKENS'));
    assert.deepEqual(debit.scopes, ['tenant:cli/workspace:w']);
    const table = await cli('budgets', 'balances', 'tenant:cli');
    assert.match(table, /tenant:cli\/workspace:w\s+tokens\s+1,000\s+0\s+0\s+1,000\s+30/);
    const gone = JSON.parse(await cli('budgets', 'delete', 'tenant:cli/workspace:w', '--unit', 'TOKENS'));
    assert.deepEqual([gone.scope, gone.spent, gone.debt], ['tenant:cli/workspace:w', 1000, 30]);
    assert.doesNotMatch(await cli('budgets', 'balances', 'tenant:cli'), /workspace:w/);
  });
});
