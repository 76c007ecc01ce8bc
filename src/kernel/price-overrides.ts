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
 * The price overrides in force per tenant (`PUT /v1/price-overrides/<tenant>`, else the `*` overrides), read from
 * the control view: the cost reports price spans with them, pipelines price their candidate models with them.
 */
export function overridesOf(view: ControlView): (customer: string | undefined) => readonly ModelOverride[] | undefined {
  return view.memo('costs:overrides', () => {
    const byTenant = new Map<string, readonly ModelOverride[]>();
    for (const v of view.raw.kinds.priceOverrides.values()) byTenant.set(v.id, (v.doc as { models: ModelOverride[] }).models);
    const all = byTenant.get('*');
    return (customer: string | undefined) => (customer !== undefined ? byTenant.get(customer) : undefined) ?? all;
  });
}
