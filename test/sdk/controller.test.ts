import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ApportionClient, BudgetController, BudgetExceededError, type ControllerAgent, ReservationsClient } from '@apportion/sdk';
import { FIVE_AGENTS, testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';
import { nodeEntry } from '../helpers/cli.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Runs test/fixtures/sub-agent.ts in a process of its own; resolves with the JSON line it prints. */
const sub = (args: (string | number)[]) =>
  new Promise<{ ok: boolean; server?: boolean; draw?: string; error?: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeEntry('test/fixtures/sub-agent.ts'), ...args.map(String)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!)) : reject(new Error(`sub-agent exited ${code}`))));
  });

const AGENTS: ControllerAgent[] = [
  { name: 'orchestrator', priority: 'critical' },
  { name: 'retriever', priority: 'standard' },
  { name: 'reasoner', priority: 'critical', maxTokens: 5000 },
  { name: 'validator', priority: 'standard', criticalPath: true },
  { name: 'formatter', priority: 'background', model: 'big', fallbackModel: 'small' },
  { name: 'summarizer', priority: 'standard' },
];
const ALLOCATION = {
  budgets: { orchestrator: { tokens: 1000 }, retriever: { tokens: 2000 }, reasoner: { tokens: 4000 }, validator: { tokens: 500 }, formatter: { tokens: 500 }, summarizer: { tokens: 1000 } },
  unallocatedTokens: 1000,
};

