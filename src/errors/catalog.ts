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
  BAD_REQUEST: { status: 400, message: 'The request is not valid HTTP.' },
  REQUEST_TIMEOUT: { status: 408, message: 'The request did not arrive in full in time.' },
  HEADERS_TOO_LARGE: { status: 431, message: 'The request headers are larger than the server accepts.' },
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
  UNKNOWN_MODEL: { status: 400, message: 'The model is not in the price table and the tenant has no price override for it.' },
  DUPLICATE_MODEL: { status: 400, message: 'A model appears twice among an agent’s candidate models.' },
  INFEASIBLE_COST: { status: 400, message: 'The cost ceiling is below the cost of the agents’ minimum budgets on their cheapest models.' },
  UNPRICED_AGENT: { status: 400, message: 'A cost ceiling needs a price for every agent (models or price).' },
  STRATEGY_PIPELINE_MISMATCH: { status: 400, message: 'The strategy belongs to another pipeline.' },
  PIPELINE_IN_USE: { status: 409, message: 'The pipeline has experiments; stop and delete them first.' },
  STRATEGY_IN_USE: { status: 409, message: 'The strategy is in use (a pipeline’s default, or a variant of an experiment that has not ended); change that first.' },
  INVALID_STRATEGY_PARAMS: { status: 400, message: 'The strategy parameters are not valid for its kind.' },
  // --- allocation and outcomes ---------------------------------------------------------------
  DECISION_NOT_FOUND: { status: 404, message: 'No decision with this id, or its reward window has passed.' },
  DECISION_PENDING: { status: 503, message: 'No decision with this id yet: it is seconds old and its record may still be being written. Retry.' },
  // --- rollout experiments -------------------------------------------------------------------
  EXPERIMENT_NOT_FOUND: { status: 404, message: 'No experiment with this id.' },
  INVALID_EXPERIMENT: { status: 400, message: 'The experiment definition is not valid.' },
  EXPERIMENT_STATE_CONFLICT: { status: 409, message: 'The experiment’s lifecycle state does not allow this change.' },
  LAYER_OVERLAP: { status: 409, message: 'The layer range overlaps another experiment of the same layer.' },
  UNKNOWN_VARIANT: { status: 400, message: 'The experiment has no variant with this name.' },
  CONCURRENT_MODIFICATION: { status: 409, message: 'The object changed concurrently too often; retry.' },
  EXPERIMENT_UNREADABLE: { status: 409, message: 'A stored experiment document is not valid; experiment writes are refused until it is repaired.' },
  // --- budgets and reservations -------------------------------------------------------------
  INVALID_SCOPE: { status: 400, message: 'The scope is not a valid tenant/workspace/workflow/agent path.' },
  BUDGET_NOT_FOUND: { status: 404, message: 'No budget exists at this scope or any of its ancestors for this unit.' },
  BUDGET_EXCEEDED: { status: 409, message: 'A scope has not enough remaining budget.' },
  BUDGET_FROZEN: { status: 409, message: 'A scope is frozen.' },
  OVERDRAFT_LIMIT_EXCEEDED: { status: 409, message: 'The overage would take a scope’s debt past its overdraft limit.' },
  ALLOCATION_BELOW_USAGE: { status: 409, message: 'The new allocation is below what the scope has already reserved and spent.' },
  OVERDRAFT_BELOW_DEBT: { status: 409, message: "The scope's debt is more than the new settings' overdraft limit allows." },
  BUDGET_HAS_RESERVATIONS: { status: 409, message: 'Active reservations hold amounts at this budget; it cannot be deleted until they finish.' },
  RESERVATION_NOT_FOUND: { status: 404, message: 'No reservation with this id (or it finished longer ago than the retention).' },
  RESERVATION_FINALIZED: { status: 409, message: 'The reservation is already committed, released or expired.' },
  RESERVATION_EXPIRED: { status: 409, message: 'The reservation expired; its amount went back to the budgets.' },
  EXTEND_LIMIT_REACHED: { status: 409, message: 'The reservation was extended the maximum number of times.' },
  RESERVATION_EXHAUSTED: { status: 409, message: 'The parent reservation’s free hold cannot cover the draw.' },
  RESERVATION_HAS_ACTIVE_DRAWS: { status: 409, message: 'The reservation has active draws; commit or release them first.' },
  NESTED_DRAW: { status: 400, message: 'A draw cannot be drawn from; draw from its parent.' },
  LEDGER_LIMIT_EXCEEDED: { status: 409, message: "The operation would take a scope's allocated, or its spent + debt, past 2^53 − 1; nothing was written." },
  IDEMPOTENCY_KEY_REUSED: { status: 409, message: 'The idempotency key was already used for a different request.' },
  // --- learner -------------------------------------------------------------------------------
  INVALID_FEATURES: { status: 400, message: 'The feature declaration is not valid.' },
  MODEL_VERSION_NOT_FOUND: { status: 404, message: 'No model version with this number for the pipeline.' },
  MODEL_INCOMPATIBLE: { status: 409, message: 'The model version was trained for another feature declaration, agent list or (model tiers) candidate models, or is of the other kind (a token version on a pipeline with model tiers, or the reverse).' },
  MODEL_FILE_UNREADABLE: { status: 409, message: 'The model version is only in its model file, which cannot be read or is not that version.' },
  MODEL_DOCUMENT_UNREADABLE: { status: 409, message: "The pipeline's stored model document is not valid; retrains and the model list are refused until a rollback replaces it." },
  // --- costs -----------------------------------------------------------------------------------
  SESSION_NOT_FOUND: { status: 404, message: 'No spans are stored for this session.' },
  PRICE_OVERRIDE_NOT_FOUND: { status: 404, message: 'No price override for this tenant.' },
  UNSUPPORTED_CONTENT_ENCODING: { status: 415, message: 'The body must be sent uncompressed or with Content-Encoding: gzip.' },
  INVALID_CONTENT_ENCODING: { status: 400, message: 'The gzip body could not be decompressed.' },
  INVALID_PROTOBUF: { status: 400, message: 'The application/x-protobuf body is not a valid OTLP ExportTraceServiceRequest.' },
  // --- infrastructure ------------------------------------------------------------------------
  QUEUE_UNAVAILABLE: { status: 503, message: 'The outcome could not be queued; nothing was accepted. Retry.' },
  OUTCOME_UNCONFIRMED: { status: 503, message: 'The outcome may have been accepted, but it was not confirmed. Retry: the same report is queued again and counted once.' },
  REDIS_UNAVAILABLE: { status: 503, message: 'The store is unreachable. Retry.' },
  SHUTTING_DOWN: { status: 503, message: 'The server is shutting down and took nothing from this request. Retry.' },
  INTERNAL: { status: 500, message: 'Internal error.' },
  // --- tenants, API keys, sessions, rate limits ----------------------------------------------
  KEY_NOT_FOUND: { status: 404, message: 'No API key with this id in your tenant.' },
  ID_TAKEN: { status: 409, message: 'The id is already used (by another tenant, or by a recorded decision); ids are global.' },
  OUTCOME_CONFLICT: { status: 409, message: 'Another outcome was already reported for this decision; the first report stands.' },
  CSRF_HEADER_REQUIRED: { status: 403, message: 'A state-changing request authenticated by the session cookie needs the x-apportion-csrf header or a same-origin Origin.' },
  RATE_LIMITED: { status: 429, message: 'Too many requests for this key; retry after the Retry-After header.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOG;
