/**
 * How long a BullMQ worker waits before it tries again after Redis refused or dropped its connection while it fetched
 * or finished a job (Worker `runRetryDelay`). BullMQ's default is 15 s: after a Redis restart of a second the sweeper,
 * outcome, rollout and learner workers then sat idle for 15 s or more, and expired reservations kept their budgets'
 * money for that long. Every worker the product starts passes this.
 */
export const WORKER_RUN_RETRY_MS = 1000;
