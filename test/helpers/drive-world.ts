import type { Redis } from 'ioredis';
import { readDecisionJsons, type DecisionRecord } from '../../src/allocation/decisions.js';
import type { LearnerMeta } from '../../src/learner/kind.js';
import { mulberry32 } from '../../src/learner/rng.js';
import { bestStatic, phaseOf, staticSplit, uniformSplitOf, type SimWorld } from '../../src/learner/sim/family.js';
import type { Keys } from '../../src/redis/keys.js';

/**
 * Drives a simulated world through a running Apportion over HTTP, as a user's orchestrator would: declare the
 * pipeline, its features (the world's plain declaration: no mean/std) and a `learned` strategy, then allocate and
 * report each request's quality (and cost, where the world has one) with several requests in flight. Then reads
 * back what was served (the decision records: model version and guard arm) and values it against the world's
 * ground truth: oracle, uniform, best static and the default strategy's split on the same requests.
 * Used by bench/learner-http.ts and test/learner/unseen-http.test.ts.
 */

export type Call = (method: string, path: string, body?: unknown) => Promise<any>;

export interface DriveOptions {
  readonly world: SimWorld;
  readonly pipeline: string;
  readonly strategy: string;
  /** Admin calls (declarations, models, metrics) and user calls (allocations, outcomes). */
  readonly admin: Call;
  readonly user: Call;
  readonly outcomes: number;
  readonly concurrency: number;
  /** Send request t no earlier than t / rps seconds after the start (open loop, at most `concurrency` in flight). Default: as fast as answered. */
  readonly rps?: number;
  readonly seed: number;
  /** Extra params of the learned strategy (default: none, the service's defaults; costWeight is the world's). */
  readonly params?: Record<string, unknown>;
  /** Called every `progressEvery` finished outcomes, with how many of them were not reported (see `unreported`); no new request is sent until it returns (those in flight finish). */
  readonly onProgress?: (done: number, unreported: number) => void | Promise<void>;
  readonly progressEvery?: number;
}

export interface DriveRun {
  readonly world: SimWorld;
  /** Per request index t (the order requests were sent): context, served budgets, decision id, finish order. */
  readonly contexts: readonly unknown[];
  readonly budgets: readonly (readonly number[])[];
  readonly ids: readonly string[];
  /** Wall-clock ms from the start at which request t's outcome was accepted. */
  readonly doneMs: Float64Array;
  /** Epoch ms of the start, and the run's length. */
  readonly t0: number;
  readonly ms: number;
  /** Allocations answered `recorded: false`, those of them whose outcome could not be reported (their record never
   * landed: 404 after the retries), and calls retried after a 5xx (503 DECISION_PENDING included) or a dropped connection. */
  readonly unrecorded: number;
  readonly unreported: number;
  readonly retries: number;
}

/** The pipeline, the plain feature declaration and the learned strategy (the pipeline's default strategy is left unset: uniform). */
export async function declare(o: Pick<DriveOptions, 'world' | 'pipeline' | 'strategy' | 'admin' | 'params'>): Promise<void> {
  const { world } = o;
  await o.admin('PUT', `/v1/pipelines/${o.pipeline}`, { defaultTotalTokens: world.totalTokens, agents: world.agents.map((a) => ({ name: a.name, minTokens: a.minTokens, maxTokens: a.maxTokens })) });
  await o.admin('PUT', `/v1/pipelines/${o.pipeline}/features`, world.declaration);
  await o.admin('PUT', `/v1/strategies/${o.strategy}`, { pipeline: o.pipeline, kind: 'learned', params: { ...(world.costWeight ? { costWeight: world.costWeight } : {}), ...o.params } });
}

