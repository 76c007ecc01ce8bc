import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page, type Route } from 'playwright-core';
import { buildConsole } from '../../src/console/build.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { CHROMIUM, CHROMIUM_ARGS } from './harness.js';

/**
 * The console when reads fail: a real server (auth off, the example pipeline seeded) and Chromium; the failures
 * (a 429, a 503) are answered in the browser by Playwright's request routing, everything else by the server.
 */
declare const document: { querySelector(selector: string): { textContent: string | null } | null };
declare const location: { hash: string };
const prefix = testPrefix('console-failures');
let rt: Running;
let browser: Browser;
const EXTRA = 30;

before(async () => {
  await buildConsole();
  rt = await startTest(prefix, { listen: true }, { APPORTION_SEED_EXAMPLES: 'true', APPORTION_MODELS_DIR: mkdtempSync(path.join(tmpdir(), 'apportion-failures-models-')) });
  // Many strategies on one pipeline: the Pipelines page reads the stats of each.
  for (let i = 0; i < EXTRA; i++) {
    const res = await fetch(`${rt.url}/v1/strategies/bulk-${String(i).padStart(2, '0')}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: 'support-triage', kind: 'uniform' }) });
    assert.ok(res.ok, `PUT strategy: ${res.status} ${await res.text()}`);
  }
  // A session with a priced call and one of a model with no known price.
  const t0 = Date.now() - 3_600_000;
  const spans = [
    { traceId: 'qa-trace', spanId: 'root', sessionId: 'unpriced-session', customer: 'acme', team: 'support', agent: 'coordinator', kind: 'agent', start: t0, end: t0 + 40_000 },
    { traceId: 'qa-trace', spanId: 'plan', parentSpanId: 'root', agent: 'coordinator', model: 'gpt-4o', provider: 'openai', usage: { input: 2400, output: 600 }, start: t0 + 1000, end: t0 + 4000 },
    { traceId: 'qa-trace', spanId: 'odd', parentSpanId: 'root', agent: 'writer', model: 'no-such-model-xyz', provider: 'nowhere', usage: { input: 1000, output: 100 }, start: t0 + 5000, end: t0 + 9000 },
  ];
  // More sessions than the Costs page lists (50).
  for (let i = 0; i < 55; i++) spans.push({ traceId: `many-${i}`, spanId: 'c', sessionId: `many-${String(i).padStart(2, '0')}`, agent: 'writer', model: 'gpt-4o', provider: 'openai', usage: { input: 10, output: 1 }, start: t0, end: t0 + 1000 } as (typeof spans)[number]);
  const sp = await fetch(`${rt.url}/v1/spans`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ spans }) });
  assert.ok(sp.ok, `POST spans: ${sp.status} ${await sp.text()}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
after(async () => {
  await browser?.close();
  await rt?.close();
  await dropPrefix(prefix);
});

const rateLimited = (route: Route) =>
  route.fulfill({ status: 429, headers: { 'content-type': 'application/json', 'retry-after': '37' }, body: JSON.stringify({ code: 'RATE_LIMITED', message: 'too many requests' }) });
const unavailable503 = (route: Route) => route.fulfill({ status: 503, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: 'REDIS_UNAVAILABLE', message: 'redis is not answering' }) });

async function open(page: Page, hash: string): Promise<string> {
  await page.goto(`${rt.url}/#/${hash}`);
  const el = await page.waitForSelector(`#main > [data-ready="true"][data-page="${hash}"]`, { timeout: 120_000 });
  return el.innerText();
}

describe('console reads that fail', () => {
  it('Pipelines: a failed stats read shows "unavailable (<code>)", never 0 outcomes', async () => {
    const page = await browser.newPage();
    await page.route('**/v1/strategies/support-static/stats', unavailable503);
    const text = await open(page, 'pipelines');
    const row = await page.locator('[data-testid="pipeline-support-triage"] tr', { hasText: 'support-static' }).innerText();
    assert.match(row, /unavailable \(REDIS_UNAVAILABLE\)/);
    assert.doesNotMatch(row, /\t0\t/);
    // The other strategies' figures are shown as read.
    const other = await page.locator('[data-testid="pipeline-support-triage"] tr', { hasText: 'support-estimate' }).innerText();
    assert.doesNotMatch(other, /unavailable/);
    assert.doesNotMatch(text, /Rate limited/);
    await page.close();
  });

  it('Pipelines: stats are read a few at a time, and a 429 stops the reads and says when to retry', async () => {
    const page = await browser.newPage();
    let inFlight = 0;
    let maxInFlight = 0;
    let sent = 0;
    await page.route('**/v1/strategies/*/stats', async (route) => {
      sent++;
      if (sent === 3) return rateLimited(route);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        await route.continue();
      } finally {
        inFlight--;
      }
    });
    const text = await open(page, 'pipelines');
    const total = EXTRA + 4;
    assert.ok(maxInFlight <= 6, `${maxInFlight} stats reads at once`);
    // After the 429 no new read starts: at most the ones already in flight (concurrency 6) were sent.
    assert.ok(sent <= 3 + 5, `${sent} of ${total} stats reads sent after a 429`);
    assert.match(await page.locator('[data-testid=rate-limited]').innerText(), /RATE_LIMITED.*Retry in 37 s/s);
    const cells = await page.locator('[data-testid="pipeline-support-triage"] [data-testid=unavailable]').count();
    assert.ok(cells >= (total - sent) * 3, `${cells} unavailable cells`);
    assert.match(text, /Rate limited/);
    await page.close();
  });

  it('Costs: envelopes that could not be read say so in place of the pipeline', async () => {
    const page = await browser.newPage();
    await page.route('**/v1/pipelines/support-triage/envelopes', unavailable503);
    await open(page, 'costs');
    assert.match(await page.locator('[data-testid="envelopes-support-triage"]').innerText(), /unavailable \(REDIS_UNAVAILABLE\)/);
    await page.close();
  });

  it('Learner: failed OPE and shadow reads are shown as unavailable, the section stays', async () => {
    const page = await browser.newPage();
    // A model with one version makes the pipeline a learner section; its OPE reads go to the server, one fails.
    await page.route('**/v1/models/support-triage', (route) =>
      route.fulfill({ status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pipeline: 'support-triage', active: null, compatible: true, versions: [{ version: 1, createdAt: Date.now(), metrics: { rows: 10 } }] }) }),
    );
    await page.route('**/v1/pipelines/support-triage/ope?strategy=support-static*', unavailable503);
    await open(page, 'learner');
    const section = page.locator('[data-testid="learner-support-triage"]');
    assert.match(await section.locator('[data-testid=ope-unavailable]').innerText(), /support-static: unavailable \(REDIS_UNAVAILABLE\)/);
    await page.close();
  });

  it('a failed start-up call (whoami 503) renders no page on navigation, and Retry starts the console', async () => {
    const page = await browser.newPage();
    let failing = true;
    await page.route('**/v1/whoami', (route) => (failing ? unavailable503(route) : route.continue()));
    await page.goto(`${rt.url}/#/experiments`);
    await page.waitForSelector('[data-testid=boot-failed]');
    assert.match(await page.locator('main').innerText(), /Retry/);
    // Navigating while start-up failed tries start-up again; it fails again and still no page is rendered.
    await page.evaluate(() => (location.hash = '#/pipelines'));
    await page.waitForSelector('[data-testid=boot-failed]');
    assert.equal(await page.locator('[data-page]').count(), 0);
    assert.equal((await page.locator('#who').innerText()).trim(), '');
    failing = false;
    await page.click('[data-testid=boot-failed] button');
    await page.waitForSelector('#main > [data-ready="true"][data-page="pipelines"]', { timeout: 120_000 });
    assert.match(await page.locator('#who').innerText(), /auth off/);
    await page.close();
  });

  it('Costs showback: a slow answer for an earlier tab does not overwrite the tab selected since; a failed one is shown', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await page.route('**/v1/reports/costs?groupBy=team', async (route) => {
      await held;
      await route.continue();
    });
    await page.route('**/v1/reports/costs?groupBy=model', unavailable503);
    await open(page, 'costs');
    const body = page.locator('.tabs + div');
    await page.click('.tabs button:text-is("team")');
    await page.click('.tabs button:text-is("agent")');
    await page.waitForFunction(() => document.querySelector('.tabs + div th')?.textContent === 'agent');
    assert.equal(await body.locator('th').first().textContent(), 'agent');
    const teamAnswered = page.waitForResponse((r) => r.url().includes('groupBy=team'));
    release();
    await (await teamAnswered).finished();
    // Let the page handle the late answer before looking.
    await page.evaluate(() => new Promise((r) => setTimeout(r, 0)));
    await page.evaluate(() => fetch('/healthz'));
    assert.equal(await body.locator('th').first().textContent(), 'agent');
    assert.equal(await page.locator('.tabs button.active').innerText(), 'agent');
    await page.click('.tabs button:text-is("model")');
    await page.waitForSelector('.tabs + div .error');
    assert.match(await body.innerText(), /redis is not answering/);
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('Cost tree: a total with an unpriced call says so', async () => {
    const page = await browser.newPage();
    await page.goto(`${rt.url}/#/costs/session/unpriced-session`);
    await page.waitForSelector('#main > [data-ready="true"][data-page="costs"]', { timeout: 120_000 });
    assert.match(await page.locator('[data-testid=session-total]').innerText(), /over 2 calls .*\(some calls unpriced: 1 of 2\)/);
    await page.close();
  });

  it('Costs: a session list cut at its limit says there are more', async () => {
    const page = await browser.newPage();
    await open(page, 'costs');
    assert.match(await page.locator('[data-testid=sessions-truncated]').innerText(), /Not every session is listed: the listing stops at 50/);
    await page.close();
  });
});
