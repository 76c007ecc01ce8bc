import type { ControlView } from '../control/view.js';

/** One model price a tenant negotiated (USD per million tokens), overriding the catalog for its spans and models. */
export interface ModelOverride {
  /** Model id as spans report it (exact match, case-insensitive). */
  readonly model: string;
  /** Only for spans of this provider; any provider when absent. */
  readonly provider?: string;
  readonly inputMTok: number;
  readonly outputMTok: number;
  /** Default: inputMTok. */
  readonly cacheReadMTok?: number;
  /** Default: inputMTok. */
  readonly cacheWriteMTok?: number;
}

/**
 * The price overrides in force per tenant, read from the control view: the tenant's own
 * (`PUT /v1/price-overrides/<tenant>`) first, then the `*` overrides, model by model (the first that matches a
 * model and provider wins), so a tenant's document of one model keeps the `*` prices of the others. The cost
 * reports price spans with them, pipelines price their candidate models with them.
 */
export function overridesOf(view: ControlView): (customer: string | undefined) => readonly ModelOverride[] | undefined {
  return view.memo('costs:overrides', () => {
    const byTenant = new Map<string, readonly ModelOverride[]>();
    for (const v of view.raw.kinds.priceOverrides.values()) byTenant.set(v.id, (v.doc as { models: ModelOverride[] }).models);
    const all = byTenant.get('*');
    const merged = new Map<string, readonly ModelOverride[]>();
    return (customer: string | undefined) => {
      const own = customer !== undefined && customer !== '*' ? byTenant.get(customer) : undefined;
      if (!own || !all) return own ?? all;
      let m = merged.get(customer!);
      if (!m) merged.set(customer!, (m = [...own, ...all]));
      return m;
    };
  });
}
