/**
 * Start-up time of `apportion serve` started as `npm start` starts it (`node bin/apportion.mjs serve`, running the
 * compiled dist/), on a port and a key prefix of its own: from spawn to
 *   (a) the port accepting connections,
 *   (b) GET /readyz answering 200,
 *   (c) a first allocation answered (a `uniform` strategy, numeric features only),
 *   (d) then an allocation with a `<x>Text` feature answered (an `estimate` strategy: the tokenizer's path).
 * The pipeline and strategies are registered once per tree before the measured runs (the prefix keeps them), so
 * every measured start is a restart of an instance whose data is already in Redis, as after a crash or a roll-out.
 *
 * The baseline, measured in the same run, interleaved with the product's starts: a bare fastify hello-world started
 * the same way (`node` + one file, from spawn to its port accepting connections), so the ratio shows what the product
 * adds over Node and its HTTP framework; `node -e ''` (spawn to exit) is printed too.
 *
 *   node --import tsx bench/startup.ts [--runs 5] [--compare <dir>]
 *
 * `--compare <dir>`: another checkout (e.g. a worktree of main, its dist/ built) measured in the same run, its
 * starts interleaved with this tree's, so before/after share the machine's load.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dropPrefix, flag, REDIS_URL, ROOT } from './lib.js';

const runs = Number(flag('runs', '5'));
const compare = flag('compare', '');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Polls `check` every 5 ms until it is true; fails if the child exits or 120 s pass. */
async function until(child: ChildProcess, what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what}: the process exited with code ${child.exitCode}`);
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within 120 s`);
    await sleep(5);
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(30_000)]);
  if (child.exitCode === null) {
    child.kill('SIGKILL');
    await exited;
  }
}

interface Tree {
  readonly name: string;
  readonly root: string;
  readonly prefix: string;
  readonly admin: string;
  readonly models: string;
  readonly times: { port: number[]; ready: number[]; allocation: number[]; text: number[] };
}

function tree(name: string, root: string): Tree {
  // What `npm start` does first: dist/ rebuilt when src/ is newer (the console's assets must be built already).
  execFileSync(process.execPath, ['scripts/build-dist.mjs', '--if-stale', '--quiet'], { cwd: root, stdio: 'inherit' });
  if (!existsSync(path.join(root, 'dist/web/index.html'))) throw new Error(`${root}: the console is not built (npm run build:console)`);
  return {
    name,
    root,
    prefix: `bench-startup-${randomBytes(4).toString('hex')}`,
    admin: `admin-${randomBytes(12).toString('hex')}`,
    models: mkdtempSync(path.join(tmpdir(), 'apportion-startup-models-')),
    times: { port: [], ready: [], allocation: [], text: [] },
  };
}

