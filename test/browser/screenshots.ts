import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { testPrefix } from '../helpers/env.js';
import { CHROMIUM, openPage, stage } from './harness.js';

/**
 * `npm run screenshots`: a fresh server filled by the demo, then a full-page PNG of each console page in
 * docs/screenshots/ (linked from the README). Without the browser it says which and how to install it, exit 1, no
 * stack (test/browser/screenshots.test.ts).
 */
if (!existsSync(CHROMIUM)) {
  process.stderr.write(`${CHROMIUM} not found: npm run screenshots needs Debian's chromium (apt-get install -y chromium), or APPORTION_CHROMIUM set to another Chromium's path\n`);
  process.exit(1);
}
const out = fileURLToPath(new URL('../../docs/screenshots/', import.meta.url));
mkdirSync(out, { recursive: true });
const s = await stage(testPrefix('screenshots'), {}, 600);
try {
  const page = await s.browser.newPage({ viewport: { width: 1360, height: 900 } });
  const shots: [string, string][] = [
    ['experiments', 'experiments'],
    ['experiment', 'experiments/demo-static-vs-estimate'],
    ['learner', 'learner'],
    ['budgets', 'budgets'],
    ['costs', 'costs'],
    ['cost-tree', 'costs/session/demo-session-1'],
    ['pipelines', 'pipelines'],
  ];
  for (const [name, hash] of shots) {
    await openPage(page, s.url, hash);
    await page.screenshot({ path: `${out}${name}.png`, fullPage: true });
    process.stdout.write(`docs/screenshots/${name}.png\n`);
  }
} finally {
  await s.close();
}
