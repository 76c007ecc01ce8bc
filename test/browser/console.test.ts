import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { ApportionClient } from '@apportion/sdk';
import { testPrefix } from '../helpers/env.js';
import { openPage, stage, watchErrors, type Stage } from './harness.js';

/**
 * The console in a real browser (Debian's chromium through playwright-core) against a real server on a socket,
 * with data sent through the API by the same code as `npm run demo`.
 */
/** The page's document, as seen by the functions Playwright runs in the page (tests compile without the DOM lib). */
declare const document: { querySelector(selector: string): { textContent: string | null } | null };
let s: Stage;
let page: Page;
let errors: string[];

before(async () => {
  s = await stage(testPrefix('console'));
  page = await s.browser.newPage({ viewport: { width: 1280, height: 900 } });
  errors = watchErrors(page);
  page.on('dialog', (d) => void d.accept());
});
after(async () => {
  await s?.close();
});

const text = (sel: string) => page.locator(sel).innerText();
const canvases = () => page.locator('canvas').count();

describe('console (auth off)', () => {
  it('serves the console at / with its assets, and the bundle stays small', async () => {
    const res = await fetch(`${s.url}/`);
    assert.equal(res.status, 200);
    const html = await res.text();
    const js = /\/console\/assets\/app\.js\?v=[0-9a-f]{12}/.exec(html);
    assert.ok(js, 'index.html refers to a content-hashed app.js');
    const asset = await fetch(`${s.url}${js[0]}`);
    assert.equal(asset.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.match(asset.headers.get('cache-control') ?? '', /immutable/);
    assert.equal((await fetch(`${s.url}/console/assets/nope.js`)).status, 404);
  });

  it('lists experiments with state, coverage, ramp step and guardrails', async () => {
    await openPage(page, s.url, 'experiments');
    const t = await text('[data-testid=experiments]');
    assert.match(t, /demo-static-vs-estimate/);
    assert.match(t, /running/);
    assert.match(t, /step \d\/2/);
    assert.match(t, /quality ≤ 0\.05 worse/);
  });

  it("shows an experiment's results with CI plots, SRM and audit trail, and rolls it back", async () => {
    await page.click('text=demo-static-vs-estimate');
    await page.waitForSelector('[data-ready="true"][data-page="experiments"] [data-testid=srm]');
    // The always-valid p is the sequential test's; the χ² stands apart, with its df, for reference (not paired with that p).
    assert.match(await text('[data-testid=srm]'), /sequential test p = [\d.]+ \(always valid\).*fixed-sample χ² = [\d.]+ \(df \d+\), for reference/);
    // One interval plot per metric (quality, cost) and one per agent.
    assert.ok((await canvases()) >= 3, `expected ≥ 3 charts, saw ${await canvases()}`);
    assert.match(await text('[data-testid=audit]'), /start/);

    await page.click('button[data-action=rollback]');
    await page.waitForFunction(() => document.querySelector('h1 .pill')?.textContent === 'rolled_back', null, { timeout: 60_000 });
    const api = new ApportionClient({ url: s.url });
    const e = await api.request<{ state: { status: string } }>('GET', '/v1/experiments/demo-static-vs-estimate');
    assert.equal(e.state.status, 'rolled_back');
    assert.match(await text('[data-testid=audit]'), /rollback/);
    assert.equal(await page.locator('button[data-action=rollback]').count(), 0);
  });

  it('shows an experiment before it has data (draft, started with under 2 outcomes an arm) and after a promote, with nothing left to promote', async () => {
    const api = new ApportionClient({ url: s.url });
    await api.request('PUT', '/v1/pipelines/fresh', { defaultTotalTokens: 4000, agents: [{ name: 'a' }, { name: 'b' }] });
    await api.request('PUT', '/v1/strategies/fresh-even', { pipeline: 'fresh', kind: 'uniform' });
    await api.request('PUT', '/v1/strategies/fresh-tilt', { pipeline: 'fresh', kind: 'static', params: { shares: { a: 3, b: 1 } } });
    // A guardrail without maxRegression: its default, 0, is what the page says.
    await api.request('PUT', '/v1/experiments/fresh-exp', {
      pipeline: 'fresh',
      variants: [{ name: 'control', strategy: 'fresh-even', weight: 1 }, { name: 'tilt', strategy: 'fresh-tilt', weight: 1 }],
      guardrails: [{ metric: 'quality' }],
    });
    const show = async () => {
      // A fresh load each time (the same hash again would not re-render).
      await page.goto('about:blank');
      await openPage(page, s.url, 'experiments/fresh-exp');
      const body = await text('#main');
      assert.doesNotMatch(body, /Cannot read|undefined/, body);
      assert.match(body, /Audit trail/);
      return body;
    };
    let body = await show();
    assert.match(body, /quality ≤ 0 worse/);
    assert.equal(await page.locator('button[data-action=start]').count(), 1);
    assert.equal(await page.locator('button[data-action=promote]').count(), 0, 'a draft has nothing to promote');

    await api.request('POST', '/v1/experiments/fresh-exp/start', {});
    const d = await api.allocate({ pipeline: 'fresh', unitKey: 'only-one' });
    await api.reportOutcome({ decisionId: d.decisionId, quality: 0.5 });
    body = await show();
    assert.match(body, /Guardrails/);
    assert.match(body, /not enough data|No outcomes yet/i);
    assert.equal(await page.locator('button[data-action=promote]').count(), 1);

    await api.request('POST', '/v1/experiments/fresh-exp/promote', { variant: 'tilt' });
    body = await show();
    assert.match(body, /promoted\s+tilt → fresh-tilt/);
    assert.equal(await page.locator('button[data-action=promote]').count(), 0, 'an ended experiment has nothing left to promote');
  });

  it('shows the learner: model versions, learning curve, OPE with CIs, shadow agreement', async () => {
    // The page is compared with the model API's answer it rendered from: the learner keeps training and the gate
    // keeps judging while the test runs, so a second read can report a newer version or a later verdict.
    const served = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/models/support-triage' && r.request().method() === 'GET');
    await openPage(page, s.url, 'learner');
    const models = (await (await served).json()) as { versions: { version: number; gate?: { status: string; reason: string } }[] };
    const section = page.locator('[data-testid=learner-support-triage]');
    const t = await section.innerText();
    // A version serves once it clears the activation gate; until then the default strategy serves. Either way
    // the versions are listed with the gate's verdict.
    assert.match(t, /serving v\d+|default strategy serves/);
    assert.match(t, /VERSION\tTRAINED[^\n]*\tGATE\nv\d+\t/);
    // The gate column gives the gate's status and its reason, as GET /v1/models reports them.
    const newest = models.versions.reduce((a, b) => (b.version > a.version ? b : a));
    assert.ok(newest.gate, 'the model API reports the gate');
    assert.ok(t.includes(`${newest.gate.status}: ${newest.gate.reason}`), `gate "${newest.gate.status}: ${newest.gate.reason}" in:\n${t}`);
    assert.match(t, /Off-policy evaluation/);
    assert.match(t, /support-estimate/);
    assert.match(await text('[data-testid=shadow]'), /Agreement with the served split: [\d.]+ %/);
    assert.ok((await section.locator('canvas').count()) >= 2);
  });

  it("lists the runtime guard's reverts of serving versions as guard events", async () => {
    // A revert needs a version that served and then did worse than the control arm for long enough: the model
    // API's answer is given one (the rest is the server's own answer).
    const at = Date.UTC(2026, 11, 3, 10, 0, 0);
    await page.route(
      (u) => u.pathname === '/v1/models/support-triage',
      async (route) => {
        const res = await route.fetch();
        const body = (await res.json()) as { guard?: { reverts: unknown[] } };
        body.guard = { ...body.guard, reverts: [{ reason: 'guard', from: 2, to: 1, at, diff: -0.0412, ci: [-0.07, -0.012] }] };
        await route.fulfill({ response: res, json: body });
      },
    );
    try {
      await page.goto('about:blank');
      await openPage(page, s.url, 'learner');
      const events = await text('[data-testid=learner-support-triage] [data-testid=guard-events]');
      assert.match(events, /2026-12-03 10:00:00\trevert \(guard\)\tv2\tv2 → v1; reward difference -0\.0412 \[-0\.0700, -0\.0120\]/);
    } finally {
      await page.unrouteAll();
    }
  });

  it('says when a learned strategy explores first, and until which outcome', async () => {
    const api = new ApportionClient({ url: s.url });
    await api.request('PUT', '/v1/pipelines/explorer', { defaultTotalTokens: 4000, agents: [{ name: 'a' }, { name: 'b' }, { name: 'c' }] });
    await api.request('PUT', '/v1/pipelines/explorer/features', { features: [{ name: 'task', type: 'categorical', values: ['x', 'y'] }] });
    await api.request('PUT', '/v1/strategies/explorer-learn', { pipeline: 'explorer', kind: 'learned', params: { exploreFirst: 2500, exploreFirstShare: 0.4 } });
    await page.goto('about:blank');
    await openPage(page, s.url, 'learner');
    const line = await text('[data-testid=learner-explorer] [data-testid=explore-first]');
    assert.match(line, /exploring first.*random splits on 40 % of its decisions, and no version is activated, until outcome 2,500/s);
    // A learned strategy without it shows no such line.
    assert.equal(await page.locator('[data-testid=learner-support-triage] [data-testid=explore-first]').count(), 0);
  });

  it("says what the safe start's exploration costs against the default split, and why it shrank", async () => {
    // A shrink needs thousands of decisions of a safe start: the model API's answer is given one (as GET /v1/models
    // lists it; the rest is the server's own answer).
    await page.route(
      (u) => u.pathname === '/v1/models/support-triage',
      async (route) => {
        const res = await route.fetch();
        const body = (await res.json()) as Record<string, unknown> & { guard?: Record<string, unknown> };
        body.active = null;
        body.guard = {
          ...(body.guard ?? { toControl: false, holdUntil: null, reverts: [] }),
          safeStart: {
            scale: 1,
            exploration: 0.5,
            shrinks: 1,
            by: 'cost',
            at: Date.UTC(2026, 11, 6, 9, 0, 0),
            reason: 'the safe start’s exploration costs more than safeStartMargin 0.005 per decision',
            diff: -0.0101,
            ci: [-0.0139, -0.0063],
            current: {
              at: Date.UTC(2026, 11, 6, 9, 5, 0),
              since: Date.UTC(2026, 11, 6, 9, 0, 0),
              scale: 0.5,
              status: 'ok',
              learned: { n: 950, mean: 0.795 },
              control: { n: 50, mean: 0.801, strategy: 'fixed' },
              diff: -0.006,
              ci: [-0.04, 0.028],
              alpha: 0.00417,
              cost: { status: 'ok', cost: -0.0042, ci: [-0.0061, -0.0023], share: 0.1, margin: 0.005, away: { n: 95, mean: 0.75 }, atDefault: { n: 905, mean: 0.8 } },
            },
          },
        };
        await route.fulfill({ response: res, json: body });
      },
    );
    try {
      await page.goto('about:blank');
      await openPage(page, s.url, 'learner');
      const lines = await text('[data-testid=learner-support-triage] [data-testid=safe-start]');
      assert.match(lines, /exploration against the default split: -0\.0042 reward per decision \[-0\.0061, -0\.0023\] \(95 perturbed decisions, 905 at the default split; margin 0\.005\)/);
      assert.match(lines, /Against the control arm \(fixed\): -0\.0060 \[-0\.0400, 0\.0280\] over 950 and 50 decisions/);
      assert.match(lines, /exploration at 0\.5\s*shrunk 1 time, last by the cost test: the safe start’s exploration costs more than safeStartMargin 0\.005 per decision/);
    } finally {
      await page.unrouteAll();
    }
    // Where a version serves, no safe-start lines.
    await page.route(
      (u) => u.pathname === '/v1/models/support-triage',
      async (route) => {
        const res = await route.fetch();
        const body = (await res.json()) as Record<string, unknown> & { guard?: Record<string, unknown> };
        body.active = 3;
        body.guard = { ...(body.guard ?? { toControl: false, holdUntil: null, reverts: [] }), safeStart: { scale: 0.5, shrinks: 1, by: 'cost', reason: 'x' } };
        // The runtime guard's test of the serving version, on probation (GET /v1/models runtimeGuard).
        body.runtimeGuard = { version: 3, since: 1, status: 'ok', diff: -0.0125, ci: [-0.061, 0.036], alpha: 0.025, detectable: 0.0485, learned: { n: 640, mean: 0.71 }, control: { n: 160, mean: 0.7225, strategy: 'fixed' }, controlShare: 0.2, probation: { on: true, share: 0.2, margin: 0.02 }, controlUnavailable: { decisions: 0, last: null } };
        // The newest version's unreadable feature values (GET /v1/models versions[].unusableFeatures).
        const versions = body.versions as { version: number; unusableFeatures?: unknown }[];
        const newest = versions.reduce((a, v) => (v.version > a.version ? v : a), versions[0]!);
        newest.unusableFeatures = { messageCount: { present: 120, unusable: 40, example: '"12"' } };
        await route.fulfill({ response: res, json: body });
      },
    );
    try {
      await page.goto('about:blank');
      await openPage(page, s.url, 'learner');
      await page.locator('[data-testid=learner-support-triage]').waitFor();
      assert.equal(await page.locator('[data-testid=learner-support-triage] [data-testid=safe-start]').count(), 0);
      // The serving version's guard line: against the control arm, and the control's share on probation, with why.
      const guardLine = await text('[data-testid=learner-support-triage] [data-testid=runtime-guard]');
      assert.match(guardLine, /on probation: control 20 %/);
      assert.match(guardLine, /v3 against the control arm \(fixed\): -0\.0125 \[-0\.0610, 0\.0360\] reward per decision over 640 and 160 decisions/);
      assert.match(guardLine, /keeps 20 % of the decisions until the version has shown it is no worse than the control by more than 0\.02/);
      const unusable = await text('[data-testid=learner-support-triage] [data-testid=unusable-features]');
      assert.match(unusable, /unreadable feature values/);
      assert.match(unusable, /messageCount: 40 of 120 values \(e\.g\. "12"\) could not be read by the declaration and count as missing/);
    } finally {
      await page.unrouteAll();
    }
  });

  it('shows the budget tree in dollars, live reservations and alerts', async () => {
    await openPage(page, s.url, 'budgets');
    const tree = await text('[data-testid=budget-tree-acme]');
    assert.match(tree, /workspace:alpha/);
    assert.match(tree, /\$50\.00/);
    assert.match(tree, /2,000,000 tokens/);
    const res = await text('[data-testid=reservations]');
    assert.match(res, /\$4\.00/);
    assert.match(res, /250,000 tokens/);
    assert.match(await text('[data-page=budgets]'), /80 %/);
  });

  it('shows overruns apart from threshold alerts, with their amount and reservation, however many there are', async () => {
    const api = new ApportionClient({ url: s.url });
    const scope = 'tenant:ovr/agent:x';
    await api.request('PUT', '/v1/budgets', { scope, unit: 'TOKENS', allocated: 10_000 });
    await api.request('POST', '/v1/budgets/debit', { scope, unit: 'TOKENS', amount: 5_000, idempotencyKey: 'ovr-half' }); // the 50 % alert
    // More overruns after it than the listing holds (100).
    let last = '';
    for (let j = 0; j < 120; j++) {
      const g = await api.request<{ id: string }>('POST', '/v1/reservations', { scope, unit: 'TOKENS', amount: 1, idempotencyKey: `ovr-${j}` });
      await api.request('POST', `/v1/reservations/${encodeURIComponent(g.id)}/commit`, { amount: 1 + (j % 7) + 1 });
      last = g.id;
    }
    await page.goto('about:blank');
    await openPage(page, s.url, 'budgets');
    const overruns = await text('[data-testid=overruns]');
    assert.match(overruns, /tenant:ovr\/agent:x/);
    assert.ok(overruns.includes(last), 'the newest overrun names its reservation');
    assert.match(overruns, new RegExp(`${(119 % 7) + 1} tokens`));
    const alerts = await text('[data-testid=alerts]');
    assert.match(alerts, /tenant:ovr\/agent:x\s+50 %/, 'its threshold alert is listed, not crowded out by the overruns');
    assert.doesNotMatch(alerts, /null|NaN|undefined/);
    assert.doesNotMatch(alerts, /overrun/);
  });

  it('shows showback and envelopes, and opens a cost tree', async () => {
    await openPage(page, s.url, 'costs');
    assert.match(await text('[data-testid=showback]'), /acme/);
    await page.click('button:text-is("model")');
    await page.waitForFunction(() => /gpt-4o-mini/.test(document.querySelector('[data-testid=showback]')?.textContent ?? ''));
    assert.match(await text('[data-page=costs]'), /too-tight|recommended/);
    await page.click('[data-testid=sessions] >> text=demo-session-1');
    await page.waitForSelector('[data-ready="true"] [data-testid=cost-tree]');
    const tree = await text('[data-testid=cost-tree]');
    assert.match(tree, /coordinator · agent/);
    assert.match(tree, /failed/);
    const total = await text('[data-testid=session-total]');
    assert.match(total, /Failed attempts: 1 calls/);
    assert.match(total, /Coordinator \(coordinator\) overhead: \$[\d.]+/);
  });

  it('shows pipelines, strategies and per-agent utilization and ceiling-hit charts', async () => {
    await openPage(page, s.url, 'pipelines');
    const t = await text('[data-testid=pipeline-support-triage]');
    assert.match(t, /orchestrator/);
    assert.match(t, /support-static/);
    assert.equal(await page.locator('[data-testid=pipeline-support-triage] canvas').count(), 2);
  });

  it('every page fits the window (no table, figure or reason text widens it)', async () => {
    for (const hash of ['experiments', 'experiments/demo-static-vs-estimate', 'learner', 'budgets', 'costs', 'costs/session/demo-session-1', 'pipelines']) {
      await openPage(page, s.url, hash);
      const r = await page.evaluate(() => {
        const w = globalThis as unknown as { innerWidth: number; document: { documentElement: { scrollWidth: number } } };
        return { width: w.document.documentElement.scrollWidth, inner: w.innerWidth };
      });
      assert.ok(r.width <= r.inner, `#/${hash} is ${r.width} px wide in a ${r.inner} px window`);
    }
  });

  it('rendered every page without a script error or a failed request', () => {
    assert.deepEqual(errors, []);
  });
});