describe('BudgetController', () => {
  it('starts from the allocation: ceiling = budgets + unallocated', () => {
    const c = new BudgetController(ALLOCATION, { agents: AGENTS });
    assert.equal(c.ceiling, 10_000);
    assert.equal(c.pool, 1000);
    assert.equal(c.available('reasoner'), 4000);
    assert.throws(() => new BudgetController({ budgets: { x: { tokens: 1 } } }, { agents: AGENTS }), /no budget for agent "orchestrator"/);
  });

  it('redistributes a remainder by priority class, critical path first, capped by maxTokens', () => {
    const c = new BudgetController({ ...ALLOCATION, unallocatedTokens: 0 }, { agents: AGENTS });
    c.start('orchestrator');
    c.record('orchestrator', 400);
    c.start('retriever');
    c.record('retriever', 200);
    // Retriever leaves 1800: the only pending critical agent, reasoner, takes up to its cap (5000 - 4000 = 1000)…
    const r = c.finish('retriever');
    assert.equal(r.reclaimed, 1800);
    // …then the standard critical-path validator takes the rest before the plain standard agents.
    assert.deepEqual(r.redistributed, { reasoner: 1000, validator: 800 });
    assert.equal(c.state('reasoner').allocated, 5000);
    assert.equal(c.state('summarizer').allocated, 1000, 'lower tiers wait until higher ones are full');
    assert.equal(c.state('orchestrator').allocated, 1000, 'running agents are not topped up');
    // Orchestrator leaves 600: reasoner is capped, validator (critical path) absorbs it all.
    assert.deepEqual(c.finish('orchestrator').redistributed, { validator: 600 });
    assert.equal(c.snapshot().agents.reduce((s, a) => s + a.allocated, 0) + c.pool, c.ceiling, 'tokens are conserved');
  });

  it('splits within a tier in proportion to allocations, and leaves what nobody can take in the pool', () => {
    const agents: ControllerAgent[] = [
      { name: 'a', priority: 'standard' },
      { name: 'b', priority: 'standard', maxTokens: 1100 },
      { name: 'c', priority: 'standard', maxTokens: 3000 },
    ];
    const c = new BudgetController({ budgets: { a: { tokens: 1000 }, b: { tokens: 1000 }, c: { tokens: 2000 } } }, { agents });
    c.record('a', 100);
    const r = c.finish('a');
    // 900 between b (1000) and c (2000): 1:2 would give 300/600, but b caps at +100, so c gets 800.
    assert.deepEqual(r.redistributed, { b: 100, c: 800 });
    c.record('b', 0);
    assert.deepEqual(c.finish('b').redistributed, { c: 200 }, 'c takes up to its cap of 3000');
    c.record('c', 10);
    c.finish('c');
    assert.equal(c.pool, c.ceiling - 110, 'with nobody left, reclaimed tokens stay in the pool');
  });

  it('keeps reclaimed tokens in the pool with redistribute: "pool", for extend()', () => {
    const c = new BudgetController(ALLOCATION, { agents: AGENTS, redistribute: 'pool' });
    c.record('retriever', 500);
    c.finish('retriever');
    assert.equal(c.pool, 2500);
    assert.equal(c.extend('reasoner', 3000), 0, 'all or nothing by default');
    assert.equal(c.extend('reasoner', 3000, { partial: true }), 2500);
    assert.equal(c.pool, 0);
    assert.equal(c.state('reasoner').allocated, 6500);
  });

  it('fires the warning once at 80 % of the ceiling, and wrap-up per agent', () => {
    const warnings: number[] = [];
    const wraps: string[] = [];
    const c = new BudgetController(ALLOCATION, { agents: AGENTS, onWarning: (e) => warnings.push(e.consumed), onWrapUp: (a) => wraps.push(a) });
    c.record('reasoner', 3500);
    assert.equal(c.shouldWrapUp('reasoner'), false);
    c.record('reasoner', 100);
    assert.deepEqual(wraps, ['reasoner'], 'at 90 % of its allocation');
    assert.equal(c.shouldWrapUp('reasoner'), true);
    c.record('retriever', 1900);
    c.record('orchestrator', 1500); // 500 drawn from the pool
    c.record('summarizer', 999);
    assert.deepEqual(warnings, [], 'below 8000');
    c.record('validator', 2);
    assert.deepEqual(warnings, [8001]);
    c.record('validator', 100);
    assert.deepEqual(warnings, [8001], 'once');
  });

  it('throws BudgetExceededError at the ceiling and when an agent overruns an empty pool', () => {
    const c = new BudgetController({ budgets: { a: { tokens: 100 }, b: { tokens: 100 } }, unallocatedTokens: 50 }, { agents: [{ name: 'a' }, { name: 'b' }] });
    c.record('a', 140); // 40 drawn from the pool
    assert.equal(c.pool, 10);
    assert.throws(
      () => c.record('a', 20),
      (e: unknown) => e instanceof BudgetExceededError && e.scope === 'agent' && e.agent === 'a' && e.consumed === 160,
    );
    assert.equal(c.consumed, 160, 'usage is recorded even when it throws');
    assert.throws(() => c.record('b', 100), (e: unknown) => e instanceof BudgetExceededError && e.scope === 'request' && e.limit === 250);
  });

  it('is safe for parallel sub-agents: no tokens lost or double-granted', async () => {
    const agents = Array.from({ length: 20 }, (_, i) => ({ name: `s${i}` }));
    const budgets = Object.fromEntries(agents.map((a) => [a.name, { tokens: 100 }]));
    const c = new BudgetController({ budgets, unallocatedTokens: 500 }, { agents, redistribute: 'pool' });
    let granted = 0;
    let reclaimed = 0;
    await Promise.all(
      agents.map(async (a, i) => {
        for (let k = 0; k < 10; k++) {
          await new Promise((r) => setImmediate(r));
          granted += c.extend(a.name, 7);
          c.record(a.name, (i + k) % 3);
        }
        reclaimed += c.finish(a.name).reclaimed;
      }),
    );
    assert.equal(granted, 500 + reclaimed - c.pool, 'every granted token came out of the pool exactly once');
    assert.ok(granted > 0);
    const snap = c.snapshot();
    assert.equal(snap.agents.reduce((s, a) => s + a.allocated, 0) + snap.pool, c.ceiling);
    assert.equal(snap.agents.reduce((s, a) => s + a.consumed, 0), c.consumed);
  });

  it('degrades under pressure: skips background agents, downgrades to the fallback model', () => {
    const events: string[] = [];
    const c = new BudgetController(ALLOCATION, { agents: AGENTS, degradeAt: 0.5, onDegrade: (e) => events.push(`${e.action}:${e.agent}`) });
    assert.deepEqual(c.start('formatter'), { run: true, tokens: 500, model: 'big' }, 'no pressure yet');
    const d = new BudgetController(ALLOCATION, { agents: [...AGENTS.slice(0, 4), { name: 'formatter', priority: 'standard', model: 'big', fallbackModel: 'small' }, { name: 'summarizer', priority: 'background' }], degradeAt: 0.5, onDegrade: (e) => events.push(`${e.action}:${e.agent}`) });
    d.record('reasoner', 4000);
    d.record('retriever', 1000);
    assert.equal(d.underPressure, true);
    assert.deepEqual(d.start('summarizer'), { run: false, tokens: 0, degraded: 'skip', reason: 'pressure' });
    assert.deepEqual(d.start('formatter'), { run: true, tokens: 500, model: 'small', degraded: 'downgrade', reason: 'pressure' });
    assert.deepEqual(events, ['skip:summarizer', 'downgrade:formatter']);
    assert.equal(d.pool, 2000, 'the skipped agent’s allocation went back to the pool');
    // A refused extension also counts as pressure.
    const e = new BudgetController(ALLOCATION, { agents: AGENTS });
    assert.equal(e.extend('reasoner', 5000), 0);
    assert.equal(e.underPressure, true);
  });
});

