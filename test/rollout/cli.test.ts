import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import fc from 'fast-check';
import type { ArmStats } from '../../src/feedback/stats-reader.js';
import { analyzePhase, elasticities } from '../../src/rollout/analysis.js';
import { formatResults } from '../../src/rollout/format.js';
import { fromWelford } from '../../src/stats/moments.js';
import type { ExperimentResults } from '../../src/rollout/service.js';
import { ApportionClient } from '@apportion/sdk';
import type { Running } from '../../src/server.js';
import { dropPrefix, eventually, startTest, testPrefix } from '../helpers/env.js';
import { nodeEntry } from '../helpers/cli.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const prefix = testPrefix('rollout-cli');
const ADMIN = 'rollout-admin-key-0123456789';
let rt: Running;
let env: NodeJS.ProcessEnv;
const cliOut = (...args: string[]) => run(process.execPath, [...nodeEntry('src/cli/main.ts'), 'experiments', ...args], { cwd: ROOT, env });
const cli = async (...args: string[]) => (await cliOut(...args)).stdout;

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

describe('experiments audit', () => {
  it('shows the newest --limit entries (default 100) and says on stderr how many of how many when it cut the trail', async () => {
    const client = new ApportionClient({ url: rt.url!, key: ADMIN });
    const id = 'cli-audit-long';
    // More entries than the default shows: put + start + pause/resume pairs (count from a seed) + stop.
    const [pairs] = fc.sample(fc.integer({ min: 50, max: 70 }), { seed: 97, numRuns: 1 });
    await client.request('PUT', `/v1/experiments/${id}`, {
      pipeline: 'support-triage',
      coverage: 0.01,
      variants: [{ name: 'control', strategy: 'support-estimate', weight: 1 }, { name: 'static', strategy: 'support-static', weight: 1 }],
    });
    await client.request('POST', `/v1/experiments/${id}/start`);
    for (let i = 0; i < pairs!; i++) {
      await client.request('POST', `/v1/experiments/${id}/pause`, { reason: `p${i}` });
      await client.request('POST', `/v1/experiments/${id}/resume`);
    }
    await client.request('POST', `/v1/experiments/${id}/stop`);
    const total = 3 + 2 * pairs!;
    assert.equal((await client.request<{ items: unknown[] }>('GET', `/v1/experiments/${id}/audit?limit=9999`)).items.length, total);
    const lines = (s: string) => s.split('\n').filter(Boolean);

    const cut = await cliOut('audit', id);
    assert.equal(lines(cut.stdout).length, 100);
    assert.match(lines(cut.stdout)[0]!, /\bstop\b/, 'newest first');
    assert.equal(cut.stderr.trim(), `showing the newest 100 of ${total} audit entries; --limit ${total} shows them all`);

    const all = await cliOut('audit', id, '--limit', String(total));
    assert.equal(lines(all.stdout).length, total);
    assert.match(lines(all.stdout).at(-1)!, /\bput\b|\bcreate\b/, `the oldest entry is the first write: ${lines(all.stdout).at(-1)}`);
    assert.equal(all.stderr, '', 'nothing was left out');

    const few = await cliOut('audit', id, '--limit', '3');
    assert.equal(lines(few.stdout).length, 3);
    assert.match(few.stderr, new RegExp(`showing the newest 3 of ${total} audit entries`));
  });
});

/** An arm from summary numbers (as parseArmStats returns it); `cost` undefined: no outcome reported a cost. */
function arm(n: number, q: number, cost: number | undefined): ArmStats {
  const c = cost === undefined ? fromWelford(0, 0, 0) : fromWelford(n, cost, 0.0001 * (n - 1));
  return {
    count: n,
    quality: fromWelford(n, q, 0.01 * Math.max(0, n - 1)),
    cost: { ...c, total: cost === undefined ? 0 : n * cost },
    agents: n ? { reasoner: { n, utilization: 0.5, ceilingHitRate: 0.1, truncationRate: 0, qualityWhenHit: null, meanConsumed: 100, meanAllocated: cost === undefined ? 1000 : 500 } } : {},
  };
}

/** Results as the API gives them, of a probe (its cut arm is `cut.reasoner`) with error rate `alpha`. */
function results(alpha: number, arms: Map<string, ArmStats>): ExperimentResults {
  const variants = [...arms.keys()].map((name) => ({ name, strategy: `s-${name}`, weight: 1 }));
  return {
    experiment: 'e',
    pipeline: 'p',
    type: 'probe',
    status: 'running',
    phase: 0,
    effectiveCoverage: 1,
    alpha,
    control: 'control',
    phases: [analyzePhase({ phase: 0, variants, control: 'control', alpha, arms })],
    guardrails: [],
    criticalPath: elasticities([{ agent: 'reasoner', variant: 'cut.reasoner' }], 'control', arms, alpha),
    state: { status: 'running', phase: 0 },
  };
}

