import { hasTextFeature, hasTokenEncoder, setTokenEncoder, setTokenizeMaxChars, type Features } from '@apportion/sdk/engine';

/**
 * Token counts of `<x>Text` features: the engine's code (`@apportion/sdk/engine`, shared with the SDK's local
 * mode) with the o200k_base encoder installed here. The encoder is loaded on first use (loadTokenizer, awaited by
 * the allocation service before it decides a request with a text feature), not at start: a deployment that never
 * sends `<x>Text` never needs it.
 *
 * The server counts with gpt-tokenizer's o200k_base; the SDK's local mode with js-tiktoken's (its optional peer
 * dependency). Both are exact byte-pair encodings of the same ranks and give the same counts
 * (`test/strategies/tokenizer-equal.test.ts`, generated texts); gpt-tokenizer builds in about half the time, holds
 * about a third of the memory (~55 MB against ~160 MB of RSS) and counts several times faster
 * (`node --import tsx bench/tokens.ts`).
 */
export { countTokens, DEFAULT_TOKENIZE_MAX_CHARS, deriveTokenFeatures, MAX_RUN } from '@apportion/sdk/engine';

/**
 * Entries of gpt-tokenizer's cache of merged pieces (its default 100,000). The engine hands it pieces of at most
 * CHUNK characters cut on pre-token boundaries, so user text fills the cache with one entry per distinct piece:
 * bounded here so a stream of distinct documents cannot grow the process without limit.
 */
export const MERGE_CACHE_SIZE = 10_000;

let loading: Promise<void> | undefined;

/**
 * Loads gpt-tokenizer's o200k_base encoding and installs it (with the encoding's pre-tokenization pattern) for
 * countTokens; once per process (concurrent callers share one load). A load that fails is tried again by the next
 * caller.
 */
export function loadTokenizer(): Promise<void> {
  loading ??= (async () => {
    const [o200k, { O200K_TOKEN_SPLIT_REGEX }] = await Promise.all([
      import('gpt-tokenizer/encoding/o200k_base'),
      import('gpt-tokenizer/encodingParams/constants'),
    ]);
    o200k.setMergeCacheSize(MERGE_CACHE_SIZE);
    // User text is counted as text: a special token's spelling in it (`<|endoftext|>`) is ordinary characters, not
    // the control token (the encoder refuses such text by default).
    const asText = { disallowedSpecial: new Set<string>() };
    setTokenEncoder((text) => o200k.countTokens(text, asText), O200K_TOKEN_SPLIT_REGEX.source);
  })().catch((e: unknown) => {
    loading = undefined;
    throw e;
  });
  return loading;
}

/** Resolves once `features` can be tokenized: at once when they have no `<x>Text` feature or the encoder is loaded. */
export function tokenizerFor(features: Features | undefined): Promise<void> | undefined {
  return features && hasTextFeature(features) && !hasTokenEncoder() ? loadTokenizer() : undefined;
}

/** Sets the exact-tokenization bound once at start (APPORTION_TEXT_TOKENIZE_MAX_CHARS); the encoder loads on first use. */
export function configureTokenizer(opts: { maxChars: number }): void {
  setTokenizeMaxChars(opts.maxChars);
}
