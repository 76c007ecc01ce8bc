/**
 * Per-request budget controller (in-process, no I/O of its own): sits between an orchestrator and its
 * model calls. It tracks the request's ceiling, each agent's allocation and consumption; reclaims what a
 * finished agent left and redistributes it to agents still to run (priority class first, critical path
 * first within a class, in proportion to their allocations, never above maxTokens); keeps the allocation's
 * unallocated tokens as the pool agents extend from; warns at a share of the ceiling; signals agents near
 * their limit to wrap up; throws BudgetExceededError past a limit; stops starting agents once the ceiling is
 * reached; and under pressure skips background agents or downgrades their model.
 *
 * Every method that changes state is synchronous, so parallel sub-agents (Promise.all in one process)
 * share one controller safely: no await can interleave between a check and its update. Server backing
 * (attach/settle) is the only async part and is optional.
 */
import { waterFill } from './water-fill.js';

export type Priority = 'critical' | 'standard' | 'background';

export interface ControllerAgent {
  readonly name: string;
  /** Default `standard`. */
  readonly priority?: Priority;
  /** On the critical path: served first within its priority class. Default: priority === 'critical'. */
  readonly criticalPath?: boolean;
  /** Redistribution never raises the agent above this. Default unbounded. */
  readonly maxTokens?: number;
  readonly model?: string;
  /**
   * Cheaper model to switch to under pressure (degradation): cheaper than `model`. Only ever a downgrade: when the
   * allocation put the agent on another model (model tiers), the fallback is used only if `models` prices both and
   * the fallback is the cheaper; without both prices the agent stays on the allocation's model.
   */
  readonly fallbackModel?: string;
  /**
   * The agent's models with their prices (USD per million tokens), e.g. the pipeline agent's `models` as
   * `GET /v1/pipelines/:id` answers them (the fallback model may be listed here too). Used to downgrade only to a
   * cheaper model.
   */
  readonly models?: readonly { readonly model: string; readonly price?: { readonly inputPerMTokUsd: number; readonly outputPerMTokUsd: number } }[];
}

/** USD per token at the engine's blended mix (70 % input, 30 % output: OUTPUT_SHARE in engine/tiers.ts); undefined when unpriced. */
function rateOf(agent: ControllerAgent, model: string | undefined): number | undefined {
  const p = model === undefined ? undefined : agent.models?.find((m) => m.model === model)?.price;
  return p ? (0.7 * p.inputPerMTokUsd + 0.3 * p.outputPerMTokUsd) / 1e6 : undefined;
}

/**
 * The model an agent on `current` is downgraded to under pressure, or undefined: its fallbackModel, when that is
 * cheaper. Both priced (`models`): strictly cheaper. Otherwise only from the agent's own `model` (or none), which
 * the fallback is declared cheaper than.
 */
function downgradeOf(agent: ControllerAgent, current: string | undefined): string | undefined {
  const fb = agent.fallbackModel;
  if (!fb || fb === current) return undefined;
  const from = rateOf(agent, current);
  const to = rateOf(agent, fb);
  if (from !== undefined && to !== undefined) return to < from ? fb : undefined;
  return current === undefined || current === agent.model ? fb : undefined;
}

/** What POST /v1/allocations answers (the fields the controller uses). */
export interface AllocationBudgets {
  /** `model`: the model the allocation chose for the agent (pipelines with model tiers); it replaces the agent's own. */
  readonly budgets: Readonly<Record<string, { readonly tokens: number; readonly model?: string }>>;
  readonly unallocatedTokens?: number;
}

/** Backs the ceiling with a server reservation (see reservations-client.ts). */
export interface ReservationBacking {
  reserve(amount: number): Promise<{ id: string }>;
  commit(id: string, amount: number): Promise<unknown>;
  release(id: string): Promise<unknown>;
}

