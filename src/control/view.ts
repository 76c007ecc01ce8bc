/**
 * Typed, immutable view of one control-plane state, built once per state and shared by all readers. The
 * engine (`@apportion/sdk/engine`) defines it, so the SDK's local mode builds the very same view from the sync
 * endpoint's document.
 */
export { viewOf, type ControlView } from '@apportion/sdk/engine';
