import { AsyncResource } from 'node:async_hooks';
import { defaultSpanRecorder, type CallInfo, type CallUsage, type SpanRecorder } from '../context.js';
import { BudgetExceededError, type BudgetController, type Claim } from '../controller.js';

/** Options every framework integration takes. */
export interface IntegrationOptions {
  /** The request's controller: the agent's budget caps each call, and each call's usage is recorded into it. */
  readonly controller: BudgetController;
  /** Where spans go. Default: the process-wide recorder (`configureSpans`, `withAgent`, `recordCall`). */
  readonly recorder?: SpanRecorder;
  /** Provider name stamped on the spans (e.g. `openai`). Default: the framework's, when it tells. */
  readonly provider?: string;
  /**
   * Text added to the system instructions of a call made once the agent passed the controller's `wrapUpAt`
   * share of its allocation; `false` adds nothing. Default: {@link WRAP_UP_MESSAGE}.
   */
  readonly wrapUpMessage?: string | false;
}

export const WRAP_UP_MESSAGE =
  'Your token budget for this task is nearly spent. Finish now: give your best final answer in as few words as possible, without further tool calls or exploration.';

/**
 * Claims the output-token limit of the agent's next call: what is left of its allocation, less what its other calls
 * in flight hold (or less, if the caller asked for less). The call holds it until it settles, so parallel calls of
 * one agent share what is left. Throws BudgetExceededError (scope `agent`) when nothing is left, without calling
 * the model: the pool is the reserve the caller grants from with extend(), so a call does not draw on it by itself.
 */
export function claimOutput(controller: BudgetController, agent: string, requested: number | undefined): Claim {
  if (controller.available(agent) <= 0) {
    const s = controller.state(agent);
    throw new BudgetExceededError('agent', agent, s.consumed, s.allocated, controller.pool, controller.inFlight(agent));
  }
  return controller.claim(agent, requested === undefined || requested <= 0 ? undefined : Math.floor(requested));
}

/**
 * The model the controller moved the agent to, by name, when `models` has it: its `fallbackModel` after a downgrade
 * under pressure, or the allocation's model on a pipeline with model tiers. Undefined when the agent is on `wrapped`
 * (the model the integration wraps), on no model, or on one `models` does not name: the call stays on the wrapped one.
 */
export function movedTo<M>(controller: BudgetController, agent: string, wrapped: string | undefined, models: Readonly<Record<string, M>> | undefined): { readonly name: string; readonly model: M } | undefined {
  const on = controller.state(agent).model;
  if (on === undefined || on === wrapped || !models || !Object.hasOwn(models, on)) return undefined;
  return { name: on, model: models[on]! };
}

/** The wrap-up text for the agent's next call, or undefined when it has room (or the option is off). */
export function wrapUpText(o: IntegrationOptions, agent: string): string | undefined {
  if (o.wrapUpMessage === false || !o.controller.shouldWrapUp(agent)) return undefined;
  return o.wrapUpMessage ?? WRAP_UP_MESSAGE;
}

/**
 * Ends a call: its span (always), its tokens into the controller (input + output; may throw BudgetExceededError),
 * and the output tokens it claimed released.
 */
export type Settle = (call: CallInfo) => void;

/**
 * Runs one model call as the agent: inside the current `withAgent(agent)` context when there is one, else inside
 * a new agent span that lasts until the call's `settle` (a stream settles after the call returned) and fails with
 * it, as a `withAgent` around the call would. `settle` is bound to that context, so a span recorded from a stream's
 * last chunk is still the agent's child.
 */
export function asAgent<T>(o: IntegrationOptions, agent: string, claim: Claim, call: (settle: Settle) => Promise<T>): Promise<T> {
  const recorder = o.recorder ?? defaultSpanRecorder();
  const settleIn = (end: (ok: boolean) => void): Settle =>
    AsyncResource.bind((c: CallInfo) => {
      try {
        recorder.recordCall(c);
        end(c.status !== 'error');
        if (c.usage && c.unbilledReason === undefined) o.controller.record(agent, c.usage.input + c.usage.output);
      } finally {
        claim.release();
      }
    });
  if (recorder.current()?.agent === agent) {
    const p = call(settleIn(() => undefined));
    p.catch(() => claim.release());
    return p;
  }
  let end!: (ok: boolean) => void;
  const ended = new Promise<boolean>((resolve) => (end = resolve));
  let started!: Promise<T>;
  const span = recorder.withAgent(agent, async () => {
    started = call(settleIn(end));
    started.catch(() => {
      end(false);
      claim.release(); // a call that failed without settling holds nothing any more
    });
    if (!(await ended)) throw new Error('model call failed');
  });
  span.catch(() => undefined); // the call's own promise carries the error to the caller
  return started;
}

/**
 * HTTP statuses that do not tell whether the provider ran (and billed) the call: a timeout after the request was
 * sent (408, 504) or a proxy or CDN that lost the upstream's answer (502; Cloudflare's 520–527, 524 "a timeout
 * occurred" among them). A call failing so stays unmetered.
 */
const OUTCOME_UNKNOWN = new Set([408, 502, 504, 520, 521, 522, 523, 524, 525, 526, 527]);

/**
 * The span fields of a model call that failed with `e`, before any response: when the provider answered with an
 * HTTP error status (4xx/5xx: `status` of the OpenAI client's APIError, `statusCode` of the AI SDK's APICallError)
 * it billed nothing, so the call is recorded with zero usage and `unbilledReason: 'http <status>'` and counts as
 * a call of $0. Anything else (no status: a network error, a timeout, an abort; or a status that does not tell, see
 * OUTCOME_UNKNOWN) leaves the usage unknown: no fields, and the call is kept as unmetered.
 */
export function failedCall(e: unknown): Pick<CallInfo, 'usage' | 'unbilledReason'> {
  if (typeof e !== 'object' || e === null) return {};
  const { status, statusCode } = e as { status?: unknown; statusCode?: unknown };
  const code = typeof status === 'number' ? status : typeof statusCode === 'number' ? statusCode : undefined;
  if (code === undefined || !Number.isInteger(code) || code < 400 || code > 599 || OUTCOME_UNKNOWN.has(code)) return {};
  return { usage: { input: 0, output: 0 }, unbilledReason: `http ${code}` };
}

/** Usage as spans take it, from a framework's token counts (undefined when the framework reported none). */
export function callUsage(input: number | undefined, output: number | undefined, extra: { readonly [K in Exclude<keyof CallUsage, 'input' | 'output'>]?: number | undefined } = {}): CallUsage | undefined {
  if (input === undefined && output === undefined) return undefined;
  const u: { -readonly [K in keyof CallUsage]: CallUsage[K] } = { input: input ?? 0, output: output ?? 0 };
  for (const [k, v] of Object.entries(extra) as [keyof typeof extra, number | undefined][]) if (v !== undefined && v > 0) u[k] = v;
  return u;
}