/** Allocates and reports `outcomes` requests, `concurrency` in flight; request t is in the world's phase at t. */
export async function drive(o: DriveOptions): Promise<DriveRun> {
  const { world } = o;
  const ctxRng = mulberry32(o.seed);
  const noise = mulberry32(o.seed ^ 0x5eed);
  const N = o.outcomes;
  const contexts = Array.from({ length: N }, () => world.sample(ctxRng));
  const budgets: number[][] = new Array(N);
  const ids: string[] = new Array(N);
  const doneMs = new Float64Array(N);
  const t0 = Date.now();
  let next = 0;
  let done = 0;
  let unrecorded = 0;
  let unreported = 0;
  let retries = 0;
  // A 5xx (e.g. 503 REDIS_UNAVAILABLE when Redis is slow on a loaded machine) or a dropped connection is retried,
  // as a user's client would, up to 5 times with a growing pause; a 4xx is not.
  const retried = async <T>(call: () => Promise<T>): Promise<T> => {
    for (let k = 0; ; k++) {
      try {
        return await call();
      } catch (e) {
        // The SDK's errors carry `statusCode`; okHttp's assertion names the status in its message ("… → 404 …").
        const status = (e as { statusCode?: number }).statusCode ?? Number(/ → (\d{3}) /.exec((e as Error).message ?? '')?.[1] ?? NaN);
        if (k >= 5 || status < 500) throw e;
        retries++;
        await new Promise((r) => setTimeout(r, 200 * (k + 1)));
      }
    }
  };
  const every = o.progressEvery ?? 500;
  let hold: Promise<void> | undefined;
  const worker = async () => {
    for (;;) {
      while (hold) await hold;
      const t = next++;
      if (t >= N) return;
      if (o.rps) {
        const wait = t0 + (t * 1000) / o.rps - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      const x = contexts[t];
      const a = await retried(() => o.user('POST', '/v1/allocations', { pipeline: o.pipeline, strategy: o.strategy, features: world.features(x) }));
      const b = world.agents.map((ag) => a.budgets[ag.name].tokens as number);
      const out = world.outcome(phaseOf(world, t), x, b, noise);
      // `recorded: false`: the decision record was not confirmed within the write wait (a loaded machine); it may
      // land later. Its outcome is posted too: while the record may be in flight the answer is 503 DECISION_PENDING
      // (retried, as any 5xx); once written, the outcome is accepted; if it never lands, 404 DECISION_NOT_FOUND and
      // the outcome is skipped (counted in `unreported`). Such a decision never gets the default reward.
      if (a.recorded === false) unrecorded++;
      try {
        await retried(() => o.user('POST', '/v1/outcomes', { decisionId: a.decisionId, quality: out.quality, ...(out.cost !== null ? { costUsd: out.cost } : {}) }));
      } catch (e) {
        if (a.recorded !== false) throw e;
        unreported++;
      }
      budgets[t] = b;
      ids[t] = a.decisionId as string;
      doneMs[t] = Date.now() - t0;
      done++;
      if (o.onProgress && done % every === 0) {
        const h = (async () => o.onProgress!(done, unreported))().finally(() => (hold = undefined));
        hold = h;
        await h;
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return { world, contexts, budgets, ids, doneMs, t0, ms: Date.now() - t0, unrecorded, unreported, retries };
}

/**
 * Per request: the model version that decided (0: the safe start, the default strategy explored around) and whether
 * the guard's control arm served it (1), or 2 when its record is missing (answered `recorded: false`): left out of
 * the learned arm's comparisons, still counted in what was served.
 */
export async function servedMeta(redis: Redis, keys: Keys, ids: readonly string[]): Promise<{ version: Int32Array; control: Uint8Array; missing: number }> {
  const version = new Int32Array(ids.length);
  const control = new Uint8Array(ids.length);
  let missing = 0;
  for (let s = 0; s < ids.length; s += 500) {
    const recs = await readDecisionJsons(redis, keys, ids.slice(s, s + 500));
    recs.forEach((r, i) => {
      if (!r) {
        missing++;
        control[s + i] = 2;
        return;
      }
      const m = (JSON.parse(r) as DecisionRecord).meta?.learner as LearnerMeta | undefined;
      version[s + i] = m?.m ?? 0;
      control[s + i] = m?.x?.a === 1 ? 1 : 0;
    });
  }
  return { version, control, missing };
}

/** What a request's split is worth in expectation, and the baselines on the same request. */
export interface Valued {
  readonly served: Float64Array;
  readonly uniform: Float64Array;
  readonly defaultV: Float64Array;
  readonly bestStatic: Float64Array;
  /** The oracle on every `stride`-th request (NaN elsewhere). */
  readonly oracle: Float64Array;
  readonly stride: number;
}

/**
 * Values a run. The default strategy is uniform (no `defaultStrategy` on the pipeline). The best static split is
 * fitted per phase on up to 300 requests of that phase's last quarter (of the run, or of the phase), as bench/learner does.
 * `budgets`: the served splits, or (the in-process loop) their expected values already computed.
 */
export function valueRun(world: SimWorld, contexts: readonly unknown[], budgets: readonly (readonly number[])[] | Float64Array, stride: number): Valued {
  const N = contexts.length;
  const T = world.totalTokens;
  const uni = uniformSplitOf(world, T);
  const phases: (0 | 1)[] = world.driftAt !== undefined && world.driftAt < N ? [0, 1] : [0];
  const statics = phases.map((p) => {
    const from = p === 0 ? 0 : world.driftAt!;
    const to = p === 0 && phases.length > 1 ? world.driftAt! : N;
    const q = contexts.slice(from + Math.floor((to - from) * 0.75), to);
    const sample = q.filter((_, i) => i % Math.max(1, Math.ceil(q.length / 300)) === 0);
    return staticSplit(world, bestStatic(world, p, sample, T), T);
  });
  const v: Valued = { served: new Float64Array(N), uniform: new Float64Array(N), defaultV: new Float64Array(N), bestStatic: new Float64Array(N), oracle: new Float64Array(N).fill(NaN), stride };
  for (let t = 0; t < N; t++) {
    const p = phaseOf(world, t);
    const x = contexts[t];
    v.served[t] = budgets instanceof Float64Array ? budgets[t]! : world.expected(p, x, budgets[t]!);
    v.uniform[t] = world.expected(p, x, uni);
    v.defaultV[t] = v.uniform[t]!;
    v.bestStatic[t] = world.expected(p, x, statics[p]!);
    if (t % stride === 0) v.oracle[t] = world.expected(p, x, world.oracle(p, x, T));
  }
  return v;
}

const meanOf = (xs: ArrayLike<number>, idx: readonly number[]) => idx.reduce((s, i) => s + xs[i]!, 0) / Math.max(1, idx.length);

/** Paired mean difference a − b over `idx` with a normal 95 % interval. */
export function pairedDiff(a: ArrayLike<number>, b: ArrayLike<number>, idx: readonly number[]): { diff: number; lo: number; hi: number; n: number } {
  const d = idx.map((i) => a[i]! - b[i]!);
  const n = d.length;
  const m = d.reduce((s, x) => s + x, 0) / Math.max(1, n);
  const sd = n > 1 ? Math.sqrt(d.reduce((s, x) => s + (x - m) ** 2, 0) / (n - 1)) : 0;
  const h = (1.96 * sd) / Math.sqrt(Math.max(1, n));
  return { diff: m, lo: m - h, hi: m + h, n };
}

export interface WindowRow {
  readonly from: number;
  readonly to: number;
  /** Ratios to the oracle on the window's oracle-valued requests. */
  readonly served: number;
  readonly uniform: number;
  readonly bestStatic: number;
  readonly defaultR: number;
  /** The learned arm (control decisions left out) − the default strategy's split on the same requests, paired, all requests of the window. */
  readonly armVsDefault: { diff: number; lo: number; hi: number; n: number };
  /** Highest model version that decided in the window (0: safe start only). */
  readonly version: number;
  /** Share of the window's learned-arm decisions made by a trained version. */
  readonly trained: number;
}

/** Per `size`-outcome windows of the run. */
export function windows(v: Valued, meta: { version: Int32Array; control: Uint8Array }, size: number, from = 0, to = v.served.length): WindowRow[] {
  const rows: WindowRow[] = [];
  for (let s = from; s < to; s += size) {
    const e = Math.min(to, s + size);
    if (e - s < size / 2 && rows.length) break;
    rows.push(summarise(v, meta, s, e));
  }
  return rows;
}

export function summarise(v: Valued, meta: { version: Int32Array; control: Uint8Array }, s: number, e: number): WindowRow {
  const all = Array.from({ length: e - s }, (_, i) => s + i);
  const ev = all.filter((i) => i % v.stride === 0);
  const o = meanOf(v.oracle, ev);
  const arm = all.filter((i) => meta.control[i] === 0);
  let version = 0;
  let trained = 0;
  for (const i of arm) {
    version = Math.max(version, meta.version[i]!);
    if (meta.version[i]! > 0) trained++;
  }
  return {
    from: s,
    to: e,
    served: meanOf(v.served, ev) / o,
    uniform: meanOf(v.uniform, ev) / o,
    bestStatic: meanOf(v.bestStatic, ev) / o,
    defaultR: meanOf(v.defaultV, ev) / o,
    armVsDefault: pairedDiff(v.served, v.defaultV, arm),
    version,
    trained: trained / Math.max(1, arm.length),
  };
}

/**
 * The longest run of consecutive windows in which the learned arm was significantly worse than the default
 * strategy's split (the whole 95 % interval below −margin), in outcomes; `trainedOnly` (default): only windows in
 * which trained versions decided most of the learned arm count (the safe start's windows never do).
 */
export function longestWorse(rows: readonly WindowRow[], margin = 0, trainedOnly = true): { outcomes: number; windows: number; total: number } {
  let best = 0;
  let cur = 0;
  let total = 0;
  let bestN = 0;
  for (const r of rows) {
    const worse = (!trainedOnly || r.trained > 0.5) && r.armVsDefault.hi < -margin;
    cur = worse ? cur + (r.to - r.from) : 0;
    if (worse) total += r.to - r.from;
    if (cur > best) {
      best = cur;
      bestN = Math.round(cur / (r.to - r.from));
    }
  }
  return { outcomes: best, windows: bestN, total };
}

/** Outcomes accepted by epoch ms `ts` (a model version's createdAt → where in the run it appeared). */
export function outcomesBy(run: Pick<DriveRun, 'doneMs' | 't0'>, ts: number): number {
  let n = 0;
  for (const d of run.doneMs) if (d > 0 && run.t0 + d <= ts) n++;
  return n;
}
