import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { formatResults } from '../../src/rollout/format.js';
import type { ExperimentResults } from '../../src/rollout/service.js';
import { ApportionClient } from '@apportion/sdk';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('rollout-cli');
const ADMIN = 'rollout-admin-key-0123456789';
let rt: Running;
let env: NodeJS.ProcessEnv;
const cli = async (...args: string[]) => (await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'experiments', ...args], { cwd: ROOT, env })).stdout;

before(async () => {
  rt = await startTest(prefix, { listen: true }, { APPORTION_ADMIN_KEY: ADMIN, APPORTION_SEED_EXAMPLES: 'true', APPORTION_ROLLOUT_INTERVAL_MS: '3600000' });
  env = { ...process.env, APPORTION_URL: rt.url!, APPORTION_KEY: ADMIN };
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

describe('experiments CLI with the example files', () => {
  it('applies and starts every example, routes traffic, prints results as a table, promotes, audits with the key fingerprint', async () => {
    const applied = await cli('apply', 'experiments/rollouts/support-static-rollout.json', 'experiments/rollouts/support-holdout.json', 'experiments/rollouts/support-critical-path.json', '--start');
    assert.match(applied, /support-static-vs-estimate v\d+: running, phase 0, ramp step 0, coverage 0\.5 %/);
    assert.match(applied, /support-holdout-2026q4 v\d+: running/);
    assert.match(applied, /support-critical-path v\d+: running/);

    const client = new ApportionClient({ url: rt.url!, key: ADMIN });
    const reasons = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const a = await client.allocate({ pipeline: 'support-triage', unitKey: `cli-${i}`, features: { messageCount: 12, taskType: 'billing' } });
      reasons.add(a.experiment ? String(a.experiment) : a.reason);
      await client.reportOutcome({ decisionId: a.decisionId, quality: 0.8, costUsd: 0.02, usage: { reasoner: { outputTokens: 500 } } });
    }
    assert.ok(reasons.has('support-pool-vs-estimate') && reasons.has('support-holdout-2026q4'), [...reasons].join(', '));

    await eventually(async () => {
      const r = await client.request<{ phases: { variants: { n: number }[] }[] }>('GET', '/v1/experiments/support-pool-vs-estimate/results');
      return r.phases[0]!.variants.every((v) => v.n > 0);
    });
    const table = await cli('results', 'support-pool-vs-estimate', '--winsorize', '0.99');
    assert.match(table, /control \(control\)\s+[1-9]\d*\s/);
    assert.match(table, /phase 0/);
    assert.match(table, /vs control\s+metric\s+diff/);
    assert.match(table, /guardrails \(always-valid, current phase\)/);
    // The probe's table through the same formatter (one CLI process fewer: each costs ~2 s of tsx start-up).
    assert.match(formatResults(await client.request<ExperimentResults>('GET', '/v1/experiments/support-critical-path/results')), /critical path/);

    assert.match(await cli('promote', 'support-pool-vs-estimate', 'pool'), /stopped/);
    assert.equal((await client.request<{ defaultStrategy: string }>('GET', '/v1/pipelines/support-triage')).defaultStrategy, 'support-priority-pool');
    const audit = await cli('audit', 'support-pool-vs-estimate');
    assert.match(audit, /promote\s+key:[0-9a-f]{12}\s+.*"variant":"pool"/);
    assert.ok(!audit.includes(ADMIN), 'the audit never holds the key itself');
    const bad = await cli('pause', 'nope').catch((e: { code: number; stderr: string }) => e);
    assert.match((bad as { stderr: string }).stderr, /404 EXPERIMENT_NOT_FOUND/);
    // The promote started a new holdout phase; its held-out units keep the default of the day it started.
    const hold = await client.request<{ state: { phase: number; exposedDefault: string }; variants: { strategy: string }[] }>('GET', '/v1/experiments/support-holdout-2026q4');
    assert.equal(hold.state.phase, 1);
    assert.equal(hold.state.exposedDefault, 'support-priority-pool');
    assert.equal(hold.variants[0]!.strategy, 'support-estimate');
    const ack = await cli('acknowledge-srm', 'support-holdout-2026q4', '--reason', 'checked').catch((e: { stderr: string }) => e);
    assert.match((ack as { stderr: string }).stderr, /409 EXPERIMENT_STATE_CONFLICT: .*no sample-ratio-mismatch flag in its current phase \(1\)/);
  });
});
