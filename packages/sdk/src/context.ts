import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { ApportionClient, ApportionHttpError, type ClientOptions } from './client.js';

/**
 * Span context for orchestrators: `withAgent("researcher", fn)` opens an agent span and every `recordCall`
 * made inside fn — across awaits, timers and parallel branches — becomes its child, attributed to that agent.
 * Parallel sub-agents (`Promise.all([withAgent("a", …), withAgent("b", …)])`) each get their own context, so
 * their calls are attributed to themselves, never to the coordinator that spawned them. Spans carry the
 * allocation's decisionId, so the outcome's per-agent usage can be filled from them (`usageFor`).
 */

export interface CallUsage {
  /** All input tokens, cache reads and writes included. */
  readonly input: number;
  readonly output: number;
  readonly cacheRead?: number;
  readonly cacheWrite?: number;
  readonly reasoning?: number;
}

/** One canonical span as POST /v1/spans takes it. */
export interface SpanRecord {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly sessionId?: string;
  readonly agent: string;
  readonly task?: string;
  readonly customer?: string;
  readonly team?: string;
  readonly provider?: string;
  readonly model?: string;
  readonly kind: 'llm' | 'agent' | 'tool' | 'other';
  readonly name?: string;
  readonly usage?: CallUsage;
  readonly costUsd?: number;
  readonly attempt?: number;
  readonly status: 'ok' | 'error' | 'unset';
  readonly start: number;
  readonly end: number;
  readonly decisionId?: string;
  /** Why the call billed nothing (its usage is zero): e.g. `http 503`, the provider answered with an error status. */
  readonly unbilledReason?: string;
}

export interface SessionInfo {
  readonly sessionId?: string;
  readonly customer?: string;
  readonly team?: string;
  readonly task?: string;
  /** The allocation's decisionId: every span of the session carries it. */
  readonly decisionId?: string;
  /** Join an existing trace (e.g. propagated from an upstream service). Default: a new trace. */
  readonly traceId?: string;
  readonly parentSpanId?: string;
}

/** What usageFor needs of an allocation: its id, and the agents its budgets name. */
export interface DecisionAgents {
  readonly decisionId: string;
  readonly budgets: Readonly<Record<string, unknown>>;
}

export interface CallInfo {
  readonly model: string;
  readonly provider?: string;
  /**
   * Omit for a call whose usage is unknown (a stream that reported none, a call cut off after it was sent): it is
   * kept as an unmetered call, never $0.
   */
  readonly usage?: CallUsage;
  /**
   * Why the call billed nothing, when it is known to have billed nothing (the provider answered with an HTTP error
   * status, e.g. `http 503`): the span carries zero usage and this reason, and counts as a call of $0 instead of
   * an unmetered one. Usage given with it must be zero.
   */
  readonly unbilledReason?: string;
  readonly costUsd?: number;
  readonly status?: 'ok' | 'error';
  readonly name?: string;
  readonly attempt?: number;
  /** Epoch ms; default now (start defaults to end). */
  readonly start?: number;
  readonly end?: number;
}

export interface AgentOptions {
  readonly task?: string;
  readonly attempt?: number;
  readonly name?: string;
}

export interface SpanRecorderOptions extends ClientOptions {
  /**
   * Spans buffered before an automatic flush, and the most one request carries. Default 100; at most 10,000 (what
   * `POST /v1/spans` takes). A batch the API refuses as over its body limit (413) is halved until it fits.
   */
  readonly batchSize?: number;
  /**
   * Automatic flush interval in ms (0: only on batchSize, flush() and at exit). Default 1000. The timer does not
   * keep the process alive; what is buffered when the process is about to exit on its own is flushed then.
   */
  readonly flushIntervalMs?: number;
  /** Most spans kept while the API is unreachable; the oldest are dropped beyond it. Default 10000. */
  readonly maxBuffered?: number;
}

