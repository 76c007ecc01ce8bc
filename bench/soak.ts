/**
 * Soak test of the whole service for leaks and unbounded growth.
 *
 *   node --import tsx bench/soak.ts [--minutes 4] [--seed 1] [--sample-sec 20] [--concurrency 6]
 *                                   [--redis-port 0] [--port 0] [--reward-window 120] [--rate 0] [--out FILE.json]
 *   node --import tsx bench/soak.ts --report FILE.json      # the report of a saved run
 *
 * Starts a redis-server of its own (no persistence; `--redis-port`, default any free port) and the real server on
 * it as the README does (`node bin/apportion.mjs serve`: API + workers, and the learner's trainer child), with auth
 * on, then drives a seeded, generated mix of every surface for `--minutes`:
 *
 * - pipelines of 3–6 agents created and later deleted, each with strategies of every kind (uniform, static,
 *   estimate, priority-pool, learned with declared numeric, categorical and token features);
 * - rollout experiments that are created, started, ramped (the rollout job, and `evaluate`), paused, resumed,
 *   stopped or rolled back, and deleted;
 * - allocations with random features (new unit keys, new categorical values, text features), outcomes for most of
 *   them (some reported twice, some late, some never);
 * - hierarchical budgets (tenant → workspace → workflow → agent) per tenant, reservations committed, released,
 *   drawn from or left to expire, funds and debits, budgets deleted when the tenant retires;
 * - cost spans through the SDK's span recorder (`withSession`/`withAgent`/`recordCall`) and OTLP/HTTP JSON;
 * - tenants whose API keys are created, used (client, analyst and admin roles), and revoked; made-up keys;
 * - the console: its page and assets, browser sessions (sign in, whoami, console endpoints, sign out), and the
 *   read endpoints (results, audit, stats, models, OPE, shadow, envelopes, reports, cost trees, balances, sync).
 *
 * Windows are shortened (`--reward-window` seconds for decision records, the markers' grace at its 60 s minimum,
 * idempotency records 120 s) so that structures bounded by a TTL reach their plateau within the run.
 *
 * Every `--sample-sec` it samples the server's RSS, heap and event-loop lag (its `/metrics`), the trainer child's
 * RSS (/proc), Redis `used_memory`, and every key under the run's prefix (SCAN): keys, keys without a TTL, elements
 * (HLEN/SCARD/ZCARD/LLEN/XLEN) and bytes (MEMORY USAGE), grouped by pattern (ids replaced with `*`). At the end it
 * prints (bench/_soak-report.ts), per process figure and per key pattern, the growth per 10,000 requests in each
 * half of the run (least-squares slope over that half's samples) and the ratio of the second half's to the first's:
 * a bounded structure stops growing (ratio near 0), a leak keeps growing (near 1 or more). The baseline of each
 * ratio is the same run's first half. A pattern whose keys or elements without a TTL kept growing through the second
 * half is flagged `GROWS`, with the documented bound when it has one (docs/architecture.md, "What Redis keeps, and
 * for how long"); the last line names those without one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { SpanRecorder } from '../packages/sdk/src/context.js';
import { freePort } from '../test/helpers/private-redis.js';
import { soakReport, type PatternStat, type RunInfo, type Sample } from './_soak-report.js';
import { flag, ROOT } from './lib.js';

const MINUTES = Number(flag('minutes', '4'));
const SEED = Number(flag('seed', '1'));
const SAMPLE_SEC = Number(flag('sample-sec', '20'));
const CONCURRENCY = Number(flag('concurrency', '6'));
const REWARD_WINDOW = Number(flag('reward-window', '120'));
/** Most requests a second over all loops (0: as fast as the server answers). A fixed rate keeps runs comparable. */
const RATE = Number(flag('rate', '0'));
const OUT = flag('out', '');
const REPORT = flag('report', '');
if (REPORT) {
  // Only the report, from a saved run (`--out`).
  const saved = JSON.parse(readFileSync(REPORT, 'utf8')) as { run: RunInfo; samples: Sample[] };
  for (const l of soakReport(saved.samples, saved.run)) console.log(l);
  process.exit(0);
}
const PREFIX = 'soak';
const log = (s: string) => process.stderr.write(`  … ${s}\n`);

