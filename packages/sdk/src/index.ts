/**
 * @apportion/sdk: the client side of Apportion. An HTTP client for allocations and outcomes, the per-request
 * BudgetController, reservations and draws, and span context (`withAgent`, `recordCall`). No server code.
 * Framework integrations live in subpaths: `@apportion/sdk/ai` (Vercel AI SDK), `@apportion/sdk/openai-agents`.
 */
export * from './apportion.js';
export * from './client.js';
export * from './context.js';
export * from './controller.js';
export * from './reservations-client.js';
export { roundToTarget, waterFill, type FitAgent } from './water-fill.js';
export type { LocalEvaluatorApi, LocalOptions, LocalStats } from './local-types.js';