describe('results table (pure)', () => {
  it("labels every fixed-horizon interval with the experiment's level, 1 − α", () => {
    fc.assert(
      fc.property(fc.constantFrom(0.01, 0.025, 0.05, 0.1, 0.2, 0.5), fc.integer({ min: 10, max: 5000 }), (alpha, n) => {
        const out = formatResults(results(alpha, new Map([['control', arm(n, 0.8, 0.02)], ['cut.reasoner', arm(n, 0.7, 0.01)]])));
        const want = `${Math.round((1 - alpha) * 1000) / 10} %`;
        const labels = [...out.matchAll(/([\d.]+ %) CI/g)].map((m) => m[1]);
        assert.equal(labels.length, 3, out); // goal metrics, per-agent ceiling hits, critical path
        assert.deepEqual(labels, [want, want, want], out);
      }),
      { seed: 4, numRuns: 30 },
    );
  });
});

describe('results table: empty cells (pure)', () => {
  it('an arm without outcomes or without reported cost shows "–", not 0', () => {
    const out = formatResults(results(0.05, new Map([['control', arm(40, 0.8, 0.02)], ['cut.reasoner', arm(0, 0, undefined)], ['free', arm(30, 0.7, undefined)]])));
    const row = (name: string) => out.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}  `))!.trim().split(/\s{2,}/);
    assert.deepEqual(row('cut.reasoner'), ['cut.reasoner', '0', '–', '–', '–', '–'], out);
    assert.deepEqual(row('free'), ['free', '30', '0.7000', '–', '–', '–'], out);
    assert.deepEqual(row('control (control)').slice(1, 4), ['40', '0.8000', '0.020000']);
  });
});

describe('results table: SRM flags (pure)', () => {
  it("says a flag of the current phase holds the ramp until acknowledged, and one of an earlier phase holds nothing (acknowledging it answers 409)", () => {
    const arms = new Map([['control', arm(40, 0.8, 0.02)], ['cut.reasoner', arm(40, 0.7, 0.01)]]);
    const flag = { phase: 0, pValue: 1e-5, flaggedAt: 0, counts: [10, 40] };
    const now = formatResults({ ...results(0.05, arms), state: { status: 'running', phase: 0, srm: flag } });
    assert.match(now, /⚠ sample-ratio mismatch flagged in phase 0 .*the ramp holds until acknowledged \(experiments acknowledge-srm\)/, now);
    const later = formatResults({ ...results(0.05, arms), phase: 1, state: { status: 'running', phase: 1, srm: flag } });
    assert.match(later, /⚠ sample-ratio mismatch flagged in phase 0 \(p = 1\.0e-5\): do not trust that phase's results; phase 1 is tested afresh/, later);
    assert.doesNotMatch(later, /ramp holds|acknowledge-srm/, later);
  });
});

describe('results table: critical path basis (pure)', () => {
  it('says when the elasticity intervals are on per-outcome variances (arms without unit buckets), and not when on units', () => {
    // The cut arm's usage reports give half the control's budget (500 of 1,000 tokens).
    const arms = new Map([['control', arm(400, 0.8, undefined)], ['cut.reasoner', arm(400, 0.7, 0.01)]]);
    const old = formatResults(results(0.05, arms));
    assert.match(old, /per-outcome variances \(statistics kept before unit buckets were\) for reasoner: intervals too narrow when units report several outcomes/, old);
    const onUnits = new Map([...arms].map(([k, a]) => [k, { ...a, units: 100, clustered: { quality: { variance: 4 * a.quality.variance, df: 99, clusters: 100 }, clusters: 100 } }]));
    const now = formatResults(results(0.05, onUnits));
    assert.doesNotMatch(now, /per-outcome variances \(statistics kept before unit buckets/, now);
  });
});

describe('results table: holdout phases (pure)', () => {
  it('prints each holdout phase with the coverage (held-out share) the HTTP results return for it', () => {
    const arms = new Map([['holdout', arm(40, 0.8, 0.02)], ['exposed', arm(400, 0.82, 0.02)]]);
    const phases = [0, 1].map((phase) =>
      analyzePhase({ phase, variants: [{ name: 'holdout', strategy: 'even', weight: 0.1 }, { name: 'exposed', strategy: 'heavy', weight: 0.9 }], control: 'holdout', alpha: 0.05, arms }),
    );
    const r: ExperimentResults = {
      ...results(0.05, arms),
      type: 'holdout',
      control: 'holdout',
      phase: 1,
      phases,
      state: {
        status: 'running',
        phase: 1,
        holdoutPhases: [
          { phase: 0, startedAt: 0, held: 'even', exposedDefault: 'even', coverage: 0.1, cause: 'start' },
          { phase: 1, startedAt: 1000, held: 'even', exposedDefault: 'even', coverage: 0.25, cause: 'coverage changed from 0.1 to 0.25' },
        ],
      },
    };
    const { criticalPath: _c, ...holdout } = r;
    const out = formatResults(holdout);
    assert.match(out, /holdout phase 0 from .* \(start\): held out get even, exposed default even, coverage 10 % held out/, out);
    assert.match(out, /holdout phase 1 from .* \(coverage changed from 0\.1 to 0\.25\): held out get even, exposed default even, coverage 25 % held out/, out);
  });
});