// ---------------------------------------------------------------------------------------------------------------
// Seeded randomness (mulberry32).
let rngState = SEED >>> 0 || 1;
function rand(): number {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
const chance = (p: number) => rand() < p;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let serial = 0;
const nextId = (stem: string) => `${stem}${++serial}x${int(0, 0xffff).toString(16)}`;

// ---------------------------------------------------------------------------------------------------------------
// Redis and server.
const redisPort = Number(flag('redis-port', '0')) || (await freePort());
const redisDir = mkdtempSync(path.join(tmpdir(), 'apportion-soak-redis-'));
const redisProc = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', redisDir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
const REDIS_URL = `redis://127.0.0.1:${redisPort}`;
const raw = new Redis(REDIS_URL, { maxRetriesPerRequest: 3, retryStrategy: (n) => Math.min(n * 50, 500) });
raw.on('error', () => undefined);
for (let i = 0; ; i++) {
  if ((await raw.ping().catch(() => '')) === 'PONG') break;
  if (i > 200) throw new Error('redis-server did not start');
  await sleep(50);
}

const adminKey = `admin-${randomBytes(12).toString('hex')}`;
const port = Number(flag('port', '0')) || (await freePort());
const modelsDir = mkdtempSync(path.join(tmpdir(), 'apportion-soak-models-'));
const serverLog = path.join(tmpdir(), `apportion-soak-${process.pid}.log`);
const logFd = openSync(serverLog, 'w');
const server: ChildProcess = spawn(process.execPath, ['bin/apportion.mjs', 'serve'], {
  cwd: ROOT,
  env: {
    ...process.env,
    PORT: String(port),
    REDIS_URL,
    APPORTION_KEY_PREFIX: PREFIX,
    APPORTION_ADMIN_KEY: adminKey,
    LOG_LEVEL: 'warn',
    APPORTION_MODELS_DIR: modelsDir,
    APPORTION_REWARD_WINDOW_SECONDS: String(REWARD_WINDOW),
    APPORTION_OUTCOME_MARKER_GRACE_SECONDS: '60',
    APPORTION_IDEMPOTENCY_TTL_SECONDS: '120',
    APPORTION_SESSION_TTL_SECONDS: '60',
    APPORTION_ROLLOUT_INTERVAL_MS: '2000',
    APPORTION_REDIS_COMMAND_TIMEOUT_MS: '5000',
  },
  stdio: ['ignore', logFd, logFd],
});
const URL_ = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  const ok = await fetch(`${URL_}/readyz`).then(
    (r) => r.ok,
    () => false,
  );
  if (ok) break;
  if (server.exitCode !== null) throw new Error(`server exited (${server.exitCode}); log: ${serverLog}`);
  if (i > 600) throw new Error(`server not ready within 60 s; log: ${serverLog}`);
  await sleep(100);
}
log(`server ${URL_} (pid ${server.pid}) on redis ${REDIS_URL}, log ${serverLog}`);

// ---------------------------------------------------------------------------------------------------------------
// HTTP.
let requests = 0;
const statuses = new Map<string, number>();
const fivexx: string[] = [];
interface Res {
  status: number;
  body: any;
  headers: Headers;
}
async function call(method: string, p: string, body?: unknown, o: { key?: string; cookie?: string; op?: string; raw?: string; headers?: Record<string, string> } = {}): Promise<Res> {
  requests++;
  const headers: Record<string, string> = { ...o.headers };
  if (body !== undefined || o.raw !== undefined) headers['content-type'] ??= 'application/json';
  if (o.cookie) {
    headers.cookie = o.cookie;
    headers['x-apportion-csrf'] = '1';
  } else headers.authorization = `Bearer ${o.key ?? adminKey}`;
  let res: Response;
  try {
    res = await fetch(`${URL_}${p}`, { method, headers, ...(o.raw !== undefined ? { body: o.raw } : body !== undefined ? { body: JSON.stringify(body) } : {}) });
  } catch (e) {
    const k = `${o.op ?? method} ERR`;
    statuses.set(k, (statuses.get(k) ?? 0) + 1);
    return { status: 0, body: { error: String(e) }, headers: new Headers() };
  }
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON (the console page, metrics) */
  }
  const code = res.status >= 400 && parsed && typeof parsed === 'object' && typeof parsed.code === 'string' ? ` ${parsed.code}` : '';
  const k = `${o.op ?? `${method} ${p.split('?')[0]!.replace(/[^/]*\d[^/]*/g, ':id')}`} ${res.status}${code}`;
  statuses.set(k, (statuses.get(k) ?? 0) + 1);
  if (res.status >= 500 && fivexx.length < 20) fivexx.push(`${method} ${p} ${res.status} ${text.slice(0, 200)}`);
  return { status: res.status, body: parsed, headers: res.headers };
}

// ---------------------------------------------------------------------------------------------------------------
// The generated world.
interface Agent {
  name: string;
  priority: 'critical' | 'standard' | 'background';
}
interface PipelineState {
  id: string;
  agents: Agent[];
  strategies: string[];
  learned?: string;
  experiments: Set<string>;
  tenant?: string;
  born: number;
}
const pipelines = new Map<string, PipelineState>();
const experiments = new Map<string, { id: string; pipeline: string; state: 'draft' | 'running' | 'paused' | 'ended' }>();
const units: string[] = [];
const taskValues: string[] = ['refund', 'technical', 'billing'];
interface Pending {
  decisionId: string;
  agents: string[];
  due: number;
  twice: boolean;
}
const pendingOutcomes: Pending[] = [];
const recentDecisions: string[] = [];
interface TenantState {
  id: string;
  keys: { id: string; key: string; role: string }[];
  reservations: string[];
  scopes: string[];
  born: number;
}
const tenants = new Map<string, TenantState>();
const sessions: string[] = [];

