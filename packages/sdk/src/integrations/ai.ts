/**
 * Vercel AI SDK (`ai`) integration: a language-model middleware for `wrapLanguageModel`.
 *
 *   const model = wrapLanguageModel({ model: openai('gpt-4o'), middleware: apportionMiddleware({ controller, agent: 'researcher' }) });
 *   await generateText({ model, prompt });   // or streamText
 *
 * Per call: the agent's remaining budget becomes the output-token limit (`maxOutputTokens`, lowered, never
 * raised); past the controller's `wrapUpAt` share a wrap-up instruction joins the system messages; the call's
 * usage (streamed usage included, from the `finish` part) is recorded into the controller and as an `llm` span
 * of the agent. `ai` is an optional peer dependency: this module imports only its types.
 */
import type { LanguageModelMiddleware } from 'ai';
import type { Claim } from '../controller.js';
import { asAgent, callUsage, claimOutput, failedCall, movedTo, wrapUpText, type IntegrationOptions, type Settle } from './spans.js';

export { WRAP_UP_MESSAGE, type IntegrationOptions } from './spans.js';

export interface ApportionMiddlewareOptions extends IntegrationOptions {
  /** The agent whose budget this model spends (its name in the controller). */
  readonly agent: string;
  /**
   * Models by name the controller may move the agent to: when the controller has the agent on another model than
   * the wrapped one (its `fallbackModel` after a downgrade under pressure, once `controller.start(agent)` made it; the
   * allocation's model on a pipeline with model tiers) and that name is a key here, the call goes to that model
   * (a language model object of the same specification version, e.g. `openai('gpt-4o-mini')`), with the same
   * parameters, and its span names it. A name not found here leaves the call on the wrapped model.
   */
  readonly modelsByName?: Readonly<Record<string, ModelInfo>>;
}

type Middleware = LanguageModelMiddleware;
type TransformOptions = Parameters<NonNullable<Middleware['transformParams']>>[0];
type CallOptions = TransformOptions['params'];
type GenerateOptions = Parameters<NonNullable<Middleware['wrapGenerate']>>[0];
type GenerateResult = Awaited<ReturnType<GenerateOptions['doGenerate']>>;
type StreamOptions = Parameters<NonNullable<Middleware['wrapStream']>>[0];
type StreamResult = Awaited<ReturnType<StreamOptions['doStream']>>;
type StreamPart = StreamResult['stream'] extends ReadableStream<infer P> ? P : never;
type ModelInfo = GenerateOptions['model'];

/** Token counts of a call: the v3/v4 usage object, or the v2 flat numbers. */
type AnyUsage = GenerateResult['usage'] | { inputTokens?: number; outputTokens?: number; cachedInputTokens?: number; reasoningTokens?: number } | undefined;

function usageOf(u: AnyUsage) {
  if (!u) return undefined;
  const input = u.inputTokens;
  const output = u.outputTokens;
  if (typeof input === 'object' || typeof output === 'object') {
    const i = typeof input === 'object' ? input : undefined;
    const o = typeof output === 'object' ? output : undefined;
    return callUsage(i?.total, o?.total, { cacheRead: i?.cacheRead, cacheWrite: i?.cacheWrite, reasoning: o?.reasoning });
  }
  const flat = u as { inputTokens?: number; outputTokens?: number; cachedInputTokens?: number; reasoningTokens?: number };
  return callUsage(flat.inputTokens, flat.outputTokens, { cacheRead: flat.cachedInputTokens, reasoning: flat.reasoningTokens });
}

/** Adds the wrap-up text to the leading system messages (providers take system messages at the start only). */
function withWrapUp(prompt: CallOptions['prompt'], text: string): CallOptions['prompt'] {
  let lead = 0;
  while (lead < prompt.length && prompt[lead]!.role === 'system') lead++;
  return [...prompt.slice(0, lead), { role: 'system', content: text }, ...prompt.slice(lead)] as CallOptions['prompt'];
}

/** The model a call goes to: the one the controller has the agent on, when `modelsByName` names it; else the wrapped one. */
function targetOf(o: ApportionMiddlewareOptions, wrapped: ModelInfo): ModelInfo | undefined {
  return movedTo(o.controller, o.agent, wrapped.modelId, o.modelsByName)?.model;
}