interface Frame {
  readonly traceId: string;
  readonly spanId: string | undefined;
  readonly agent: string;
  readonly session: SessionInfo;
  readonly task: string | undefined;
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

/** The most spans one POST /v1/spans takes (its schema's `maxItems`). */
const MAX_SPANS_PER_REQUEST = 10_000;

export interface FlushResult {
  readonly sent: number;
  readonly accepted: number;
  readonly duplicates: number;
  readonly rejected: readonly { index: number; reason: string }[];
}

/**
 * Recorders holding buffered spans. When the process is about to exit on its own (`beforeExit`: the event loop
 * is empty), each is flushed once; the flush's request keeps the process up until it is answered, then the
 * process exits. A recorder whose exit flush failed is not retried until it records again, so an unreachable API
 * does not keep the process alive. A signal or `process.exit()` skips `beforeExit`: `await close()` first.
 */
const buffering = new Set<() => void>();
const flushAtExit = () => {
  for (const flush of buffering) flush();
};

export class SpanRecorder {
  private readonly als = new AsyncLocalStorage<Frame>();
  private readonly client: ApportionClient;
  private buffer: SpanRecord[] = [];
  private readonly usage = new Map<string, Map<string, { inputTokens: number; outputTokens: number }>>();
  private timer: NodeJS.Timeout | undefined;
  private inflight: Promise<unknown> = Promise.resolve();
  /** Spans dropped because the buffer overflowed while the API was unreachable. */
  dropped = 0;
  /**
   * Spans dropped because the API refused one alone as over its body limit (413): such a span can never be sent
   * (each is also in its flush's `rejected`, with the reason).
   */
  oversized = 0;
  /** The exit flush failed and nothing was recorded since: it is not tried again (see `buffering`). */
  private exitFailed = false;
  private readonly flushBeforeExit = () => {
    if (this.buffer.length === 0 || this.exitFailed) return;
    void this.flush().catch(() => {
      this.exitFailed = true;
    });
  };

  constructor(private readonly opts: SpanRecorderOptions = {}) {
    this.client = new ApportionClient(opts);
    const every = opts.flushIntervalMs ?? 1000;
    if (every > 0) {
      this.timer = setInterval(() => void this.flush().catch(() => undefined), every);
      this.timer.unref();
    }
  }

  /** Runs fn as one session (one trace): the identifiers are stamped on every span inside. */
  withSession<T>(info: SessionInfo, fn: () => T): T {
    const frame: Frame = { traceId: info.traceId ?? hex(16), spanId: info.parentSpanId, agent: '(unattributed)', session: info, task: info.task };
    return this.als.run(frame, fn);
  }

  /** Runs fn inside an agent span; calls recorded inside are its children, even across awaits. */
  async withAgent<T>(agent: string, fn: () => Promise<T> | T, opts: AgentOptions = {}): Promise<T> {
    const parent = this.als.getStore();
    const session = parent?.session ?? {};
    const traceId = parent?.traceId ?? hex(16);
    const spanId = hex(8);
    const task = opts.task ?? parent?.task;
    const start = Date.now();
    let status: 'ok' | 'error' = 'ok';
    try {
      return await this.als.run({ traceId, spanId, agent, session, task }, fn);
    } catch (e) {
      status = 'error';
      throw e;
    } finally {
      this.push({
        ...this.base(traceId, parent?.spanId, agent, session, task),
        spanId,
        kind: 'agent',
        name: opts.name ?? `invoke_agent ${agent}`,
        status,
        start,
        end: Date.now(),
        ...(opts.attempt !== undefined ? { attempt: opts.attempt } : {}),
      });
    }
  }

  /** Records one LLM call made by the current agent. Returns the span. */
  recordCall(call: CallInfo): SpanRecord {
    const f = this.als.getStore();
    const end = call.end ?? Date.now();
    const span: SpanRecord = {
      ...this.base(f?.traceId ?? hex(16), f?.spanId, f?.agent ?? '(unattributed)', f?.session ?? {}, f?.task),
      spanId: hex(8),
      kind: 'llm',
      model: call.model,
      ...(call.provider !== undefined ? { provider: call.provider } : {}),
      ...(call.usage !== undefined ? { usage: call.usage } : call.unbilledReason !== undefined ? { usage: { input: 0, output: 0 } } : {}),
      ...(call.costUsd !== undefined ? { costUsd: call.costUsd } : {}),
      ...(call.attempt !== undefined ? { attempt: call.attempt } : {}),
      ...(call.unbilledReason !== undefined ? { unbilledReason: call.unbilledReason } : {}),
      name: call.name ?? `chat ${call.model}`,
      status: call.status ?? 'ok',
      start: call.start ?? end,
      end,
    };
    // A call that billed nothing adds nothing to the outcome's usage (an agent whose only call failed so is absent).
    if (span.decisionId && call.usage && call.unbilledReason === undefined) {
      let m = this.usage.get(span.decisionId);
      if (!m) this.usage.set(span.decisionId, (m = new Map()));
      const u = m.get(span.agent) ?? { inputTokens: 0, outputTokens: 0 };
      m.set(span.agent, { inputTokens: u.inputTokens + call.usage.input, outputTokens: u.outputTokens + call.usage.output });
    }
    this.push(span);
    return span;
  }

