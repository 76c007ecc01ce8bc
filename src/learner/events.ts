import { Type } from '@sinclair/typebox';
import murmurhash from 'murmurhash';
import { jsonDecoder } from '../redis/decode.js';
import type { Features } from '../strategies/types.js';
import type { FeatureEncoder } from './features.js';
import type { TrainingData } from './trainer.js';

/**
 * One logged decision with its outcome: an entry of the pipeline's training buffer, the rows of
 * off-policy evaluation, and a line of `export-logs`. Short keys: a buffer holds up to 100k of them.
 */
export interface LoggedEvent {
  /** Decision id (a default-reward event logged by an earlier version carries the learner's ticket instead). */
  readonly id: string;
  /** Decision time, epoch ms. */
  readonly t: number;
  /** Strategy that served. */
  readonly s: string;
  readonly f: Features;
  /** Total tokens of the request. */
  readonly T: number;
  /** Budgets served, by agent (pipeline order). */
  readonly b: Readonly<Record<string, number>>;
  /** Observed quality (the default reward for a decision that got no outcome within the wait window). */
  readonly q: number;
  /** Cost in USD, null when unknown. */
  readonly c: number | null;
  /** Tokens each agent used (input + output) as the outcome reported them, by agent; absent when not reported. */
  readonly u?: Readonly<Record<string, number>>;
  /** The logging policy's action distribution: distinct budget vectors (agent order of `b`), their exact
   * probabilities (summing to 1), and the served one's index — routing (experiments, holdout), the guard's
   * control arm and the learned strategy's exploration included (hooks.ts loggingPolicyOf). Absent when the
   * decision was certain (a deterministic strategy on a certain route: the served action had probability 1). */
  readonly C?: readonly (readonly number[])[];
  readonly P?: readonly number[];
  readonly k?: number;
  /** Model version that decided (0 = cold start). */
  readonly m?: number;
  /** 1 when q is the default reward. */
  readonly d?: 1;
  /** The runtime guard's arm of a learned decision made with a control share: 1 control, 0 learned. */
  readonly a?: 0 | 1;
  /** The runtime guard's offset (ControlMeta `z`): the serving version's predicted reward of the control's split for this request. */
  readonly z?: number;
  /** The pending candidate version whose split served this decision by the candidate share's own draw (LearnerMeta
   * `cw`; the control arm did not serve): the runtime guard's candidate arm. Absent on every other decision. */
  readonly v?: number;
  /** Model tiers: the models served (agent order of `b`; null for an agent without one), the models of every
   * action of `C` when they differ between actions (parallel to C; absent: every action served `M`), and the
   * request's cost ceiling in USD. */
  readonly M?: readonly (string | null)[];
  readonly CM?: readonly (readonly (string | null)[])[];
  readonly X?: number;
  /** Shadow strategies' budgets for this request, by strategy id (agent order of `b`). */
  readonly sh?: Readonly<Record<string, readonly number[]>>;
  /** Model tiers: shadow strategies' models for this request, by strategy id (agent order of `b`; null for an agent without one). */
  readonly sM?: Readonly<Record<string, readonly (string | null)[]>>;
}

const Num = Type.Number();
const StrOrNull = Type.Union([Type.String(), Type.Null()]);

/** LoggedEvent as a schema, for decodeEvent: typed by the interface, so a field it lets through that the interface does not allow is a compile error. */
const LoggedEventSchema = Type.Object({
  id: Type.String(),
  t: Num,
  s: Type.String(),
  f: Type.Record(Type.String(), Type.Union([Type.String(), Num, Type.Boolean(), Type.Null()])),
  T: Num,
  b: Type.Record(Type.String(), Num),
  q: Num,
  c: Type.Union([Num, Type.Null()]),
  u: Type.Optional(Type.Record(Type.String(), Num)),
  C: Type.Optional(Type.Array(Type.Array(Num))),
  P: Type.Optional(Type.Array(Num)),
  k: Type.Optional(Num),
  m: Type.Optional(Num),
  d: Type.Optional(Type.Literal(1)),
  a: Type.Optional(Type.Union([Type.Literal(0), Type.Literal(1)])),
  z: Type.Optional(Num),
  v: Type.Optional(Num),
  M: Type.Optional(Type.Array(StrOrNull)),
  CM: Type.Optional(Type.Array(Type.Array(StrOrNull))),
  X: Type.Optional(Num),
  sh: Type.Optional(Type.Record(Type.String(), Type.Array(Num))),
  sM: Type.Optional(Type.Record(Type.String(), Type.Array(StrOrNull))),
});

/** One entry of a training buffer, parsed and checked (src/redis/decode.ts); undefined when it is not JSON or not an event. */
export const decodeEvent: (text: string) => LoggedEvent | undefined = jsonDecoder(LoggedEventSchema);

