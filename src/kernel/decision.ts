/**
 * What was decided for one request: joined with its outcome later, and the log off-policy evaluation reads.
 * The engine's record type (`@apportion/sdk/engine`), which builds it for the server and for the SDK's local mode;
 * `routing` is the routing stage of the logging policy when it was random (see DecisionRouting there).
 */
export type { EngineRecord as DecisionRecord, DecisionRouting, RouteAlternative } from '@apportion/sdk/engine';

/** A decision id as the API accepts it (ids made here are `<epoch second, base 36>-<UUID>`, src/allocation/decisions.ts). */
export const DECISION_ID_PATTERN = '^[A-Za-z0-9_-]{16,64}$';
