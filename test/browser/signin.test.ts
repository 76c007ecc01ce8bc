import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { chromium, type Browser, type Page } from 'playwright-core';
import { buildConsole } from '../../src/console/build.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { CHROMIUM, CHROMIUM_ARGS } from './harness.js';

/**
 * With keys configured the console asks for one before showing anything. Signing in uses the session contract
 * (`POST /v1/session` → HttpOnly cookie, `GET /v1/whoami`); while the server does not offer it, the key is
 * refused and no data is shown.
 */
declare const document: { querySelector(selector: string): { replaceChildren(): void } | null };
declare const location: { hash: string };
const prefix = testPrefix('console-signin');
const ADMIN = 'console-admin-key-0123456789';
let rt: Running;
let browser: Browser;

before(async () => {
  await buildConsole();
  rt = await startTest(prefix, { listen: true }, { APPORTION_ADMIN_KEY: ADMIN, APPORTION_SEED_EXAMPLES: 'true', APPORTION_MODELS_DIR: mkdtempSync(path.join(tmpdir(), 'apportion-signin-models-')) });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
after(async () => {
  await browser?.close();
  await rt?.close();
  await dropPrefix(prefix);
});

describe('console sign-in (keys configured)', () => {
  it('serves the console page without a key, but no data', async () => {
    assert.equal((await fetch(`${rt.url}/`)).status, 200);
    assert.equal((await fetch(`${rt.url}/v1/experiments`)).status, 401);
    assert.equal((await fetch(`${rt.url}/v1/console/budgets`)).status, 401);
  });

  it('starts keyboard users in the key field, and an empty key is refused naming the field', async () => {
    const page = await browser.newPage();
    await page.goto(`${rt.url}/#/budgets`);
    await page.waitForSelector('form input[name=key]');
    const focused = () => page.evaluate(() => (globalThis as unknown as { document: { activeElement: { getAttribute(n: string): string | null } | null } }).document.activeElement?.getAttribute('name'));
    assert.equal(await focused(), 'key');
    await page.keyboard.press('Enter');
    assert.match(await page.locator('.signin .error').innerText(), /^API key: paste a key/);
    assert.equal(await focused(), 'key');
    await page.close();
  });

  it('asks for a key, and shows the pages once the session is accepted', async () => {
    const page = await browser.newPage();
    const sent: { url: string; headers: Record<string, string> }[] = [];
    page.on('request', (r) => {
      if (new URL(r.url()).pathname.startsWith('/v1/')) sent.push({ url: r.url(), headers: r.headers() });
    });
    await page.goto(`${rt.url}/#/experiments`);
    await page.waitForSelector('form input[name=key]');
    assert.match(await page.locator('main').innerText(), /Sign in/);
    await page.fill('input[name=key]', ADMIN);
    await page.click('button[type=submit]');
    const spec = (await (await fetch(`${rt.url}/docs/json`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { paths: Record<string, unknown> };
    if ('/v1/session' in spec.paths) {
      await page.waitForSelector('[data-ready="true"][data-page="experiments"]');
      assert.match(await page.locator('#who').innerText(), /Sign out/);
    } else {
      await page.waitForSelector('.error');
      assert.match(await page.locator('.error').innerText(), /not accepted/);
      assert.equal(await page.locator('[data-page]').count(), 0);
    }
    // Every API call carried the CSRF header the cookie session requires of state-changing requests.
    const session = sent.find((r) => r.url.endsWith('/v1/session'));
    assert.ok(session, 'the sign-in posted to /v1/session');
    assert.equal(session.headers['x-apportion-csrf'], '1');
    await page.close();
  });
});

/** Signs a fresh browser context in with `key` through the sign-in form and waits for the first page. */
async function signedIn(key: string, hash = 'pipelines'): Promise<{ page: Page; errors: string[]; close(): Promise<void> }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  await page.goto(`${rt.url}/#/${hash}`);
  await page.waitForSelector('form input[name=key]');
  await page.fill('input[name=key]', key);
  await page.click('button[type=submit]');
  await page.waitForSelector(`#main > [data-ready="true"][data-page="${hash.split('/')[0]}"]`);
  return { page, errors, close: () => context.close() };
}

/** Goes to `hash` and waits for the page it renders (the previous one is removed first, so a stale page cannot pass). */
async function goTo(page: Page, hash: string): Promise<{ page: string | null; text: string }> {
  await page.evaluate(() => document.querySelector('#main')!.replaceChildren());
  await page.evaluate((h) => (location.hash = h), hash);
  const el = await page.waitForSelector('#main > [data-ready="true"]', { timeout: 30_000 });
  return { page: await el.getAttribute('data-page'), text: await el.innerText() };
}

const apiCall = async (method: string, url: string, key: string, body?: unknown) => {
  const res = await fetch(`${rt.url}${url}`, { method, headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  assert.ok(res.ok, `${method} ${url}: ${res.status} ${await res.clone().text()}`);
  const text = await res.text();
  return text ? JSON.parse(text) : undefined;
};
const keyFor = async (tenant: string, role: string) => (await apiCall('POST', '/v1/keys', ADMIN, { tenant, role, name: `${tenant} ${role}` })) as { id: string; key: string };

describe('console links and the signed-in header', () => {
  it('a link with a segment that is not valid percent-encoding shows the not-found page, never the previous one (generated)', async () => {
    const s = await signedIn(ADMIN);
    try {
      const segment = fc.oneof(
        fc.constantFrom('%', '%zz', '%E0%A4%A', '%F0%9F%99', '%2', '%C3', '%%41', 'a%', '%ZZ%41'),
        fc.constantFrom('costs', 'session', 'experiments', 'pipelines', 'learner', 'x', '%41', '%F0%9F%99%82', '%2F', 'nope'),
      );
      const routes = fc.sample(fc.array(segment, { minLength: 1, maxLength: 3 }), { numRuns: 40, seed: 7 });
      let malformed = 0;
      for (const [i, segs] of routes.entries()) {
        const hash = `#/${[...segs, `n${i}`].join('/')}`;
        let valid = true;
        try {
          segs.forEach((x) => decodeURIComponent(x));
        } catch {
          valid = false;
        }
        const shown = await goTo(s.page, hash);
        if (!valid) {
          malformed++;
          assert.equal(shown.page, 'not-found', hash);
          assert.match(shown.text, /Not found/, hash);
        } else assert.equal(shown.page, decodeURIComponent(segs[0]!), hash);
      }
      assert.ok(malformed > 10, `${malformed} malformed links`);
      assert.deepEqual(s.errors, []);
    } finally {
      await s.close();
    }
  });

  it('the header forgets who was signed in: after Sign out, when the session ends, and when the key is revoked', async () => {
    // Sign out.
    const a = await signedIn(ADMIN);
    try {
      assert.match(await a.page.locator('#who').innerText(), /admin/);
      await a.page.click('#who button');
      await a.page.waitForSelector('form input[name=key]');
      assert.equal((await a.page.locator('#who').innerText()).trim(), '');
    } finally {
      await a.close();
    }
    // The session ends (its cookie is gone): the next call answers 401.
    const k = await keyFor('acme', 'admin');
    const b = await signedIn(k.key);
    try {
      assert.match(await b.page.locator('#who').innerText(), /acme/);
      await b.page.context().clearCookies();
      await b.page.evaluate(() => (location.hash = '#/budgets'));
      await b.page.waitForSelector('form input[name=key]');
      assert.equal((await b.page.locator('#who').innerText()).trim(), '');
    } finally {
      await b.close();
    }
    // The key is revoked.
    const c = await signedIn(k.key);
    try {
      assert.match(await c.page.locator('#who').innerText(), new RegExp(k.id));
      await apiCall('DELETE', `/v1/keys/${k.id}`, ADMIN);
      await c.page.evaluate(() => (location.hash = '#/budgets'));
      await c.page.waitForSelector('form input[name=key]');
      assert.equal((await c.page.locator('#who').innerText()).trim(), '');
    } finally {
      await c.close();
    }
  });

  it('a failed sign-out (DELETE /v1/session 503) says so and keeps the user signed in', async () => {
    const s = await signedIn(ADMIN);
    try {
      await s.page.route('**/v1/session', (route) =>
        route.request().method() === 'DELETE'
          ? route.fulfill({ status: 503, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: 'REDIS_UNAVAILABLE', message: 'redis is not answering' }) })
          : route.continue(),
      );
      await s.page.click('#who button');
      await s.page.waitForSelector('[data-testid=signout-failed]');
      assert.match(await s.page.locator('[data-testid=signout-failed]').innerText(), /still signed in.*REDIS_UNAVAILABLE/);
      assert.match(await s.page.locator('#who').innerText(), /Sign out/);
      assert.equal(await s.page.locator('form input[name=key]').count(), 0);
      // Once the DELETE goes through, sign-out works.
      await s.page.unroute('**/v1/session');
      await s.page.click('#who button');
      await s.page.waitForSelector('form input[name=key]');
      assert.equal((await s.page.locator('#who').innerText()).trim(), '');
      assert.deepEqual(s.errors, []);
    } finally {
      await s.close();
    }
  });

  it('an analyst is offered no experiment actions (they are admin routes); an admin of the tenant is', async () => {
    await apiCall('PUT', '/v1/experiments/console-roles', ADMIN, {
      pipeline: 'support-triage',
      variants: [
        { name: 'control', strategy: 'support-estimate', weight: 1 },
        { name: 'static', strategy: 'support-static', weight: 1 },
      ],
      control: 'control',
      coverage: 1,
    });
    await apiCall('POST', '/v1/experiments/console-roles/start', ADMIN);
    for (const [role, acts] of [['analyst', false], ['admin', true]] as const) {
      const k = await keyFor('default', role);
      const s = await signedIn(k.key, 'experiments/console-roles');
      try {
        const actions = await s.page.locator('#main button[data-action]').evaluateAll((bs) => bs.map((b) => b.getAttribute('data-action')));
        if (acts) assert.deepEqual(actions.sort(), ['evaluate', 'pause', 'promote', 'rollback'], role);
        else {
          assert.deepEqual(actions, [], `${role} sees ${actions.join(', ')}`);
          assert.match(await s.page.locator('[data-testid=read-only]').innerText(), /admin key/);
        }
        assert.deepEqual(s.errors, []);
      } finally {
        await s.close();
      }
    }
  });
});
