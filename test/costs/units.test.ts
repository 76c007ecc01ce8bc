import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { calcPrice } from '@pydantic/genai-prices';
import { quantile, roleEnvelope } from '../../src/costs/envelopes.js';
import { mapOtlp } from '../../src/costs/otlp.js';
import { Pricer } from '../../src/costs/pricing.js';
import { decodeSpan, encodeSpan, type Span } from '../../src/costs/span.js';
import { resolveTrace } from '../../src/costs/tree.js';

const T0 = Date.parse('2025-06-20T00:00:00Z');

describe('pricing', () => {
  it('cached linear rates equal the catalog for flat-priced models, at the span’s time', () => {
    const p = new Pricer();
    for (const [model, provider] of [
      ['gpt-4o', 'openai'],
      ['gpt-4o-mini', undefined],
      ['claude-sonnet-4-20250514', 'anthropic'],
      ['claude-3-5-haiku-latest', 'anthropic'],
    ] as const) {
      for (const u of [
        { input: 1234, output: 56, cacheRead: 0, cacheWrite: 0, reasoning: 0 },
        { input: 90_000, output: 4_000, cacheRead: 60_000, cacheWrite: 10_000, reasoning: 100 },
      ]) {
        const got = p.price({ model, provider, usage: u, start: T0 });
        const ref = calcPrice(
          { input_tokens: u.input, output_tokens: u.output, ...(u.cacheRead ? { cache_read_tokens: u.cacheRead } : {}), ...(u.cacheWrite ? { cache_write_tokens: u.cacheWrite } : {}) },
          model,
          { timestamp: new Date(T0), ...(provider ? { providerId: provider } : {}) },
        );
        assert.ok(ref);
        assert.ok(Math.abs(got.computedNano! - Math.round(ref.total_price * 1e9)) <= 1, `${model}`);
        assert.equal(got.source, 'catalog');
      }
    }
  });

  it('keeps its caches bounded however many distinct provider and model names spans carry', () => {
    const p = new Pricer({ maxEntries: 50 });
    const u = { input: 100, output: 10, cacheRead: 0, cacheWrite: 0, reasoning: 0 };
    for (let i = 0; i < 2_000; i++) p.price({ model: i % 2 ? 'gpt-4o' : `model-${i}`, provider: `provider-${i}`, usage: u, start: T0 });
    const sizes = p.cacheSizes();
    assert.ok(sizes.providers <= 50, `provider names cached: ${sizes.providers}`);
    assert.ok(sizes.prices <= 50, `prices cached: ${sizes.prices}`);
    assert.equal(p.price({ model: 'gpt-4o', provider: 'openai', usage: u, start: T0 }).source, 'catalog', 'still prices after the caches were emptied');
  });

  it('an unknown model is unpriced, never $0; a provided cost wins and the computed one is kept apart', () => {
    const p = new Pricer();
    const u = { input: 100, output: 10, cacheRead: 0, cacheWrite: 0, reasoning: 0 };
    assert.deepEqual(p.price({ model: 'acme-9000', usage: u, start: T0 }), { computedNano: undefined, source: 'unpriced' });
    const both = p.price({ model: 'gpt-4o', provider: 'openai', usage: u, start: T0, providedNano: 7 });
    assert.equal(both.source, 'provided');
    assert.ok(both.computedNano! > 0);
    assert.deepEqual(p.price({ model: 'gpt-4o', start: T0 }), { computedNano: undefined, source: 'none' });
  });

  it('prices a routed model id (`<provider>/<model>`, e.g. the AI SDK gateway provider) at the named provider’s list price', () => {
    const p = new Pricer();
    const u = { input: 12_000, output: 900, cacheRead: 2_000, cacheWrite: 0, reasoning: 0 };
    const direct = p.price({ model: 'gpt-4o', provider: 'openai', usage: u, start: T0 });
    assert.equal(direct.source, 'catalog');
    for (const provider of ['gateway', undefined]) {
      assert.deepEqual(p.price({ model: 'openai/gpt-4o', provider, usage: u, start: T0 }), direct, String(provider));
    }
    const claude = p.price({ model: 'anthropic/claude-sonnet-4', provider: 'gateway', usage: u, start: T0 });
    assert.deepEqual(claude, p.price({ model: 'claude-sonnet-4', provider: 'anthropic', usage: u, start: T0 }));
    assert.ok(claude.computedNano! > 0);
    for (const model of ['acme/unknown-9000', '/gpt-4o', 'openai/']) assert.equal(p.price({ model, provider: 'gateway', usage: u, start: T0 }).source, 'unpriced', model);
  });
});