  /** The agent, trace and span ids of the current context (e.g. to propagate to another service). */
  current(): { traceId: string; spanId: string | undefined; agent: string } | undefined {
    const f = this.als.getStore();
    return f ? { traceId: f.traceId, spanId: f.spanId, agent: f.agent } : undefined;
  }

  /**
   * Per-agent usage of a decision's calls, shaped for the outcome report (`usage` of POST /v1/outcomes), and
   * forgotten afterwards. Given the allocation (`client.allocate`'s answer, or anything with its `decisionId` and
   * `budgets`), only the agents its budgets name are returned: the server refuses usage of any other agent
   * (`400 UNKNOWN_AGENT`), such as an orchestrator outside the pipeline, whose calls stay in the spans and the
   * cost tree. Given only the decision id, every agent's usage is returned.
   */
  usageFor(decision: string | DecisionAgents): Record<string, { inputTokens: number; outputTokens: number }> {
    const id = typeof decision === 'string' ? decision : decision.decisionId;
    const m = this.usage.get(id);
    this.usage.delete(id);
    if (!m) return {};
    const budgets = typeof decision === 'string' ? undefined : decision.budgets;
    return Object.fromEntries([...m].filter(([agent]) => budgets === undefined || Object.hasOwn(budgets, agent)));
  }

  /** Sends every buffered span (in batches of batchSize). Spans are kept for the next flush if the API fails. */
  async flush(): Promise<FlushResult> {
    const run = this.inflight.then(() => this.send());
    this.inflight = run.catch(() => undefined);
    return run;
  }

  /**
   * Flushes and stops the timer. Spans still buffered when the process is about to exit on its own are flushed
   * then without it; call close() before `process.exit()`, on a signal, and wherever you want the flush's answer.
   */
  async close(): Promise<FlushResult> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    return this.flush();
  }

  private async send(): Promise<FlushResult> {
    let size = this.batchSize();
    const total = { sent: 0, accepted: 0, duplicates: 0, rejected: [] as { index: number; reason: string }[] };
    while (this.buffer.length) {
      // The batch leaves the buffer while it is sent, so spans recorded meanwhile (and the overflow bound, which drops
      // the oldest of what is buffered) never touch it; if the send fails it goes back at the head, oldest first.
      const batch = this.buffer.splice(0, size);
      let res: FlushResult;
      try {
        res = await this.client.request<FlushResult>('POST', '/v1/spans', { spans: batch });
      } catch (e) {
        if (e instanceof ApportionHttpError && e.statusCode === 413) {
          // Over the API's body limit: sent again in halves (the size that fits is kept for the rest of this flush),
          // down to one span; a span refused alone can never be sent, so it is dropped, reported and counted instead
          // of blocking the rest, and the spans after it start again at the configured size.
          if (batch.length > 1) {
            this.buffer = batch.concat(this.buffer);
            size = Math.ceil(batch.length / 2);
            continue;
          }
          const span = batch[0]!;
          this.oversized++;
          total.rejected.push({ index: total.sent, reason: `span ${span.traceId}/${span.spanId}: ${e.message}` });
          total.sent++;
          size = this.batchSize();
          continue;
        }
        this.buffer = batch.concat(this.buffer);
        this.bound();
        throw e;
      }
      // A rejected span's index counts from the flush's first span, not its batch's.
      total.rejected.push(...res.rejected.map((r) => ({ ...r, index: r.index + total.sent })));
      total.sent += batch.length;
      total.accepted += res.accepted;
      total.duplicates += res.duplicates;
    }
    this.watchExit();
    return total;
  }