const AGENT_NAMES = ['planner', 'retriever', 'reasoner', 'writer', 'critic', 'formatter', 'router', 'coder'];
const MODELS = ['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-opus-4-1', 'mystery-model-x'];

function features(): Record<string, unknown> {
  if (chance(0.05)) taskValues.push(nextId('task'));
  const f: Record<string, unknown> = {
    messageCount: int(1, 60),
    documentTokens: int(0, 40_000),
    taskType: chance(0.1) ? nextId('t') : pick(taskValues),
  };
  if (chance(0.15)) f.documentText = Array.from({ length: int(5, 120) }, () => pick(['alpha', 'beta', 'refund', 'invoice', 'crash', 'log', `w${int(0, 5000)}`])).join(' ');
  if (chance(0.2)) f[`extra${int(0, 3)}`] = chance(0.5) ? int(0, 100) : nextId('v');
  return f;
}
function unitKey(): string {
  if (units.length < 50 || chance(0.3)) {
    const u = nextId('user');
    units.push(u);
    if (units.length > 5000) units.splice(0, 1000);
    return u;
  }
  return pick(units);
}

async function createPipeline(tenant?: TenantState): Promise<void> {
  const id = nextId('pl');
  const n = int(3, 6);
  const names = [...AGENT_NAMES].sort(() => rand() - 0.5).slice(0, n);
  const agents: Agent[] = names.map((name, i) => ({ name, priority: i === 0 ? 'critical' : pick(['critical', 'standard', 'background'] as const) }));
  const key = tenant?.keys.find((k) => k.role === 'admin')?.key;
  const r = await call(
    'PUT',
    `/v1/pipelines/${id}`,
    {
      defaultTotalTokens: int(4000, 30_000),
      agents: agents.map((a) => ({ name: a.name, priority: a.priority, minTokens: int(50, 300), ...(chance(0.5) ? { maxTokens: int(3000, 9000) } : {}) })),
    },
    { ...(key ? { key } : {}), op: 'pipeline put' },
  );
  if (r.status >= 300) return;
  const st: PipelineState = { id, agents, strategies: [], experiments: new Set(), born: Date.now(), ...(tenant ? { tenant: tenant.id } : {}) };
  const put = async (kind: string, params?: object) => {
    const sid = nextId(`${kind.replace('-', '')}-`);
    const s = await call('PUT', `/v1/strategies/${sid}`, { pipeline: id, kind, ...(params ? { params } : {}) }, { ...(key ? { key } : {}), op: 'strategy put' });
    if (s.status < 300) st.strategies.push(sid);
    return sid;
  };
  const est = () => ({ margin: 1 + rand() / 2, taskFeature: 'taskType', agents: Object.fromEntries(agents.map((a) => [a.name, { base: int(100, 1500), per: { messageCount: int(1, 50), documentTokens: rand() / 4 }, task: { refund: 1, technical: 1.5 } }])) });
  await put('uniform');
  await put('static', { shares: Object.fromEntries(agents.map((a) => [a.name, int(1, 10)])) });
  await put('estimate', est());
  await put('priority-pool', { estimate: { margin: 1.2, agents: Object.fromEntries(agents.map((a) => [a.name, { base: int(100, 1500), per: { messageCount: int(1, 50) } }])) } });
  if (chance(0.7)) {
    await call(
      'PUT',
      `/v1/pipelines/${id}/features`,
      { features: [{ name: 'taskType', type: 'categorical', values: ['refund', 'technical', 'billing'] }, { name: 'messageCount', type: 'numeric', transform: 'log' }, { name: 'document', type: 'tokens' }, { name: 'extra1', type: 'categorical', hashBuckets: 16 }] },
      { ...(key ? { key } : {}), op: 'features put' },
    );
    const sid = nextId('learned-');
    const s = await call('PUT', `/v1/strategies/${sid}`, { pipeline: id, kind: 'learned', params: { costWeight: rand(), shadow: chance(0.5), trainEvery: int(150, 400) } }, { ...(key ? { key } : {}), op: 'strategy put' });
    if (s.status < 300) {
      st.strategies.push(sid);
      st.learned = sid;
    }
  }
  pipelines.set(id, st);
}

async function deletePipeline(st: PipelineState): Promise<void> {
  for (const e of st.experiments) await endAndDeleteExperiment(e);
  const r = await call('DELETE', `/v1/pipelines/${st.id}`, undefined, { op: 'pipeline delete' });
  if (r.status < 300 || r.status === 404) pipelines.delete(st.id);
}