describe('span lines', () => {
  it('round-trip every field', () => {
    const s: Span = {
      traceId: 't',
      spanId: 's',
      parentSpanId: 'p',
      sessionId: 'sess',
      agent: 'a',
      task: 'task',
      customer: 'c',
      team: 'team',
      provider: 'openai',
      model: 'gpt-4o',
      kind: 'llm',
      name: 'chat',
      status: 'error',
      attempt: 3,
      start: T0,
      end: T0 + 5,
      decisionId: 'd'.repeat(22),
      usage: { input: 10, output: 5, cacheRead: 2, cacheWrite: 1, reasoning: 3 },
      providedNano: 123,
      unbilledReason: 'http 503',
    };
    assert.deepEqual(decodeSpan('t', encodeSpan(s)), s);
    // A line stored before unbilledReason existed (18 fields) reads as a span without it.
    const { unbilledReason: _, ...older } = s;
    assert.deepEqual(decodeSpan('t', encodeSpan(s).split('\x1f').slice(0, 18).join('\x1f')), older);
    const bare: Span = { traceId: 't', spanId: 's', kind: 'agent', status: 'ok', start: T0, end: T0 };
    assert.deepEqual(decodeSpan('t', encodeSpan(bare)), bare);
  });
});

describe('cost tree', () => {
  it('builds a 100,000-deep chain without recursion and counts only the deepest call', () => {
    const n = 100_000;
    const spans: Span[] = Array.from({ length: n }, (_, i) => ({
      traceId: 't',
      spanId: `s${i}`,
      ...(i > 0 ? { parentSpanId: `s${i - 1}` } : {}),
      agent: `a${i % 3}`,
      kind: 'agent',
      status: 'ok',
      start: T0 + i,
      end: T0 + i,
      model: 'gpt-4o',
      usage: { input: 10, output: 1, cacheRead: 0, cacheWrite: 0, reasoning: 0 },
    }));
    const t = resolveTrace('t', spans, { pricer: new Pricer() });
    assert.equal(t.nodes.length, n);
    assert.equal(t.nodes[n - 1]!.depth, n - 1);
    assert.equal(t.nodes.filter((x) => x.role === 'leaf').length, 1);
    assert.equal(t.nodes[0]!.subtree.calls, 1);
    assert.equal(t.nodes[0]!.role, 'claimed');
  });

  it('breaks parent cycles instead of looping', () => {
    const mk = (id: string, parent: string): Span => ({ traceId: 't', spanId: id, parentSpanId: parent, agent: 'a', kind: 'llm', status: 'ok', start: T0, end: T0 });
    const t = resolveTrace('t', [mk('a', 'b'), mk('b', 'a')], { pricer: new Pricer() });
    assert.equal(t.nodes.length, 2);
    assert.equal(t.roots.length, 1);
  });
});

describe('envelopes', () => {
  it('P95 × 1.5, over-budgeted under 50 % utilization, too tight above 10 % exhaustion', () => {
    assert.equal(quantile([1, 2, 3, 4, 5], 0.5), 3);
    const uses = Array.from({ length: 100 }, (_, i) => ({ tokens: (i + 1) * 10, costNano: (i + 1) * 1000, budget: 4000 }));
    const e = roleEnvelope('r', uses, undefined, true);
    assert.equal(e.tokens.p50, 505);
    assert.equal(e.recommended.tokens, Math.ceil(1.5 * quantile(uses.map((u) => u.tokens), 0.95)));
    assert.deepEqual(e.flags, ['over-budgeted']);
    const tight = roleEnvelope('r', uses.map((u, i) => ({ ...u, budget: i < 85 ? 2000 : 300 })), undefined, true);
    assert.ok(tight.exhaustionRate > 0.1);
    assert.ok(tight.flags.includes('too-tight'));
    const ceiling = roleEnvelope('r', uses.map(({ tokens, costNano }) => ({ tokens, costNano })), 800, true);
    assert.equal(ceiling.utilization, null);
    assert.equal(ceiling.exhaustionRate, 0.21);
  });
});

