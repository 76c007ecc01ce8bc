import { setTokenEncoder, setTokenizeMaxChars } from '@apportion/sdk/engine';
import { Tiktoken } from 'js-tiktoken/lite';
import o200kBase from 'js-tiktoken/ranks/o200k_base';

/**
 * Token counts of `<x>Text` features: the engine's code (`@apportion/sdk/engine`, shared with the SDK's local
 * mode) with the o200k_base encoder installed here. The encoder is built on first use, or at start by
 * configureTokenizer.
 */
export { countTokens, DEFAULT_TOKENIZE_MAX_CHARS, deriveTokenFeatures, MAX_RUN } from '@apportion/sdk/engine';

let encoder: Tiktoken | undefined;
setTokenEncoder((text) => (encoder ??= new Tiktoken(o200kBase)).encode(text).length, o200kBase.pat_str);

/**
 * Sets the exact-tokenization bound once at start (APPORTION_TEXT_TOKENIZE_MAX_CHARS) and builds the encoder
 * then, so the first request with a text feature does not pay for loading the ranks (seconds on a busy machine).
 */
export function configureTokenizer(opts: { maxChars: number }): void {
  setTokenizeMaxChars(opts.maxChars);
  encoder ??= new Tiktoken(o200kBase);
}
