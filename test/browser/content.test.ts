import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { buildConsole } from '../../src/console/build.js';
import { mulberry32 } from '../../src/learner/rng.js';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { CHROMIUM, CHROMIUM_ARGS, openPage, watchErrors } from './harness.js';

/**
 * The console with what users may name things: markup and script in descriptions, session ids, agent names and
 * customer labels; right-to-left and emoji text; ids, names and labels as long as the API takes, without a space;
 * a deep cost tree; sub-cent budget amounts and costs under a millionth of a dollar. Generated from a seed, sent
 * through the HTTP API of a real server, read by Chromium: nothing runs as script, no column, link, button or input
 * is pushed out of view, and the figures are the API's.
 */
declare const document: {
  documentElement: { scrollWidth: number };
  querySelectorAll(selector: string): ArrayLike<{ getBoundingClientRect(): { left: number; right: number; width: number }; tagName: string; textContent: string | null }>;
};
declare const window: { innerWidth: number; __xss?: unknown };
const prefix = testPrefix('console-content');
let rt: Running;
let browser: Browser;
let page: Page;
let errors: string[];

const rng = mulberry32(20261204);
const word = (n: number) => Array.from({ length: n }, () => String.fromCharCode(97 + Math.floor(rng() * 26))).join('');
const HOSTILE = ['<script>window.__xss=1</script>', '<img src=x onerror="window.__xss=2">', `"'><svg onload=window.__xss=3>`, 'مرحبا \u202Egnp.exe', '🚀👩‍👩‍👧‍👦 ✓ 中文'];
const PIPE = `p${word(127)}`; // the longest id
const EXP = `${PIPE.slice(0, 126)}-e`;
const VARIANT = `v${word(63)}`; // the longest variant name
const TENANT = `t${word(127)}`; // the longest scope name
const SESSION = word(256); // the longest session id, no space
const CUSTOMER = word(256);
const DEPTH = 40;

