import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { testPrefix } from '../helpers/env.js';
import { serveDuring } from '../helpers/serve.js';

/**
 * POST /v1/traces (OTLP JSON) with values of the wrong type below the top level: the JSON route checks only the top
 * level, so each span's fields are read with their OTLP types. A span whose timestamps or ids cannot be read is
 * rejected by itself (partialSuccess); an attribute value that cannot be read is ignored; never a 5xx, and every
 * other span of the export is stored exactly once.
 */

const prefix = testPrefix('costs-otlp-bad');
const server = serveDuring(prefix, { PORT: '0' });

const NOW_NS = BigInt(Date.now() - 120_000) * 1_000_000n;
const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');

async function post(body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.rt.url}/v1/traces`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, body: await res.json() };
}

async function tree(session: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.rt.url}/v1/sessions/${session}/cost-tree`);
  return { status: res.status, body: await res.json() };
}

const export1 = (session: string, spans: unknown[]) => ({
  resourceSpans: [{ resource: { attributes: [{ key: 'session.id', value: { stringValue: session } }] }, scopeSpans: [{ scope: { name: 't' }, spans }] }],
});

function span(traceId: string, spanId: string, attributes: unknown[], times: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    traceId,
    spanId,
    name: 'chat',
    startTimeUnixNano: String(NOW_NS),
    endTimeUnixNano: String(NOW_NS + 5_000_000_000n),
    attributes: [{ key: 'gen_ai.request.model', value: { stringValue: 'gpt-4o' } }, ...attributes],
    ...times,
  };
}

