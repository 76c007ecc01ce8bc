import { toPipeline } from '../pipelines/model.js';
import type { Pipeline } from '../pipelines/schema.js';
import type { StrategyBody, StrategyDef } from '../strategies/schema.js';
import type { RawControlState } from './store.js';

/** Typed, immutable view of one control-plane state. Built once per state and shared by all readers. */
export interface ControlView {
  readonly version: number;
  readonly raw: RawControlState;
  readonly pipelines: ReadonlyMap<string, Pipeline>;
  readonly strategies: ReadonlyMap<string, StrategyDef>;
  /** Per-view memo for derived data (compiled strategies, bucketing tables, …): dropped with the view. */
  memo<T>(key: string, make: () => T): T;
}

const views = new WeakMap<RawControlState, ControlView>();

export function viewOf(raw: RawControlState): ControlView {
  const cached = views.get(raw);
  if (cached) return cached;
  const pipelines = new Map<string, Pipeline>();
  for (const v of raw.kinds.pipelines.values()) pipelines.set(v.id, toPipeline(v));
  const strategies = new Map<string, StrategyDef>();
  for (const v of raw.kinds.strategies.values()) {
    const b = v.doc as StrategyBody;
    strategies.set(v.id, {
      id: v.id,
      version: v.version,
      pipeline: b.pipeline,
      kind: b.kind,
      params: b.params ?? {},
      ...(b.description !== undefined ? { description: b.description } : {}),
    });
  }
  const memo = new Map<string, unknown>();
  const view: ControlView = {
    version: raw.version,
    raw,
    pipelines,
    strategies,
    memo<T>(key: string, make: () => T): T {
      if (memo.has(key)) return memo.get(key) as T;
      const v = make();
      memo.set(key, v);
      return v;
    },
  };
  views.set(raw, view);
  return view;
}