describe('BudgetController: reclaim to agents still to run, keep the pool for extensions (seed 000)', () => {
  it('finish() never hands the allocation’s unallocated reserve to an agent', () => {
    // The first finish() used to push the whole reserve (unallocated + reclaimed) to the one pending critical agent.
    const c = new BudgetController(ALLOCATION, { agents: AGENTS });
    c.start('orchestrator');
    c.record('orchestrator', 600);
    const r = c.finish('orchestrator');
    assert.equal(r.reclaimed, 400);
    assert.deepEqual(r.redistributed, { reasoner: 400 }, 'only what the orchestrator left, to the critical agent still to run');
    assert.equal(c.pool, 1000, 'the unallocated 1,000 stay in the pool');
    assert.equal(c.extend('retriever', 800), 800);
    assert.equal(c.underPressure, false);
    assert.equal(c.snapshot().agents.reduce((s, a) => s + a.allocated, 0) + c.pool, c.ceiling, 'tokens are conserved');
  });

  it('what agents still to run cannot absorb (maxTokens) joins the pool', () => {
    const agents: ControllerAgent[] = [{ name: 'a' }, { name: 'b', maxTokens: 1100 }];
    const c = new BudgetController({ budgets: { a: { tokens: 1000 }, b: { tokens: 1000 } }, unallocatedTokens: 300 }, { agents });
    c.record('a', 200);
    assert.deepEqual(c.finish('a').redistributed, { b: 100 });
    assert.equal(c.pool, 300 + 700);
  });

  it('start() answers run: false once the request ceiling is consumed, and the agent’s allocation goes to the pool', () => {
    const events: string[] = [];
    const c = new BudgetController({ budgets: { a: { tokens: 100 }, b: { tokens: 100 }, x: { tokens: 50 } }, unallocatedTokens: 0 }, {
      agents: [{ name: 'a' }, { name: 'b' }, { name: 'x', priority: 'critical' }],
      onDegrade: (e) => events.push(`${e.action}:${e.agent}:${e.reason}`),
    });
    c.start('a');
    assert.throws(() => c.record('a', 260), (e: unknown) => e instanceof BudgetExceededError && e.scope === 'request');
    assert.deepEqual(c.start('x'), { run: false, tokens: 0, degraded: 'skip', reason: 'ceiling' }, 'even a critical agent');
    assert.deepEqual(c.start('b'), { run: false, tokens: 0, degraded: 'skip', reason: 'ceiling' });
    assert.deepEqual(events, ['skip:x:ceiling', 'skip:b:ceiling']);
    assert.equal(c.state('b').status, 'skipped');
    // At exactly the ceiling nothing is left either.
    const d = new BudgetController({ budgets: { a: { tokens: 100 }, b: { tokens: 100 } } }, { agents: [{ name: 'a' }, { name: 'b' }] });
    assert.throws(() => d.record('a', 200), BudgetExceededError);
    assert.equal(d.start('b').run, false);
  });
});

