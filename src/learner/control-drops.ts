import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import { compiledStrategy, controlStrategyDef, type KindLookup } from '@apportion/sdk/engine';
import type { ControlView } from '../control/view.js';
import type { Pipeline } from '../pipelines/schema.js';
import type { Keys } from '../redis/keys.js';
import { learnerKeys } from './keys.js';

/** How often a pipeline's dropped control arms are written to its learner counters (one HINCRBY per pipeline). */
const FLUSH_MS = 1000;
/** At most one warning per pipeline in this long (the count since the last one rides along). */
const WARN_EVERY_MS = 60_000;

/** Why the control strategy gives no split for a request (asked only when a warning is logged). */
export function controlFailure(kinds: KindLookup, view: ControlView, pipeline: Pipeline, input: { features: Record<string, unknown>; totalTokens: number }): string {
  const def = controlStrategyDef(view, pipeline);
  try {
    const out = compiledStrategy(kinds, view, def, pipeline).allocate({ features: input.features as never, totalTokens: input.totalTokens });
    const bad = pipeline.agents.find((a) => !Number.isInteger(out.budgets[a.name]));
    return bad ? `strategy "${def.id}" gave agent "${bad.name}" no whole budget (${String(out.budgets[bad.name])})` : `strategy "${def.id}" allocated when asked again`;
  } catch (e) {
    return `strategy "${def.id}" failed: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/**
 * Learned decisions that should have carried the runtime guard's control arm and did not: the control (the pipeline's
 * default strategy) could not allocate the request (it threw, or its split was not whole budgets), so the learned arm
 * served it alone and the guard's control has no such requests. Counted in `apportion_learner_control_unavailable_total`
 * (this process), in the pipeline's learner counters (`controlUnavailable`, and the last case in
 * `controlUnavailableLast`: GET /v1/models/:pipeline `runtimeGuard.controlUnavailable`, whichever process answers), and
 * warned about at most once a minute per pipeline.
 */
export class ControlDrops {
  private readonly counts = new Map<string, { n: number; last: { at: number; version: number; reason?: string } }>();
  private readonly warned = new Map<string, { at: number; since: number; reason?: string }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      readonly redis: Redis;
      readonly keys: Keys;
      readonly log: Pick<Logger, 'warn'>;
      readonly counter: Counter;
    },
  ) {}

  /** One dropped control arm: `reason` is asked only when this call logs the warning. */
  record(pipeline: Pipeline, version: number, reason: () => string): void {
    this.deps.counter.inc();
    const now = Date.now();
    const w = this.warned.get(pipeline.id) ?? { at: 0, since: 0 };
    this.warned.set(pipeline.id, w);
    w.since++;
    if (now - w.at >= WARN_EVERY_MS) {
      w.reason = reason();
      this.deps.log.warn(
        { pipeline: pipeline.id, version, decisions: w.since, reason: w.reason },
        `learner control arm unavailable on pipeline "${pipeline.id}": ${w.reason}; the learned arm served ${w.since} decision(s) without the runtime guard's control since the last warning`,
      );
      w.at = now;
      w.since = 0;
    }
    const c = this.counts.get(pipeline.id) ?? { n: 0, last: { at: now, version } };
    c.n++;
    c.last = { at: now, version, ...(w.reason !== undefined ? { reason: w.reason } : {}) };
    this.counts.set(pipeline.id, c);
    this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS).unref();
  }

  async flush(): Promise<void> {
    this.timer = undefined;
    const batch = [...this.counts];
    this.counts.clear();
    await Promise.all(
      batch.map(async ([pipeline, c]) => {
        const k = learnerKeys(this.deps.keys, pipeline).counters;
        await this.deps.redis.multi().hincrby(k, 'controlUnavailable', c.n).hset(k, 'controlUnavailableLast', JSON.stringify(c.last)).exec();
      }),
    ).catch(() => undefined); // counters only: a Redis error loses this batch's count, never a decision
  }
}