function spanOf(o: ApportionMiddlewareOptions, model: ModelInfo, start: number, status: 'ok' | 'error') {
  return { model: model.modelId, provider: o.provider ?? model.provider.split('.')[0]!, start, end: Date.now(), status } as const;
}

/**
 * A middleware that spends `agent`'s budget in `controller`. Throws BudgetExceededError before calling the
 * model when the agent has nothing left, and after a call that took it past its limit (as `record` does).
 */
export function apportionMiddleware(o: ApportionMiddlewareOptions): LanguageModelMiddleware {
  // The claim of each call, by the params transformParams returned (wrapGenerate/wrapStream get that same object).
  const claims = new WeakMap<object, Claim>();
  const claimOf = (params: CallOptions): Claim => {
    const claim = claims.get(params) ?? claimOutput(o.controller, o.agent, params.maxOutputTokens);
    claims.delete(params);
    return claim;
  };
  return {
    specificationVersion: 'v4',
    transformParams: async ({ params }) => {
      const claim = claimOutput(o.controller, o.agent, params.maxOutputTokens);
      const wrapUp = wrapUpText(o, o.agent);
      const out = { ...params, maxOutputTokens: claim.tokens, ...(wrapUp ? { prompt: withWrapUp(params.prompt, wrapUp) } : {}) };
      claims.set(out, claim);
      return out;
    },
    wrapGenerate: ({ doGenerate, model: wrapped, params }) =>
      asAgent(o, o.agent, claimOf(params), async (settle: Settle) => {
        const start = Date.now();
        const other = targetOf(o, wrapped);
        const model = other ?? wrapped;
        let result: GenerateResult;
        try {
          result = other ? await other.doGenerate(params) : await doGenerate();
        } catch (e) {
          settle({ ...spanOf(o, model, start, 'error'), ...failedCall(e) });
          throw e;
        }
        const usage = usageOf(result.usage);
        settle({ ...spanOf(o, model, start, 'ok'), ...(usage ? { usage } : {}) });
        return result;
      }),
    wrapStream: ({ doStream, model: wrapped, params }) =>
      asAgent(o, o.agent, claimOf(params), async (settle: Settle) => {
        const start = Date.now();
        const other = targetOf(o, wrapped);
        const model = other ?? wrapped;
        let result: StreamResult;
        try {
          result = other ? await other.doStream(params) : await doStream();
        } catch (e) {
          // Before the stream began: the provider's HTTP error status, if it answered one, says it billed nothing.
          settle({ ...spanOf(o, model, start, 'error'), ...failedCall(e) });
          throw e;
        }
        // Settled exactly once, however the stream ends: its last part read (status ok unless it carried an error
        // part), the provider's stream failing mid-way, or the consumer cancelling it (status error unless the
        // finish part had arrived: the call was cut short and its usage is unknown). A TransformStream's flush
        // runs only in the first case, so the stream is wrapped by hand.
        let usage: ReturnType<typeof usageOf>;
        let sawFinish = false;
        let failed = false;
        let settled = false;
        const finish = (ok: boolean) => {
          if (settled) return;
          settled = true;
          settle({ ...spanOf(o, model, start, ok && !failed ? 'ok' : 'error'), ...(usage ? { usage } : {}) });
        };
        const reader = result.stream.getReader();
        const stream = new ReadableStream<StreamPart>({
          async pull(controller) {
            let next: Awaited<ReturnType<typeof reader.read>>;
            try {
              next = await reader.read();
            } catch (e) {
              try {
                finish(false);
              } catch {
                // past the budget as well: the stream's own failure is the error to report
              }
              controller.error(e);
              return;
            }
            if (next.done) {
              try {
                finish(true);
              } catch (e) {
                controller.error(e); // past the budget: the stream ends with BudgetExceededError
                return;
              }
              controller.close();
              return;
            }
            const part = next.value;
            if (part.type === 'finish') {
              usage = usageOf(part.usage);
              sawFinish = true;
            } else if (part.type === 'error') failed = true;
            controller.enqueue(part);
          },
          async cancel(reason) {
            try {
              finish(sawFinish);
            } catch {
              // past the budget: recorded all the same; the consumer that cancelled is not reading any more
            }
            await reader.cancel(reason);
          },
        });
        return { ...result, stream };
      }),
  };
}
