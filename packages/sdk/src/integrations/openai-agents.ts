/**
 * OpenAI Agents SDK (`@openai/agents`) integration: a model wrapper that spends one agent's budget, a helper that
 * gives every agent of a multi-agent graph (handoffs included) its own wrapper, and run hooks that start and finish
 * agents in the controller, so what an agent leaves when it hands off goes to the agents after it.
 *
 *   const agents = budgetAgents(triage, { model: aisdk(openai('gpt-4o')) });  // once, where the agents are defined
 *   // per request, with that request's controller:
 *   const detach = attachBudgetHooks(runner, controller, agents);
 *   await runWithBudget(controller, () => runner.run(triage, input));       // or { stream: true }
 *
 * Per model call: the controller of the current `runWithBudget` scope (else the one the model was built with) is
 * the one spent; the agent's remaining budget becomes `modelSettings.maxTokens` (lowered, never raised); past the
 * controller's `wrapUpAt` share a wrap-up instruction is appended to the system instructions; the call's usage
 * (streamed: from `response_done`) is recorded into the controller and as an `llm` span of the agent.
 * `@openai/agents` is an optional peer dependency: this module imports only its types.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Agent, Model, ModelRequest, ModelResponse, Runner, StreamEvent } from '@openai/agents';
import { BudgetExceededError, type BudgetController, type Claim } from '../controller.js';
import { asAgent, callUsage, claimOutput, failedCall, movedTo, wrapUpText, type IntegrationOptions, type Settle } from './spans.js';

export { WRAP_UP_MESSAGE, type IntegrationOptions } from './spans.js';

/**
 * One `name` per process, not one per copy of this module: the package ships an ES module and a CommonJS build, and
 * a process may load both (the app imports the ESM build, a dependency requires the CJS one). Each copy would have
 * its own, and what one copy registers there would be invisible to the other. So the instance lives on `globalThis`
 * under a registered symbol (`Symbol.for('apportion.sdk.<name>')`), created by the first copy loaded and taken by the
 * rest.
 */
function processWide<T>(name: string, isOne: (v: unknown) => v is T, create: () => T): T {
  const key = Symbol.for(`apportion.sdk.${name}`);
  const g = globalThis as { [key: symbol]: unknown };
  const existing = g[key];
  if (isOne(existing)) return existing;
  const created = create();
  Object.defineProperty(g, key, { value: created, enumerable: false, writable: false, configurable: false });
  return created;
}

/**
 * The controller of the request being run: the Agents SDK calls a model inside `runner.run`'s async context (the
 * nested run of an agent used as a tool and a streamed run's background loop included), so a scope entered around
 * `runner.run` reaches every model call of that run, and only of that run. One per process (processWide): a scope
 * opened through either build is the one models of both read.
 */
const budgetScope = processWide('budgetScope', (v): v is AsyncLocalStorage<BudgetController> => v instanceof AsyncLocalStorage, () => new AsyncLocalStorage<BudgetController>());

/**
 * Runs `fn` (e.g. `() => runner.run(agent, input)`) with `controller` as the request's controller: every
 * ApportionModel called within it (and within what it starts: streams, agents run as tools) spends `controller`,
 * whatever controller it was built with. This is how Agent objects shared by requests (defined once, at module
 * level) charge each request's own controller, concurrent requests included.
 */
export function runWithBudget<T>(controller: BudgetController, fn: () => T): T {
  return budgetScope.run(controller, fn);
}

/** The controller of the current `runWithBudget` scope, if any. */
export function currentBudgetController(): BudgetController | undefined {
  return budgetScope.getStore();
}

export interface ApportionModelOptions extends Omit<IntegrationOptions, 'controller'> {
  /**
   * The controller spent when no `runWithBudget` scope is active (a scope's controller takes precedence). Without
   * one, every call must run inside `runWithBudget`.
   */
  readonly controller?: BudgetController | undefined;
  /** The agent whose budget this model spends (its name in the controller). */
  readonly agent: string;
  /** Model name on the spans (prices them). Default `unknown` (the call is kept as unpriced). */
  readonly modelName?: string;
  /**
   * Models by name the controller may move the agent to: when the request's controller has the agent on another
   * model than `modelName` (its `fallbackModel` after a downgrade under pressure; the allocation's model on a pipeline
   * with model tiers) and that name is a key here, the call goes to that Model, and its span names it. A model name
   * not found here leaves the call on `inner`.
   */
  readonly modelsByName?: Readonly<Record<string, Model>>;
}