export interface ControllerOptions {
  readonly agents: readonly ControllerAgent[];
  /** Share of the ceiling at which `onWarning` fires (once). Default 0.8. */
  readonly warnAt?: number;
  /** Share of an agent's allocation at which it is told to wrap up. Default 0.9. */
  readonly wrapUpAt?: number;
  /** Share of the ceiling consumed from which agents are degraded when they start. Default 0.9. */
  readonly degradeAt?: number;
  /**
   * `priority` (default) pushes what a finished or skipped agent left to agents still to run (what they cannot
   * absorb joins the pool); `pool` keeps it for extend(). Either way the allocation's `unallocatedTokens` are the
   * pool: they are never pushed to agents, only granted by extend() or taken by an agent that overruns.
   */
  readonly redistribute?: 'priority' | 'pool';
  readonly onWarning?: (e: { readonly consumed: number; readonly ceiling: number; readonly share: number }) => void;
  readonly onWrapUp?: (agent: string, e: { readonly consumed: number; readonly allocated: number }) => void;
  readonly onDegrade?: (e: { readonly agent: string; readonly action: 'skip' | 'downgrade'; readonly model?: string; readonly reason: DegradeReason }) => void;
  readonly backing?: ReservationBacking;
}

export type AgentStatus = 'pending' | 'running' | 'finished' | 'skipped';

export interface AgentState {
  readonly name: string;
  readonly priority: Priority;
  readonly criticalPath: boolean;
  readonly allocated: number;
  readonly consumed: number;
  readonly status: AgentStatus;
  readonly model?: string;
}

/** Why an agent was degraded: the request is under pressure, or its ceiling is already consumed. */
export type DegradeReason = 'pressure' | 'ceiling';

export interface AgentPlan {
  readonly run: boolean;
  readonly tokens: number;
  readonly model?: string;
  readonly degraded?: 'skip' | 'downgrade';
  readonly reason?: DegradeReason;
}

/**
 * What marks a BudgetExceededError of any copy of this module. The package ships an ES module and a CommonJS build,
 * and a process may load both (the app imports the ESM build, a dependency requires the CJS one): two classes, and a
 * controller made through one copy throws errors of its class into models, hooks and catch blocks of the other. A
 * registered symbol is the same in every copy, so `instanceof BudgetExceededError` holds for an error of either.
 */
const BUDGET_EXCEEDED = Symbol.for('apportion.sdk.BudgetExceededError');

/**
 * A limit was reached. Scope `agent`: past its allocation with a pool that could not cover the overage
 * (`consumed > limit`), or refused a call at its limit (`consumed >= limit`, e.g. by the framework integrations,
 * which do not draw from the pool on their own; `pool` then says what extend() could still grant).
 * `instanceof BudgetExceededError` is true for one thrown by either build of the package (see BUDGET_EXCEEDED).
 */
