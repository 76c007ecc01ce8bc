// Resolves the mirrored learner files' `../strategies/fit.js` import to the SDK's budget arithmetic (the server's
// src/strategies/fit.ts re-exports the same functions).
export { roundToTarget, waterFill, type FitAgent } from '../../../water-fill.js';