  /** Keeps this recorder in `buffering` exactly while it holds spans; one process listener serves them all. */
  private watchExit(): void {
    if (this.buffer.length > 0) {
      if (buffering.size === 0) process.on('beforeExit', flushAtExit);
      buffering.add(this.flushBeforeExit);
    } else if (buffering.delete(this.flushBeforeExit) && buffering.size === 0) {
      process.off('beforeExit', flushAtExit);
    }
  }

  private base(traceId: string, parentSpanId: string | undefined, agent: string, s: SessionInfo, task: string | undefined) {
    return {
      traceId,
      ...(parentSpanId !== undefined ? { parentSpanId } : {}),
      agent,
      ...(s.sessionId !== undefined ? { sessionId: s.sessionId } : {}),
      ...(s.customer !== undefined ? { customer: s.customer } : {}),
      ...(s.team !== undefined ? { team: s.team } : {}),
      ...(task !== undefined ? { task } : {}),
      ...(s.decisionId !== undefined ? { decisionId: s.decisionId } : {}),
    };
  }

  /** At most `maxBuffered` spans wait: beyond it the oldest are dropped (and counted). */
  private bound(): void {
    const max = this.opts.maxBuffered ?? 10_000;
    if (this.buffer.length > max) {
      this.dropped += this.buffer.length - max;
      this.buffer = this.buffer.slice(this.buffer.length - max);
    }
  }

  private push(span: SpanRecord): void {
    this.buffer.push(span);
    this.exitFailed = false;
    this.bound();
    this.watchExit();
    if (this.buffer.length >= this.batchSize()) void this.flush().catch(() => undefined);
  }

  /** The configured batch size, within what one POST /v1/spans takes (at least 1, at most 10,000 spans). */
  private batchSize(): number {
    const n = Math.floor(this.opts.batchSize ?? 100);
    return Number.isFinite(n) ? Math.min(Math.max(n, 1), MAX_SPANS_PER_REQUEST) : 100;
  }
}

/**
 * Where the process-wide recorder is kept: one place per process, not one per copy of this module. The package ships
 * an ES module and a CommonJS build, and a process may load both (the app imports the ESM build, a dependency
 * requires the CJS one); with one recorder per copy, `configureSpans` through one copy would not reach what the other
 * records (an integration's model calls included), nor would its `withSession` / `withAgent` context. So the holder
 * lives on `globalThis` under a registered symbol, created by the first copy loaded and taken by the rest.
 */
const DEFAULT_RECORDER = Symbol.for('apportion.sdk.defaultSpanRecorder');
const defaults: { recorder: SpanRecorder | undefined } = (() => {
  const g = globalThis as { [DEFAULT_RECORDER]?: { recorder: SpanRecorder | undefined } };
  const existing = g[DEFAULT_RECORDER];
  if (typeof existing === 'object' && existing !== null && 'recorder' in existing) return existing;
  const created = { recorder: undefined };
  Object.defineProperty(g, DEFAULT_RECORDER, { value: created, enumerable: false, writable: false, configurable: false });
  return created;
})();

/** Sets up the process-wide recorder the free functions below use (for both builds of the package, see `defaults`). */
export function configureSpans(opts: SpanRecorderOptions = {}): SpanRecorder {
  defaults.recorder = new SpanRecorder(opts);
  return defaults.recorder;
}

function recorder(): SpanRecorder {
  return (defaults.recorder ??= new SpanRecorder());
}

/** The process-wide recorder the free functions use (created with defaults on first use). */
export function defaultSpanRecorder(): SpanRecorder {
  return recorder();
}

/** `withAgent` of the process-wide recorder (see SpanRecorder.withAgent). */
export function withAgent<T>(agent: string, fn: () => Promise<T> | T, opts?: AgentOptions): Promise<T> {
  return recorder().withAgent(agent, fn, opts);
}

/** `withSession` of the process-wide recorder. */
export function withSession<T>(info: SessionInfo, fn: () => T): T {
  return recorder().withSession(info, fn);
}

/** `recordCall` of the process-wide recorder. */
export function recordCall(call: CallInfo): SpanRecord {
  return recorder().recordCall(call);
}
