/** The probability of every route a request could have taken: the engine's routeDistribution (see there). */
export { routeDistribution, type RouteOption } from '@apportion/sdk/engine';
