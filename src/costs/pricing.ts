import { calcPrice, findProvider, type PriceCalculation } from '@pydantic/genai-prices';
import type { ModelOverride } from '../kernel/price-overrides.js';
import type { Usage } from './span.js';

export type { ModelOverride };

export type PriceSource = 'provided' | 'override' | 'catalog' | 'unpriced' | 'none';

export interface Priced {
  /** Computed cost in nano-USD; undefined when unpriced or without usage. */
  readonly computedNano: number | undefined;
  /** Where the span's effective cost comes from. */
  readonly source: PriceSource;
}

/** Linear rates in USD per token (plus a per-request constant), derived from the catalog once per model and day. */
interface Rates {
  readonly fixed: number;
  readonly input: number;
  readonly cacheRead: number;
  readonly cacheWrite: number;
  readonly output: number;
}

type CacheEntry = { kind: 'linear'; rates: Rates } | { kind: 'exact' } | { kind: 'unknown' };

const MTOK = 1_000_000;
const DAY_MS = 86_400_000;
const HALF_HOUR_MS = 1_800_000;

function toGenai(u: Usage): Record<string, number> {
  const r: Record<string, number> = { input_tokens: u.input, output_tokens: u.output };
  if (u.cacheRead) r.cache_read_tokens = u.cacheRead;
  if (u.cacheWrite) r.cache_write_tokens = u.cacheWrite;
  return r;
}

/**
 * Prices usage with @pydantic/genai-prices (bundled data, no network) at the span's time, and with per-tenant
 * overrides. calcPrice costs ~20 µs, too much at 20k spans/s, so for every (provider, model, day) whose prices
 * are flat it is probed once for linear rates, checked against one exact call, and the rates are reused;
 * tiered or time-of-day prices fall back to calling calcPrice for every span.
 */
/** What pricing reads of a span (a span, or the parts of one a caller has; an absent part may be given as undefined). */
export interface PriceInput {
  readonly model?: string | undefined;
  readonly provider?: string | undefined;
  readonly usage?: Usage | undefined;
  readonly start: number;
  readonly providedNano?: number | undefined;
}

export class Pricer {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly maxEntries: number;

  constructor(opts: { maxEntries?: number } = {}) {
    this.maxEntries = opts.maxEntries ?? 10_000;
  }

  /** Entries held by the price cache and the provider-name cache (each at most `maxEntries`). */
  cacheSizes(): { readonly prices: number; readonly providers: number } {
    return { prices: this.cache.size, providers: this.providers.size };
  }

  price(span: PriceInput, overrides?: readonly ModelOverride[]): Priced {
    const computed = span.usage && span.model ? this.compute(span.model, span.provider, span.usage, span.start, overrides) : undefined;
    if (span.providedNano !== undefined) return { computedNano: computed?.nano, source: 'provided' };
    if (!span.usage) return { computedNano: undefined, source: 'none' };
    if (!computed) return { computedNano: undefined, source: 'unpriced' };
    return { computedNano: computed.nano, source: computed.source };
  }

  private compute(
    model: string,
    provider: string | undefined,
    usage: Usage,
    at: number,
    overrides: readonly ModelOverride[] | undefined,
  ): { nano: number; source: 'override' | 'catalog' } | undefined {
    const o = overrides?.find((x) => x.model.toLowerCase() === model.toLowerCase() && (!x.provider || x.provider === provider));
    if (o) {
      const uncached = usage.input - usage.cacheRead - usage.cacheWrite;
      const usd =
        (uncached * o.inputMTok + usage.cacheRead * (o.cacheReadMTok ?? o.inputMTok) + usage.cacheWrite * (o.cacheWriteMTok ?? o.inputMTok) + usage.output * o.outputMTok) / MTOK;
      return { nano: Math.round(usd * 1e9), source: 'override' };
    }
    const usd = this.catalog(model, provider, usage, at);
    return usd === undefined ? undefined : { nano: Math.round(usd * 1e9), source: 'catalog' };
  }

