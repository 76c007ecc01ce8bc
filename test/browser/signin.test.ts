import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { buildConsole } from '../../src/console/build.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { CHROMIUM, CHROMIUM_ARGS } from './harness.js';

/**
 * With keys configured the console asks for one before showing anything. Signing in uses the session contract
 * (`POST /v1/session` → HttpOnly cookie, `GET /v1/whoami`); while the server does not offer it, the key is
 * refused and no data is shown.
 */
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