async function createExperiment(): Promise<void> {
  const candidates = [...pipelines.values()].filter((p) => p.strategies.length >= 2 && p.experiments.size === 0 && p.id !== 'support-triage');
  if (candidates.length === 0) return;
  const p = pick(candidates);
  const id = nextId('exp');
  const [a, b] = [...p.strategies].sort(() => rand() - 0.5);
  const type = pick(['ab', 'ab', 'ab', 'holdout', 'probe'] as const);
  const body =
    type === 'holdout'
      ? { pipeline: p.id, type: 'holdout', coverage: 0.1 }
      : type === 'probe'
        ? { pipeline: p.id, type: 'probe', coverage: 0.2, probe: { fraction: 0.5 } }
        : {
          pipeline: p.id,
          variants: [
            { name: 'control', strategy: a, weight: 1 },
            { name: 'treat', strategy: b, weight: 1 },
          ],
          coverage: 0.5 + rand() / 2,
          ...(chance(0.5) ? { targeting: { all: [{ attribute: 'taskType', op: 'in', values: ['refund', 'billing'] }] } } : {}),
          guardrails: [{ metric: 'quality', maxRegression: 0.05 }],
          ramp: { steps: [{ share: 0.2, minSamples: int(5, 40) }, { share: 0.6, minSamples: int(20, 80) }, { share: 1 }] },
        };
  const r = await call('PUT', `/v1/experiments/${id}`, body, { op: 'experiment put' });
  if (r.status >= 300) return;
  experiments.set(id, { id, pipeline: p.id, state: 'draft' });
  p.experiments.add(id);
  const s = await call('POST', `/v1/experiments/${id}/start`, undefined, { op: 'experiment start' });
  if (s.status < 300) experiments.get(id)!.state = 'running';
}

async function endAndDeleteExperiment(id: string): Promise<void> {
  const e = experiments.get(id);
  if (!e) return;
  if (e.state === 'running' || e.state === 'paused') {
    if (chance(0.3)) await call('POST', `/v1/experiments/${id}/rollback`, { reason: 'soak' }, { op: 'experiment rollback' });
    await call('POST', `/v1/experiments/${id}/stop`, undefined, { op: 'experiment stop' });
  }
  const d = await call('DELETE', `/v1/experiments/${id}`, undefined, { op: 'experiment delete' });
  if (d.status < 300 || d.status === 404) {
    experiments.delete(id);
    pipelines.get(e.pipeline)?.experiments.delete(id);
  }
}

async function experimentStep(): Promise<void> {
  const all = [...experiments.values()];
  if (all.length === 0) return;
  const e = pick(all);
  const r = rand();
  if (r < 0.3) await call('GET', `/v1/experiments/${e.id}/results`, undefined, { op: 'experiment results' });
  else if (r < 0.45) await call('GET', `/v1/experiments/${e.id}/audit`, undefined, { op: 'experiment audit' });
  else if (r < 0.6) await call('POST', `/v1/experiments/${e.id}/evaluate`, undefined, { op: 'experiment evaluate' });
  else if (r < 0.7 && e.state === 'running') {
    if ((await call('POST', `/v1/experiments/${e.id}/pause`, undefined, { op: 'experiment pause' })).status < 300) e.state = 'paused';
  } else if (r < 0.8 && e.state === 'paused') {
    if ((await call('POST', `/v1/experiments/${e.id}/resume`, undefined, { op: 'experiment resume' })).status < 300) e.state = 'running';
  } else if (r < 0.9) await endAndDeleteExperiment(e.id);
}

async function allocate(): Promise<void> {
  const all = [...pipelines.values()];
  if (all.length === 0) return;
  const p = pick(all);
  const tenant = p.tenant ? tenants.get(p.tenant) : undefined;
  const key = tenant?.keys.find((k) => k.role === 'client')?.key;
  const body: Record<string, unknown> = { pipeline: p.id, unitKey: unitKey(), features: features() };
  if (chance(0.3) && p.strategies.length) body.strategy = pick(p.strategies);
  if (chance(0.1)) body.totalTokens = int(2000, 40_000);
  const r = await call('POST', '/v1/allocations', body, { ...(key ? { key } : {}), op: 'allocate' });
  if (r.status !== 200) return;
  const decisionId = r.body.decisionId as string;
  recentDecisions.push(decisionId);
  if (recentDecisions.length > 2000) recentDecisions.splice(0, 500);
  const x = rand();
  if (x < 0.15) return; // never reported
  const late = x > 0.85;
  pendingOutcomes.push({ decisionId, agents: Object.keys(r.body.budgets ?? {}), due: Date.now() + (late ? int(30_000, 150_000) : int(0, 3000)), twice: chance(0.1) });
}

async function reportOutcomes(): Promise<void> {
  const now = Date.now();
  const due = pendingOutcomes.filter((o) => o.due <= now).slice(0, 20);
  for (const o of due) pendingOutcomes.splice(pendingOutcomes.indexOf(o), 1);
  for (const o of due) {
    const body = {
      decisionId: o.decisionId,
      quality: Math.round(rand() * 1000) / 1000,
      costUsd: Math.round(rand() * 1e4) / 1e6,
      usage: Object.fromEntries(o.agents.map((a) => [a, { inputTokens: int(10, 4000), outputTokens: int(10, 2000), truncated: chance(0.05) }])),
    };
    await call('POST', '/v1/outcomes', body, { op: 'outcome' });
    if (o.twice) await call('POST', '/v1/outcomes', body, { op: 'outcome duplicate' });
  }
}

