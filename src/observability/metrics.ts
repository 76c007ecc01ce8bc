import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one process. One registry per runtime (tests run several in one process). */
export interface Metrics {
  readonly registry: Registry;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly allocations: Counter<'strategy' | 'reason'>;
  /** Allocations answered `recorded: false`: the decision record's write was not confirmed in time (reason
   * `timeout`: it may still land) or failed (`error`). */
  readonly recordsUnconfirmed: Counter<'reason'>;
  /** Decision records dropped unsent: answered `recorded: false`, then still waiting for a write slot when their
   * pending deadline passed (never written). */
  readonly recordsDropped: Counter;
  readonly strategyErrors: Counter<'strategy'>;
  readonly outcomesAccepted: Counter;
  readonly outcomesProcessed: Counter<'result'>;
  readonly outcomeFailures: Counter;
  readonly outcomeBatchSize: Histogram;
  readonly queueDepth: Gauge<'queue' | 'state'>;
  readonly reservations: Counter<'op' | 'result'>;
  readonly reservationsExpired: Counter;
  /** Redis's clock minus this API host's, ms (the reservation service's latest estimate). */
  readonly redisClockOffset: Gauge;
  readonly budgetAlerts: Counter<'threshold'>;
  readonly budgetAlertDeliveries: Counter<'result'>;
  /** Spans received by the cost domain, by result (stored, duplicate, rejected). */
  readonly spans: Counter<'result'>;
  /** Learner buffer ingest, by result: outcome (moved to the buffer), late (outcome after its wait window,
   * dropped), defaulted (default reward given), lost (due decision without a record: no default). */
  readonly learnerEvents: Counter<'result'>;
  /** Times this process found that Redis had lost its data (generation marker gone or changed). */
  readonly redisDataLoss: Counter;
  readonly redisEvictionPolicy: Counter;
  readonly redisEvictedKeys: Counter;
  /** Times Redis went from accepting writes to refusing them (the readiness write probe, src/redis/write-probe.ts). */
  readonly redisWritesRefused: Counter;
  /** Learner retrains by result: trained, skipped (not enough data), failed (the trainer threw or died). */
  readonly learnerRetrains: Counter<'result'>;
  /** Model versions the learner's runtime guard took out of service, by what serves instead (version, control). */
  readonly learnerGuardReverts: Counter<'reason' | 'to'>;
  /** Learned decisions the runtime guard's control arm should have had a share of and did not: the control strategy could not allocate the request. */
  readonly learnerControlUnavailable: Counter;
  /** Retrains whose trainer CPU priority was raised because they ran past APPORTION_TRAIN_ESCALATE_AFTER_MS, by priority reached and how. */
  readonly learnerTrainerEscalations: Counter<'to' | 'how'>;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'apportion_' });
  return {
    registry,
    httpDuration: new Histogram({
      name: 'apportion_http_request_duration_seconds',
      help: 'HTTP request latency by route and status.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    allocations: new Counter({
      name: 'apportion_allocations_total',
      help: 'Allocations served, by strategy and reason.',
      labelNames: ['strategy', 'reason'],
      registers: [registry],
    }),
    recordsUnconfirmed: new Counter({
      name: 'apportion_decision_records_unconfirmed_total',
      help: 'Allocations answered recorded: false, by reason: timeout (the record write was not confirmed within the write wait; it may still land) or error (the write failed).',
      labelNames: ['reason'],
      registers: [registry],
    }),
    recordsDropped: new Counter({
      name: 'apportion_decision_records_dropped_total',
      help: 'Decision records dropped unsent: answered recorded: false (counted in apportion_decision_records_unconfirmed_total, reason timeout), then still waiting for a write slot when their pending deadline passed; they are never written and their outcomes are refused (DECISION_NOT_FOUND).',
      registers: [registry],
    }),
    strategyErrors: new Counter({
      name: 'apportion_strategy_errors_total',
      help: 'Strategies (or routers) that threw while allocating; the request fell back.',
      labelNames: ['strategy'],
      registers: [registry],
    }),
    outcomesAccepted: new Counter({
      name: 'apportion_outcomes_accepted_total',
      help: 'Outcomes accepted at intake (202).',
      registers: [registry],
    }),
    outcomesProcessed: new Counter({
      name: 'apportion_outcomes_processed_total',
      help: 'Outcomes processed by this worker, by result (applied, duplicate, expired: past the marker deadline, refused; deleted: the decision’s pipeline was deleted since, nothing written).',
      labelNames: ['result'],
      registers: [registry],
    }),
    outcomeFailures: new Counter({
      name: 'apportion_outcome_failures_total',
      help: 'Outcome job attempts that failed (they are retried with backoff).',
      registers: [registry],
    }),
    outcomeBatchSize: new Histogram({
      name: 'apportion_outcome_batch_size',
      help: 'Outcomes per outcomes-queue job written by intake (group commit).',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'apportion_queue_jobs',
      help: 'Jobs per BullMQ queue and state, sampled at scrape time.',
      labelNames: ['queue', 'state'],
      registers: [registry],
    }),
    reservations: new Counter({
      name: 'apportion_reservation_ops_total',
      help: 'Reservation operations by op (reserve, commit, release, extend) and result (ok, replay, or the denial code).',
      labelNames: ['op', 'result'],
      registers: [registry],
    }),
    redisClockOffset: new Gauge({
      name: 'apportion_redis_clock_offset_ms',
      help: "Redis server clock minus this API host's clock, ms (positive: this host is behind); reservation deadlines are corrected by it.",
      registers: [registry],
    }),
    reservationsExpired: new Counter({
      name: 'apportion_reservations_expired_total',
      help: 'Reservations expired by the sweeper (their amounts went back to the budgets).',
      registers: [registry],
    }),
    budgetAlerts: new Counter({
      name: 'apportion_budget_alerts_total',
      help: 'Budget scopes that crossed a share of their allocation, by threshold (50, 80, 100).',
      labelNames: ['threshold'],
      registers: [registry],
    }),
    budgetAlertDeliveries: new Counter({
      name: 'apportion_budget_alert_deliveries_total',
      help: 'Alert webhook POST attempts by result (ok, failed).',
      labelNames: ['result'],
      registers: [registry],
    }),
    spans: new Counter({
      name: 'apportion_spans_total',
      help: 'Spans received (POST /v1/spans and /v1/traces), by result (stored, duplicate, rejected).',
      labelNames: ['result'],
      registers: [registry],
    }),
    learnerEvents: new Counter({
      name: 'apportion_learner_events_total',
      help: 'Learner buffer ingest by result: outcome, late (dropped after the wait window), defaulted, lost (no decision record).',
      labelNames: ['result'],
      registers: [registry],
    }),
    redisDataLoss: new Counter({
      name: 'apportion_redis_data_loss_total',
      help: 'Times this process found Redis had lost its data (generation marker missing or changed) and reloaded state and job schedulers.',
      registers: [registry],
    }),
    redisEvictionPolicy: new Counter({
      name: 'apportion_redis_eviction_policy_errors_total',
      help: 'Times this process found a Redis master running with a maxmemory-policy other than noeviction (counted once per change; /readyz answers 503 meanwhile unless APPORTION_ALLOW_EVICTION is set).',
      registers: [registry],
    }),
    redisWritesRefused: new Counter({
      name: 'apportion_redis_writes_refused_total',
      help: 'Times this process found Redis refusing writes (READONLY, OOM, NOREPLICAS, MISCONF, …) after accepting them: /readyz answers 503 until a write is accepted again.',
      registers: [registry],
    }),
    redisEvictedKeys: new Counter({
      name: 'apportion_redis_evicted_keys_total',
      help: 'Keys Redis evicted while this process ran (growth of INFO stats evicted_keys over all masters, server-wide: any key prefix). Anything above 0 means state may be lost.',
      registers: [registry],
    }),
    learnerRetrains: new Counter({
      name: 'apportion_learner_retrains_total',
      help: 'Learner retrains by result: trained, skipped (not enough data), failed (the trainer threw or its process died).',
      labelNames: ['result'],
      registers: [registry],
    }),
    learnerControlUnavailable: new Counter({
      name: 'apportion_learner_control_unavailable_total',
      help: "Learned decisions made with a control share whose control arm was dropped because the control strategy (the pipeline's default) could not allocate the request (it failed, or its split was not whole budgets): the learned arm served them alone, and the runtime guard's control has no such requests.",
      registers: [registry],
    }),
    learnerGuardReverts: new Counter({
      name: 'apportion_learner_guard_reverts_total',
      help: 'Model versions taken out of service, by reason (guard: the runtime guard found the learned arm worse than the control; drift: drift recovery estimated the serving version worse than the default strategy after a detected change; candidate: the runtime guard found the pending candidate version\'s arm worse and refused it; safe-start: while no version served, the learned traffic was worse than the control and the safe start\'s exploration was halved) and by what serves instead: version (an earlier one) or control; refused for a refused candidate (serving is unchanged, the candidate stops being mixed in); shrunk for the safe start.',
      labelNames: ['reason', 'to'],
      registers: [registry],
    }),
    learnerTrainerEscalations: new Counter({
      name: 'apportion_learner_trainer_escalations_total',
      help: 'Escalation steps of retrains that ran past APPORTION_TRAIN_ESCALATE_AFTER_MS at their trainer\'s CPU priority, by the priority reached (to: other-nice19 = SCHED_OTHER at nice 19, other-nice10 = SCHED_OTHER at nice 10, i.e. halfway between the server\'s nice value and 19) and how (in-place: the running trainer was raised; new-process: the job restarted in a new trainer started at that priority, because raising the running one was not permitted).',
      labelNames: ['to', 'how'],
      registers: [registry],
    }),
  };
}
