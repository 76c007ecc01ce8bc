import { Tiktoken } from 'js-tiktoken/lite';
import o200kBase from 'js-tiktoken/ranks/o200k_base';
import type { Features } from './types.js';

let encoder: Tiktoken | undefined;

/** Counts tokens with the o200k_base encoding (GPT-4o family); a close proxy for other providers. */
export function countTokens(text: string): number {
  encoder ??= new Tiktoken(o200kBase);
  return encoder.encode(text).length;
}

/**
 * Derives `<x>Tokens` from every string feature named `<x>Text` (unless the caller already gave
 * `<x>Tokens`), and drops the raw text so decision records do not store documents.
 */
export function deriveTokenFeatures(features: Features): Features {
  let out: Record<string, string | number | boolean | null> | undefined;
  for (const [k, v] of Object.entries(features)) {
    if (typeof v !== 'string' || !k.endsWith('Text') || k.length === 4) continue;
    out ??= { ...features };
    const tokKey = `${k.slice(0, -4)}Tokens`;
    if (typeof features[tokKey] !== 'number') out[tokKey] = countTokens(v);
    delete out[k];
  }
  return out ?? features;
}