async function createTenant(): Promise<void> {
  const id = nextId('tn');
  const st: TenantState = { id, keys: [], reservations: [], scopes: [], born: Date.now() };
  for (const role of ['client', 'analyst', 'admin']) {
    const r = await call('POST', '/v1/keys', { tenant: id, role, name: `${role} of ${id}` }, { op: 'key create' });
    if (r.status < 300) st.keys.push({ id: r.body.id, key: r.body.key, role });
  }
  const unit = pick(['USD_MICROCENTS', 'TOKENS']);
  const ws = `tenant:${id}/workspace:w${int(1, 3)}`;
  const wf = `${ws}/workflow:f${int(1, 3)}`;
  const scopes = [`tenant:${id}`, ws, wf, `${wf}/agent:a${int(1, 2)}`, `${wf}/agent:b${int(3, 4)}`];
  for (const [i, scope] of scopes.entries()) {
    const r = await call('PUT', '/v1/budgets', { scope, unit, allocated: int(5, 50) * 10 ** (9 - i), ...(i >= 3 ? { overagePolicy: pick(['REJECT', 'ALLOW_IF_AVAILABLE']) } : {}) }, { op: 'budget put' });
    if (r.status < 300) st.scopes.push(`${unit} ${scope}`);
  }
  tenants.set(id, st);
  if (chance(0.5)) await createPipeline(st);
}

/** Tenants being retired: their budgets are deleted once no reservation holds an amount at them (409 until then). */
const retiring: TenantState[] = [];
async function retireTenant(st: TenantState): Promise<void> {
  for (const p of [...pipelines.values()]) if (p.tenant === st.id) await deletePipeline(p);
  for (const k of st.keys) await call('DELETE', `/v1/keys/${k.id}`, undefined, { op: 'key revoke' });
  tenants.delete(st.id);
  retiring.push(st);
  await deleteBudgets(st);
}
async function deleteBudgets(st: TenantState): Promise<void> {
  for (const s of [...st.scopes].reverse()) {
    const [unit, scope] = s.split(' ') as [string, string];
    const r = await call('DELETE', `/v1/budgets?scope=${encodeURIComponent(scope)}&unit=${unit}`, undefined, { op: 'budget delete' });
    if (r.status < 300 || r.status === 404) st.scopes.splice(st.scopes.indexOf(s), 1);
  }
  if (st.scopes.length === 0) retiring.splice(retiring.indexOf(st), 1);
}

async function budgetStep(): Promise<void> {
  const all = [...tenants.values()];
  if (all.length === 0) return;
  const t = pick(all);
  const leaves = t.scopes.filter((s) => s.includes('/agent:'));
  if (leaves.length === 0) return;
  const [unit, scope] = pick(leaves).split(' ') as [string, string];
  const key = t.keys.find((k) => k.role === 'client')?.key;
  const ko = { ...(key ? { key } : {}) };
  const x = rand();
  if (x < 0.55) {
    const r = await call('POST', '/v1/reservations', { scope, unit, amount: int(1, 20) * 1000, idempotencyKey: nextId('idem'), ttlMs: chance(0.25) ? int(100, 1500) : int(5000, 60_000) }, { ...ko, op: 'reserve' });
    if (r.status === 201 || r.status === 200) {
      const id = r.body.id as string;
      if (chance(0.3)) {
        const d = await call('POST', `/v1/reservations/${id}/draws`, { amount: 500, idempotencyKey: nextId('dr') }, { ...ko, op: 'draw' });
        if (d.status < 300 && chance(0.7)) await call('POST', `/v1/reservations/${d.body.id}/commit`, { amount: int(100, 800) }, { ...ko, op: 'commit draw' });
      }
      const y = rand();
      if (y < 0.6) await call('POST', `/v1/reservations/${id}/commit`, { amount: int(1, 25) * 1000, idempotencyKey: nextId('c') }, { ...ko, op: 'commit' });
      else if (y < 0.8) await call('POST', `/v1/reservations/${id}/release`, {}, { ...ko, op: 'release' });
      else if (y < 0.85) await call('POST', `/v1/reservations/${id}/extend`, { ttlMs: 2000, idempotencyKey: nextId('ext') }, { ...ko, op: 'extend' });
      // else: left to expire
    }
  } else if (x < 0.65) await call('POST', `/v1/budgets/${pick(['fund', 'debit'])}`, { scope, unit, amount: int(1, 9) * 1000, idempotencyKey: nextId('op') }, { op: 'budget op' });
  else if (x < 0.85) await call('GET', `/v1/balances?scope=${encodeURIComponent(`tenant:${t.id}`)}`, undefined, { op: 'balances' });
  else await call('GET', '/v1/console/budgets', undefined, { op: 'console budgets' });
}