type Details = Record<string, number> | Record<string, number>[] | undefined;
const detail = (d: Details, key: string) => (Array.isArray(d) ? d.reduce((s, r) => s + (r[key] ?? 0), 0) : d?.[key]);

function usageOf(u: { inputTokens: number; outputTokens: number; inputTokensDetails?: Details; outputTokensDetails?: Details } | undefined) {
  if (!u) return undefined;
  return callUsage(u.inputTokens, u.outputTokens, { cacheRead: detail(u.inputTokensDetails, 'cached_tokens'), reasoning: detail(u.outputTokensDetails, 'reasoning_tokens') });
}

/**
 * Who hears that an agent's model call raised BudgetExceededError, per controller: the run hooks, which finish the
 * agent (its run ends there, and an agent run as a tool ends without an `agent_end` event: the Agents SDK turns the
 * error into the tool's output). One per process (processWide), so hooks attached through one build hear models
 * wrapped by the other.
 */
const overBudgetListeners = processWide(
  'overBudgetListeners',
  (v): v is WeakMap<BudgetController, Set<(agent: string) => void>> => v instanceof WeakMap,
  () => new WeakMap<BudgetController, Set<(agent: string) => void>>(),
);

/** What marks an ApportionModel of any copy of this module (a registered symbol: the same in both builds). */
const APPORTION_MODEL = Symbol.for('apportion.sdk.ApportionModel');

/**
 * A Model that caps, meters and attributes the calls of one agent, delegating to `inner`. `instanceof
 * ApportionModel` is true for one made by either build of the package (see APPORTION_MODEL), so budgetAgents of
 * one build recognises an agent the other already wrapped.
 */