  private catalog(model: string, provider: string | undefined, usage: Usage, at: number): number | undefined {
    const day = Math.floor(at / DAY_MS);
    const dayKey = `${provider ?? ''}\x1f${model}\x1f${day}`;
    let entry = this.cache.get(dayKey);
    if (!entry) {
      entry = this.probe(model, provider, at);
      // Time-of-day prices are cached per half hour instead (a conditional price list).
      if (entry.kind !== 'exact') this.remember(dayKey, entry);
    }
    if (entry.kind === 'unknown') return undefined;
    if (entry.kind === 'linear') {
      const r = entry.rates;
      const uncached = usage.input - usage.cacheRead - usage.cacheWrite;
      return r.fixed + uncached * r.input + usage.cacheRead * r.cacheRead + usage.cacheWrite * r.cacheWrite + usage.output * r.output;
    }
    const slotKey = `${dayKey}\x1f${Math.floor(at / HALF_HOUR_MS)}`;
    let slot = this.cache.get(slotKey);
    if (!slot) {
      slot = this.probe(model, provider, at, true);
      this.remember(slotKey, slot);
    }
    if (slot.kind === 'linear') {
      const r = slot.rates;
      const uncached = usage.input - usage.cacheRead - usage.cacheWrite;
      return r.fixed + uncached * r.input + usage.cacheRead * r.cacheRead + usage.cacheWrite * r.cacheWrite + usage.output * r.output;
    }
    const res = this.call(toGenai(usage), model, provider, at);
    return res ? res.total_price : undefined;
  }

  private remember(key: string, e: CacheEntry): void {
    if (this.cache.size >= this.maxEntries) this.cache.clear();
    this.cache.set(key, e);
  }

  private readonly providers = new Map<string, string | undefined>();

  /** The catalog's id for a provider name (OpenTelemetry names included); undefined lets the model name decide. */
  private providerId(name: string | undefined): string | undefined {
    if (!name) return undefined;
    if (!this.providers.has(name)) {
      // Provider names come from spans (any string a client sends): bounded like the price cache.
      if (this.providers.size >= this.maxEntries) this.providers.clear();
      let id: string | undefined;
      try {
        id = findProvider({ providerId: name === 'x_ai' ? 'x-ai' : name })?.id;
      } catch {
        id = undefined;
      }
      this.providers.set(name, id);
    }
    return this.providers.get(name);
  }

  private call(usage: Record<string, number>, model: string, provider: string | undefined, at: number): PriceCalculation | null {
    const providerId = this.providerId(provider);
    let res: PriceCalculation | null;
    try {
      res = calcPrice(usage, model, { timestamp: new Date(at), ...(providerId ? { providerId } : {}) });
    } catch {
      res = null;
    }
    // A routed model id names its provider (`openai/gpt-4o` from the AI SDK's gateway provider, OpenRouter and
    // LiteLLM-style ids): priced at that provider's list price when the name as given is not in the catalog (a
    // provider the catalog prices routed ids for, such as openrouter, keeps its own prices).
    const slash = model.indexOf('/');
    if (!res && slash > 0 && slash < model.length - 1) return this.call(usage, model.slice(slash + 1), model.slice(0, slash), at);
    return res;
  }

  private probe(model: string, provider: string | undefined, at: number, withinSlot = false): CacheEntry {
    const first = this.call({ input_tokens: 1000, output_tokens: 100 }, model, provider, at);
    if (!first) return { kind: 'unknown' };
    if (!withinSlot && Array.isArray(first.model.prices)) return { kind: 'exact' };
    const flat = Object.values(first.model_price).every((v) => v === undefined || typeof v === 'number');
    if (!flat) return { kind: 'exact' };
    const total = (u: Record<string, number>) => this.call(u, model, provider, at)?.total_price ?? Number.NaN;
    const fixed = total({ input_tokens: 0, output_tokens: 0 });
    const input = (total({ input_tokens: MTOK, output_tokens: 0 }) - fixed) / MTOK;
    const cacheRead = (total({ input_tokens: MTOK, cache_read_tokens: MTOK, output_tokens: 0 }) - fixed) / MTOK;
    const cacheWrite = (total({ input_tokens: MTOK, cache_write_tokens: MTOK, output_tokens: 0 }) - fixed) / MTOK;
    const output = (total({ input_tokens: 0, output_tokens: MTOK }) - fixed) / MTOK;
    const rates: Rates = { fixed, input, cacheRead, cacheWrite, output };
    if (!Object.values(rates).every(Number.isFinite)) return { kind: 'exact' };
    // One exact call with every unit present checks the linear model.
    const check = { input_tokens: 12_345, cache_read_tokens: 2_345, cache_write_tokens: 1_000, output_tokens: 678 };
    const exact = total(check);
    const linear = fixed + 9_000 * input + 2_345 * cacheRead + 1_000 * cacheWrite + 678 * output;
    if (!(Math.abs(exact - linear) <= 1e-12 + 1e-9 * Math.abs(exact))) return { kind: 'exact' };
    return { kind: 'linear', rates };
  }
}
