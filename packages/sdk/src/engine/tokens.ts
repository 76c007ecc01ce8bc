import type { Features } from './types.js';

/**
 * Token counts of `<x>Text` features (pure but for the encoder). The encoder (o200k_base byte-pair encoding) is
 * installed by the caller: the server loads js-tiktoken's ranks at start; the SDK's local mode loads them on the
 * first request with a text feature (js-tiktoken is an optional peer dependency: ~2 MB of ranks).
 */
let encodeLength: ((text: string) => number) | undefined;

export function setTokenEncoder(fn: (text: string) => number): void {
  encodeLength = fn;
}

export function hasTokenEncoder(): boolean {
  return encodeLength !== undefined;
}

/**
 * Byte-pair merging costs more than O(n²) in the length of one pre-token, and a pre-token is a whole run of
 * non-space characters: one 64 KiB run of `a` takes minutes, a 16-character run well under a millisecond.
 * Runs are cut into pieces of this length first, which changes counts only for runs this long (long words,
 * URLs, base64), by about a token per cut.
 */
export const MAX_RUN = 16;

/** Default of APPORTION_TEXT_TOKENIZE_MAX_CHARS. */
export const DEFAULT_TOKENIZE_MAX_CHARS = 4096;
let maxChars = DEFAULT_TOKENIZE_MAX_CHARS;

export function setTokenizeMaxChars(n: number): void {
  maxChars = n;
}

export function tokenizeMaxChars(): number {
  return maxChars;
}

/** Splits runs of non-space characters longer than MAX_RUN (see there). */
function* pieces(text: string): Generator<string> {
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
