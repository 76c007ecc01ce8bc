import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { buildConsole } from '../../src/console/build.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { CHROMIUM, CHROMIUM_ARGS, openPage, watchErrors } from './harness.js';

/**
 * The console signed in with a tenant's key (admin, and analyst: read only): the Budgets and Costs pages show that
 * tenant's budgets, live reservations, alerts and sessions, and nothing of another tenant's, without an error.
 */
declare const document: { querySelector(selector: string): { textContent: string | null } | null };
const prefix = testPrefix('console-tenant');
const OPERATOR = 'console-tenant-operator-key-0123456789';
const U = 'USD_MICROCENTS';
let rt: Running;
let browser: Browser;
const keys: Record<string, string> = {};
let acmeReservation = '';
let betaReservation = '';

async function call<T = any>(method: string, url: string, key: string, body?: unknown): Promise<T> {
  const res = await fetch(`${rt.url}${url}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${url}: ${res.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

/** A coordinator span and one priced LLM call under it; `session` undefined = a trace that names no session. */
const spans = (traceId: string, session: string | undefined, agent: string) => ({
  spans: [
    { traceId, spanId: 'root', ...(session ? { sessionId: session } : {}), agent: 'coordinator', kind: 'agent', start: '2026-11-23T10:00:00Z', end: '2026-11-23T10:00:09Z' },
    { traceId, spanId: 'call', parentSpanId: 'root', agent, kind: 'llm', provider: 'openai', model: 'gpt-4o-mini', usage: { input: 1200, output: 300 }, start: '2026-11-23T10:00:01Z', end: '2026-11-23T10:00:05Z' },
  ],
});

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium`);
  await buildConsole();
  rt = await startTest(prefix, { listen: true }, { APPORTION_ADMIN_KEY: OPERATOR, APPORTION_SEED_EXAMPLES: 'false', APPORTION_MODELS_DIR: mkdtempSync(path.join(tmpdir(), 'apportion-tenant-models-')) });
  for (const t of ['acme', 'globex']) {
    for (const role of ['admin', 'analyst', 'client']) keys[`${t}-${role}`] = (await call<{ key: string }>('POST', '/v1/keys', OPERATOR, { tenant: t, role, name: `${t} ${role}` })).key;
    // Each tenant's own admin key sets its budgets; the client key holds a reservation and sends spans.
    await call('PUT', '/v1/budgets', keys[`${t}-admin`]!, { scope: `tenant:${t}`, unit: U, allocated: 50_000_000_000 });
    await call('PUT', '/v1/budgets', keys[`${t}-admin`]!, { scope: `tenant:${t}/workspace:${t}-research`, unit: U, allocated: 10_000_000_000 });
    const r = await call<{ id: string }>('POST', '/v1/reservations', keys[`${t}-client`]!, { scope: `tenant:${t}/workspace:${t}-research`, unit: U, amount: 400_000_000, idempotencyKey: `${t}-r1`, ttlMs: 3_600_000 });
    if (t === 'acme') acmeReservation = r.id;
    else betaReservation = r.id;
    await call('POST', '/v1/spans', keys[`${t}-client`]!, spans('t-1', `${t}-chat-1`, `${t}-writer`));
    await call('POST', '/v1/spans', keys[`${t}-client`]!, spans('t-bare', undefined, `${t}-writer`));
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
after(async () => {
  await browser?.close();
  await rt?.close();
  await dropPrefix(prefix);
});

async function signedIn(key: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = watchErrors(page);
  await page.goto(`${rt.url}/#/budgets`);
  await page.waitForSelector('form input[name=key]');
  await page.fill('input[name=key]', key);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-ready="true"][data-page="budgets"]', { timeout: 120_000 });
  // Before signing in the console asks who it is and is told 401 (signed out): that is how it knows to ask for a key.
  const signedOut = errors.indexOf('401 GET /v1/whoami');
  if (signedOut >= 0) errors.splice(signedOut, 1);
  return { page, errors };
}

describe('console signed in with a tenant key', () => {
  for (const role of ['admin', 'analyst'] as const) {
    it(`acme ${role}: Budgets and Costs show acme's budgets, reservations and sessions, and none of globex's`, async () => {
      const { page, errors } = await signedIn(keys[`acme-${role}`]!);
      assert.match(await page.locator('#who').innerText(), new RegExp(`${role} · acme`));

      const budgets = await page.locator('[data-page=budgets]').innerText();
      assert.match(await page.locator('[data-testid=budget-tree-acme]').innerText(), /acme-research[\s\S]*\$100\.00/);
      assert.equal(await page.locator('[data-testid=budget-tree-globex]').count(), 0);
      assert.match(await page.locator('[data-testid=reservations]').innerText(), new RegExp(acmeReservation.replace(/[~]/g, '\\~')));
      assert.doesNotMatch(budgets, /globex/);
      assert.ok(!budgets.includes(betaReservation));
      assert.doesNotMatch(budgets, /error|forbidden/i);

      await openPage(page, rt.url!, 'costs');
      const costs = await page.locator('[data-page=costs]').innerText();
      const sessions = await page.locator('[data-testid=sessions]').innerText();
      assert.match(sessions, /acme-chat-1/);
      assert.match(sessions, /trace-t-bare/);
      assert.doesNotMatch(costs, /globex/);
      assert.match(await page.locator('[data-testid=showback]').innerText(), /acme/);
      assert.match(costs, /its own spend only/);

      await page.click('[data-testid=sessions] >> text=acme-chat-1');
      // The page names the session by the id the tenant knows it by (stored under the tenant's namespace).
      await page.waitForFunction(() => /^Session acme-chat-1$/.test(document.querySelector('[data-page=costs] h1')?.textContent ?? ''));
      await page.waitForSelector('[data-ready="true"] [data-testid=cost-tree]');
      assert.match(await page.locator('[data-testid=cost-tree]').innerText(), /acme-writer · llm · gpt-4o-mini/);
      await page.goBack();
      await page.waitForSelector('[data-ready="true"][data-page="costs"]');
      await page.click('[data-testid=sessions] >> text=trace-t-bare');
      await page.waitForFunction(() => /Session trace-t-bare/.test(document.querySelector('[data-page=costs] h1')?.textContent ?? ''));
      assert.match(await page.locator('[data-testid=cost-tree]').innerText(), /acme-writer · llm · gpt-4o-mini/);

      // Another tenant's session, asked for by name, is a missing one.
      await openPage(page, rt.url!, 'costs/session/globex-chat-1');
      assert.match(await page.locator('[data-page=costs]').innerText(), /no spans stored for session "globex-chat-1"/);
      assert.deepEqual(errors.filter((e) => !e.includes('/v1/sessions/globex-chat-1/cost-tree')), []);
      await page.close();
    });
  }

  it('a tenant named with 128 characters: the header wraps its name and keeps every link and Sign out in view', async () => {
    const tenant = `t${'x'.repeat(127)}`;
    const { key } = await call<{ key: string }>('POST', '/v1/keys', OPERATOR, { tenant, role: 'admin', name: 'long' });
    const { page, errors } = await signedIn(key);
    assert.ok((await page.locator('#who').innerText()).includes(tenant));
    const r = await page.evaluate(() => {
      const w = globalThis as unknown as { innerWidth: number; document: { documentElement: { scrollWidth: number }; querySelectorAll(s: string): ArrayLike<{ getBoundingClientRect(): { left: number; right: number } }> } };
      return { width: w.document.documentElement.scrollWidth, inner: w.innerWidth, out: Array.from(w.document.querySelectorAll('header a, header button')).filter((e) => e.getBoundingClientRect().right > w.innerWidth).length };
    });
    assert.ok(r.width <= r.inner, `the page is ${r.width} px wide in a ${r.inner} px window`);
    assert.equal(r.out, 0, 'header links and Sign out in view');
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('the operator key still sees every tenant on both pages', async () => {
    const { page, errors } = await signedIn(OPERATOR);
    assert.equal(await page.locator('[data-testid=budget-tree-acme]').count(), 1);
    assert.equal(await page.locator('[data-testid=budget-tree-globex]').count(), 1);
    await openPage(page, rt.url!, 'costs');
    const sessions = await page.locator('[data-testid=sessions]').innerText();
    assert.match(sessions, /acme~acme-chat-1/);
    assert.match(sessions, /globex~globex-chat-1/);
    assert.deepEqual(errors, []);
    await page.close();
  });
});
