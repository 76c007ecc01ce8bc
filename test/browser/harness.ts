import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { buildConsole } from '../../src/console/build.js';
import { runDemo } from '../../src/console/demo.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest } from '../helpers/env.js';

/** Debian's chromium (`apt-get install -y chromium`; .ci/run installs it when missing). */
export const CHROMIUM = process.env.APPORTION_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export interface Stage {
  readonly rt: Running;
  readonly url: string;
  readonly browser: Browser;
  close(): Promise<void>;
}

/**
 * A real server on a socket (own key prefix, example pipeline seeded as on a first start), filled by the same
 * `runDemo` that `npm run demo` uses, through the HTTP API, and a headless Chromium.
 */
export async function stage(prefix: string, env: Record<string, string> = {}, requests = 400): Promise<Stage> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium`);
  await buildConsole();
  const rt = await startTest(prefix, { listen: true }, { APPORTION_SEED_EXAMPLES: 'true', APPORTION_MODELS_DIR: mkdtempSync(path.join(tmpdir(), 'apportion-console-models-')), ...env });
  const url = rt.url!;
  await runDemo({ url, ...(env.APPORTION_ADMIN_KEY ? { key: env.APPORTION_ADMIN_KEY } : {}), requests, seed: 11, log: () => {} });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  return {
    rt,
    url,
    browser,
    async close() {
      await browser.close();
      await rt.close();
      await dropPrefix(prefix);
    },
  };
}

/** Opens a console route and waits until the page says it has rendered (every fetch of it answered). */
export async function openPage(page: Page, base: string, hash: string): Promise<void> {
  await page.goto(`${base}/#/${hash}`);
  await page.waitForSelector('[data-ready="true"]', { timeout: 120_000 });
  // Chart.js draws on the next frame.
  await page.evaluate(() => new Promise((r) => (globalThis as unknown as { requestAnimationFrame(cb: () => void): void }).requestAnimationFrame(() => r(null))));
}

/**
 * Script errors and failed requests seen by a page (a page that renders with errors is not a pass). A 404 from
 * `/v1/whoami` is expected while the server has no session routes: the console then runs with auth off.
 */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(`console: ${m.text()}`);
  });
  page.on('response', (r) => {
    const url = new URL(r.url());
    if (r.status() >= 400 && !(url.pathname === '/v1/whoami' && r.status() === 404)) errors.push(`${r.status()} ${r.request().method()} ${url.pathname}${url.search}`);
  });
  return errors;
}