async function call<T = unknown>(method: string, url: string, body?: unknown): Promise<T> {
  const res = await fetch(`${rt.url}${url}`, { method, headers: body !== undefined ? { 'content-type': 'application/json' } : {}, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${url}: ${res.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

before(async () => {
  await buildConsole();
  rt = await startTest(prefix, { listen: true }, { APPORTION_MODELS_DIR: mkdtempSync(path.join(tmpdir(), 'apportion-content-models-')) });
  const agents = [{ name: `A${word(63)}`, priority: 'critical', minTokens: 100 }, { name: 'writer', priority: 'standard' }];
  await call('PUT', `/v1/pipelines/${PIPE}`, { defaultTotalTokens: 10_000, description: `${HOSTILE.join(' ')} ${word(1999 - HOSTILE.join(' ').length)}`, agents });
  await call('PUT', '/v1/strategies/s-uniform', { pipeline: PIPE, kind: 'uniform', description: HOSTILE[0] });
  await call('PUT', '/v1/strategies/s-static', { pipeline: PIPE, kind: 'static', description: HOSTILE[1], params: { shares: { [agents[0]!.name]: 0.6, writer: 0.4 } } });
  await call('PUT', `/v1/experiments/${EXP}`, {
    pipeline: PIPE,
    description: HOSTILE[2],
    variants: [
      { name: 'control', strategy: 's-uniform', weight: 1 },
      { name: VARIANT, strategy: 's-static', weight: 1 },
    ],
    control: 'control',
    coverage: 1,
  });
  await call('POST', `/v1/experiments/${EXP}/start`, {});

  const t0 = Date.now() - 3_600_000;
  const spans: Record<string, unknown>[] = [
    { traceId: 'long', spanId: 'root', sessionId: SESSION, customer: CUSTOMER, team: HOSTILE[3], agent: HOSTILE[0], kind: 'agent', start: t0, end: t0 + 9000 },
    { traceId: 'long', spanId: 'c1', parentSpanId: 'root', agent: word(128), model: 'gpt-4o', provider: 'openai', usage: { input: 1200, output: 300 }, start: t0 + 1000, end: t0 + 2000 },
    // One input token of gpt-4o-mini: $0.00000015, under what six decimals show.
    { traceId: 'tiny', spanId: 'c', sessionId: 'tiny-session', customer: 'tiny-customer', agent: HOSTILE[4], model: 'gpt-4o-mini', provider: 'openai', usage: { input: 1, output: 0 }, start: t0, end: t0 + 10 },
    { traceId: 'deep', spanId: 'root', sessionId: 'deep-session', agent: 'coordinator', kind: 'agent', start: t0, end: t0 + 9000 },
  ];
  for (let d = 1; d <= DEPTH; d++) spans.push({ traceId: 'deep', spanId: `d${d}`, parentSpanId: d === 1 ? 'root' : `d${d - 1}`, agent: `sub-${d}`, model: 'gpt-4o-mini', provider: 'openai', usage: { input: 1000, output: 100 }, start: t0 + d, end: t0 + d + 1 });
  await call('POST', '/v1/spans', { spans });

  // $7,422.60785074 allocated, a $0.004 reservation, and a second tenant.
  await call('PUT', '/v1/budgets', { scope: `tenant:${TENANT}`, unit: 'USD_MICROCENTS', allocated: 742_260_785_074 });
  await call('PUT', '/v1/budgets', { scope: `tenant:${TENANT}/workspace:${word(128)}/agent:${word(128)}`, unit: 'USD_MICROCENTS', allocated: 1_000_000_000 });
  await call('POST', '/v1/reservations', { scope: `tenant:${TENANT}`, unit: 'USD_MICROCENTS', amount: 400_000, idempotencyKey: 'sub-cent', ttlMs: 3_600_000 });
  await call('PUT', '/v1/budgets', { scope: 'tenant:second', unit: 'TOKENS', allocated: 5000 });

  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  errors = watchErrors(page);
});
after(async () => {
  await browser?.close();
  await rt?.close();
  await dropPrefix(prefix);
});

/** Nothing ran as script; the page is no wider than the window; every link, button and input is within it. */
async function assertContained(what: string): Promise<void> {
  const r = await page.evaluate(() => ({
    xss: window.__xss,
    width: document.documentElement.scrollWidth,
    inner: window.innerWidth,
    outside: Array.from(document.querySelectorAll('a, button, input'))
      .filter((e) => {
        const b = e.getBoundingClientRect();
        return b.width > 0 && (b.right > window.innerWidth || b.left < 0);
      })
      .map((e) => `${e.tagName} ${(e.textContent ?? '').slice(0, 30)}`),
  }));
  assert.equal(r.xss, undefined, `${what}: a name ran as script`);
  assert.deepEqual(r.outside, [], `${what}: controls out of view`);
  assert.ok(r.width <= r.inner, `${what}: the page is ${r.width} px wide in a ${r.inner} px window`);
}

describe('console with generated names, long strings and small amounts', () => {
  it('Experiments and an experiment: markup is text, the longest ids and variant names wrap, the buttons stay in view', async () => {
    await openPage(page, rt.url!, 'experiments');
    assert.ok((await page.locator('[data-testid=experiments]').innerText()).includes(EXP));
    assert.match(await page.locator('[data-testid=experiments]').innerText(), /running/);
    await assertContained('experiments');
    await openPage(page, rt.url!, `experiments/${encodeURIComponent(EXP)}`);
    assert.ok((await page.locator('main').innerText()).includes(HOSTILE[2]!), 'the description is shown as text');
    assert.equal(await page.locator(`button[data-action=promote]`).count(), 1);
    await assertContained('experiment');
  });

  it('an experiment action is sent once however often it is clicked while on its way', async () => {
    await openPage(page, rt.url!, `experiments/${encodeURIComponent(EXP)}`);
    const sent: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    await page.route(
      (u) => u.pathname.endsWith('/pause'),
      async (route) => {
        sent.push(route.request().url());
        await held;
        await route.continue();
      },
    );
    await page.click('button[data-action=pause]');
    await page.waitForFunction(() => (globalThis as unknown as { document: { querySelector(s: string): { disabled: boolean } | null } }).document.querySelector('button[data-action=pause]')?.disabled === true);
    await page.click('button[data-action=pause]', { force: true });
    await page.keyboard.press('Enter');
    release();
    await page.waitForSelector('[data-ready="true"] button[data-action=resume]');
    await page.unrouteAll();
    assert.equal(sent.length, 1, sent.join('\n'));
    await page.click('button[data-action=resume]');
    await page.waitForSelector('[data-ready="true"] button[data-action=pause]');
  });

  it('Costs: opening an empty session id says which field needs what', async () => {
    await openPage(page, rt.url!, 'costs');
    await page.fill('input[aria-label="session id"]', '   ');
    await page.keyboard.press('Enter');
    assert.match(await page.locator('[data-testid=open-problem]').innerText(), /^session id: enter the id of a session/);
    assert.equal(await page.evaluate(() => (globalThis as unknown as { document: { activeElement: { getAttribute(n: string): string | null } | null } }).document.activeElement?.getAttribute('aria-label')), 'session id');
  });

  it('Pipelines: a 2,000-character description and the longest ids stay within the page', async () => {
    await openPage(page, rt.url!, 'pipelines');
    const section = await page.locator(`[data-testid="pipeline-${PIPE}"]`).innerText();
    for (const s of HOSTILE) assert.ok(section.includes(s), `shown as text: ${s}`);
    await assertContained('pipelines');
  });

  it('Costs: hostile and 256-character session ids and labels are text; a cost under a millionth of a dollar is not $0', async () => {
    await openPage(page, rt.url!, 'costs');
    assert.ok((await page.locator('[data-testid=sessions]').innerText()).includes(SESSION));
    await assertContained('costs');
    const showback = await page.locator('[data-testid=showback]').innerText();
    assert.match(showback, /tiny-customer\t1\t1\t\$0\.00000015\t/);
    assert.equal(await page.locator('.tabs button[aria-pressed=true]').innerText(), 'customer');
    // Keyboard: Tab from the customer tab reaches the next one, Enter selects it.
    await page.focus('.tabs button:text-is("customer")');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.waitForSelector('[data-dim=agent]');
    assert.equal(await page.locator('.tabs button[aria-pressed=true]').innerText(), 'agent');
    assert.ok((await page.locator('[data-testid=showback]').innerText()).includes(HOSTILE[4]!));
    await assertContained('costs by agent');

    await openPage(page, rt.url!, 'costs/session/tiny-session');
    assert.match(await page.locator('[data-testid=session-total]').innerText(), /^Total \$0\.00000015 over 1 calls/);
    assert.doesNotMatch(await page.locator('[data-testid=cost-tree]').innerText(), /\$0\t/);

    await openPage(page, rt.url!, `costs/session/${SESSION}`);
    assert.ok((await page.locator('[data-testid=cost-tree]').innerText()).includes(HOSTILE[0]!));
    await assertContained('a session with the longest id');
  });

  it(`a cost tree ${DEPTH} levels deep keeps its figures in view and says how deep a node is`, async () => {
    await openPage(page, rt.url!, 'costs/session/deep-session');
    const rows = await page.locator('[data-testid=cost-tree] tbody tr').allInnerTexts();
    assert.equal(rows.length, DEPTH + 1);
    assert.match(rows.at(-1)!, new RegExp(`└ \\(depth ${DEPTH}\\) sub-${DEPTH} · llm · gpt-4o-mini`));
    await assertContained('deep cost tree');
  });

  it('Budgets: dollars to the microcent, the longest scope names within the page, a failed tenant read shown in place', async () => {
    await openPage(page, rt.url!, 'budgets');
    const tree = await page.locator(`[data-testid="budget-tree-${TENANT}"]`).innerText();
    assert.match(tree, /\$7,422\.60785074\t\$0\.004\t\$0\.00\t\$7,422\.60385074\t/);
    assert.match(await page.locator('[data-testid=reservations]').innerText(), /\$0\.004\t/);
    await assertContained('budgets');

    // One tenant's balances fail: that tenant says so, the other is shown.
    await page.route(
      (u) => u.pathname === '/v1/balances' && u.searchParams.get('scope') === 'tenant:second',
      (route) => route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ statusCode: 503, code: 'STORE_UNAVAILABLE', error: 'Service Unavailable', message: 'The store is unreachable. Retry.' }) }),
    );
    await page.goto('about:blank');
    await openPage(page, rt.url!, 'budgets');
    assert.match(await page.locator('[data-testid=budget-tree-second]').innerText(), /Balances unavailable \(STORE_UNAVAILABLE\)/);
    assert.match(await page.locator(`[data-testid="budget-tree-${TENANT}"]`).innerText(), /\$7,422\.60785074/);
    await page.unrouteAll();
    const failed = errors.indexOf('503 GET /v1/balances?scope=tenant%3Asecond');
    assert.ok(failed >= 0, errors.join('\n'));
    errors.splice(failed, 1);
  });

  it('rendered every page without a script error or a failed request', () => {
    assert.deepEqual(errors, []);
  });
});