let recorder: SpanRecorder | undefined;
async function sdkSpans(): Promise<void> {
  recorder ??= new SpanRecorder({ url: URL_, key: adminKey, flushIntervalMs: 0, batchSize: 500 });
  const rec = recorder;
  const sessionId = nextId('sess');
  const decision = recentDecisions.length && chance(0.5) ? pick(recentDecisions) : undefined;
  await rec.withSession({ sessionId, customer: nextId('cust').slice(0, chance(0.8) ? 6 : 20), team: pick(['core', 'growth', 'ops']), ...(decision ? { decisionId: decision } : {}) }, async () => {
    await rec.withAgent('coordinator', async () => {
      for (let i = 0; i < int(1, 4); i++) {
        await rec.withAgent(pick(AGENT_NAMES), async () => {
          rec.recordCall({ model: pick(MODELS), provider: 'openai', usage: { input: int(10, 5000), output: int(10, 2000) } });
          if (chance(0.2)) rec.recordCall({ model: pick(MODELS), status: 'error', unbilledReason: 'http 503', usage: { input: 0, output: 0 } });
        });
      }
    });
  });
  requests++;
  await rec.flush().catch(() => undefined);
}

async function otlpSpans(): Promise<void> {
  const now = BigInt(Date.now()) * 1_000_000n;
  const traceId = randomBytes(16).toString('hex');
  const root = randomBytes(8).toString('hex');
  const attr = (key: string, v: string | number) => ({ key, value: typeof v === 'number' ? { intValue: String(v) } : { stringValue: v } });
  const spans = [
    { traceId, spanId: root, name: 'invoke_agent coordinator', startTimeUnixNano: String(now), endTimeUnixNano: String(now + 9_000_000n), attributes: [attr('gen_ai.agent.name', 'coordinator'), attr('session.id', nextId('otel')), attr('apportion.customer', nextId('oc'))] },
    ...Array.from({ length: int(1, 5) }, () => ({
      traceId,
      spanId: randomBytes(8).toString('hex'),
      parentSpanId: root,
      name: 'chat',
      startTimeUnixNano: String(now + 1_000_000n),
      endTimeUnixNano: String(now + 2_000_000n),
      attributes: [attr('gen_ai.request.model', pick(MODELS)), attr('gen_ai.usage.input_tokens', int(1, 3000)), attr('gen_ai.usage.output_tokens', int(1, 900)), attr('gen_ai.agent.name', pick(AGENT_NAMES))],
    })),
  ];
  await call('POST', '/v1/traces', { resourceSpans: [{ resource: { attributes: [attr('service.name', 'soak')] }, scopeSpans: [{ spans }] }] }, { op: 'otlp' });
}

let consoleAssets: string[] | undefined;
async function consoleStep(): Promise<void> {
  const x = rand();
  if (x < 0.2) {
    const page = await call('GET', '/', undefined, { op: 'console page' });
    consoleAssets ??= [...String(page.body).matchAll(/\/console\/assets\/([A-Za-z0-9_.-]+)/g)].map((m) => m[1]!);
    if (consoleAssets.length) await call('GET', `/console/assets/${pick(consoleAssets)}`, undefined, { op: 'console asset' });
  } else if (x < 0.45) {
    const t = [...tenants.values()];
    const key = t.length && chance(0.7) ? pick(pick(t).keys)?.key : adminKey;
    const r = await call('POST', '/v1/session', { key }, { op: 'session open', headers: {} });
    const cookie = r.headers.get('set-cookie')?.split(';')[0];
    if (cookie) {
      await call('GET', '/v1/whoami', undefined, { cookie, op: 'whoami' });
      await call('GET', '/v1/console/sessions', undefined, { cookie, op: 'console sessions' });
      if (chance(0.5)) await call('DELETE', '/v1/session', undefined, { cookie, op: 'session close' });
      else {
        sessions.push(cookie);
        if (sessions.length > 200) sessions.shift();
      }
    }
  } else if (x < 0.6 && sessions.length) {
    await call('GET', '/v1/console/budgets', undefined, { cookie: pick(sessions), op: 'console budgets (cookie)' });
  } else if (x < 0.75) {
    // Made-up and malformed keys.
    await call('GET', '/v1/pipelines', undefined, { key: chance(0.5) ? `apk_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('base64url')}` : nextId('junk'), op: 'bad key' });
  } else {
    await call('GET', '/metrics', undefined, { op: 'metrics' });
  }
}