export class ApportionModel implements Model {
  /** Any copy's ApportionModel (by its mark); for a subclass, the usual prototype check. */
  static [Symbol.hasInstance](value: unknown): boolean {
    if (this !== ApportionModel) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as { [APPORTION_MODEL]?: unknown })[APPORTION_MODEL] === true;
  }

  /** The controller spent outside a `runWithBudget` scope; undefined once the model is shared by controllers. */
  #fallback: BudgetController | undefined;

  constructor(
    readonly inner: Model,
    private readonly o: ApportionModelOptions,
  ) {
    this.#fallback = o.controller;
  }

  /** The agent whose budget this model spends. */
  get agent(): string {
    return this.o.agent;
  }

  /** The options it was built with. */
  get options(): ApportionModelOptions {
    return this.o;
  }

  /** The controller a call made outside a `runWithBudget` scope spends (undefined: such a call is refused). */
  get fallbackController(): BudgetController | undefined {
    return this.#fallback;
  }

  /**
   * budgetAgents found this model already wrapping an agent and is given `controller`: a model bound to another
   * controller is from then on shared by requests, and spends only the controller of the current
   * `runWithBudget` scope (keeping the first binding would charge the first request for every later one).
   */
  share(controller: BudgetController | undefined): void {
    if (controller !== undefined && this.#fallback !== undefined && controller !== this.#fallback) this.#fallback = undefined;
  }

  /** The options a call uses: this model's, with the current request's controller. */
  private current(): IntegrationOptions {
    const scoped = budgetScope.getStore();
    const controller = scoped ?? this.#fallback;
    if (!controller) {
      throw new Error(
        `agent "${this.o.agent}" has no BudgetController for this call: its model is shared by requests (or was wrapped without a controller), so run each request inside runWithBudget(controller, () => runner.run(…))`,
      );
    }
    try {
      controller.state(this.o.agent);
    } catch {
      throw new Error(`agent "${this.o.agent}" is unknown to the ${scoped ? 'BudgetController of the runWithBudget scope' : "model's BudgetController"}: give the controller every agent the run can reach`);
    }
    return { ...this.o, controller };
  }

  /** The request with its output cap, claimed from the agent until the call settles, and the wrap-up. */
  private prepare(o: IntegrationOptions, request: ModelRequest): { prepared: ModelRequest; claim: Claim } {
    const claim = claimOutput(o.controller, this.o.agent, request.modelSettings.maxTokens);
    const wrapUp = wrapUpText(o, this.o.agent);
    const prepared = {
      ...request,
      modelSettings: { ...request.modelSettings, maxTokens: claim.tokens },
      ...(wrapUp ? { systemInstructions: request.systemInstructions ? `${request.systemInstructions}\n\n${wrapUp}` : wrapUp } : {}),
    };
    return { prepared, claim };
  }

  /** The Model a call of the agent goes to, and its name: the one the controller has the agent on, when given. */
  private target(controller: BudgetController): { model: Model; name: string } {
    return movedTo(controller, this.o.agent, this.o.modelName, this.o.modelsByName) ?? { model: this.inner, name: this.o.modelName ?? 'unknown' };
  }

  private span(model: string, start: number, status: 'ok' | 'error') {
    return { model, ...(this.o.provider ? { provider: this.o.provider } : {}), start, end: Date.now(), status } as const;
  }

  /** Tells the run hooks of this controller that the agent's run ends on a budget error (after its claim is released). */
  private failed(controller: BudgetController, e: unknown): void {
    if (!(e instanceof BudgetExceededError)) return;
    for (const listener of [...(overBudgetListeners.get(controller) ?? [])]) listener(this.o.agent);
  }

  getResponse(request: ModelRequest): Promise<ModelResponse> {
    const o = this.current();
    try {
      return this.response(o, request).catch((e: unknown) => {
        this.failed(o.controller, e);
        throw e;
      });
    } catch (e) {
      this.failed(o.controller, e);
      throw e;
    }
  }

  async *getStreamedResponse(request: ModelRequest): AsyncIterable<StreamEvent> {
    const o = this.current();
    try {
      yield* this.streamedResponse(o, request);
    } catch (e) {
      this.failed(o.controller, e);
      throw e;
    }
  }

  private response(o: IntegrationOptions, request: ModelRequest): Promise<ModelResponse> {
    const { prepared, claim } = this.prepare(o, request);
    const target = this.target(o.controller);
    return asAgent(o, this.o.agent, claim, async (settle: Settle) => {
      const start = Date.now();
      let res: ModelResponse;
      try {
        res = await target.model.getResponse(prepared);
      } catch (e) {
        settle({ ...this.span(target.name, start, 'error'), ...failedCall(e) });
        throw e;
      }
      const usage = usageOf(res.usage);
      settle({ ...this.span(target.name, start, 'ok'), ...(usage ? { usage } : {}) });
      return res;
    });
  }

  private async *streamedResponse(o: IntegrationOptions, request: ModelRequest): AsyncIterable<StreamEvent> {
    const { prepared, claim } = this.prepare(o, request);
    const target = this.target(o.controller);
    let settle!: Settle;
    await asAgent(o, this.o.agent, claim, async (s: Settle) => {
      settle = s;
    });
    const start = Date.now();
    let usage: ReturnType<typeof usageOf>;
    let ok = false;
    let events = 0;
    // Failed before its first event (the provider's HTTP error status comes before any): perhaps billed nothing.
    let failedEarly: ReturnType<typeof failedCall> = {};
    try {
      for await (const event of target.model.getStreamedResponse(prepared)) {
        events++;
        if (event.type === 'response_done') usage = usageOf(event.response.usage);
        yield event;
      }
      ok = true;
    } catch (e) {
      if (events === 0) failedEarly = failedCall(e);
      throw e;
    } finally {
      settle({ ...this.span(target.name, start, ok ? 'ok' : 'error'), ...(usage ? { usage } : failedEarly) });
    }
  }

  /** The advice of the Model the agent's calls go to now (its fallback after a downgrade; see `target`). */
  getRetryAdvice: NonNullable<Model['getRetryAdvice']> = (args) => {
    let model = this.inner;
    try {
      model = this.target(this.current().controller).model;
    } catch {
      // No controller for this call (a shared model outside runWithBudget), or one without the agent: the wrapped Model's advice.
    }
    return model.getRetryAdvice?.(args);
  };
}
Object.defineProperty(ApportionModel.prototype, APPORTION_MODEL, { value: true });