describe('BudgetController: an agent handed back to starts again (triage → billing → triage)', () => {
  const TWO: ControllerAgent[] = [{ name: 'triage', priority: 'critical' }, { name: 'billing' }];
  const conserved = (c: BudgetController) => c.snapshot().agents.reduce((s, a) => s + a.allocated, 0) + c.pool === c.ceiling;

  it('takes back from the pool what it left at its finish, not more: the rest stays for extend()', () => {
    const c = new BudgetController({ budgets: { triage: { tokens: 3000 }, billing: { tokens: 3000 } }, unallocatedTokens: 500 }, { agents: TWO });
    c.start('triage');
    c.record('triage', 640);
    assert.deepEqual(c.finish('triage'), { reclaimed: 2360, redistributed: { billing: 2360 } });
    c.start('billing');
    c.record('billing', 930);
    assert.equal(c.finish('billing').reclaimed, 4430);
    assert.equal(c.pool, 4930, 'nobody still to run: billing’s rest joins the unallocated 500');
    assert.deepEqual(c.start('triage'), { run: true, tokens: 2360 });
    assert.deepEqual(c.state('triage'), { name: 'triage', priority: 'critical', criticalPath: true, allocated: 3000, consumed: 640, status: 'running' });
    assert.equal(c.pool, 2570);
    assert.ok(conserved(c), 'tokens are conserved');
    c.record('triage', 720);
    assert.equal(c.finish('triage').reclaimed, 1640);
    assert.equal(c.pool, 4210);
    assert.ok(conserved(c));
  });

  it('gets only what the pool still holds once others spent what it handed on, and stays finished when not run', () => {
    const c = new BudgetController({ budgets: { triage: { tokens: 1000 }, billing: { tokens: 1000 } } }, { agents: TWO });
    c.record('triage', 400);
    c.finish('triage'); // its 600 go to billing
    c.record('billing', 1500);
    c.finish('billing'); // 100 left
    assert.deepEqual(c.start('triage'), { run: true, tokens: 100 });
    assert.equal(c.pool, 0);
    assert.ok(conserved(c));
    // With the ceiling consumed a returning agent is not run and keeps its status: it did run before.
    const d = new BudgetController({ budgets: { triage: { tokens: 100 }, billing: { tokens: 100 } } }, { agents: TWO });
    d.record('triage', 50);
    d.finish('triage');
    assert.throws(() => d.record('billing', 160), BudgetExceededError);
    d.finish('billing');
    assert.deepEqual(d.start('triage'), { run: false, tokens: 0, degraded: 'skip', reason: 'ceiling' });
    assert.equal(d.state('triage').status, 'finished');
    assert.ok(conserved(d));
    // Running and skipped agents still cannot start.
    const e = new BudgetController({ budgets: { triage: { tokens: 100 }, billing: { tokens: 100 } } }, { agents: TWO });
    e.start('triage');
    assert.throws(() => e.start('triage'), /already running/);
    e.skip('billing');
    assert.throws(() => e.start('billing'), /already skipped/);
  });

  it('never takes the unallocated reserve: what it handed on is still held by a running agent', () => {
    const c = new BudgetController({ budgets: { triage: { tokens: 3000 }, billing: { tokens: 3000 } }, unallocatedTokens: 500 }, { agents: TWO });
    c.start('triage');
    c.record('triage', 640);
    c.finish('triage'); // all 2360 to billing, which is still running below
    c.start('billing');
    assert.deepEqual(c.start('triage'), { run: true, tokens: 0 }, 'none of its 2360 is in the pool');
    assert.equal(c.pool, 500, 'the reserve stays for extend()');
    assert.equal(c.extend('billing', 300), 300);
    assert.ok(conserved(c));
  });

  it('takes back only what agents gave back once extensions drew on the pool (the reserve is drawn first)', () => {
    const c = new BudgetController({ budgets: { triage: { tokens: 1000 }, billing: { tokens: 1000 } }, unallocatedTokens: 300 }, { agents: TWO, redistribute: 'pool' });
    c.record('triage', 200);
    c.finish('triage'); // 800 back in the pool: 1100 = reserve 300 + returned 800
    c.start('billing');
    assert.equal(c.extend('billing', 500), 500); // 300 from the reserve, 200 of what triage gave back
    assert.deepEqual(c.start('triage'), { run: true, tokens: 600 });
    assert.equal(c.pool, 0);
    assert.ok(conserved(c));
  });

  it('with redistribute: "pool" a finish and a restart give the agent back everything it left', () => {
    const c = new BudgetController({ budgets: { triage: { tokens: 1000 }, billing: { tokens: 1000 } }, unallocatedTokens: 200 }, { agents: TWO, redistribute: 'pool' });
    c.record('triage', 300);
    c.finish('triage');
    assert.deepEqual(c.start('triage'), { run: true, tokens: 700 });
    assert.equal(c.pool, 200);
  });

  it('extend() takes a non-negative integer and refuses finished or skipped agents, changing nothing', () => {
    const c = new BudgetController({ budgets: { triage: { tokens: 1000 }, billing: { tokens: 1000 } }, unallocatedTokens: 800 }, { agents: TWO });
    const before = JSON.stringify(c.snapshot());
    for (const bad of [-5000, 0.5, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => c.extend('triage', bad), RangeError, String(bad));
    assert.equal(JSON.stringify(c.snapshot()), before);
    c.record('triage', 100);
    c.finish('triage');
    assert.throws(() => c.extend('triage', 800), /agent "triage" is finished/);
    c.skip('billing');
    assert.throws(() => c.extend('billing', 1), /agent "billing" is skipped/);
    assert.equal(c.pool, 2700, 'the pool kept everything: the reserve and what both agents left');
    assert.ok(conserved(c));
  });

  it('says "used its whole budget", not "exceeded", of an agent refused at its limit, and what the pool holds', () => {
    assert.equal(
      new BudgetExceededError('agent', 'triage', 640, 640, 4430).message,
      'agent "triage" has used its whole budget (640 of 640 tokens); the pool\'s 4430 tokens are granted only by extend()',
    );
    assert.equal(new BudgetExceededError('agent', 'w', 1000, 1000, 0).message, 'agent "w" has used its whole budget (1000 of 1000 tokens) and the pool is empty');
    assert.equal(new BudgetExceededError('agent', 'w', 1200, 1000, 0).message, 'agent "w" exceeded its budget (1200 of 1000 tokens) and the pool cannot cover it');
  });
});

describe('BudgetController backed by a server reservation', () => {
  const prefix = testPrefix('sdk-controller');
  const server = serveDuring(prefix, { APPORTION_RESERVATION_SWEEP_MS: '3600000' });

  it('is created straight from a POST /v1/allocations answer and the pipeline’s agents', async () => {
    const client = new ApportionClient({ url: server.rt.url! });
    await client.request('PUT', '/v1/pipelines/ctl', FIVE_AGENTS);
    const pipeline = await client.request<{ agents: ControllerAgent[] }>('GET', '/v1/pipelines/ctl');
    const allocation = await client.allocate({ pipeline: 'ctl', totalTokens: 12_000 });
    const c = new BudgetController(allocation, { agents: pipeline.agents });
    assert.equal(c.ceiling, allocation.totalTokens);
    assert.equal(c.state('reasoner').priority, 'critical');
    assert.equal(c.state('formatter').priority, 'background');
  });

  it('with a priority-pool allocation from the server: reclaim goes to agents still to run, the pool stays for extend()', async () => {
    const client = new ApportionClient({ url: server.rt.url! });
    await client.request('PUT', '/v1/pipelines/pp', FIVE_AGENTS);
    await client.request('PUT', '/v1/strategies/pp-pool', {
      pipeline: 'pp',
      kind: 'priority-pool',
      params: { needs: { orchestrator: 1500, retriever: 2000, reasoner: 4000, validator: 800, formatter: 700 } },
    });
    const pipeline = await client.request<{ agents: ControllerAgent[] }>('GET', '/v1/pipelines/pp');
    const allocation = await client.allocate({ pipeline: 'pp', strategy: 'pp-pool', totalTokens: 12_000 });
    assert.equal(allocation.unallocatedTokens, 3000, 'what no class needs is the request’s reserve');
    const c = new BudgetController(allocation, { agents: pipeline.agents });
    c.start('orchestrator');
    c.record('orchestrator', 900);
    const r = c.finish('orchestrator');
    assert.equal(r.reclaimed, 600);
    assert.deepEqual(r.redistributed, { reasoner: 600 });
    assert.equal(c.pool, 3000, 'the reserve is kept for extensions');
    c.start('reasoner');
    c.record('reasoner', 2600);
    assert.equal(c.extend('reasoner', 2000), 2000, 'an extension is granted from the pool');
    assert.ok(c.consumed / c.ceiling < 0.3);
    assert.deepEqual(c.start('formatter'), { run: true, tokens: 700 }, 'the background agent runs: no pressure at 29 %');
  });

  it('reserves the ceiling, commits what was consumed, and is refused when the scope cannot cover it', async () => {
    const client = new ApportionClient({ url: server.rt.url! });
    await client.request('PUT', '/v1/budgets', { scope: 'tenant:sdk/workspace:w', unit: 'TOKENS', allocated: 15_000 });
    const res = new ReservationsClient(client);
    const backing = res.backing('tenant:sdk/workspace:w/workflow:req-1');
    const c = new BudgetController(ALLOCATION, { agents: AGENTS, backing });
    await c.attach();
    assert.equal((await res.balances('tenant:sdk/workspace:w'))[0]!.reserved, 10_000);
    // Another request of the same workspace cannot take the held ceiling.
    const other = new BudgetController(ALLOCATION, { agents: AGENTS, backing: res.backing('tenant:sdk/workspace:w/workflow:req-2') });
    await assert.rejects(other.attach(), (e: unknown) => e instanceof BudgetExceededError && e.scope === 'server');
    c.record('reasoner', 3000);
    c.record('orchestrator', 700);
    await c.settle();
    const b = (await res.balances('tenant:sdk/workspace:w'))[0]!;
    assert.deepEqual([b.reserved, b.spent, b.remaining], [0, 3700, 11_300]);
  });

  it('sub-agents in other processes draw from the request’s reservation; each token is charged once', async () => {
    const client = new ApportionClient({ url: server.rt.url! });
    await client.request('PUT', '/v1/budgets', { scope: 'tenant:sdk2/workspace:w', unit: 'TOKENS', allocated: 12_000 });
    const res = new ReservationsClient(client);
    const c = new BudgetController(ALLOCATION, { agents: AGENTS, backing: res.backing('tenant:sdk2/workspace:w/workflow:req') });
    await c.attach();
    const handle = c.delegate('reasoner');
    assert.equal(handle.parent, c.reservation);
    assert.equal(handle.tokens, 4000);
    // The sub-agent process draws its 4,000 and uses 3,100 (the request's hold is now 6,900); a second one asking
    // for more than that is refused by the server.
    const done = await sub([server.rt.url!, handle.parent, 'reasoner', handle.tokens, 3100]);
    assert.equal(done.ok, true);
    const greedy = await sub([server.rt.url!, handle.parent, 'other', 7000, 1]);
    assert.deepEqual(greedy, { ...greedy, ok: false, server: true });
    assert.equal((await res.balances('tenant:sdk2/workspace:w'))[0]!.reserved, 6900);
    c.record('reasoner', 3100, { chargedRemotely: true });
    c.record('orchestrator', 900);
    await c.settle();
    const b = (await res.balances('tenant:sdk2/workspace:w'))[0]!;
    assert.deepEqual([b.reserved, b.spent, b.remaining], [0, 4000, 8000], 'sub-agent 3,100 + orchestrator 900, each charged once');
  });

  it('a sub-agent that overruns its draw and its parent’s hold is charged in full, and the parent still settles', async () => {
    const client = new ApportionClient({ url: server.rt.url! });
    await client.request('PUT', '/v1/budgets', { scope: 'tenant:sdk3/workspace:w', unit: 'TOKENS', allocated: 12_000 });
    const res = new ReservationsClient(client);
    const c = new BudgetController(ALLOCATION, { agents: AGENTS, backing: res.backing('tenant:sdk3/workspace:w/workflow:req') });
    await c.attach();
    const handle = c.delegate('reasoner');
    // 4,000 drawn, 10,500 used: the parent's whole 10,000 hold covers 10,000 of it, the workspace the other 500.
    const done = await sub([server.rt.url!, handle.parent, 'reasoner', handle.tokens, 10_500]);
    assert.equal(done.ok, false, 'the sub-agent was told it exceeded its budget…');
    assert.match(done.error ?? '', /budget exceeded/);
    assert.throws(() => c.record('reasoner', 10_500, { chargedRemotely: true }), BudgetExceededError);
    assert.throws(() => c.record('orchestrator', 700), BudgetExceededError, 'recorded, past the ceiling');
    assert.equal(c.start('validator').run, false, 'nothing more starts');
    await c.settle(); // …and its use was charged all the same, so nothing blocks the parent
    const b = (await res.balances('tenant:sdk3/workspace:w'))[0]!;
    assert.deepEqual([b.reserved, b.spent, b.remaining], [0, 11_200, 800], 'each token used charged once, none dropped');
  });
});