describe('POST /v1/traces: OTLP JSON values of the wrong type', () => {
  it('a null start or end time rejects that span alone, naming the field; the valid span is stored', async () => {
    for (const field of ['startTimeUnixNano', 'endTimeUnixNano']) {
      const session = `null-${field}`;
      const tid = field === 'startTimeUnixNano' ? 'a1'.repeat(16) : 'a2'.repeat(16);
      const r = await post(
        export1(session, [
          span(tid, '00000000000000a1', [{ key: 'gen_ai.usage.input_tokens', value: { intValue: '10' } }]),
          span(tid, '00000000000000a2', [{ key: 'gen_ai.usage.input_tokens', value: { intValue: '20' } }], { [field]: null }),
        ]),
      );
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.partialSuccess.rejectedSpans, 1);
      assert.match(r.body.partialSuccess.errorMessage, new RegExp(`span 00000000000000a2: ${field} is missing or not a uint64`));
      const t = await tree(session);
      assert.equal(t.status, 200, JSON.stringify(t.body));
      assert.deepEqual(
        t.body.nodes.map((n: any) => n.spanId),
        ['00000000000000a1'],
      );
      assert.equal(t.body.total.tokens.input, 10);
    }
  });

  it('a stringValue that is not a string (number, array, object, null) is ignored, not a 5xx', async () => {
    const bad = [1.5, [], {}, null, true];
    const r = await post(
      export1(
        'bad-string',
        bad.map((v, i) =>
          span('b1'.repeat(16), hex(0xb0 + i, 16), [
            { key: 'gen_ai.usage.input_tokens', value: { intValue: '1' } },
            { key: 'gen_ai.agent.name', value: { stringValue: v } },
            { key: 'session.id', value: { stringValue: v } },
            { key: 'apportion.customer', value: { stringValue: v } },
            { key: 'gen_ai.response.model', value: { stringValue: v } },
          ]),
        ),
      ),
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, {});
    const t = await tree('bad-string');
    assert.equal(t.status, 200, JSON.stringify(t.body));
    assert.equal(t.body.nodes.length, bad.length);
    for (const n of t.body.nodes) {
      assert.equal(n.customer, undefined);
      assert.equal(n.model, 'gpt-4o', 'the unreadable response model leaves the request model');
    }
  });

  it('AnyValue kinds: intValue as a string is read, other members of the wrong type are unreadable', async () => {
    const r = await post(
      export1('anyvalue', [
        span('c1'.repeat(16), '00000000000000c1', [
          { key: 'gen_ai.usage.input_tokens', value: { intValue: '12' } },
          { key: 'gen_ai.usage.output_tokens', value: { intValue: 3 } },
          { key: 'gen_ai.agent.name', value: { intValue: '77' } },
          { key: 'apportion.customer', value: { boolValue: 'yes' } },
          { key: 'apportion.team', value: { arrayValue: { values: [{ stringValue: 'x' }] } } },
          { key: 'apportion.task', value: { kvlistValue: { values: [] } } },
          { key: 'gen_ai.provider.name', value: { intValue: null } },
        ]),
        span('c1'.repeat(16), '00000000000000c2', [
          { key: 'gen_ai.usage.input_tokens', value: { intValue: { high: 1 } } },
          { key: 'gen_ai.agent.name', value: { intValue: [] } },
          { key: 'apportion.customer', value: { doubleValue: 'x' } },
        ]),
      ]),
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const t = await tree('anyvalue');
    assert.equal(t.status, 200, JSON.stringify(t.body));
    const byId = new Map<string, any>(t.body.nodes.map((n: any) => [n.spanId, n]));
    assert.equal(byId.size, 2, JSON.stringify(t.body.nodes));
    const c1 = byId.get('00000000000000c1');
    assert.deepEqual([c1.usage.input, c1.usage.output, c1.agent, c1.customer, c1.team, c1.task, c1.provider], [12, 3, '77', undefined, undefined, undefined, undefined]);
    const c2 = byId.get('00000000000000c2');
    assert.equal(c2.usage, undefined, 'an object where an int64 goes is not a number in OTLP JSON');
    assert.notEqual(c2.agent, 'NaN');
    assert.equal(c2.customer, undefined);
  });

  it('generated exports with malformed spans: never a 5xx, every readable span stored exactly once', async () => {
    const odd: unknown[] = [null, true, false, 1.5, -1, [], {}, [1], { high: 1 }, 'abc', '', '-5', '1e3', { stringValue: 'x' }];
    // Each makes the span unreadable: it must be rejected.
    const fatal = fc.oneof(
      fc.record({ field: fc.constantFrom('startTimeUnixNano', 'endTimeUnixNano', 'traceId', 'spanId'), value: fc.constantFrom(...odd) }),
      fc.record({ field: fc.constant('startTimeUnixNano'), value: fc.constant(undefined) }),
    );
    // Each leaves the span readable: an attribute that cannot be read is ignored (session.id is left out: a readable
    // odd value would move the span to another session; the test above covers it).
    const benign = fc.record({
      key: fc.constantFrom('gen_ai.agent.name', 'apportion.customer', 'apportion.team', 'apportion.task', 'gen_ai.provider.name', 'gen_ai.response.model', 'gen_ai.operation.name', 'apportion.decision_id', 'apportion.attempt', 'gen_ai.usage.cost'),
      value: fc.oneof(
        fc.constantFrom(...odd),
        fc.constantFrom(...odd).map((v) => ({ stringValue: v })),
        fc.constantFrom(...odd).map((v) => ({ intValue: v })),
        fc.constantFrom(...odd).map((v) => ({ doubleValue: v })),
        fc.constantFrom(...odd).map((v) => ({ boolValue: v })),
        fc.constant({ arrayValue: { values: [{ stringValue: 'a' }] } }),
        fc.constant({ kvlistValue: { values: [{ key: 'k', value: { stringValue: 'v' } }] } }),
        fc.constant({ bytesValue: 'AAAA' }),
      ),
    });
    // The token count, in each OTLP JSON spelling that reads as the number.
    const tokens = fc.record({ n: fc.integer({ min: 1, max: 1000 }), as: fc.constantFrom('int', 'intString', 'double', 'string') });
    const spanSpec = fc.record({ fatal: fc.option(fatal, { freq: 3 }), benign: fc.array(benign, { maxLength: 3 }), tokens, timesAsNumber: fc.boolean() });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(spanSpec, { minLength: 1, maxLength: 8 }), async (specs) => {
        run += 1;
        const session = `gen-${run}`;
        const traceId = hex(0xd000 + run, 32);
        let expectedTokens = 0;
        const stored: string[] = [];
        let rejected = 0;
        const spans = specs.map((s, i) => {
          const spanId = hex(0xe00 + i + 1, 16);
          const t = s.tokens;
          const value = t.as === 'int' ? { intValue: t.n } : t.as === 'intString' ? { intValue: String(t.n) } : t.as === 'double' ? { doubleValue: t.n } : { stringValue: String(t.n) };
          const times = s.timesAsNumber ? { startTimeUnixNano: Number(NOW_NS), endTimeUnixNano: Number(NOW_NS + 5_000_000_000n) } : {};
          const o = span(traceId, spanId, [{ key: 'gen_ai.usage.input_tokens', value }, ...s.benign.map((b) => ({ key: b.key, value: b.value }))], times);
          if (s.fatal) {
            if (s.fatal.value === undefined) delete o[s.fatal.field];
            else o[s.fatal.field] = s.fatal.value;
            rejected += 1;
          } else {
            expectedTokens += t.n;
            stored.push(spanId);
          }
          return o;
        });
        const r = await post(export1(session, spans));
        assert.equal(r.status, 200, `${r.status} ${JSON.stringify(r.body)}`);
        assert.equal(r.body.partialSuccess?.rejectedSpans ?? 0, rejected, JSON.stringify(r.body));
        // Sent twice: the second is all duplicates, nothing counted again.
        const again = await post(export1(session, spans));
        assert.equal(again.status, 200, JSON.stringify(again.body));
        const t = await tree(session);
        if (stored.length === 0) {
          assert.equal(t.status, 404, JSON.stringify(t.body));
          return;
        }
        assert.equal(t.status, 200, JSON.stringify(t.body));
        assert.deepEqual(t.body.nodes.map((n: any) => n.spanId).sort(), stored.sort());
        assert.equal(t.body.total.tokens.input, expectedTokens);
      }),
      { seed: 20261204, numRuns: 60 },
    );
  });
});
