/**
 * Kinds of control-plane documents. Each lives in one hash of the `{config}` slot, is loaded whole into
 * every process's snapshot, and is refreshed when any of them changes. Add a kind in the engine
 * (packages/sdk/src/engine/types.ts) to have it cached and synced to local-mode SDKs.
 */
export { CONTROL_KINDS, type ControlKind } from '@apportion/sdk/engine';
