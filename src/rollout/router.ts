import type { Router } from '../allocation/service.js';

/**
 * Experiment routing (pure, snapshot-only): the engine's routing tables, routeExperiments and routeDistribution
 * (`@apportion/sdk/engine`, routing.ts), shared with the SDK's local mode.
 */
export { routeExperiments, routingTables } from '@apportion/sdk/engine';
import { experimentRouter as engineRouter } from '@apportion/sdk/engine';

export const experimentRouter: Router = engineRouter;
