#!/usr/bin/env node
// The CLI. Runs the compiled dist/ (written by `npm install` and `npm start`, see scripts/build-dist.mjs) when it is
// at least as new as every file under src/: plain Node, no TypeScript loader, so `apportion --help` answers at once.
// Otherwise (never built, or src/ edited since) it runs src/ through tsx, so a checkout works without a build step.
// APPORTION_DEBUG_BIN=1 says on stderr which one it ran and why; APPORTION_FROM_SOURCE=1 runs src/ even when dist/ is fresh.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const debug = process.env.APPORTION_DEBUG_BIN ? (m) => process.stderr.write(`apportion: ${m}\n`) : undefined;

/** The first file under src/ newer than the stamp's time, or undefined when there is none. */
function newerSource(dir, since) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) {
      if (e.name === 'web' && dir.endsWith('console')) continue; // the browser console builds separately
      const found = newerSource(`${dir}/${e.name}`, since);
      if (found) return found;
    } else if (statSync(`${dir}/${e.name}`).mtimeMs > since) return `${dir}/${e.name}`;
  }
  return undefined;
}

function compiled() {
  if (process.env.APPORTION_FROM_SOURCE === '1') return { use: false, why: 'APPORTION_FROM_SOURCE=1' };
  const stamp = `${root}dist/.build-stamp`;
  if (!existsSync(stamp) || !existsSync(`${root}dist/cli/main.js`)) return { use: false, why: 'dist/ is not built (npm install or node scripts/build-dist.mjs builds it)' };
  if (!existsSync(`${root}src`)) return { use: true, why: 'no src/' };
  const newer = newerSource(`${root}src`, statSync(stamp).mtimeMs);
  return newer ? { use: false, why: `dist/ is older than ${newer.slice(root.length)}` } : { use: true, why: 'dist/ is up to date' };
}

const c = compiled();
if (c.use) {
  debug?.(`running dist/ (${c.why})`);
  await import('../dist/cli/main.js');
} else {
  debug?.(`running src/ through tsx (${c.why})`);
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
