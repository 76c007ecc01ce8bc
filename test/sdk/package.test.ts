import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Running } from '../../src/server.js';
import { dropPrefix, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';
import { dirSize } from '../../bench/sdk-size.js';

/**
 * The published artefact, as a user gets it: `npm pack` the workspace (which builds it), install the tarball into
 * an empty project, and use it from plain `node` (no tsx), as ES module and as CommonJS, against a live server
 * over a socket; then type-check a TypeScript consumer of each flavour against the installed declarations.
 */
const run = promisify(execFile);
// The repository itself (not the test runner's compiled mirror, whose package.json links to it): npm packs the real
// package directory.
const ROOT = dirname(realpathSync(fileURLToPath(new URL('../../package.json', import.meta.url))));
const PKG = join(ROOT, 'packages/sdk');
const prefix = testPrefix('sdk-package');
let rt: Running;
let dir: string;
let app: string;
let packed: { filename: string; files: { path: string }[] };

/** The same program in both module systems: register a pipeline, allocate, run a BudgetController, record spans. */
const program = (importLine: string, integrations: string) => `${importLine}
const url = process.argv[2];
const client = new ApportionClient({ url, timeoutMs: 60000 });
await client.request('PUT', '/v1/pipelines/pkg', ${JSON.stringify(FIVE_AGENTS)});
const allocation = await client.allocate({ pipeline: 'pkg', unitKey: 'u1', totalTokens: 10000 });
const agents = Object.keys(allocation.budgets).map((name) => ({ name }));
const controller = new BudgetController(allocation, { agents });
controller.start('reasoner');
controller.record('reasoner', 100);
let exceeded = false;
try { controller.record('reasoner', 10 ** 6); } catch (e) { exceeded = e instanceof BudgetExceededError; }
const spans = new SpanRecorder({ url, flushIntervalMs: 0, timeoutMs: 60000 });
await spans.withSession({ sessionId: 'pkg-' + process.argv[3], decisionId: allocation.decisionId }, () =>
  spans.withAgent('reasoner', async () => { spans.recordCall({ model: 'gpt-4o-mini', provider: 'openai', usage: { input: 120, output: 30 } }); }));
const flushed = await spans.close();
// Local mode: the engine loads on first use; the answer equals the server's; the record is shipped and an outcome joins it.
const sdk = new ns.Apportion({ url, mode: 'local', stream: false, timeoutMs: 60000 });
await sdk.ready();
const mine = await sdk.allocate({ pipeline: 'pkg', unitKey: 'u1', totalTokens: 10000 });
const outcome = await sdk.reportOutcome({ decisionId: mine.decisionId, quality: 0.5 });
await sdk.close();
const local = { same: JSON.stringify(mine.budgets) === JSON.stringify(allocation.budgets) && mine.strategy === allocation.strategy && mine.reason === allocation.reason, accepted: outcome.accepted, shipped: (await sdk.stats()).shipped };
console.log(JSON.stringify({ local, decisionId: allocation.decisionId, total: allocation.totalTokens, consumed: controller.consumed, exceeded, flushed: flushed.accepted,
  exports: ['withAgent', 'recordCall', 'ReservationsClient', 'ApportionHttpError', 'configureSpans'].map((n) => typeof ns[n]),
  integrations: ${integrations} }));
`;

before(async () => {
  rt = await startTest(prefix, { listen: true }, { PORT: '0' });
  dir = mkdtempSync(join(tmpdir(), 'apportion-sdk-'));
  app = join(dir, 'app');
  const out = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: PKG, maxBuffer: 16 << 20 });
  packed = (JSON.parse(out.stdout.slice(out.stdout.indexOf('['))) as (typeof packed)[])[0]!;
  await run('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, version: '1.0.0' }));
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(dir, packed.filename)], { cwd: app });
  // The integrations load without their frameworks installed (optional peers; only their types are imported).
  writeFileSync(
    join(app, 'esm.mjs'),
    program(
      `import * as ns from '@apportion/sdk';\nimport { ApportionClient, BudgetController, BudgetExceededError, SpanRecorder } from '@apportion/sdk';`,
      `[typeof (await import('@apportion/sdk/ai')).apportionMiddleware, typeof (await import('@apportion/sdk/openai-agents')).budgetAgents]`,
    ),
  );
  // CommonJS has no top-level await: the same program inside an async function.
  const cjs =
    program(
      `const ns = require('@apportion/sdk');\nconst { ApportionClient, BudgetController, BudgetExceededError, SpanRecorder } = ns;\n(async () => {`,
      `[typeof require('@apportion/sdk/openai-agents').budgetAgents]`, // the AI SDK is ESM-only, and so is its integration
    ) + '})();\n';
  writeFileSync(join(app, 'cjs.cjs'), cjs);
});