function serve(t: Tree, port: number): ChildProcess {
  if (interrupted) throw new Error('interrupted');
  const child = spawn(process.execPath, ['bin/apportion.mjs', 'serve'], {
    cwd: t.root,
    env: {
      ...process.env,
      REDIS_URL,
      PORT: String(port),
      APPORTION_KEY_PREFIX: t.prefix,
      APPORTION_ADMIN_KEY: t.admin,
      APPORTION_SEED_EXAMPLES: 'false',
      APPORTION_MODELS_DIR: t.models,
      APPORTION_DRAIN_GRACE_MS: '0',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function call(t: Tree, port: number, method: string, p: string, body?: unknown): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}${p}`, {
    method,
    headers: { authorization: `Bearer ${t.admin}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

const ALLOCATION = { pipeline: 'research', strategy: 'research-uniform', unitKey: 'user-1', features: { messageCount: 12 } };
const TEXT_ALLOCATION = {
  pipeline: 'research',
  strategy: 'research-estimate',
  unitKey: 'user-2',
  features: { messageCount: 12, documentText: 'Refund request for order 4711: the customer was charged twice for the same invoice. '.repeat(20) },
};

/** Registers the pipeline and strategies of the README's walk-through under the tree's prefix (not measured). */
async function setup(t: Tree): Promise<void> {
  const port = await freePort();
  const child = serve(t, port);
  try {
    await until(child, `${t.name} setup`, async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200);
    const ok = async (r: Promise<Response>) => {
      const res = await r;
      if (!res.ok) throw new Error(`${t.name} setup: ${res.status} ${await res.text()}`);
    };
    await ok(
      call(t, port, 'PUT', '/v1/pipelines/research', {
        defaultTotalTokens: 20000,
        agents: [
          { name: 'planner', priority: 'critical', minTokens: 500, maxTokens: 6000 },
          { name: 'researcher', priority: 'standard', minTokens: 500 },
          { name: 'writer', priority: 'critical', minTokens: 1000 },
          { name: 'formatter', priority: 'background', maxTokens: 800 },
        ],
      }),
    );
    await ok(call(t, port, 'PUT', '/v1/strategies/research-uniform', { pipeline: 'research', kind: 'uniform' }));
    await ok(
      call(t, port, 'PUT', '/v1/strategies/research-estimate', {
        pipeline: 'research',
        kind: 'estimate',
        params: { margin: 1.2, agents: { planner: { base: 600, per: { messageCount: 30 } }, researcher: { base: 800, per: { documentTokens: 0.3 } }, writer: { base: 2000, per: { documentTokens: 0.1 } }, formatter: { base: 200 } } },
      }),
    );
    await ok(call(t, port, 'POST', '/v1/allocations', TEXT_ALLOCATION));
  } finally {
    await stop(child);
  }
}

async function measure(t: Tree): Promise<void> {
  const port = await freePort();
  const t0 = performance.now();
  const child = serve(t, port);
  const since = () => performance.now() - t0;
  try {
    await until(child, `${t.name}: port`, () => accepts(port));
    const a = since();
    await until(child, `${t.name}: readyz`, async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200);
    const b = since();
    const res = await call(t, port, 'POST', '/v1/allocations', ALLOCATION);
    if (res.status !== 200) throw new Error(`${t.name}: first allocation answered ${res.status} ${await res.text()}`);
    const c = since();
    const text = await call(t, port, 'POST', '/v1/allocations', TEXT_ALLOCATION);
    if (text.status !== 200) throw new Error(`${t.name}: allocation with a text feature answered ${text.status} ${await text.text()}`);
    const d = since();
    t.times.port.push(a);
    t.times.ready.push(b);
    t.times.allocation.push(c);
    t.times.text.push(d);
    console.log(`  ${t.name.padEnd(8)} port ${a.toFixed(0).padStart(6)} ms  readyz ${b.toFixed(0).padStart(6)} ms  allocation ${c.toFixed(0).padStart(6)} ms  text allocation ${d.toFixed(0).padStart(6)} ms`);
  } finally {
    await stop(child);
  }
}

const HELLO = `import Fastify from 'fastify';
const app = Fastify();
app.get('/', async () => ({ hello: 'world' }));
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
`;

async function baselines(helloFile: string, fastify: number[], bare: number[]): Promise<void> {
  let t0 = performance.now();
  const node = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => node.once('exit', r));
  bare.push(performance.now() - t0);
  const port = await freePort();
  t0 = performance.now();
  const hello = spawn(process.execPath, [helloFile], { cwd: ROOT, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.add(hello);
  try {
    await until(hello, 'fastify hello-world', () => accepts(port));
    fastify.push(performance.now() - t0);
  } finally {
    await stop(hello);
  }
}

const children = new Set<ChildProcess>();
// Stopped with Ctrl-C or a SIGTERM: the servers it started are stopped and their keys dropped (the finally below).
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    interrupted = true;
    for (const c of children) c.kill('SIGTERM');
  });
}

const trees = [tree('this', ROOT), ...(compare ? [tree('compare', path.resolve(compare))] : [])];
// In the repository (so `fastify` resolves from its node_modules), removed at the end.
const helloFile = path.join(ROOT, 'bench', `.startup-hello-${randomBytes(4).toString('hex')}.mjs`);
writeFileSync(helloFile, HELLO);
const fastify: number[] = [];
const bare: number[] = [];
try {
  console.log(`bench/startup: ${runs} starts of \`node bin/apportion.mjs serve\` per tree (${trees.map((t) => `${t.name} = ${t.root}`).join(', ')}), interleaved with the baselines`);
  for (const t of trees) await setup(t);
  for (let i = 0; i < runs; i++) {
    await baselines(helloFile, fastify, bare);
    console.log(`  baseline fastify hello-world port ${fastify.at(-1)!.toFixed(0).padStart(6)} ms  node -e '' ${bare.at(-1)!.toFixed(0).padStart(6)} ms`);
    for (const t of i % 2 ? [...trees].reverse() : trees) await measure(t);
  }
  const base = median(fastify);
  console.log(`\nmedians of ${runs} (ms; ratio = ÷ the fastify hello-world's start, ${base.toFixed(0)} ms; node -e '' ${median(bare).toFixed(0)} ms)`);
  console.log('tree       port accepting     readyz 200         first allocation   text allocation');
  for (const t of trees) {
    const col = (xs: number[]) => `${median(xs).toFixed(0).padStart(6)} (${(median(xs) / base).toFixed(1).padStart(4)}×)   `;
    console.log(`${t.name.padEnd(9)}  ${col(t.times.port)}${col(t.times.ready)}${col(t.times.allocation)}${col(t.times.text)}`);
  }
} finally {
  rmSync(helloFile, { force: true });
  for (const t of trees) {
    await dropPrefix(t.prefix);
    rmSync(t.models, { recursive: true, force: true });
  }
}
