import type { Features } from './types.js';

/**
 * Token counts of `<x>Text` features (pure but for the encoder). The encoder (o200k_base byte-pair encoding) is
 * installed by the caller on the first request with a text feature: the server loads gpt-tokenizer's, the SDK's local
 * mode js-tiktoken's (an optional peer dependency); both count the same.
 */
let encodeLength: ((text: string) => number) | undefined;
let preTokens: RegExp | undefined;

/**
 * Installs the encoder, and with it the encoding's pre-tokenization pattern (o200k_base's `pat_str`): with the
 * pattern, only pre-tokens longer than MAX_RUN are cut, so counts are exact wherever no pre-token is that long.
 */
export function setTokenEncoder(fn: (text: string) => number, pattern?: string): void {
  encodeLength = fn;
  preTokens = pattern === undefined ? undefined : new RegExp(pattern, 'gu');
}

export function hasTokenEncoder(): boolean {
  return encodeLength !== undefined;
}

/**
 * Byte-pair merging costs more than O(n²) in the length of one pre-token: one 64 KiB run of `a` takes minutes,
 * and 4 KiB of CJK text without punctuation (one pre-token) seconds; a 16-character piece well under a millisecond.
 * Pre-tokens longer than this (the encoding's own, when its pattern was installed: long words, CJK phrases, runs of
 * one letter; else runs of non-space characters) are cut into pieces of this length first, which changes counts
 * only for pre-tokens this long, by about a token per cut (CJK prose: about 3 % more).
 */
export const MAX_RUN = 16;

/** Consecutive short pre-tokens are encoded together, in pieces of about this many characters. */
const CHUNK = 256;

/** Default of APPORTION_TEXT_TOKENIZE_MAX_CHARS. */
export const DEFAULT_TOKENIZE_MAX_CHARS = 4096;
let maxChars = DEFAULT_TOKENIZE_MAX_CHARS;

export function setTokenizeMaxChars(n: number): void {
  maxChars = n;
}

export function tokenizeMaxChars(): number {
  return maxChars;
}

/**
 * The pieces a text is encoded in (see MAX_RUN): pre-tokens longer than MAX_RUN cut into pieces of that length,
 * the others in chunks of consecutive pre-tokens (a chunk starts and ends on pre-token boundaries, so the encoder
 * splits it as it would split the whole text).
 */
function* pieces(text: string): Generator<string> {
  if (!preTokens) {
    yield* runPieces(text);
    return;
  }
  let start = 0;
  for (const m of text.matchAll(preTokens)) {
    const p = m[0];
    const at = m.index;
    if (p.length > MAX_RUN) {
      if (at > start) yield text.slice(start, at);
      for (let i = 0; i < p.length; i += MAX_RUN) yield p.slice(i, i + MAX_RUN);
      start = at + p.length;
    } else if (at + p.length - start >= CHUNK) {
      yield text.slice(start, at + p.length);
      start = at + p.length;
    }
  }
  if (start < text.length) yield text.slice(start);
}

/** Without the encoding's pattern: runs of non-space characters longer than MAX_RUN cut. */
function* runPieces(text: string): Generator<string> {
  const runs = /\S{17,}/g;
  let last = 0;
  for (let m = runs.exec(text); m; m = runs.exec(text)) {
    if (m.index > last) yield text.slice(last, m.index);
    for (let i = 0; i < m[0].length; i += MAX_RUN) yield m[0].slice(i, i + MAX_RUN);
    last = m.index + m[0].length;
  }
  if (last < text.length) yield text.slice(last);
}

const defaultEncode = (s: string): number => {
  if (!encodeLength) throw new Error('no token encoder is loaded (a `<x>Text` feature needs js-tiktoken; or send `<x>Tokens`)');
  return encodeLength(s);
};

/**
 * Counts tokens with the o200k_base encoding (GPT-4o family); a close proxy for other providers.
 *
 * Bounded work on the event loop: at most `limit` characters are tokenized. A longer text is estimated from
 * eight evenly spaced windows of `limit / 8` characters, scaled by length (a 1 MB document costs what 4 KiB
 * do). `encode` is injectable so tests can count the work.
 */
export function countTokens(text: string, limit = maxChars, encode: (s: string) => number = defaultEncode): number {
  const count = (s: string) => {
    let n = 0;
    for (const p of pieces(s)) n += encode(p);
    return n;
  };
  if (text.length <= limit) return count(text);
  const windows = 8;
  const w = Math.floor(limit / windows);
  const stride = (text.length - w) / (windows - 1);
  let sampled = 0;
  let tokens = 0;
  for (let i = 0; i < windows; i++) {
    const at = Math.floor(i * stride);
    const s = text.slice(at, at + w);
    sampled += s.length;
    tokens += count(s);
  }
  return Math.round((tokens * text.length) / sampled);
}

/** Whether any feature is a `<x>Text` string (then deriveTokenFeatures needs the encoder). */
export function hasTextFeature(features: Features): boolean {
  for (const k in features) if (typeof features[k] === 'string' && k.endsWith('Text') && k.length !== 4) return true;
  return false;
}

/**
 * Derives `<x>Tokens` from every string feature named `<x>Text` (unless the caller already gave
 * `<x>Tokens`), and drops the raw text so decision records do not store documents.
 */
export function deriveTokenFeatures(features: Features): Features {
  let out: Record<string, string | number | boolean | null> | undefined;
  for (const k in features) {
    const v = features[k];
    if (typeof v !== 'string' || !k.endsWith('Text') || k.length === 4) continue;
    out ??= { ...features };
    const tokKey = `${k.slice(0, -4)}Tokens`;
    if (typeof features[tokKey] !== 'number') out[tokKey] = countTokens(v);
    delete out[k];
  }
  return out ?? features;
}