export class BudgetExceededError extends Error {
  /** Any copy's BudgetExceededError (by its mark); for a subclass, the usual prototype check. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== BudgetExceededError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as { [BUDGET_EXCEEDED]?: unknown })[BUDGET_EXCEEDED] === true;
  }

  constructor(
    readonly scope: 'request' | 'agent' | 'server',
    readonly agent: string | undefined,
    readonly consumed: number,
    readonly limit: number,
    /** Scope `agent`: the pool when the error was raised, when known. */
    readonly pool?: number,
    /** Scope `agent`, a call refused: output tokens the agent's calls in flight hold (claim()). */
    readonly inFlight?: number,
  ) {
    super(
      scope === 'request'
        ? `request budget exceeded: ${consumed} of ${limit} tokens consumed`
        : scope === 'agent'
          ? inFlight !== undefined && inFlight > 0 && consumed < limit
            ? `agent "${agent}" has no budget left for another call (${consumed} of ${limit} tokens used, ${inFlight} held by its calls in flight)`
            : consumed > limit
            ? `agent "${agent}" exceeded its budget (${consumed} of ${limit} tokens) and the pool cannot cover it`
            : `agent "${agent}" has used its whole budget (${consumed} of ${limit} tokens)${
                pool === undefined ? '' : pool > 0 ? `; the pool's ${pool} tokens are granted only by extend()` : ' and the pool is empty'
              }`
          : `the server refused to reserve the request ceiling of ${limit} tokens`,
    );
    this.name = 'BudgetExceededError';
  }
}
Object.defineProperty(BudgetExceededError.prototype, BUDGET_EXCEEDED, { value: true });

/** Output tokens a model call in flight holds of its agent's budget (BudgetController.claim). */
export interface Claim {
  /** The tokens held: the call's output cap. */
  readonly tokens: number;
  /** Gives them back (idempotent): call when the call ends, however it ends, after recording its usage. */
  release(): void;
}

const RANK: Record<Priority, number> = { critical: 0, standard: 1, background: 2 };

interface Slot {
  readonly agent: ControllerAgent;
  readonly priority: Priority;
  readonly criticalPath: boolean;
  readonly order: number;
  allocated: number;
  consumed: number;
  status: AgentStatus;
  model: string | undefined;
  wrapped: boolean;
  /** What its last finish() reclaimed: what it may take back from the pool if it starts again. */
  reclaimed: number;
  /** Output tokens its calls in flight hold (claim()). */
  inFlight: number;
}

export class BudgetController {
  readonly ceiling: number;
  private readonly slots = new Map<string, Slot>();
  private poolTokens: number;
  /**
   * The part of the pool that finished or skipped agents gave back (their leftovers nobody took), as opposed to the
   * allocation's unallocated reserve: all a finished agent that starts again may take back. Draws on the pool take
   * from the reserve first, so this is min(itself, pool) after every draw.
   */
  private returnedTokens = 0;
  private consumedTotal = 0;
  /** Consumption that sub-agents in other processes already committed to their draws (see delegate()). */
  private remoteCharged = 0;
  private warned = false;
  private pressure = false;
  private reservationId: string | undefined;
  private readonly warnAt: number;
  private readonly wrapUpAt: number;
  private readonly degradeAt: number;

  constructor(
    allocation: AllocationBudgets,
    private readonly o: ControllerOptions,
  ) {
    this.warnAt = o.warnAt ?? 0.8;
    this.wrapUpAt = o.wrapUpAt ?? 0.9;
    this.degradeAt = o.degradeAt ?? 0.9;
    let sum = 0;
    o.agents.forEach((agent, order) => {
      const tokens = allocation.budgets[agent.name]?.tokens;
      if (tokens === undefined) throw new Error(`allocation has no budget for agent "${agent.name}"`);
      const priority = agent.priority ?? 'standard';
      this.slots.set(agent.name, {
        agent,
        priority,
        criticalPath: agent.criticalPath ?? priority === 'critical',
        order,
        allocated: tokens,
        consumed: 0,
        status: 'pending',
        // The allocation's model choice wins: its tokens were sized for that model.
        model: allocation.budgets[agent.name]?.model ?? agent.model,
        wrapped: false,
        reclaimed: 0,
        inFlight: 0,
      });
      sum += tokens;
    });
    for (const name of Object.keys(allocation.budgets)) {
      if (!this.slots.has(name)) throw new Error(`allocation names agent "${name}" that the controller was not given`);
    }
    this.poolTokens = Math.max(0, allocation.unallocatedTokens ?? 0);
    this.ceiling = sum + this.poolTokens;
  }

  /** Tokens not assigned to any agent: what extend() draws from. */
  get pool(): number {
    return this.poolTokens;
  }
  get consumed(): number {
    return this.consumedTotal;
  }
  get underPressure(): boolean {
    return this.pressure || this.consumedTotal >= this.degradeAt * this.ceiling;
  }

  state(agent: string): AgentState {
    const s = this.slot(agent);
    return {
      name: agent,
      priority: s.priority,
      criticalPath: s.criticalPath,
      allocated: s.allocated,
      consumed: s.consumed,
      status: s.status,
      ...(s.model !== undefined ? { model: s.model } : {}),
    };
  }

  snapshot(): { ceiling: number; consumed: number; pool: number; agents: AgentState[] } {
    return { ceiling: this.ceiling, consumed: this.consumedTotal, pool: this.poolTokens, agents: [...this.slots.keys()].map((n) => this.state(n)) };
  }

  /** Tokens the agent may still use: allocation − consumption − what its calls in flight hold (claim()). */
  available(agent: string): number {
    const s = this.slot(agent);
    return Math.max(0, s.allocated - s.consumed - s.inFlight);
  }

  /** Output tokens the agent's calls in flight hold (claim()). */
  inFlight(agent: string): number {
    return this.slot(agent).inFlight;
  }

  /**
   * Holds up to `tokens` (default: all that is available) of the agent's budget for one model call in flight, so
   * parallel calls of one agent share what is left instead of each being capped at all of it. The claim holds
   * `min(tokens, available(agent))`, possibly 0; release() it when the call ends (after recording its usage). An
   * agent finished while calls are in flight keeps what they hold until they release it; what they did not use
   * then goes to the pool.
   */
  claim(agent: string, tokens?: number): Claim {
    if (tokens !== undefined && (!Number.isInteger(tokens) || tokens < 0)) throw new RangeError(`tokens must be a non-negative integer, got ${tokens}`);
    const s = this.slot(agent);
    const held = Math.min(tokens ?? Infinity, this.available(agent));
    s.inFlight += held;
    let released = false;
    return {
      tokens: held,
      release: () => {
        if (released) return;
        released = true;
        s.inFlight -= held;
        if (s.status === 'finished' || s.status === 'skipped') {
          const left = Math.max(0, s.allocated - s.consumed - s.inFlight);
          s.allocated -= left;
          s.reclaimed += left;
          this.poolTokens += left;
          this.returnedTokens += left;
        }
      },
    };
  }

  /**
   * Call before running an agent. Once the request has consumed its ceiling no agent starts (`run: false`,
   * reason `ceiling`): nothing is left to run it on. Under pressure a background agent is skipped (its allocation
   * goes back to the pool) and an agent is downgraded to its fallbackModel when that is cheaper (downgradeOf); `onDegrade` says which.
   *
   * A finished agent may start again (an agent handed back to, e.g. triage → billing → triage): finish() gave what
   * it left to the agents still to run or to the pool, so it takes back from the pool what its last finish()
   * reclaimed, as far as the pool still holds what agents gave back (what it handed on and others spent is not
   * returned, and the allocation's unallocated reserve is never taken this way); the rest of the pool stays the
   * reserve for extend(). When it is not run (ceiling, or pressure on a background agent) it stays
   * finished. A running or skipped agent cannot start.
   */
  start(agent: string): AgentPlan {
    const s = this.slot(agent);
    const again = s.status === 'finished';
    if (s.status !== 'pending' && !again) throw new Error(`agent "${agent}" was already ${s.status}`);
    if (this.consumedTotal >= this.ceiling) return this.skipUnderPressure(s, 'ceiling');
    if (this.underPressure && s.priority === 'background') return this.skipUnderPressure(s, 'pressure');
    if (again) {
      const back = Math.min(s.reclaimed, this.returnedTokens, this.poolTokens);
      this.poolTokens -= back;
      this.returnedTokens -= back;
      s.allocated += back;
      s.reclaimed = 0;
      s.wrapped = s.consumed >= this.wrapUpAt * s.allocated;
    }
    s.status = 'running';
    const fallback = this.underPressure ? downgradeOf(s.agent, s.model) : undefined;
    if (fallback !== undefined) {
      s.model = fallback;
      this.o.onDegrade?.({ agent, action: 'downgrade', model: s.model, reason: 'pressure' });
      return { run: true, tokens: this.available(agent), model: s.model, degraded: 'downgrade', reason: 'pressure' };
    }
    return { run: true, tokens: this.available(agent), ...(s.model !== undefined ? { model: s.model } : {}) };
  }

  private skipUnderPressure(s: Slot, reason: DegradeReason): AgentPlan {
    // A finished agent that is not run again stays finished (it ran); it holds nothing beyond its consumption.
    if (s.status !== 'finished') s.status = 'skipped';
    const left = Math.max(0, s.allocated - s.consumed - s.inFlight);
    this.poolTokens += left;
    this.returnedTokens += left;
    s.allocated -= left;
    this.o.onDegrade?.({ agent: s.agent.name, action: 'skip', reason });
    return { run: false, tokens: 0, degraded: 'skip', reason };
  }

  /**
   * Records tokens an agent consumed (call after every model call; parallel calls are fine). Past its
   * allocation the agent draws the overage from the pool; when the pool cannot cover it, or the request
   * passes its ceiling, the usage is still recorded and BudgetExceededError is thrown.
   */
  record(agent: string, tokens: number, opts: { readonly chargedRemotely?: boolean } = {}): void {
    if (!Number.isInteger(tokens) || tokens < 0) throw new RangeError(`tokens must be a non-negative integer, got ${tokens}`);
    const s = this.slot(agent);
    if (opts.chargedRemotely) this.remoteCharged += tokens;
    if (s.status === 'pending') s.status = 'running';
    s.consumed += tokens;
    this.consumedTotal += tokens;
    let over: BudgetExceededError | undefined;
    if (s.consumed > s.allocated) {
      const need = s.consumed - s.allocated;
      const take = Math.min(need, this.poolTokens);
      this.poolTokens -= take;
      this.returnedTokens = Math.min(this.returnedTokens, this.poolTokens);
      s.allocated += take;
      if (take < need) {
        this.pressure = true;
        over = new BudgetExceededError('agent', agent, s.consumed, s.allocated);
      }
    }
    if (!this.warned && this.consumedTotal >= this.warnAt * this.ceiling) {
      this.warned = true;
      this.o.onWarning?.({ consumed: this.consumedTotal, ceiling: this.ceiling, share: this.consumedTotal / this.ceiling });
    }
    if (!s.wrapped && s.allocated > 0 && s.consumed >= this.wrapUpAt * s.allocated) {
      s.wrapped = true;
      this.o.onWrapUp?.(agent, { consumed: s.consumed, allocated: s.allocated });
    }
    if (this.consumedTotal > this.ceiling) throw new BudgetExceededError('request', agent, this.consumedTotal, this.ceiling);
    if (over) throw over;
  }

  /** Whether the agent should finish its reasoning now (it passed wrapUpAt of its allocation). */
  shouldWrapUp(agent: string): boolean {
    const s = this.slot(agent);
    return s.allocated === 0 || s.consumed >= this.wrapUpAt * s.allocated;
  }

  /**
   * Asks for more tokens from the pool. Grants all or nothing, or as much as there is with `partial`.
   * Returns the tokens granted; a refusal marks the request as under pressure. `tokens` is a non-negative
   * integer (RangeError otherwise); a finished or skipped agent cannot be extended (start it again first).
   */
  extend(agent: string, tokens: number, opts: { partial?: boolean } = {}): number {
    if (!Number.isInteger(tokens) || tokens < 0) throw new RangeError(`tokens must be a non-negative integer, got ${tokens}`);
    const s = this.slot(agent);
    // A finished or skipped agent can no longer use tokens: granting them would hold them where nothing reclaims them.
    if (s.status === 'finished' || s.status === 'skipped') throw new Error(`agent "${agent}" is ${s.status}: start it again before extending it`);
    const grant = this.poolTokens >= tokens ? tokens : opts.partial ? this.poolTokens : 0;
    this.poolTokens -= grant;
    this.returnedTokens = Math.min(this.returnedTokens, this.poolTokens);
    s.allocated += grant;
    if (grant < tokens) this.pressure = true;
    if (grant > 0) s.wrapped = s.consumed >= this.wrapUpAt * s.allocated;
    return grant;
  }

  /**
   * Marks the agent finished, reclaims what it left and (policy `priority`) redistributes that to agents
   * still to run; the pool itself stays for extensions. Returns the reclaimed amount and what each agent received.
   */
  finish(agent: string): { reclaimed: number; redistributed: Record<string, number> } {
    const s = this.slot(agent);
    if (s.status === 'finished' || s.status === 'skipped') return { reclaimed: 0, redistributed: {} };
    s.status = 'finished';
    // What its calls in flight hold stays with it until they release it (claim()).
    const left = Math.max(0, s.allocated - s.consumed - s.inFlight);
    s.allocated -= left;
    s.reclaimed = left;
    this.poolTokens += left;
    const redistributed = this.o.redistribute === 'pool' ? {} : this.redistribute(left);
    // What the agents still to run did not take stays in the pool: that part is what this agent may take back.
    this.returnedTokens += left - Object.values(redistributed).reduce((a, b) => a + b, 0);
    return { reclaimed: left, redistributed };
  }

  /** Skips an agent without running it: its whole allocation goes back to the pool and is redistributed. */
  skip(agent: string): { reclaimed: number; redistributed: Record<string, number> } {
    const s = this.slot(agent);
    if (s.status !== 'pending') throw new Error(`agent "${agent}" was already ${s.status}`);
    const r = this.finish(agent);
    s.status = 'skipped';
    return r;
  }

  /**
   * Pushes `amount` (what an agent left, already in the pool) to pending agents: tiers in order (critical +
   * critical path, critical, standard + critical path, standard, background…), within a tier in proportion to
   * current allocations, capped by maxTokens; what a tier cannot absorb flows to the next; what nobody can absorb
   * stays in the pool. The rest of the pool is not touched: it is the reserve for extend().
   */
  private redistribute(amount: number): Record<string, number> {
    const out: Record<string, number> = {};
    let left = Math.min(amount, this.poolTokens);
    const pending = [...this.slots.values()].filter((s) => s.status === 'pending');
    const tierOf = (s: Slot) => RANK[s.priority] * 2 + (s.criticalPath ? 0 : 1);
    const tiers = [...new Set(pending.map(tierOf))].sort((a, b) => a - b);
    for (const tier of tiers) {
      if (left <= 0) break;
      const members = pending.filter((s) => tierOf(s) === tier).sort((a, b) => a.order - b.order);
      const fit = waterFill(
        members.map((m) => ({
          min: 0,
          cap: m.agent.maxTokens === undefined ? Infinity : Math.max(0, m.agent.maxTokens - m.allocated),
          weight: Math.max(1, m.allocated),
        })),
        left,
      );
      members.forEach((m, i) => {
        const add = fit[i]!;
        if (add <= 0) return;
        m.allocated += add;
        this.poolTokens -= add;
        left -= add;
        out[m.agent.name] = add;
      });
    }
    return out;
  }

  /**
   * Reserves the ceiling on the server, so other requests of the tenant cannot take it while this one
   * runs. Throws BudgetExceededError('server') when the server denies it.
   */
  async attach(): Promise<string> {
    if (!this.o.backing) throw new Error('no reservation backing configured');
    try {
      this.reservationId = (await this.o.backing.reserve(this.ceiling)).id;
    } catch (e) {
      const status = (e as { statusCode?: number }).statusCode;
      if (status === 409 || status === 404) throw new BudgetExceededError('server', undefined, 0, this.ceiling);
      throw e;
    }
    return this.reservationId;
  }

  /**
   * Hands an agent to a sub-agent in another process: marks it running and returns what that process needs to
   * draw the agent's budget from this request's server reservation (ReservationsClient.drawBacking(parent),
   * typically as the backing of its own BudgetController). When it reports back, record its usage with
   * `{ chargedRemotely: true }`: its draw already charged it, so settle() does not charge it again.
   * Requires attach().
   */
  delegate(agent: string): { readonly parent: string; readonly agent: string; readonly tokens: number; readonly model?: string } {
    if (this.reservationId === undefined) throw new Error('delegate() needs a server reservation: call attach() first');
    const plan = this.start(agent);
    if (!plan.run) return { parent: this.reservationId, agent, tokens: 0 };
    return { parent: this.reservationId, agent, tokens: plan.tokens, ...(plan.model !== undefined ? { model: plan.model } : {}) };
  }

  /** The server reservation backing this request, once attached. */
  get reservation(): string | undefined {
    return this.reservationId;
  }

  /**
   * Commits what this process consumed to the server reservation (the rest goes back), or releases it if
   * nothing was used. Usage recorded with `chargedRemotely` was committed by the sub-agents' draws and is not
   * charged again. The server refuses (409 RESERVATION_HAS_ACTIVE_DRAWS) while a draw is still active.
   */
  async settle(): Promise<void> {
    if (!this.o.backing || this.reservationId === undefined) return;
    const id = this.reservationId;
    const own = this.consumedTotal - this.remoteCharged;
    if (own === 0) await this.o.backing.release(id);
    else await this.o.backing.commit(id, own);
    this.reservationId = undefined;
  }

  private slot(agent: string): Slot {
    const s = this.slots.get(agent);
    if (!s) throw new Error(`unknown agent "${agent}"`);
    return s;
  }
}