describe('OTLP mapping', () => {
  const kv = (key: string, value: object) => ({ key, value });
  const base = { traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8), startTimeUnixNano: String(T0 * 1e6), endTimeUnixNano: String((T0 + 1) * 1e6) };
  it('reads current, deprecated and OpenInference names; integers as strings or numbers; resource attributes as defaults', () => {
    const m = mapOtlp({
      resourceSpans: [
        {
          resource: { attributes: [kv('session.id', { stringValue: 'res-session' }), kv('user.id', { stringValue: 'u1' })] },
          scopeSpans: [
            {
              spans: [
                { ...base, attributes: [kv('gen_ai.usage.prompt_tokens', { intValue: '100' }), kv('gen_ai.usage.completion_tokens', { intValue: 7 }), kv('gen_ai.system', { stringValue: 'openai' }), kv('gen_ai.request.model', { stringValue: 'gpt-4o' }), kv('gen_ai.response.model', { stringValue: 'gpt-4o-2024-08-06' })] },
                { ...base, spanId: 'ef'.repeat(8), parentSpanId: 'cd'.repeat(8), status: { code: 2 }, attributes: [kv('llm.token_count.prompt', { stringValue: '50' }), kv('llm.token_count.completion', { doubleValue: 5 }), kv('gen_ai.agent.name', { stringValue: 'critic' }), kv('gen_ai.operation.name', { stringValue: 'chat' })] },
                // Anthropic-style: cache tokens reported apart from input; input becomes the sum.
                { ...base, spanId: '12'.repeat(8), attributes: [kv('gen_ai.usage.input_tokens', { intValue: 10 }), kv('gen_ai.usage.output_tokens', { intValue: 1 }), kv('gen_ai.usage.cache_read.input_tokens', { intValue: 90 })] },
              ],
            },
          ],
        },
      ],
    });
    assert.equal(m.rejected.length, 0);
    const [a, b, c] = m.spans;
    assert.equal(a!.model, 'gpt-4o-2024-08-06');
    assert.equal(a!.provider, 'openai');
    assert.deepEqual(a!.usage, { input: 100, output: 7, cacheRead: 0, cacheWrite: 0, reasoning: 0 });
    assert.equal(a!.sessionId, 'res-session');
    assert.equal(a!.customer, 'u1');
    assert.equal(a!.start, T0);
    assert.equal(b!.status, 'error');
    assert.equal(b!.agent, 'critic');
    assert.equal(b!.kind, 'llm');
    assert.equal(b!.usage!.input, 50);
    assert.equal(c!.usage!.input, 100);
    assert.equal(c!.usage!.cacheRead, 90);
  });

  it('names the agent and model from the resource when the span does not (one agent per process); the span\'s own win', () => {
    const m = mapOtlp({
      resourceSpans: [
        {
          resource: { attributes: [kv('gen_ai.agent.name', { stringValue: 'researcher' }), kv('gen_ai.request.model', { stringValue: 'gpt-4o-mini' }), kv('gen_ai.usage.input_tokens', { intValue: 999 })] },
          scopeSpans: [
            {
              spans: [
                { ...base, attributes: [kv('gen_ai.usage.input_tokens', { intValue: 10 })] },
                { ...base, spanId: 'ef'.repeat(8), attributes: [kv('gen_ai.agent.name', { stringValue: 'critic' }), kv('gen_ai.response.model', { stringValue: 'gpt-4o' })] },
              ],
            },
          ],
        },
      ],
    });
    const [a, b] = m.spans;
    assert.equal(a!.agent, 'researcher');
    assert.equal(a!.model, 'gpt-4o-mini');
    assert.equal(a!.usage!.input, 10, 'usage is the span\'s own, never the resource\'s');
    assert.equal(b!.agent, 'critic');
    assert.equal(b!.model, 'gpt-4o');
    assert.equal(b!.usage, undefined);
  });
});
