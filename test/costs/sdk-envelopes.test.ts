import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { ApportionClient, SpanRecorder } from '@apportion/sdk';
import type { Running } from '../../src/server.js';
import { dropPrefix, startTest, testPrefix } from '../helpers/env.js';
import { nodeEntry } from '../helpers/cli.js';

const prefix = testPrefix('costs-sdk');
let rt: Running;
let client: ApportionClient;

const PIPELINE = {
  defaultTotalTokens: 20000,
  agents: [
    { name: 'coordinator', priority: 'critical', minTokens: 500, maxTokens: 8000 },
    { name: 'researcher', priority: 'standard', minTokens: 500, maxTokens: 8000 },
    { name: 'writer', priority: 'standard', minTokens: 500, maxTokens: 900 },
  ],
};

before(async () => {
  rt = await startTest(prefix, { listen: true }, { PORT: '0' });
  client = new ApportionClient({ url: rt.url! });
  await client.request('PUT', '/v1/pipelines/research', PIPELINE);
});
after(async () => {
  await rt.close();
  await dropPrefix(prefix);
});

/** Deterministic pseudo-random delays (seeded LCG) so parallel branches interleave. */
function lcg(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

async function session(rec: SpanRecorder, decisionId: string, sessionId: string, rnd: () => number, writerOut: number): Promise<void> {
  await rec.withSession({ sessionId, customer: 'sdk-customer', decisionId }, () =>
    rec.withAgent('coordinator', async () => {
      rec.recordCall({ model: 'gpt-4o', provider: 'openai', usage: { input: 1000, output: 100 } });
      await Promise.all([
        rec.withAgent('researcher', async () => {
          await sleep(Math.floor(rnd() * 5));
          rec.recordCall({ model: 'gpt-4o-mini', provider: 'openai', usage: { input: 3000, output: 300 } });
          await rec.withAgent('extractor', async () => {
            await sleep(Math.floor(rnd() * 5));
            rec.recordCall({ model: 'gpt-4o-mini', provider: 'openai', usage: { input: 500, output: 50 } });
          });
        }),
        rec.withAgent('writer', async () => {
          await sleep(Math.floor(rnd() * 5));
          rec.recordCall({ model: 'gpt-4o-mini', provider: 'openai', usage: { input: 800, output: writerOut } });
        }),
      ]);
      rec.recordCall({ model: 'gpt-4o', provider: 'openai', usage: { input: 2000, output: 200 } });
    }),
  );
}

describe('SDK span context and envelopes', () => {
  it('parallel sub-agents are attributed to themselves across awaits; usage fills the outcome', async () => {
    const rec = new SpanRecorder({ url: rt.url!, flushIntervalMs: 0 });
    const alloc = await client.allocate({ pipeline: 'research' });
    await session(rec, alloc.decisionId, 'sdk-s1', lcg(1), 100);
    const usage = rec.usageFor(alloc.decisionId);
    assert.deepEqual(usage, {
      coordinator: { inputTokens: 3000, outputTokens: 300 },
      researcher: { inputTokens: 3000, outputTokens: 300 },
      extractor: { inputTokens: 500, outputTokens: 50 },
      writer: { inputTokens: 800, outputTokens: 100 },
    });
    const flushed = await rec.close();
    assert.equal(flushed.accepted, 9);
    const t = (await client.request<any>('GET', '/v1/sessions/sdk-s1/cost-tree'));
    const byId = new Map(t.nodes.map((n: any) => [n.spanId, n]));
    for (const n of t.nodes.filter((x: any) => x.kind === 'llm')) {
      const parent = byId.get(n.parentSpanId) as any;
      assert.equal(parent.kind, 'agent');
      assert.equal(parent.agent, n.agent, `call of ${n.agent} sits under its own agent span`);
    }
    const agents = Object.fromEntries(t.byAgent.map((b: any) => [b.key, b.tokens.total]));
    assert.deepEqual(agents, { coordinator: 3300, researcher: 3300, extractor: 550, writer: 900 });
    assert.deepEqual(
      t.byLevel.map((b: any) => [b.key, b.tokens.total]),
      [
        ['0', 3300],
        ['1', 4200],
        ['2', 550],
      ],
    );
    // The outcome's usage comes from the spans (agents outside the pipeline left out).
    const { extractor: _, ...pipelineUsage } = usage;
    const out = await client.reportOutcome({ decisionId: alloc.decisionId, quality: 0.9, usage: pipelineUsage });
    assert.equal(out.accepted, true);
  });

  it('envelopes: P50/P95/P99 per role, 1.5 × P95, over-budgeted and too-tight flags', async () => {
    const rec = new SpanRecorder({ url: rt.url!, flushIntervalMs: 0 });
    const rnd = lcg(7);
    for (let i = 0; i < 20; i++) {
      const alloc = await client.allocate({ pipeline: 'research' });
      // The writer's 900-token ceiling is exceeded in 4 of these 20 sessions (> 10 %: too tight).
      await session(rec, alloc.decisionId, `env-${i}`, rnd, i % 5 === 0 ? 1000 : 50 + i);
    }
    await rec.close();
    const e = await client.request<any>('GET', '/v1/pipelines/research/envelopes');
    assert.equal(e.sessions, 21);
    const role = (name: string) => e.roles.find((r: any) => r.agent === name);
    const coord = role('coordinator');
    assert.equal(coord.sessions, 21);
    assert.equal(coord.tokens.p50, 3300);
    assert.equal(coord.tokens.p95, 3300);
    assert.equal(coord.recommended.tokens, 4950);
    assert.ok(coord.costUsd.p95 > 0);
    const writer = role('writer');
    assert.ok(writer.flags.includes('too-tight'), JSON.stringify(writer));
    // 4 sessions above the ceiling, plus the first test's session, which used exactly 900.
    assert.ok(Math.abs(writer.exhaustionRate - 5 / 21) < 1e-9, String(writer.exhaustionRate));
    assert.equal(role('extractor').inPipeline, false);
    // Budgets come from each decision: utilization is tokens ÷ allocated tokens.
    assert.ok(coord.utilization.sessions === 21);
    assert.equal((await client.request<any>('GET', '/v1/pipelines/nope/envelopes').catch((x) => x)).statusCode, 404);
  });

  it('apportion report costs --by customer --csv prints the showback from the same rollups', async () => {
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [...nodeEntry('src/cli/main.ts'), 'report', 'costs', '--by', 'customer', '--csv', '--url', rt.url!], { cwd: root });
    const lines = stdout.trim().split('\n');
    assert.match(lines[0]!, /^key,calls,input_tokens/);
    const row = lines.find((l) => l.startsWith('sdk-customer,'))!.split(',');
    const json = await client.request<any>('GET', '/v1/reports/costs?groupBy=customer');
    const j = json.rows.find((r: any) => r.key === 'sdk-customer');
    assert.equal(Number(row[1]), j.calls);
    assert.equal(row[6], (j.costNano / 1e9).toFixed(9));
  });
});
