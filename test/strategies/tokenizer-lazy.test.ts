/**
 * The token encoder (gpt-tokenizer's o200k_base; js-tiktoken's is the reference count here) is not loaded at start: the first allocation with a `<x>Text`
 * feature loads it and waits for it, and is answered as if it had been loaded all along (the same count, so the same
 * budgets, as the exact token count sent as `<x>Tokens`). Requests racing the load share it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hasTokenEncoder } from '@apportion/sdk/engine';
import { Tiktoken } from 'js-tiktoken/lite';
import o200kBase from 'js-tiktoken/ranks/o200k_base';
import type { Running } from '../../src/server.js';
import { dropPrefix, FIVE_AGENTS, startTest, testPrefix } from '../helpers/env.js';

const prefix = testPrefix('tokenizer-lazy');
let rt: Running;
before(async () => {
  rt = await startTest(prefix, { workers: false });
});
after(async () => {
  await rt?.close();
  await dropPrefix(prefix);
});

type Allocation = { budgets: Record<string, { tokens: number }>; strategy: string };

async function allocate(features: Record<string, string | number>): Promise<Allocation> {
  const res = await rt.app!.inject({ method: 'POST', url: '/v1/allocations', payload: { pipeline: 'p', strategy: 'by-tokens', features } });
  assert.equal(res.statusCode, 200, res.body);
  return res.json<Allocation>();
}

describe('the token encoder loads on first use', () => {
  it('is not loaded by a start-up; the first allocations with a text feature load it and count exactly', async () => {
    assert.equal(hasTokenEncoder(), false, 'the encoder was loaded at start');
    const put = async (url: string, payload: unknown) => {
      const res = await rt.app!.inject({ method: 'PUT', url, payload: payload as Record<string, unknown> });
      assert.ok(res.statusCode < 300, res.body);
    };
    await put('/v1/pipelines/p', { ...FIVE_AGENTS, defaultTotalTokens: 100_000, agents: FIVE_AGENTS.agents.map((a) => ({ ...a, maxTokens: 90_000 })) });
    // One budget token per document token: a count off by one changes the answer.
    await put('/v1/strategies/by-tokens', {
      pipeline: 'p',
      kind: 'estimate',
      params: { margin: 1, agents: Object.fromEntries(FIVE_AGENTS.agents.map((a) => [a.name, { base: 1000, per: { documentTokens: 1 } }])) },
    });
    assert.equal(hasTokenEncoder(), false, 'a request without a text feature does not load the encoder');
    const documentText = 'The customer asked about a refund for order 42 and the invoice that was billed twice. '.repeat(12);
    const exact = new Tiktoken(o200kBase).encode(documentText).length;
    // Two requests race the load: both wait for it.
    const [first, second] = await Promise.all([allocate({ documentText }), allocate({ documentText: `${documentText}Thanks.` })]);
    assert.equal(hasTokenEncoder(), true);
    assert.deepEqual(first.budgets, (await allocate({ documentTokens: exact })).budgets);
    assert.notDeepEqual(first.budgets, (await allocate({ documentTokens: exact + 1 })).budgets);
    assert.deepEqual(second.budgets, (await allocate({ documentTokens: new Tiktoken(o200kBase).encode(`${documentText}Thanks.`).length })).budgets);
  });

  it('counts a special token’s spelling in the text as text (it answered 500 before)', async () => {
    // Documents about LLMs contain these; the provider sees them as text, and so does the count.
    for (const documentText of ['see <|endoftext|> here', '<|endofprompt|><|endoftext|>', `${'word '.repeat(80)}<|endoftext|>`]) {
      const literal = new Tiktoken(o200kBase).encode(documentText, [], []).length;
      const got = await allocate({ documentText });
      assert.deepEqual(got.budgets, (await allocate({ documentTokens: literal })).budgets, documentText);
      assert.notDeepEqual(got.budgets, (await allocate({ documentTokens: literal + 1 })).budgets);
    }
  });
});
