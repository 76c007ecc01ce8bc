/**
 * The one error catalog: every code the API can answer with, its HTTP status and a default message.
 * docs/errors.md is checked against this table by test/errors/catalog.test.ts.
 * Add a code here (in its domain's section) before throwing it anywhere.
 */
export const ERROR_CATALOG = {
  // --- request shape -------------------------------------------------------------------------
  VALIDATION_FAILED: { status: 400, message: 'The request does not match the schema.' },
  INVALID_JSON: { status: 400, message: 'The request body is not valid JSON.' },
  BODY_TOO_LARGE: { status: 413, message: 'The request body is larger than the configured limit.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The request body must be application/json.' },
  ROUTE_NOT_FOUND: { status: 404, message: 'No such route.' },
  // --- auth ----------------------------------------------------------------------------------
  UNAUTHORIZED: { status: 401, message: 'A valid Authorization: Bearer <key> header is required.' },
  FORBIDDEN: { status: 403, message: 'This key may not call this route.' },
  // --- pipelines and strategies --------------------------------------------------------------
  PIPELINE_NOT_FOUND: { status: 404, message: 'No pipeline with this id.' },
  STRATEGY_NOT_FOUND: { status: 404, message: 'No strategy with this id.' },
  DUPLICATE_AGENT: { status: 400, message: 'Agent names must be unique within a pipeline.' },
  INVALID_AGENT_RANGE: { status: 400, message: 'An agent’s minTokens exceeds its maxTokens.' },
  UNKNOWN_AGENT: { status: 400, message: 'The agent is not part of the pipeline.' },
  INFEASIBLE_TOTAL: { status: 400, message: 'The total is below the sum of the agents’ minimum budgets.' },
  STRATEGY_PIPELINE_MISMATCH: { status: 400, message: 'The strategy belongs to another pipeline.' },
  STRATEGY_IN_USE: { status: 409, message: 'The strategy is a pipeline’s default; change the default first.' },
  INVALID_STRATEGY_PARAMS: { status: 400, message: 'The strategy parameters are not valid for its kind.' },
  // --- allocation and outcomes ---------------------------------------------------------------
  DECISION_NOT_FOUND: { status: 404, message: 'No decision with this id, or its reward window has passed.' },
  // --- infrastructure ------------------------------------------------------------------------
  QUEUE_UNAVAILABLE: { status: 503, message: 'The outcome could not be queued; nothing was accepted. Retry.' },
  REDIS_UNAVAILABLE: { status: 503, message: 'The store is unreachable. Retry.' },
  INTERNAL: { status: 500, message: 'Internal error.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOG;
