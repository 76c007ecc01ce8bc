/**
 * The server counts `<x>Text` with gpt-tokenizer's o200k_base; the SDK's local mode with js-tiktoken's. A request
 * must get the same budgets from either, so the two counts must be equal on any text: generated texts (fast-check,
 * seeded) of every Unicode plane, whitespace runs, special tokens' spellings, long runs of one letter, CJK, digits
 * and contractions, counted whole and through the engine's pieces (each encoder with its own pre-tokenization
 * pattern, as each installs it).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countTokens, setTokenEncoder } from '@apportion/sdk/engine';
import fc from 'fast-check';
import { Tiktoken } from 'js-tiktoken/lite';
import o200kBase from 'js-tiktoken/ranks/o200k_base';
import { loadTokenizer } from '../../src/strategies/tokens.js';

const tiktoken = new Tiktoken(o200kBase);
const literal = (s: string) => tiktoken.encode(s, [], []).length;

const PIECES = [' ', '   ', '\n', '\r\n', '\t', '\u00a0', '\u3000', "'s", "'LL", "'Re", 'don\'t', '123456', '3.14', '-', '/', '<|endoftext|>', '<|im_start|>',
  '<|endofprompt|>', '数学', '吾輩は猫である。', 'Ж', 'ع', 'ह', '한국어', '🚀', '👍🏽', '👩‍👩‍👧', 'e\u0301', 'ﬁ', 'ａｂｃ', 'https://x.example/a?b=1', '{"k":[1,2]}'];
const text = fc
  .array(
    fc.oneof(
      fc.constantFrom(...PIECES),
      fc.string({ unit: 'grapheme', maxLength: 12 }),
      fc.string({ unit: 'binary', maxLength: 12 }),
      fc.tuple(fc.constantFrom('a', 'Z', '数', '9', ' ', '!', '🚀'), fc.integer({ min: 1, max: 80 })).map(([c, n]) => c.repeat(n)),
    ),
    { maxLength: 40 },
  )
  .map((parts) => parts.join(''));

describe('the server and the SDK count the same tokens', () => {
  it('gpt-tokenizer (the server) and js-tiktoken (the local mode) agree on generated texts, whole and in pieces', async () => {
    const texts = fc.sample(text, { numRuns: 3000, seed: 20261204 });
    texts.push('', ' ', 'a'.repeat(5000), '数'.repeat(3000), `${'word '.repeat(900)}<|endoftext|>`);
    await loadTokenizer();
    const server = texts.map((t) => countTokens(t, Number.MAX_SAFE_INTEGER));
    setTokenEncoder(literal, o200kBase.pat_str); // what the SDK's local mode installs
    const local = texts.map((t) => countTokens(t, Number.MAX_SAFE_INTEGER));
    const differ = texts.filter((_, i) => server[i] !== local[i]);
    assert.deepEqual(differ.slice(0, 3), [], `${differ.length} of ${texts.length} texts counted differently`);
    // Whole texts, without the engine's pieces: the encoders themselves agree.
    const { countTokens: gptCount } = await import('gpt-tokenizer/encoding/o200k_base');
    const asText = { disallowedSpecial: new Set<string>() };
    const short = texts.filter((t) => t.length <= 600);
    assert.ok(short.length > 2000, `only ${short.length} short texts`);
    const wholeDiffer = short.filter((t) => gptCount(t, asText) !== literal(t));
    assert.deepEqual(wholeDiffer.slice(0, 3), [], `${wholeDiffer.length} of ${short.length} texts encoded differently`);
  });
});