/** The events of buffer entries, in order; an entry that is not an event (corrupted in Redis) is left out. */
export function decodeEvents(raw: readonly string[]): LoggedEvent[] {
  const out: LoggedEvent[] = [];
  for (const r of raw) {
    const e = decodeEvent(r);
    if (e) out.push(e);
  }
  return out;
}

/** Reward = quality − λ·cost (unknown cost counts as 0: the learner cannot charge what it was not told). */
export function rewardOf(e: Pick<LoggedEvent, 'q' | 'c'>, costWeight: number): number {
  return e.q - costWeight * (e.c ?? 0);
}

export interface DatasetOptions {
  readonly costWeight: number;
  /** Recency half-life in events: the newest event weighs 1, one `halfLife` older weighs ½. Default 1000. */
  readonly halfLife?: number;
  /**
   * Importance weighting (a bench option, not the service's default): each row's weight is also multiplied by
   * min(cap, (1 / p)^power) where p is the logged probability of the served action (1 when the event carries none),
   * so rows of rarely served splits (exploration, the control arm) count more than the greedy split's many rows.
   */
  readonly importance?: { readonly cap: number; readonly power: number };
  /** Drift recovery's forgetting (drift.ts forgetSpan): events with `from` ≤ t < `before` weigh `weight` × their recency weight. */
  readonly forget?: { readonly from: number; readonly before: number; readonly weight: number };
  /**
   * How the trainer's held-out tenth is chosen: `draw` (default: a seeded draw at each retrain) or `id` (isHeldOut, the
   * same decisions at every retrain, as the tier retrain does; a bench option: measured on the token learner and not
   * adopted, docs/learner.md "The held-out tenth").
   */
  readonly holdout?: 'id' | 'draw';
}

/**
 * Whether a logged decision is in the tier retrain's held-out tenth (murmur3 of its id, mod 10; the token trainer's
 * too with DatasetOptions.holdout `id`, a bench option). Decided by the id, not drawn at each retrain: a version is
 * warm-started from the fits before it, and a fresh draw would hold out decisions those fits trained on, so the
 * version's held-out error would be too low for what it never saw — and drift recovery compares new decisions' errors
 * with it (a stationary world was taken for changed). Only among the newest HOLDOUT_SPAN events of a window
 * (`isHeldOut`): older ones are trained on, so no decision is withheld from every fit.
 */
export const heldOutId = (id: string): boolean => murmurhash.v3(id) % 10 === 0;

/**
 * How many of a window's newest events the held-out tenth is drawn from (isHeldOut). A decision is held out while it is
 * among the newest HOLDOUT_SPAN events and trained on once it is older. So a decision a version holds out was either
 * held out by every earlier fit that saw it (it was newer still then) or not yet logged: no fit the version descends
 * from trained on it. And no decision is withheld from every fit for good.
 */
export const HOLDOUT_SPAN = 4000;

/** Whether the event `age` positions from the newest of a window (0: the newest) is held out (heldOutId within HOLDOUT_SPAN). */
export const isHeldOut = (id: string, age: number): boolean => age < HOLDOUT_SPAN && heldOutId(id);

/**
 * Turns events (newest first, as LRANGE returns the buffer) into training rows for a pipeline's agents.
 * Events whose budgets do not name every agent (an older pipeline version) are skipped.
 */
export function buildTrainingData(events: readonly LoggedEvent[], encoder: FeatureEncoder, agents: readonly string[], opts: DatasetOptions): TrainingData {
  const d = encoder.dim;
  const n = agents.length;
  const keep = events.filter((e) => agents.every((a) => typeof e.b[a] === 'number'));
  const rows = keep.length;
  const x = new Float32Array(rows * d);
  const b = new Float32Array(rows * n);
  const r = new Float32Array(rows);
  const w = new Float32Array(rows);
  const decay = Math.LN2 / (opts.halfLife ?? 1000);
  keep.forEach((e, i) => {
    encoder.encode(e.f, x.subarray(i * d, (i + 1) * d));
    agents.forEach((a, j) => (b[i * n + j] = e.b[a]!));
    r[i] = rewardOf(e, opts.costWeight);
    w[i] = Math.exp(-decay * i);
    const imp = opts.importance;
    if (imp) {
      const p = e.P !== undefined && e.k !== undefined ? e.P[e.k] : undefined;
      if (p !== undefined && p > 0) w[i] = w[i]! * Math.min(imp.cap, Math.pow(1 / p, imp.power));
    }
    const fg = opts.forget;
    if (fg && e.t >= fg.from && e.t < fg.before) w[i] = w[i]! * fg.weight;
  });
  if (opts.holdout !== 'id') return { rows, x, b, r, w };
  const held = new Uint8Array(rows);
  let i = 0;
  events.forEach((e, age) => {
    if (agents.every((a) => typeof e.b[a] === 'number')) held[i++] = isHeldOut(e.id, age) ? 1 : 0;
  });
  return { rows, x, b, r, w, held };
}
