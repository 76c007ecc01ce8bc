/**
 * Kinds of control-plane documents. Each lives in one hash of the `{config}` slot, is loaded whole into
 * every process's snapshot, and is refreshed when any of them changes. Add a kind here to have it cached.
 */
export const CONTROL_KINDS = ['pipelines', 'strategies', 'experiments', 'priceOverrides', 'features', 'models'] as const;
export type ControlKind = (typeof CONTROL_KINDS)[number];