async function readStep(): Promise<void> {
  const all = [...pipelines.values()];
  if (all.length === 0) return;
  const p = pick(all);
  const x = rand();
  const t = p.tenant ? tenants.get(p.tenant) : undefined;
  const analyst = t?.keys.find((k) => k.role === 'analyst')?.key;
  const ko = { ...(analyst && chance(0.5) ? { key: analyst } : {}) };
  if (x < 0.15 && p.strategies.length) await call('GET', `/v1/strategies/${pick(p.strategies)}/stats`, undefined, { ...ko, op: 'strategy stats' });
  else if (x < 0.25) await call('GET', `/v1/models/${p.id}`, undefined, { ...ko, op: 'models' });
  else if (x < 0.32 && p.learned) await call('GET', `/v1/pipelines/${p.id}/ope?strategy=${p.learned}`, undefined, { ...ko, op: 'ope' });
  else if (x < 0.39 && p.learned) await call('GET', `/v1/pipelines/${p.id}/shadow?strategy=${p.learned}`, undefined, { ...ko, op: 'shadow' });
  else if (x < 0.47) await call('GET', `/v1/pipelines/${p.id}/envelopes`, undefined, { ...ko, op: 'envelopes' });
  else if (x < 0.55) await call('GET', `/v1/reports/costs?groupBy=${pick(['customer', 'team', 'agent', 'model', 'day'])}`, undefined, { op: 'report costs' });
  else if (x < 0.62) await call('GET', `/v1/sessions/${nextId('sess')}/cost-tree`, undefined, { op: 'cost tree' });
  else if (x < 0.7) await call('GET', '/v1/sync', undefined, { op: 'sync' });
  else if (x < 0.78) await call('GET', '/v1/pipelines', undefined, { ...ko, op: 'pipelines list' });
  else if (x < 0.84) await call('GET', '/v1/experiments', undefined, { op: 'experiments list' });
  else if (x < 0.9) await call('GET', `/v1/pipelines/${p.id}/logs?limit=50`, undefined, { op: 'logs' });
  else if (x < 0.95 && p.learned && chance(0.3)) await call('POST', `/v1/models/${p.id}/train`, undefined, { op: 'train' });
  else await call('GET', '/v1/keys', undefined, { op: 'keys list' });
}

/** One step of the control plane: the population of pipelines, experiments and tenants turns over. */
async function controlStep(): Promise<void> {
  const x = rand();
  const now = Date.now();
  if (retiring.length && chance(0.3)) await deleteBudgets(pick(retiring));
  if (x < 0.3) {
    if (pipelines.size < 8) await createPipeline();
    else {
      const old = [...pipelines.values()].filter((p) => p.id !== 'support-triage' && !p.tenant && now - p.born > 20_000);
      if (old.length) await deletePipeline(pick(old));
    }
  } else if (x < 0.55) {
    if (experiments.size < 4) await createExperiment();
    else await endAndDeleteExperiment(pick([...experiments.keys()]));
  } else if (x < 0.8) {
    if (tenants.size < 6) await createTenant();
    else {
      const old = [...tenants.values()].filter((t) => now - t.born > 30_000);
      if (old.length) await retireTenant(pick(old));
    }
  } else {
    // A key of a live tenant revoked and replaced.
    const t = [...tenants.values()];
    if (!t.length) return;
    const tn = pick(t);
    const k = pick(tn.keys);
    if (!k) return;
    await call('DELETE', `/v1/keys/${k.id}`, undefined, { op: 'key revoke' });
    const r = await call('POST', '/v1/keys', { tenant: tn.id, role: k.role, name: 'rotated' }, { op: 'key create' });
    tn.keys.splice(tn.keys.indexOf(k), 1);
    if (r.status < 300) tn.keys.push({ id: r.body.id, key: r.body.key, role: k.role });
  }
}

const OPS: [number, () => Promise<void>][] = [
  [40, allocate],
  [14, reportOutcomes],
  [10, budgetStep],
  [5, sdkSpans],
  [5, otlpSpans],
  [6, consoleStep],
  [10, readStep],
  [5, experimentStep],
  [2, controlStep],
];
const totalWeight = OPS.reduce((s, [w]) => s + w, 0);
function pickOp(): () => Promise<void> {
  let x = rand() * totalWeight;
  for (const [w, f] of OPS) if ((x -= w) < 0) return f;
  return OPS[0]![1];
}

// ---------------------------------------------------------------------------------------------------------------
// Sampling.
const samples: Sample[] = [];

export function patternOf(key: string): string {
  return key
    .replace(/\{([a-z-]+)([:~])[^}]*\}/g, '{$1$2*}')
    .split(':')
    .map((seg) => (/\d/.test(seg) || seg.length > 24 ? '*' : seg))
    .join(':')
    .replace(/(\*:)+\*/g, '*');
}

const LEN: Record<string, string> = { hash: 'hlen', set: 'scard', zset: 'zcard', list: 'llen', stream: 'xlen' };
async function scanKeys(): Promise<{ keys: number; noTtl: number; patterns: Record<string, PatternStat> }> {
  const patterns: Record<string, PatternStat> = {};
  let cursor = '0';
  let keys = 0;
  let noTtl = 0;
  do {
    const [next, batch] = await raw.scan(cursor, 'MATCH', `${PREFIX}:*`, 'COUNT', 2000);
    cursor = next;
    if (batch.length === 0) continue;
    const p1 = raw.pipeline();
    for (const k of batch) p1.type(k).pttl(k).memory('USAGE', k);
    const r1 = (await p1.exec())!;
    const p2 = raw.pipeline();
    const lenOf: (string | undefined)[] = [];
    batch.forEach((k, i) => {
      const type = r1[i * 3]![1] as string;
      const cmd = LEN[type];
      lenOf.push(cmd);
      if (cmd) (p2 as any)[cmd](k);
    });
    const r2 = (await p2.exec())!;
    let j = 0;
    batch.forEach((k, i) => {
      const ttl = Number(r1[i * 3 + 1]![1]);
      if (ttl === -2) return; // gone meanwhile
      const bytes = Number(r1[i * 3 + 2]![1] ?? 0);
      const elems = lenOf[i] ? Number(r2[j++]![1] ?? 0) : 1;
      const pat = patternOf(k);
      const s = (patterns[pat] ??= { keys: 0, noTtl: 0, elems: 0, elemsNoTtl: 0, bytes: 0 });
      s.keys++;
      s.elems += elems;
      s.bytes += bytes;
      keys++;
      if (ttl === -1) {
        s.noTtl++;
        s.elemsNoTtl += elems;
        noTtl++;
      }
    });
  } while (cursor !== '0');
  return { keys, noTtl, patterns };
}