export interface BudgetAgentsOptions extends Omit<IntegrationOptions, 'controller'> {
  /**
   * The controller the agents spend outside a `runWithBudget` scope: for agents made for one request. Agents
   * defined once and shared by requests are wrapped without one, and each request runs inside
   * `runWithBudget(itsController, …)`. Given, every agent is checked to be known to it.
   */
  readonly controller?: BudgetController | undefined;
  /**
   * The Model for agents configured with a model name (or none): one Model, or one per agent. Agents that
   * already hold a Model instance keep it (wrapped). Required when some agent has no Model instance.
   */
  readonly model?: Model | ((agent: Agent<any, any>) => Model);
  /** Model name on the spans; default: the agent's model name when it is a string, else `unknown`. */
  readonly modelName?: string;
  /** Models by name the controller may move an agent to (see ApportionModelOptions.modelsByName). */
  readonly modelsByName?: Readonly<Record<string, Model>>;
}

/**
 * Gives `root` (one agent, or several: e.g. the top agent and the agents it calls through `agent.asTool()`, which
 * handoffs do not reach) and every agent reachable through handoffs an ApportionModel spending its own budget (by
 * agent name), replacing each agent's `model`. Returns the agents it wrapped: pass them to attachBudgetHooks so
 * agents run as tools are finished too. Throws before changing anything if an agent is unknown to the controller,
 * has no Model to wrap, or is already wrapped with other span options (recorder, provider, wrap-up, model name).
 *
 * An agent already wrapped keeps its ApportionModel: a call made inside `runWithBudget(controller, …)` spends that
 * controller. Wrapped again with another controller, its model no longer spends either one outside a scope (it is
 * shared by requests): a call outside `runWithBudget` then throws instead of charging the wrong request.
 */
export function budgetAgents(root: Agent<any, any> | readonly Agent<any, any>[], o: BudgetAgentsOptions): Agent<any, any>[] {
  const seen = new Set<Agent<any, any>>();
  const walk = (a: Agent<any, any>) => {
    if (seen.has(a)) return;
    seen.add(a);
    for (const h of a.handoffs) walk('agent' in h ? (h as { agent: Agent<any, any> }).agent : (h as Agent<any, any>));
  };
  for (const r of Array.isArray(root) ? root : [root]) walk(r as Agent<any, any>);
  const { model: _model, ...options } = o;
  const plans = [...seen].map((agent) => {
    o.controller?.state(agent.name); // throws on an agent the controller does not know
    if (agent.model instanceof ApportionModel) {
      const kept = agent.model;
      const differs = (['recorder', 'provider', 'wrapUpMessage', 'modelName', 'modelsByName'] as const).filter((k) => o[k] !== undefined && o[k] !== kept.options[k]);
      if (kept.agent !== agent.name || differs.length > 0) {
        throw new Error(
          `agent "${agent.name}" is already wrapped ${kept.agent !== agent.name ? `for agent "${kept.agent}"` : `with another ${differs.join(', ')}`}: wrap agents shared by requests once, and run each request inside runWithBudget(controller, …)`,
        );
      }
      return { agent, model: kept, keep: true };
    }
    const inner = typeof agent.model === 'object' ? agent.model : typeof o.model === 'function' ? o.model(agent) : o.model;
    if (!inner) throw new Error(`agent "${agent.name}" has no Model instance to wrap: pass options.model`);
    const modelName = o.modelName ?? (typeof agent.model === 'string' && agent.model !== '' ? agent.model : undefined);
    return { agent, model: new ApportionModel(inner, { ...options, agent: agent.name, ...(modelName ? { modelName } : {}) }), keep: false };
  });
  for (const p of plans) {
    if (p.keep) p.model.share(o.controller);
    else p.agent.model = p.model;
  }
  return plans.map((p) => p.agent);
}

type AgentEvent = 'agent_start' | 'agent_handoff' | 'agent_end';

/**
 * The handlers of the requests whose hooks listen to a shared agent's events, per agent and event. An agent gets one
 * listener per event, added the first time and calling the handlers present then, instead of one per request:
 * agents defined once and run by many concurrent requests would otherwise collect three listeners per request in
 * flight (Node warns of a likely leak past ten). One per process (processWide), so hooks of either build share it.
 */
const agentHandlers = processWide(
  'agentHookHandlers',
  (v): v is WeakMap<object, Map<AgentEvent, Set<(ctx: unknown) => void>>> => v instanceof WeakMap,
  () => new WeakMap<object, Map<AgentEvent, Set<(ctx: unknown) => void>>>(),
);

