/**
 * Budget arithmetic shared by every strategy (pure, no I/O): `waterFill` and `roundToTarget` live in the client
 * SDK (`packages/sdk/src/water-fill.ts`), whose BudgetController redistributes with the same code; the server
 * imports them like any user of the SDK, so there is one implementation.
 */
export { roundToTarget, waterFill, type FitAgent } from '@apportion/sdk';