function procRss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const c = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (c) out.push(...c.split(/\s+/).map(Number));
    }
  } catch {
    /* gone */
  }
  return out;
}
function descendantsRss(pid: number): number {
  let sum = 0;
  for (const c of childrenOf(pid)) sum += procRss(c) + descendantsRss(c);
  return sum;
}
const metric = (text: string, name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);

async function sample(): Promise<Sample> {
  const m = await fetch(`${URL_}/metrics`, { headers: { authorization: `Bearer ${adminKey}` } }).then((r) => r.text()).catch(() => '');
  const info = await raw.info('memory');
  const scan = await scanKeys();
  const s: Sample = {
    t: Date.now(),
    requests,
    rss: metric(m, 'apportion_process_resident_memory_bytes') || procRss(server.pid!),
    heap: metric(m, 'apportion_nodejs_heap_size_used_bytes'),
    lagP99: metric(m, 'apportion_nodejs_eventloop_lag_p99_seconds'),
    trainerRss: descendantsRss(server.pid!),
    usedMemory: Number(/used_memory:(\d+)/.exec(info)![1]),
    ...scan,
  };
  samples.push(s);
  log(`t=${((s.t - samples[0]!.t) / 1000).toFixed(0)}s req=${s.requests} rss=${mb(s.rss)} heap=${mb(s.heap)} lag99=${(s.lagP99 * 1000).toFixed(0)}ms trainer=${mb(s.trainerRss)} redis=${mb(s.usedMemory)} keys=${s.keys} noTTL=${s.noTtl}`);
  return s;
}
const mb = (b: number) => `${(b / 1048576).toFixed(1)}MB`;

// ---------------------------------------------------------------------------------------------------------------
// Run.
const t0 = Date.now();
const end = t0 + MINUTES * 60_000;
pipelines.set('support-triage', { id: 'support-triage', agents: [], strategies: ['support-uniform', 'support-static', 'support-estimate', 'support-priority-pool'], experiments: new Set(), born: 0 });
for (let i = 0; i < 3; i++) await createPipeline();
for (let i = 0; i < 2; i++) await createTenant();
await sample();
let stop = false;
const loops = Array.from({ length: CONCURRENCY }, async () => {
  while (!stop && Date.now() < end) {
    // Paced: the requests sent so far may not run ahead of RATE × the time elapsed.
    if (RATE > 0) {
      const ahead = requests / RATE - (Date.now() - t0) / 1000;
      if (ahead > 0) await sleep(ahead * 1000);
    }
    try {
      await pickOp()();
    } catch (e) {
      const k = `exception ${String(e).slice(0, 80)}`;
      statuses.set(k, (statuses.get(k) ?? 0) + 1);
    }
  }
});
const sampler = (async () => {
  while (Date.now() < end) {
    await sleep(Math.min(SAMPLE_SEC * 1000, Math.max(0, end - Date.now())));
    await sample().catch((e) => log(`sample failed: ${e}`));
  }
})();
process.on('SIGINT', () => (stop = true));
await Promise.all([...loops, sampler]);
await recorder?.close().catch(() => undefined);

// ---------------------------------------------------------------------------------------------------------------
// Report.
const run: RunInfo = { seed: SEED, minutes: MINUTES, concurrency: CONCURRENCY, rewardWindow: REWARD_WINDOW, requests, statuses: Object.fromEntries(statuses), fivexx };
const lines = soakReport(samples, run);
for (const l of lines) console.log(l);
if (OUT) writeFileSync(OUT, JSON.stringify({ run, samples, report: lines }, null, 1));

// ---------------------------------------------------------------------------------------------------------------
server.kill('SIGTERM');
await Promise.race([new Promise((r) => server.once('exit', r)), sleep(30_000)]);
if (server.exitCode === null) server.kill('SIGKILL');
raw.disconnect();
redisProc.kill('SIGTERM');
await Promise.race([new Promise((r) => redisProc.once('exit', r)), sleep(5000)]);
rmSync(redisDir, { recursive: true, force: true });
rmSync(modelsDir, { recursive: true, force: true });
process.exit(0);