after(async () => {
  await rt.close();
  await dropPrefix(prefix);
  rmSync(dir, { recursive: true, force: true });
});

describe('@apportion/sdk as a packed tarball', () => {
  it('ships compiled ESM + CJS with declarations and nothing of the server', () => {
    const files = packed.files.map((f) => f.path).sort();
    for (const f of ['dist/esm/index.js', 'dist/esm/index.d.ts', 'dist/cjs/index.js', 'dist/cjs/index.d.ts', 'dist/cjs/package.json', 'package.json']) {
      assert.ok(files.includes(f), `tarball has ${f}`);
    }
    assert.deepEqual(files.filter((f) => !f.startsWith('dist/') && f !== 'package.json' && f !== 'README.md'), [], 'only dist, package.json and README');
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules/@apportion/sdk/package.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(manifest.dependencies, undefined, 'no runtime dependencies');
    const installed = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as { packages: Record<string, unknown> };
    assert.deepEqual(Object.keys(installed.packages).filter((p) => p !== ''), ['node_modules/@apportion/sdk'], 'installing it installs nothing else');
    const size = dirSize(join(app, 'node_modules'));
    assert.ok(size <= 5 * 1024 * 1024, `install size ${size} bytes ≤ 5 MB`);
  });

  for (const [flavour, file] of [['ES module', 'esm.mjs'], ['CommonJS', 'cjs.cjs']] as const) {
    it(`works from plain node as ${flavour}: allocate over a socket and in local mode, BudgetController, spans`, async () => {
      const { stdout } = await run(process.execPath, [file, rt.url!, file.split('.')[0]!], { cwd: app });
      const out = JSON.parse(stdout) as { local: { same: boolean; accepted: boolean; shipped: number }; decisionId: string; total: number; consumed: number; exceeded: boolean; flushed: number; exports: string[]; integrations: string[] };
      assert.match(out.decisionId, /^[A-Za-z0-9_-]{16,64}$/);
      assert.equal(out.total, 10_000);
      assert.equal(out.consumed, 1_000_100);
      assert.equal(out.exceeded, true);
      assert.equal(out.flushed, 2, 'the agent span and its call');
      assert.deepEqual(out.exports, ['function', 'function', 'function', 'function', 'function']);
      assert.deepEqual(out.integrations, file === 'esm.mjs' ? ['function', 'function'] : ['function']);
      const tree = (await (await fetch(`${rt.url}/v1/sessions/pkg-${file.split('.')[0]}/cost-tree`)).json()) as { total: { tokens: { input: number } } };
      assert.equal(tree.total.tokens.input, 120);
      assert.deepEqual(out.local, { same: true, accepted: true, shipped: 1 }, 'local mode');
    });
  }

  it('type-checks TypeScript consumers of both flavours against the installed declarations', async () => {
    const use = `const c = new ApportionClient({ url: 'http://x' });\nconst p: Promise<Allocation> = c.allocate({ pipeline: 'p' });\nconst b = new BudgetController({ budgets: { a: { tokens: 1 } } }, { agents: [{ name: 'a' }] });\nconst n: number = b.available('a');\nexport { p, n };\n`;
    writeFileSync(join(app, 'consumer.mts'), `import { ApportionClient, BudgetController, type Allocation } from '@apportion/sdk';\n${use}`);
    writeFileSync(join(app, 'consumer.cts'), `import { ApportionClient, BudgetController, type Allocation } from '@apportion/sdk';\n${use}`);
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')] },
        files: ['consumer.mts', 'consumer.cts'],
      }),
    );
    await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: app }).catch((e: { stdout?: string }) => {
      assert.fail(`tsc: ${e.stdout ?? String(e)}`);
    });
  });
});