/** Adds `handler` to the agent's handlers of `event`; returns what removes it. */
function listen(agent: Agent<any, any>, event: AgentEvent, handler: (ctx: unknown) => void): () => void {
  let events = agentHandlers.get(agent);
  if (!events) agentHandlers.set(agent, (events = new Map()));
  let handlers = events.get(event);
  if (!handlers) {
    const added = new Set<(ctx: unknown) => void>();
    events.set(event, (handlers = added));
    // Every one of these events passes the run's context first, which is all the handlers read.
    (agent as unknown as { on(e: AgentEvent, listener: (ctx: unknown) => void): unknown }).on(event, (ctx: unknown) => {
      for (const h of [...added]) h(ctx);
    });
  }
  handlers.add(handler);
  const own = handlers;
  return () => void own.delete(handler);
}

/**
 * Run hooks for one request: an agent is started in the controller when it starts, and finished when it hands off
 * or produces the final output, so what it left is redistributed to the agents still to run. An agent handed back
 * to (triage → billing → triage) starts again: it takes back from the pool what it left at its handoff, as far as
 * the pool still holds it (BudgetController.start). Use one Runner per request (hooks are per Runner), and run it
 * inside `runWithBudget(controller, …)` when its agents are shared by requests, so their models spend this
 * controller too. Returns a function that detaches the hooks.
 *
 * An agent run as a tool (`agent.asTool()`) runs in a Runner of its own, whose events `runner` never sees: pass
 * `agents` (what budgetAgents returned) and each one's own events start and finish it too, counted only when they
 * belong to this runner's run (the nested run shares its RunContext), so concurrent requests sharing the Agent
 * objects do not touch each other's controllers.
 */
export function attachBudgetHooks(runner: Pick<Runner, 'on' | 'off'>, controller: BudgetController, agents: readonly Agent<any, any>[] = []): () => void {
  let run: { usage?: unknown } | undefined; // this run's RunContext: its first agent_start on the runner
  const started = new Set<string>(); // the agents these hooks started (not the ones the caller started itself)
  const begin = (ctx: unknown, agent: Agent<any, any>) => {
    run ??= ctx as { usage?: unknown };
    const status = controller.state(agent.name).status;
    if (status === 'pending' || status === 'finished') {
      controller.start(agent.name);
      started.add(agent.name);
    }
  };
  // A budget error ends the agent's run without agent_end (run as a tool, the SDK makes it the tool's output;
  // at the top, runner.run rejects): finish the agent here, once (finish() of a finished agent does nothing).
  const overBudget = (agent: string) => {
    if (started.has(agent) && controller.state(agent).status === 'running') controller.finish(agent);
  };
  let listeners = overBudgetListeners.get(controller);
  if (!listeners) overBudgetListeners.set(controller, (listeners = new Set()));
  listeners.add(overBudget);
  const handoff = (_ctx: unknown, from: Agent<any, any>) => void controller.finish(from.name);
  const end = (_ctx: unknown, agent: Agent<any, any>) => void controller.finish(agent.name);
  runner.on('agent_start', begin);
  runner.on('agent_handoff', handoff);
  runner.on('agent_end', end);
  // A nested (as-tool) run is given this run's RunContext, or a fork of it sharing its usage.
  const ours = (ctx: unknown) => run !== undefined && (ctx === run || (run.usage !== undefined && (ctx as { usage?: unknown } | undefined)?.usage === run.usage));
  const own = [...new Set(agents)].map((agent) => {
    const onStart = (ctx: unknown) => {
      if (ours(ctx) && controller.state(agent.name).status !== 'running') begin(ctx, agent);
    };
    const onEnd = (ctx: unknown) => {
      if (ours(ctx)) controller.finish(agent.name);
    };
    const offs = [listen(agent, 'agent_start', onStart), listen(agent, 'agent_handoff', onEnd), listen(agent, 'agent_end', onEnd)];
    return () => {
      for (const off of offs) off();
    };
  });
  return () => {
    listeners.delete(overBudget);
    runner.off('agent_start', begin);
    runner.off('agent_handoff', handoff);
    runner.off('agent_end', end);
    for (const off of own) off();
  };
}
