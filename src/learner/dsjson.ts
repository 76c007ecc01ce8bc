import type { LoggedEvent } from './events.js';
import { rewardOf } from './events.js';

/**
 * One logged decision as a line of Vowpal Wabbit's decision-service JSON (DSJSON, the format of
 * `vw --dsjson --cb_explore_adf`): shared context features in `c`, one `_multi` entry per candidate action
 * (its budget shares per agent), `a` the action ids (1-based) with the chosen one first, `p` their
 * probabilities in the same order, and the label as a cost (−reward) with the chosen action's probability.
 * On a pipeline with model tiers each action also names its model per agent (`_multi[k].model`), and a request's
 * cost ceiling is in the context as `_maxCostUsd`.
 * A decision by a deterministic strategy has a single action with probability 1.
 */
export function toDsjson(e: LoggedEvent, agents: readonly string[], costWeight = 0): string {
  const served = agents.map((a) => e.b[a] ?? 0);
  const C = e.C && e.P && e.k !== undefined ? e.C : [served];
  const P = e.C && e.P && e.k !== undefined ? e.P : [1];
  const k = e.C && e.P && e.k !== undefined ? e.k : 0;
  const total = Math.max(1, e.T);
  // Model tiers: every action names its model per agent (the event's per-action models, else the served ones).
  const CM = e.C && e.CM && e.CM.length === e.C.length ? e.CM : undefined;
  const modelsOf = (k: number) => {
    const m = CM?.[k] ?? e.M;
    if (!m) return undefined;
    const out: Record<string, string> = {};
    agents.forEach((a, i) => {
      if (typeof m[i] === 'string') out[a] = m[i]!;
    });
    return out;
  };
  const multi = C.map((c, k) => {
    const model = modelsOf(k);
    return { share: Object.fromEntries(agents.map((a, i) => [a, Number((c[i]! / total).toFixed(6))])), ...(model ? { model } : {}) };
  });
  const order = [k, ...C.map((_, i) => i).filter((i) => i !== k)];
  const context: Record<string, unknown> = {};
  for (const [name, v] of Object.entries(e.f)) if (v !== null) context[name] = v;
  if (e.X !== undefined) context._maxCostUsd = e.X;
  const reward = rewardOf(e, costWeight);
  return JSON.stringify({
    _label_cost: -reward,
    _label_probability: P[k],
    _label_Action: k + 1,
    _labelIndex: k,
    o: [{ v: reward, EventId: e.id, ActionTaken: false }],
    Timestamp: new Date(e.t).toISOString(),
    Version: '1',
    EventId: e.id,
    a: order.map((i) => i + 1),
    c: { ...context, _multi: multi },
    p: order.map((i) => P[i]!),
    VWState: { m: `${e.s}/${e.m ?? 0}` },
    ...(e.d ? { _defaultReward: true } : {}),
  });
}
