import { hasTextFeature, hasTokenEncoder, setTokenEncoder, setTokenizeMaxChars, type Features } from '@apportion/sdk/engine';

/**
 * Token counts of `<x>Text` features: the engine's code (`@apportion/sdk/engine`, shared with the SDK's local
 * mode) with the o200k_base encoder installed here. The encoder is loaded on first use (loadTokenizer, awaited by
 * the allocation service before it decides a request with a text feature), not at start: reading js-tiktoken's
 * ranks and building the encoder from them took seconds of a start-up on a busy machine, and a deployment that
 * never sends `<x>Text` never needs them.
 */
export { countTokens, DEFAULT_TOKENIZE_MAX_CHARS, deriveTokenFeatures, MAX_RUN } from '@apportion/sdk/engine';

let loading: Promise<void> | undefined;

/**
 * Loads js-tiktoken's o200k_base ranks, builds the encoder and installs it (with the encoding's pre-tokenization
 * pattern) for countTokens; once per process (concurrent callers share one load). A load that fails is tried again
 * by the next caller.
 */
export function loadTokenizer(): Promise<void> {
  loading ??= (async () => {
    const [{ Tiktoken }, ranks] = await Promise.all([import('js-tiktoken/lite'), import('js-tiktoken/ranks/o200k_base')]);
    const encoder = new Tiktoken(ranks.default);
    // User text is counted as text: a special token's spelling in it (`<|endoftext|>`) is ordinary characters, not
    // the control token (js-tiktoken throws on it by default).
    setTokenEncoder((text) => encoder.encode(text, [], []).length, ranks.default.pat_str);
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
